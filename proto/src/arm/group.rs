//! The `Microsoft.ContainerInstance/containerGroups` resource.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

/// ARM resource type of a container group.
pub const CONTAINER_GROUP_TYPE: &str = "Microsoft.ContainerInstance/containerGroups";

/// A container group, as sent in a PUT body and as answered by GET/LIST.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerGroup {
    /// Read-only.
    pub id: Option<String>,
    /// Read-only; taken from the URL.
    pub name: Option<String>,
    /// Read-only.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub location: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub zones: Option<Vec<String>>,
    /// Managed identities: Berth has none to give, so anything but `None` is refused.
    pub identity: Option<Value>,
    /// Read-only ARM metadata a client may echo back.
    pub system_data: Option<Value>,
    pub properties: Option<ContainerGroupProperties>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerGroupProperties {
    /// Read-only.
    pub provisioning_state: Option<String>,
    pub containers: Option<Vec<Container>>,
    pub init_containers: Option<Vec<InitContainer>>,
    pub image_registry_credentials: Option<Vec<ImageRegistryCredential>>,
    pub restart_policy: Option<String>,
    pub ip_address: Option<IpAddress>,
    pub os_type: Option<String>,
    pub volumes: Option<Vec<Volume>>,
    /// Read-only.
    pub instance_view: Option<GroupInstanceView>,
    pub diagnostics: Option<Value>,
    pub subnet_ids: Option<Value>,
    /// 2018-09-01 to 2021-03-01's virtual network (later `subnetIds`).
    pub network_profile: Option<Value>,
    pub dns_config: Option<DnsConfig>,
    pub sku: Option<String>,
    pub encryption_properties: Option<Value>,
    pub extensions: Option<Value>,
    pub confidential_compute_properties: Option<Value>,
    pub priority: Option<String>,
    pub secret_references: Option<Value>,
    pub identity_acls: Option<Value>,
    pub container_group_profile: Option<Value>,
    pub standby_pool_profile: Option<Value>,
    /// Read-only.
    pub is_created_from_standby_pool: Option<bool>,
    /// Read-only.
    pub provisioning_timeout_in_seconds: Option<i64>,
    /// Read-only.
    pub is_custom_provisioning_timeout: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    pub name: Option<String>,
    pub properties: Option<ContainerProperties>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerProperties {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub ports: Option<Vec<ContainerPort>>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
    pub resources: Option<ResourceRequirements>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub liveness_probe: Option<ContainerProbe>,
    pub readiness_probe: Option<ContainerProbe>,
    pub security_context: Option<SecurityContext>,
    pub config_map: Option<Value>,
    /// Read-only.
    pub instance_view: Option<ContainerInstanceView>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitContainer {
    pub name: Option<String>,
    pub properties: Option<InitContainerProperties>,
}

/// Init containers have no ports, resources or probes of their own (ACI's rule).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitContainerProperties {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub security_context: Option<SecurityContext>,
    /// Read-only.
    pub instance_view: Option<ContainerInstanceView>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    pub protocol: Option<String>,
    pub port: Option<i64>,
}

/// A port of the group's IP address (same shape as a container port).
pub type Port = ContainerPort;

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentVariable {
    pub name: Option<String>,
    pub value: Option<String>,
    /// Secret: stored encrypted, never returned.
    pub secure_value: Option<String>,
    pub secure_value_reference: Option<Value>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    pub requests: Option<ResourceRequests>,
    pub limits: Option<ResourceRequests>,
}

/// Requests and limits share a shape. Sizes are JSON doubles on the wire and exact integers
/// (millicores, MiB) everywhere inside Berth.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequests {
    #[serde(rename = "memoryInGB")]
    pub memory_in_gb: Option<f64>,
    pub cpu: Option<f64>,
    pub gpu: Option<GpuResource>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuResource {
    pub count: Option<i64>,
    pub sku: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    pub name: Option<String>,
    pub mount_path: Option<String>,
    pub read_only: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerProbe {
    pub exec: Option<ContainerExec>,
    pub http_get: Option<ContainerHttpGet>,
    pub initial_delay_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub success_threshold: Option<i64>,
    pub timeout_seconds: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerExec {
    pub command: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerHttpGet {
    pub path: Option<String>,
    pub port: Option<i64>,
    pub scheme: Option<String>,
    pub http_headers: Option<Vec<HttpHeader>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub run_as_group: Option<i64>,
    pub run_as_user: Option<i64>,
    pub seccomp_profile: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    pub add: Option<Vec<String>>,
    pub drop: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRegistryCredential {
    pub server: Option<String>,
    pub username: Option<String>,
    /// Secret: stored encrypted, never returned.
    pub password: Option<String>,
    pub identity: Option<String>,
    pub identity_url: Option<String>,
    pub password_reference: Option<Value>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAddress {
    pub ports: Option<Vec<Port>>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Ignored on input (ACI does the same); set on output.
    pub ip: Option<String>,
    pub dns_name_label: Option<String>,
    pub auto_generated_domain_name_label_scope: Option<String>,
    /// Read-only.
    pub fqdn: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: Option<String>,
    pub azure_file: Option<AzureFileVolume>,
    /// Any JSON object; ACI defines no fields.
    pub empty_dir: Option<Value>,
    /// File name -> base64 contents. Secret: stored encrypted, never returned.
    pub secret: Option<BTreeMap<String, String>>,
    pub secret_reference: Option<Value>,
    pub git_repo: Option<GitRepoVolume>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureFileVolume {
    pub share_name: Option<String>,
    pub read_only: Option<bool>,
    pub storage_account_name: Option<String>,
    /// Secret: stored encrypted, never returned.
    pub storage_account_key: Option<String>,
    pub storage_account_key_reference: Option<Value>,
    /// 2026-05-01: mount with a managed identity instead of a key.
    pub user_managed_identity_client_id: Option<Value>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepoVolume {
    pub directory: Option<String>,
    pub repository: Option<String>,
    pub revision: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsConfig {
    pub name_servers: Option<Vec<String>>,
    pub search_domains: Option<String>,
    pub options: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupInstanceView {
    pub events: Option<Vec<Event>>,
    pub state: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerInstanceView {
    pub restart_count: Option<i64>,
    pub current_state: Option<ContainerState>,
    pub previous_state: Option<ContainerState>,
    pub events: Option<Vec<Event>>,
    /// A Berth extension (ACI has no such field; its SDKs and `az` ignore it): on app containers,
    /// running and passing the readiness probe if there is one.
    pub ready: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerState {
    pub state: Option<String>,
    pub start_time: Option<String>,
    pub exit_code: Option<i64>,
    pub finish_time: Option<String>,
    pub detail_status: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    pub count: Option<i64>,
    pub first_timestamp: Option<String>,
    pub last_timestamp: Option<String>,
    pub name: Option<String>,
    pub message: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}
