//! The `/admin/v1` wire shapes (ARCHITECTURE.md, "Berth-only endpoints"): ACI has no such API, so
//! [`crate::arm`] does not carry them. The apiserver writes the answers and reads the requests; the
//! CLI the other way round.
//!
//! Requests refuse unknown fields (the server's rule). Answers are read leniently (unknown fields
//! ignored, missing ones defaulted), because the CLI only shows them. The fields of an answer are in
//! the order of their JSON names, so the bytes are those the apiserver wrote with `serde_json::json!`
//! before these types existed. Lists come as [`crate::arm::ListResult`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST` issues a token ([`TokenRequest`] -> 201 [`IssuedToken`]); `GET` lists them
/// (`{"value":[Token]}`).
pub const TOKENS_PATH: &str = "/admin/v1/tokens";
/// `POST` issues a join token ([`JoinTokenRequest`] -> 201 [`JoinToken`]).
pub const JOIN_TOKENS_PATH: &str = "/admin/v1/join-tokens";
/// `POST` issues a standalone `berth-dns`'s client certificate (201 [`DnsCertificate`]).
pub const DNS_CERTIFICATES_PATH: &str = "/admin/v1/dns-certificates";
/// `GET` lists the nodes (`{"value":[Node]}`).
pub const NODES_PATH: &str = "/admin/v1/nodes";

/// `GET`: every subscription's usage, streamed CSV or JSON lines (query `from`, `to`,
/// `granularity`, `format`; README "Billing"). Not under `/v1`, as it predates it.
pub const USAGE_PATH: &str = "/admin/billing/usage";
/// The header of a usage answer that estimates its number of data rows (for a progress bar; the
/// rows may differ).
pub const ROW_ESTIMATE_HEADER: &str = "x-berth-row-estimate";

/// `POST /admin/v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// The subscriptions a tenant token may see; none for an operator token.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub operator: bool,
    /// Seconds from now until the token expires; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<i64>,
}

/// A token as listings show it (and the answer to its revocation). Never holds the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Token {
    pub created_at: Option<String>,
    /// `null`: never.
    pub expires_at: Option<String>,
    pub id: String,
    pub last_used_at: Option<String>,
    pub operator: bool,
    /// `berth_<id>_<4 characters of the secret>`.
    pub prefix: String,
    pub revoked_at: Option<String>,
    pub subscriptions: Vec<String>,
}

/// The answer to `POST /admin/v1/tokens`: the token and, this once, its secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub info: Token,
    /// `berth_<id>_<secret>`.
    #[serde(default)]
    pub token: String,
}

/// `POST /admin/v1/join-tokens`; the server defaults what is absent (1 use, 3600 s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
}

/// The answer to `POST /admin/v1/join-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JoinToken {
    pub expires_at: String,
    /// `<id>.<secret>.<ca-sha256-hex>`, for `berth-node-agent --join-token`.
    pub token: String,
    pub uses: i64,
}

/// The answer to `POST /admin/v1/dns-certificates` (PEMs). The key is made for this answer and
/// kept nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsCertificate {
    /// The cluster CA.
    pub ca: String,
    pub certificate: String,
    pub id: String,
    pub key: String,
}

/// One node of `GET /admin/v1/nodes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    pub agent_version: Option<String>,
    pub allocated: NodeResources,
    pub capacity: NodeResources,
    /// No new placement on it (`berth admin node cordon`, or a drain).
    pub cordoned: bool,
    /// A drain was asked for (until uncordoned): its groups were moved off.
    pub draining: bool,
    /// How many groups are placed on it.
    pub groups: u64,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub last_heartbeat: Option<String>,
    pub name: String,
    pub os_type: String,
    /// `Ready`, `NotReady` or `Lost` (silent past `--node-lost-after`: its groups were moved off).
    pub status: String,
}

/// The answer of `POST /admin/v1/nodes/{name}/drain` and of `DELETE /admin/v1/nodes/{name}` (200
/// whether forced or not; without `force=true` nothing was on it): the groups taken off the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeEvacuation {
    /// The node, as in `GET /admin/v1/nodes`, after the change (a deleted node: as it was last).
    pub node: Node,
    /// ARM ids (`/subscriptions/…/containerGroups/NAME`) of the groups waiting for a node again (the
    /// scheduler places them).
    pub moved: Vec<String>,
    /// ARM ids of the finished groups their restart policy does not run again (taken off, kept as
    /// they are).
    pub settled: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeResources {
    /// Cores.
    pub cpu: f64,
    pub gpu: u64,
    #[serde(rename = "memoryInGB")]
    pub memory_in_gb: f64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn requests_are_written_with_only_what_was_given() {
        let request = TokenRequest {
            subscriptions: vec!["s".into()],
            operator: false,
            expires_in_seconds: None,
        };
        assert_eq!(
            json(&request),
            r#"{"subscriptions":["s"],"operator":false}"#
        );
        let request = TokenRequest {
            expires_in_seconds: Some(60),
            ..request
        };
        assert_eq!(
            json(&request),
            r#"{"subscriptions":["s"],"operator":false,"expiresInSeconds":60}"#
        );
        assert_eq!(json(&JoinTokenRequest::default()), "{}");
        let request = JoinTokenRequest {
            uses: Some(3),
            ttl_seconds: Some(60),
        };
        assert_eq!(json(&request), r#"{"uses":3,"ttlSeconds":60}"#);
    }

    #[test]
    fn requests_are_read_strictly() {
        let read = |body: &str| serde_json::from_str::<TokenRequest>(body);
        assert_eq!(read("{}").unwrap(), TokenRequest::default());
        assert_eq!(
            read(r#"{"operator":true,"expiresInSeconds":-1}"#).unwrap(),
            TokenRequest {
                operator: true,
                expires_in_seconds: Some(-1),
                ..TokenRequest::default()
            },
            "a range is the server's to check"
        );
        assert!(read(r#"{"operator":true,"admin":true}"#).is_err());
        assert!(read(r#"{"expires_in_seconds":60}"#).is_err());
        let read = |body: &str| serde_json::from_str::<JoinTokenRequest>(body);
        assert_eq!(read(r#"{"ttlSeconds":5}"#).unwrap().ttl_seconds, Some(5));
        assert!(read(r#"{"ttl":5}"#).is_err());
    }

    #[test]
    fn answers_are_written_in_the_order_of_their_names() {
        let token = Token {
            created_at: Some("2026-01-01T00:00:00Z".into()),
            expires_at: None,
            id: "abc".into(),
            last_used_at: None,
            operator: false,
            prefix: "berth_abc_wxyz".into(),
            revoked_at: None,
            subscriptions: vec!["s".into()],
        };
        let listed = r#"{"createdAt":"2026-01-01T00:00:00Z","expiresAt":null,"id":"abc","lastUsedAt":null,"operator":false,"prefix":"berth_abc_wxyz","revokedAt":null,"subscriptions":["s"]"#;
        assert_eq!(json(&token), format!("{listed}}}"));
        let issued = IssuedToken {
            info: token,
            token: "berth_abc_secret".into(),
        };
        assert_eq!(
            json(&issued),
            format!(r#"{listed},"token":"berth_abc_secret"}}"#)
        );
        let join = JoinToken {
            expires_at: "2026-01-01T01:00:00Z".into(),
            token: "id.secret.hash".into(),
            uses: 1,
        };
        assert_eq!(
            json(&join),
            r#"{"expiresAt":"2026-01-01T01:00:00Z","token":"id.secret.hash","uses":1}"#
        );
        let node = Node {
            agent_version: Some("0.1.0".into()),
            allocated: NodeResources::default(),
            capacity: NodeResources {
                cpu: 4.0,
                gpu: 0,
                memory_in_gb: 15.5,
            },
            cordoned: false,
            draining: false,
            groups: 2,
            id: "n1".into(),
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            last_heartbeat: Some("2026-01-01T00:00:00Z".into()),
            name: "node-1".into(),
            os_type: "Linux".into(),
            status: "Ready".into(),
        };
        assert_eq!(
            json(&node),
            r#"{"agentVersion":"0.1.0","allocated":{"cpu":0.0,"gpu":0,"memoryInGB":0.0},"capacity":{"cpu":4.0,"gpu":0,"memoryInGB":15.5},"cordoned":false,"draining":false,"groups":2,"id":"n1","labels":{"zone":"a"},"lastHeartbeat":"2026-01-01T00:00:00Z","name":"node-1","osType":"Linux","status":"Ready"}"#
        );
        let certificate = DnsCertificate {
            ca: "CA".into(),
            certificate: "CERT".into(),
            id: "x".into(),
            key: "KEY".into(),
        };
        assert_eq!(
            json(&certificate),
            r#"{"ca":"CA","certificate":"CERT","id":"x","key":"KEY"}"#
        );
    }

    #[test]
    fn answers_are_read_leniently() {
        let issued: IssuedToken =
            serde_json::from_str(r#"{"id":"abc","token":"berth_abc_s","future":1}"#).unwrap();
        assert_eq!(issued.info.id, "abc");
        assert_eq!(issued.token, "berth_abc_s");
        assert_eq!(issued.info.created_at, None);
        let node: Node =
            serde_json::from_str(r#"{"id":"n","capacity":{"cpu":2.5},"extra":[]}"#).unwrap();
        assert_eq!(node.capacity.cpu, 2.5);
        assert_eq!(node.groups, 0);
        let join: JoinToken = serde_json::from_str(r#"{"token":"t"}"#).unwrap();
        assert_eq!(join.token, "t");
    }
}
