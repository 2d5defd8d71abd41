//! The `/admin/v1` wire shapes (ARCHITECTURE.md, "Berth-only endpoints"). ACI has no such API, so
//! `berth-proto::arm` does not carry them. Answers are read leniently (unknown fields ignored, missing
//! ones defaulted) because the CLI shows them and sends them nowhere.

use serde::{Deserialize, Serialize};

pub const TOKENS_PATH: &str = "/admin/v1/tokens";

/// `DELETE` revokes the token.
pub fn token_path(id: &str) -> String {
    format!("{TOKENS_PATH}/{}", crate::client::segment(id))
}
pub const JOIN_TOKENS_PATH: &str = "/admin/v1/join-tokens";
pub const DNS_CERTIFICATES_PATH: &str = "/admin/v1/dns-certificates";
pub const NODES_PATH: &str = "/admin/v1/nodes";

/// `POST /admin/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub subscriptions: Vec<String>,
    pub operator: bool,
    /// Absent: the token never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// One token of `GET /admin/v1/tokens` (and the answer to its revocation). Never holds the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenInfo {
    pub id: String,
    pub prefix: String,
    pub subscriptions: Vec<String>,
    pub operator: bool,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// `POST /admin/v1/join-tokens`; the server defaults what is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// The part of a token answer (`/tokens` or `/join-tokens`) that table output prints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedToken {
    pub token: String,
}

/// One row of `GET /admin/v1/nodes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub os_type: String,
    pub status: String,
    pub capacity: NodeResources,
    pub allocated: NodeResources,
    pub groups: u64,
    pub last_heartbeat: Option<String>,
    pub agent_version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeResources {
    pub cpu: f64,
    #[serde(rename = "memoryInGB")]
    pub memory_in_gb: f64,
    pub gpu: u64,
}
