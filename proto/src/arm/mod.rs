//! ACI's ARM JSON, as `Microsoft.ContainerInstance` api-version 2023-05-01 writes it.
//!
//! Every field is optional here, on purpose: these types carry what a client *sent*, and the apiserver's
//! validation decides what is missing or wrong and names the field in its error. Enum-like values stay
//! strings for the same reason (ACI accepts `"linux"` and echoes `"Linux"`). Bodies reach these types
//! through [`lenient::read`], which drops (and names) keys outside the api-version's schema and
//! read-only fields a client echoes back from a GET (`instanceView`, `provisioningState`, …);
//! `deny_unknown_fields` stays as the net under it.
//!
//! Every published api-version's shape is a part of this one, so one set of types serves them all
//! ([`API_VERSIONS`]); [`versions`] says which parts each version has, and [`lenient`] reads a body the
//! way ARM does (names without case, numbers in strings, properties of other versions ignored) before
//! these types see it.

mod group;
pub mod lenient;
pub mod versions;

pub use group::*;
pub use versions::API_VERSIONS;

use serde::{Deserialize, Serialize};

/// The api-version the apiserver speaks natively (what `az` 2.48+ and the Python SDK 10.x send).
pub const API_VERSION: &str = "2023-05-01";

/// The api-version ACI puts in `Azure-AsyncOperation` URLs whatever the request used.
pub const ASYNC_OPERATION_API_VERSION: &str = "2018-06-01";

/// ARM's `CloudError`: the body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudError {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorBody>,
}

/// A page of a list: `{"value":[...],"nextLink":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult<T> {
    pub value: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// The body of the `Azure-AsyncOperation` status monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    pub id: String,
    pub name: String,
    /// `Pending`, `Succeeded`, `Failed` or `Canceled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<OperationProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationProperties {
    #[serde(default)]
    pub events: Vec<Event>,
}

/// `PATCH` body: tags only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsPatch {
    #[serde(default)]
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

/// `POST …/exec` body: ACI's `command` and `terminalSize`, plus Berth's `tty` and `stdin`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerExecRequest {
    #[serde(default)]
    pub command: Option<ExecCommand>,
    #[serde(default)]
    pub terminal_size: Option<TerminalSize>,
    /// Run on a pseudo-terminal (Berth; default true, ACI's only mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Wire stdin up (Berth; default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
}

/// An exec command: ACI's string (split on whitespace), or Berth's exact argv.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExecCommand {
    Line(String),
    Argv(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    #[serde(default)]
    pub rows: Option<i64>,
    #[serde(default)]
    pub cols: Option<i64>,
}

/// `POST …/exec` and `…/attach` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerExecResponse {
    pub web_socket_uri: String,
    pub password: String,
}

/// `GET …/logs` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    pub content: String,
}

/// One row of `GET …/locations/{loc}/usages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub id: String,
    pub unit: String,
    pub current_value: i64,
    pub limit: i64,
    pub name: UsageName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageName {
    pub value: String,
    pub localized_value: String,
}

/// One row of `GET …/locations/{loc}/capabilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capability {
    pub resource_type: String,
    pub os_type: String,
    pub location: String,
    pub ip_address_type: String,
    pub gpu: String,
    pub capabilities: CapabilityLimits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityLimits {
    #[serde(rename = "maxMemoryInGB")]
    pub max_memory_in_gb: f64,
    pub max_cpu: f64,
    pub max_gpu_count: f64,
}

/// One row of `GET /providers/Microsoft.ContainerInstance/operations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub name: String,
    pub display: OperationDisplay,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationDisplay {
    pub provider: String,
    pub resource: String,
    pub operation: String,
    pub description: String,
}
