//! One module per verb, each with one `pub async fn` that takes the [`Context`] and its arguments.

pub mod admin;
pub mod az_setup;
pub mod billing;
pub mod container;
pub mod dns;
pub mod login;

use std::path::Path;

use anyhow::Context as _;

use crate::client::{Client, segment};
use crate::config::Settings;
use crate::output::OutputFormat;

/// What every command that talks to the apiserver gets.
#[derive(Debug)]
pub struct Context {
    pub client: Client,
    pub output: OutputFormat,
    pub settings: Settings,
}

impl Context {
    /// Builds the client from the settings; `config_path` is named in the hint when one is missing.
    pub fn new(
        settings: Settings,
        output: OutputFormat,
        config_path: &Path,
    ) -> anyhow::Result<Self> {
        let missing = |flag: &str, var: &str| {
            anyhow::anyhow!(
                "no {flag}: run `berth login`, pass --{flag} or set {var} (config file: {})",
                config_path.display()
            )
        };
        let endpoint = settings
            .endpoint
            .as_deref()
            .ok_or_else(|| missing("endpoint", crate::config::ENV_ENDPOINT))?;
        let token = settings
            .token
            .as_deref()
            .ok_or_else(|| missing("token", crate::config::ENV_TOKEN))?;
        let ca_file = settings
            .ca_file
            .as_deref()
            .ok_or_else(|| missing("ca-file", crate::config::ENV_CA_FILE))?;
        let client = Client::new(endpoint, token, ca_file)?;
        Ok(Self {
            client,
            output,
            settings,
        })
    }

    /// The subscription container commands work in.
    pub fn subscription(&self) -> anyhow::Result<&str> {
        self.settings.subscription.as_deref().context(
            "no subscription: pass --subscription, set BERTH_SUBSCRIPTION or run `berth login --subscription`",
        )
    }
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups`,
/// or the subscription-wide list without a resource group.
pub fn groups_path(subscription: &str, resource_group: Option<&str>) -> String {
    match resource_group {
        Some(rg) => format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups",
            segment(subscription),
            segment(rg)
        ),
        None => format!(
            "/subscriptions/{}/providers/Microsoft.ContainerInstance/containerGroups",
            segment(subscription)
        ),
    }
}

/// The path of one container group.
pub fn group_path(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "{}/{}",
        groups_path(subscription, Some(resource_group)),
        segment(name)
    )
}

/// Says on stderr what happened when stdout stays empty.
pub fn note(message: &str) {
    eprintln!("{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_paths() {
        assert_eq!(
            group_path("sub", "my rg", "web"),
            "/subscriptions/sub/resourceGroups/my%20rg/providers/Microsoft.ContainerInstance/containerGroups/web"
        );
        assert_eq!(
            groups_path("sub", None),
            "/subscriptions/sub/providers/Microsoft.ContainerInstance/containerGroups"
        );
    }
}
