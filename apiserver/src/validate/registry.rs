//! Image registry credentials: one per server, each with a username and password.

use std::collections::HashSet;

use berth_proto::arm;

use super::codes::{duplicate, invalid, missing, present, unsupported};
use crate::error::ApiError;
use crate::model::*;

pub(super) fn registry_credentials(
    creds: &[arm::ImageRegistryCredential],
) -> Result<Vec<RegistryCredential>, ApiError> {
    let mut servers = HashSet::new();
    let mut out = Vec::with_capacity(creds.len());
    for (i, c) in creds.iter().enumerate() {
        let t = format!("properties.imageRegistryCredentials[{i}]");
        let server = c
            .server
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(format!("{t}.server")))?;
        if server.contains(['/', ' ']) || server.chars().any(char::is_control) {
            return Err(invalid(
                format!("{t}.server"),
                "a registry server is a host name with an optional port",
            ));
        }
        if c.identity.is_some() || c.identity_url.is_some() {
            return Err(unsupported(format!("{t}.identity")));
        }
        if present(&c.password_reference) {
            return Err(unsupported(format!("{t}.passwordReference")));
        }
        let username = c
            .username
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(format!("{t}.username")))?;
        let password = c
            .password
            .clone()
            .ok_or_else(|| missing(format!("{t}.password")))?;
        if !servers.insert(server.to_ascii_lowercase()) {
            return Err(duplicate(&format!("{t}.server"), "registry server", server));
        }
        out.push(RegistryCredential {
            server: server.to_owned(),
            username: Some(username),
            password: Some(password),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn check(creds: Value) -> Result<Vec<RegistryCredential>, ApiError> {
        registry_credentials(&serde_json::from_value::<Vec<_>>(creds).unwrap())
    }

    #[test]
    fn one_credential_per_server() {
        let ok =
            check(json!([{"server": "reg.example.com:5000", "username": "u", "password": "p"}]))
                .unwrap();
        assert_eq!(ok[0].server, "reg.example.com:5000");
        let t = "properties.imageRegistryCredentials";
        for (creds, target) in [
            (
                json!([{"username": "u", "password": "p"}]),
                format!("{t}[0].server"),
            ),
            (
                json!([{"server": "https://r/x", "username": "u", "password": "p"}]),
                format!("{t}[0].server"),
            ),
            (
                json!([{"server": "r", "password": "p"}]),
                format!("{t}[0].username"),
            ),
            (
                json!([{"server": "r", "username": "u"}]),
                format!("{t}[0].password"),
            ),
            (
                json!([{"server": "R", "username": "u", "password": "p"}, {"server": "r", "username": "u", "password": "p"}]),
                format!("{t}[1].server"),
            ),
            (
                json!([{"server": "r", "username": "u", "password": "p", "identity": "x"}]),
                format!("{t}[0].identity"),
            ),
        ] {
            assert_eq!(
                check(creds.clone()).unwrap_err().target,
                Some(target),
                "{creds}"
            );
        }
    }

    proptest! {
        /// An accepted server is a bare host[:port]: nothing a URL or a path could hide in.
        #[test]
        fn accepted_servers_have_no_path_or_space(server in "[a-z0-9.:/ \\t-]{1,20}") {
            let creds = json!([{"server": server, "username": "u", "password": "p"}]);
            if let Ok(out) = check(creds) {
                prop_assert!(!out[0].server.contains(['/', ' ', '\t']));
            }
        }
    }
}
