//! The validated container group: exact integer sizes, canonical enums, secrets still inside.
//!
//! `validate` turns a client's ARM JSON into a [`GroupSpec`] once, at the edge; everything after that
//! (store, scheduler, agent assignments, rendering) works on these types. CPU is in millicores and
//! memory in MiB, so no float ever reaches the scheduler or billing.

pub mod reported;

use std::collections::BTreeMap;

use berth_proto::node;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OsType {
    Linux,
    Windows,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Linux => "Linux",
            OsType::Windows => "Windows",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linux" => Some(OsType::Linux),
            "windows" => Some(OsType::Windows),
            _ => None,
        }
    }

    pub fn to_proto(self) -> node::OsType {
        match self {
            OsType::Linux => node::OsType::Linux,
            OsType::Windows => node::OsType::Windows,
        }
    }

    pub fn from_proto(os: node::OsType) -> Option<Self> {
        match os {
            node::OsType::Linux => Some(OsType::Linux),
            node::OsType::Windows => Some(OsType::Windows),
            node::OsType::Unspecified => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

/// CPU in millicores, memory in MiB, GPU count: the only units inside Berth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Size {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub gpu: u32,
}

impl Size {
    pub fn fits_in(&self, free: &Size) -> bool {
        self.cpu_millis <= free.cpu_millis
            && self.memory_mib <= free.memory_mib
            && self.gpu <= free.gpu
    }

    pub fn saturating_sub(&self, other: &Size) -> Size {
        Size {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            gpu: self.gpu.saturating_sub(other.gpu),
        }
    }

    pub fn add(&self, other: &Size) -> Size {
        Size {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory_mib: self.memory_mib + other.memory_mib,
            gpu: self.gpu + other.gpu,
        }
    }

    pub fn to_proto(self, gpu_sku: Option<&str>) -> node::Resources {
        node::Resources {
            cpu_millis: self.cpu_millis,
            memory_mib: self.memory_mib,
            gpu: self.gpu,
            gpu_sku: gpu_sku.unwrap_or_default().to_owned(),
        }
    }
}

/// Cores as ACI writes them (`1.5`), from millicores.
pub fn cpu_cores(millis: u64) -> f64 {
    millis as f64 / 1000.0
}

/// GB as ACI writes them, from MiB: the shortest decimal (up to three places) that converts back to
/// the same MiB, so what a client sent with up to three decimals comes back exactly as sent.
pub fn memory_gb(mib: u64) -> f64 {
    for places in 0..=3 {
        let scale = 10f64.powi(places);
        let gb = (mib as f64 / 1024.0 * scale).round() / scale;
        if (gb * 1024.0).round() as u64 == mib {
            return gb;
        }
    }
    mib as f64 / 1024.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub os_type: OsType,
    pub restart_policy: RestartPolicy,
    pub sku: String,
    pub containers: Vec<ContainerSpec>,
    pub init_containers: Vec<InitContainerSpec>,
    pub volumes: Vec<VolumeSpec>,
    pub registry_credentials: Vec<RegistryCredential>,
    pub ip_address: Option<IpAddressSpec>,
    pub dns_config: Option<DnsConfigSpec>,
    pub priority: Option<String>,
}

impl GroupSpec {
    /// The whole group's request: the sum over its containers (init containers run inside it).
    pub fn requests(&self) -> Size {
        self.containers
            .iter()
            .fold(Size::default(), |sum, c| sum.add(&c.requests))
    }

    pub fn gpu_sku(&self) -> Option<&str> {
        self.containers.iter().find_map(|c| c.gpu_sku.as_deref())
    }

    /// The same spec with every secret value removed: what is stored in clear and ever rendered.
    pub fn redacted(&self) -> GroupSpec {
        let mut spec = self.clone();
        for env in spec
            .containers
            .iter_mut()
            .flat_map(|c| c.env.iter_mut())
            .chain(
                spec.init_containers
                    .iter_mut()
                    .flat_map(|c| c.env.iter_mut()),
            )
        {
            if env.secure {
                env.value = None;
            }
        }
        for cred in &mut spec.registry_credentials {
            cred.password = None;
        }
        for volume in &mut spec.volumes {
            match &mut volume.source {
                VolumeSource::Secret { files } => {
                    for value in files.values_mut() {
                        value.clear();
                    }
                }
                VolumeSource::AzureFile {
                    storage_account_key,
                    ..
                } => *storage_account_key = None,
                VolumeSource::EmptyDir | VolumeSource::GitRepo { .. } => {}
            }
        }
        spec
    }

    /// The assignment the node agent receives (secrets included: it travels over mutual TLS).
    pub fn to_proto(
        &self,
        name: &str,
        subscription: &str,
        resource_group: &str,
        fqdn: Option<&str>,
    ) -> node::GroupSpec {
        node::GroupSpec {
            name: name.to_owned(),
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            os_type: self.os_type.to_proto() as i32,
            restart_policy: self.restart_policy.as_str().to_owned(),
            containers: self
                .containers
                .iter()
                .map(ContainerSpec::to_proto)
                .collect(),
            init_containers: self
                .init_containers
                .iter()
                .map(InitContainerSpec::to_proto)
                .collect(),
            volumes: self.volumes.iter().map(VolumeSpec::to_proto).collect(),
            registry_credentials: self
                .registry_credentials
                .iter()
                .map(|c| node::RegistryCredential {
                    server: c.server.clone(),
                    username: c.username.clone().unwrap_or_default(),
                    password: c.password.clone().unwrap_or_default(),
                })
                .collect(),
            ip_address: self.ip_address.as_ref().map(|ip| node::IpAddress {
                r#type: ip.kind.clone(),
                ports: ip.ports.iter().map(Port::to_proto).collect(),
                dns_name_label: ip.dns_name_label.clone().unwrap_or_default(),
                fqdn: fqdn.unwrap_or_default().to_owned(),
            }),
            dns_config: self.dns_config.as_ref().map(|d| node::DnsConfig {
                name_servers: d.name_servers.clone(),
                search_domains: d
                    .search_domains
                    .clone()
                    .map(|s| vec![s])
                    .unwrap_or_default(),
                options: d.options.clone().unwrap_or_default(),
            }),
            requests: Some(self.requests().to_proto(self.gpu_sku())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub ports: Vec<Port>,
    pub env: Vec<EnvVar>,
    pub requests: Size,
    pub limits: Option<Size>,
    pub gpu_sku: Option<String>,
    pub volume_mounts: Vec<VolumeMount>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub security_context: Option<SecurityContext>,
}

impl ContainerSpec {
    fn to_proto(&self) -> node::Container {
        node::Container {
            name: self.name.clone(),
            image: self.image.clone(),
            command: self.command.clone(),
            ports: self.ports.iter().map(Port::to_proto).collect(),
            env: self.env.iter().map(EnvVar::to_proto).collect(),
            requests: Some(self.requests.to_proto(self.gpu_sku.as_deref())),
            limits: Some(
                self.limits
                    .unwrap_or(self.requests)
                    .to_proto(self.gpu_sku.as_deref()),
            ),
            volume_mounts: self
                .volume_mounts
                .iter()
                .map(VolumeMount::to_proto)
                .collect(),
            liveness_probe: self.liveness_probe.as_ref().map(Probe::to_proto),
            readiness_probe: self.readiness_probe.as_ref().map(Probe::to_proto),
            security_context: self
                .security_context
                .as_ref()
                .map(SecurityContext::to_proto),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
    pub volume_mounts: Vec<VolumeMount>,
    pub security_context: Option<SecurityContext>,
}

impl InitContainerSpec {
    fn to_proto(&self) -> node::Container {
        node::Container {
            name: self.name.clone(),
            image: self.image.clone(),
            command: self.command.clone(),
            env: self.env.iter().map(EnvVar::to_proto).collect(),
            volume_mounts: self
                .volume_mounts
                .iter()
                .map(VolumeMount::to_proto)
                .collect(),
            security_context: self
                .security_context
                .as_ref()
                .map(SecurityContext::to_proto),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Port {
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

impl Port {
    fn to_proto(&self) -> node::Port {
        node::Port {
            port: u32::from(self.port),
            protocol: self.protocol.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    /// For a secure variable, the secret value (absent once redacted).
    pub value: Option<String>,
    pub secure: bool,
}

impl EnvVar {
    fn to_proto(&self) -> node::EnvVar {
        node::EnvVar {
            name: self.name.clone(),
            value: self.value.clone().unwrap_or_default(),
            secure: self.secure,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
}

impl VolumeMount {
    fn to_proto(&self) -> node::VolumeMount {
        node::VolumeMount {
            name: self.name.clone(),
            mount_path: self.mount_path.clone(),
            read_only: self.read_only,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub exec_command: Option<Vec<String>>,
    pub http_get: Option<HttpGet>,
    pub initial_delay_seconds: Option<u32>,
    pub period_seconds: Option<u32>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
    pub timeout_seconds: Option<u32>,
}

impl Probe {
    fn to_proto(&self) -> node::Probe {
        node::Probe {
            exec_command: self.exec_command.clone().unwrap_or_default(),
            http_get: self.http_get.as_ref().map(|h| node::HttpGet {
                path: h.path.clone().unwrap_or_default(),
                port: u32::from(h.port),
                scheme: h.scheme.clone().unwrap_or_default(),
                headers: h.headers.iter().cloned().collect(),
            }),
            initial_delay_seconds: self.initial_delay_seconds.unwrap_or(0),
            period_seconds: self.period_seconds.unwrap_or(10),
            failure_threshold: self.failure_threshold.unwrap_or(3),
            success_threshold: self.success_threshold.unwrap_or(1),
            timeout_seconds: self.timeout_seconds.unwrap_or(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpGet {
    pub path: Option<String>,
    pub port: u16,
    pub scheme: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityContext {
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities_add: Option<Vec<String>>,
    pub capabilities_drop: Option<Vec<String>>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub seccomp_profile: Option<String>,
}

impl SecurityContext {
    fn to_proto(&self) -> node::SecurityContext {
        node::SecurityContext {
            privileged: self.privileged,
            allow_privilege_escalation: self.allow_privilege_escalation,
            capabilities_add: self.capabilities_add.clone().unwrap_or_default(),
            capabilities_drop: self.capabilities_drop.clone().unwrap_or_default(),
            run_as_user: self.run_as_user,
            run_as_group: self.run_as_group,
            seccomp_profile: self.seccomp_profile.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VolumeSource {
    EmptyDir,
    /// File name -> base64 contents (validated as base64).
    Secret {
        files: BTreeMap<String, String>,
    },
    GitRepo {
        repository: String,
        directory: Option<String>,
        revision: Option<String>,
    },
    AzureFile {
        share_name: String,
        storage_account_name: String,
        read_only: bool,
        storage_account_key: Option<String>,
    },
}

impl VolumeSpec {
    pub(crate) fn to_proto(&self) -> node::Volume {
        use base64::Engine as _;
        let source = match &self.source {
            VolumeSource::EmptyDir => node::volume::Source::EmptyDir(node::EmptyDir {}),
            VolumeSource::Secret { files } => node::volume::Source::Secret(node::SecretVolume {
                files: files
                    .iter()
                    .map(|(name, b64)| {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap_or_default();
                        (name.clone(), bytes)
                    })
                    .collect(),
            }),
            VolumeSource::GitRepo {
                repository,
                directory,
                revision,
            } => node::volume::Source::GitRepo(node::GitRepo {
                repository: repository.clone(),
                directory: directory.clone().unwrap_or_default(),
                revision: revision.clone().unwrap_or_default(),
            }),
            VolumeSource::AzureFile {
                share_name,
                storage_account_name,
                read_only,
                ..
            } => node::volume::Source::AzureFile(node::AzureFile {
                share_name: share_name.clone(),
                storage_account_name: storage_account_name.clone(),
                read_only: *read_only,
            }),
        };
        node::Volume {
            name: self.name.clone(),
            source: Some(source),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryCredential {
    pub server: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpAddressSpec {
    /// `Public` or `Private`.
    pub kind: String,
    pub ports: Vec<Port>,
    pub dns_name_label: Option<String>,
    /// `Unsecure`, `TenantReuse`, `SubscriptionReuse`, `ResourceGroupReuse` or `Noreuse`.
    pub label_scope: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsConfigSpec {
    pub name_servers: Vec<String>,
    pub search_domains: Option<String>,
    pub options: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn memory_renders_as_sent() {
        for gb in [
            0.1, 0.25, 0.5, 1.0, 1.5, 3.7, 14.0, 16.0, 0.125, 0.001, 2.345,
        ] {
            let mib = (gb * 1024.0_f64).round() as u64;
            assert_eq!(memory_gb(mib), gb, "{gb} GB -> {mib} MiB");
        }
    }

    proptest! {
        #[test]
        fn memory_with_three_decimals_round_trips(thousandths in 1u64..100_000) {
            let gb = thousandths as f64 / 1000.0;
            let mib = (gb * 1024.0).round() as u64;
            prop_assert_eq!(memory_gb(mib), gb);
        }
    }
}
