//! Rendering: a stored group back into ACI's JSON, the way ACI answers it (canonical enums, empty
//! arrays filled, numbers as doubles, secrets absent, `instanceView` only where asked).

use berth_proto::arm;

use crate::model::reported::{ContainerRun, GroupPhase, ReportedEvent, RunState};
use crate::model::*;
use crate::store::{Desired, GroupEvent, GroupRecord, ProvisioningState};

/// RFC 3339 from Unix milliseconds.
pub fn timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn resource_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ContainerInstance/containerGroups/{name}"
    )
}

fn ports(ports: &[Port]) -> Vec<arm::ContainerPort> {
    ports
        .iter()
        .map(|p| arm::ContainerPort {
            protocol: Some(p.protocol.clone()),
            port: Some(i64::from(p.port)),
        })
        .collect()
}

fn env(vars: &[EnvVar]) -> Vec<arm::EnvironmentVariable> {
    vars.iter()
        .map(|v| arm::EnvironmentVariable {
            name: Some(v.name.clone()),
            // A secure value comes back with its name only.
            value: if v.secure { None } else { v.value.clone() },
            ..Default::default()
        })
        .collect()
}

fn mounts(mounts: &[VolumeMount]) -> Vec<arm::VolumeMount> {
    mounts
        .iter()
        .map(|m| arm::VolumeMount {
            name: Some(m.name.clone()),
            mount_path: Some(m.mount_path.clone()),
            read_only: Some(m.read_only),
        })
        .collect()
}

fn size(size: &Size, sku: Option<&str>) -> arm::ResourceRequests {
    arm::ResourceRequests {
        memory_in_gb: Some(memory_gb(size.memory_mib)),
        cpu: Some(cpu_cores(size.cpu_millis)),
        gpu: (size.gpu > 0).then(|| arm::GpuResource {
            count: Some(i64::from(size.gpu)),
            sku: sku.map(str::to_owned),
        }),
    }
}

fn probe(p: &Probe) -> arm::ContainerProbe {
    arm::ContainerProbe {
        exec: p.exec_command.as_ref().map(|c| arm::ContainerExec {
            command: Some(c.clone()),
        }),
        http_get: p.http_get.as_ref().map(|h| arm::ContainerHttpGet {
            path: h.path.clone(),
            port: Some(i64::from(h.port)),
            scheme: h.scheme.clone(),
            http_headers: (!h.headers.is_empty()).then(|| {
                h.headers
                    .iter()
                    .map(|(n, v)| arm::HttpHeader {
                        name: Some(n.clone()),
                        value: Some(v.clone()),
                    })
                    .collect()
            }),
        }),
        initial_delay_seconds: p.initial_delay_seconds.map(i64::from),
        period_seconds: p.period_seconds.map(i64::from),
        failure_threshold: p.failure_threshold.map(i64::from),
        success_threshold: p.success_threshold.map(i64::from),
        timeout_seconds: p.timeout_seconds.map(i64::from),
    }
}

fn security(s: &SecurityContext) -> arm::SecurityContext {
    arm::SecurityContext {
        privileged: s.privileged,
        allow_privilege_escalation: s.allow_privilege_escalation,
        capabilities: (s.capabilities_add.is_some() || s.capabilities_drop.is_some()).then(|| {
            arm::Capabilities {
                add: s.capabilities_add.clone(),
                drop: s.capabilities_drop.clone(),
            }
        }),
        run_as_group: s.run_as_group,
        run_as_user: s.run_as_user,
        seccomp_profile: s.seccomp_profile.clone(),
    }
}

fn run_state(run: &ContainerRun) -> arm::ContainerState {
    let state = match run.state {
        RunState::Running => "Running",
        RunState::Terminated => "Terminated",
        RunState::Waiting => "Waiting",
    };
    arm::ContainerState {
        state: Some(state.to_owned()),
        start_time: (run.start_time_unix_ms > 0).then(|| timestamp(run.start_time_unix_ms)),
        exit_code: (run.state == RunState::Terminated).then_some(i64::from(run.exit_code)),
        finish_time: (run.finish_time_unix_ms > 0).then(|| timestamp(run.finish_time_unix_ms)),
        detail_status: Some(run.detail_status.clone()),
    }
}

fn event(e: &ReportedEvent) -> arm::Event {
    arm::Event {
        count: Some(i64::from(e.count.max(1))),
        first_timestamp: Some(timestamp(e.first_timestamp_unix_ms)),
        last_timestamp: Some(timestamp(e.last_timestamp_unix_ms)),
        name: Some(e.name.clone()),
        message: Some(e.message.clone()),
        kind: Some(e.kind.as_str().to_owned()),
    }
}

fn control_event(e: &GroupEvent) -> arm::Event {
    arm::Event {
        count: Some(i64::from(e.count)),
        first_timestamp: Some(timestamp(e.first_ms)),
        last_timestamp: Some(timestamp(e.last_ms)),
        name: Some(e.name.clone()),
        message: Some(e.message.clone()),
        kind: Some(e.kind.as_str().to_owned()),
    }
}

/// Is app container `name` ready (running, and passing its readiness probe if it has one), as its
/// node last reported? Never while the group is stopped.
fn ready(group: &GroupRecord, name: &str) -> bool {
    group.desired != Desired::Stopped
        && group
            .status
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name))
            .is_some_and(|c| c.ready)
}

fn container_view(group: &GroupRecord, name: &str) -> arm::ContainerInstanceView {
    let reported = group
        .status
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name));
    if group.desired == Desired::Stopped {
        let finish = reported
            .and_then(|c| c.current.as_ref())
            .map(|r| r.finish_time_unix_ms)
            .filter(|t| *t > 0);
        return arm::ContainerInstanceView {
            restart_count: Some(reported.map_or(0, |c| i64::from(c.restart_count))),
            current_state: Some(arm::ContainerState {
                state: Some("Terminated".to_owned()),
                start_time: reported
                    .and_then(|c| c.current.as_ref())
                    .filter(|r| r.start_time_unix_ms > 0)
                    .map(|r| timestamp(r.start_time_unix_ms)),
                exit_code: Some(0),
                finish_time: Some(timestamp(finish.unwrap_or(group.updated_ms))),
                detail_status: Some("Stopped".to_owned()),
            }),
            previous_state: None,
            ready: None,
            events: Some(
                reported
                    .map(|c| c.events.iter().map(event).collect())
                    .unwrap_or_default(),
            ),
        };
    }
    match reported {
        Some(c) => arm::ContainerInstanceView {
            restart_count: Some(i64::from(c.restart_count)),
            current_state: c.current.as_ref().map(run_state),
            previous_state: c.previous.as_ref().map(run_state),
            events: Some(c.events.iter().map(event).collect()),
            ready: None,
        },
        None => arm::ContainerInstanceView {
            restart_count: Some(0),
            current_state: Some(arm::ContainerState {
                state: Some("Waiting".to_owned()),
                detail_status: Some(
                    if group.node_id.is_some() {
                        "Creating"
                    } else {
                        "Pending"
                    }
                    .to_owned(),
                ),
                ..Default::default()
            }),
            previous_state: None,
            events: Some(Vec::new()),
            ready: None,
        },
    }
}

/// The group's `instanceView.state`.
pub fn group_state(group: &GroupRecord) -> &'static str {
    if group.desired == Desired::Stopped {
        return "Stopped";
    }
    match group.status.as_ref().map(|s| s.phase) {
        Some(GroupPhase::Running) => "Running",
        Some(GroupPhase::Succeeded) => "Succeeded",
        Some(GroupPhase::Failed) => "Failed",
        Some(GroupPhase::Stopped) => "Stopped",
        _ if group.provisioning_state == ProvisioningState::Failed => "Failed",
        _ => "Pending",
    }
}

/// The whole group as ACI's JSON. LIST leaves `instanceView` out (ACI does).
/// A rendered group in the shape of api-version `version`: the properties its schema lacks removed.
pub fn for_version(group: arm::ContainerGroup, version: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(group).expect("plain data types always serialise to JSON");
    arm::lenient::prune(&mut value, &arm::lenient::schema::CONTAINER_GROUP, version);
    value
}

pub fn container_group(group: &GroupRecord, with_instance_view: bool) -> arm::ContainerGroup {
    let spec = &group.spec;
    let live = group.desired == Desired::Running;
    let containers = spec
        .containers
        .iter()
        .map(|c| arm::Container {
            name: Some(c.name.clone()),
            properties: Some(arm::ContainerProperties {
                image: Some(c.image.clone()),
                command: Some(c.command.clone()),
                ports: Some(ports(&c.ports)),
                environment_variables: Some(env(&c.env)),
                resources: Some(arm::ResourceRequirements {
                    requests: Some(size(&c.requests, c.gpu_sku.as_deref())),
                    limits: c.limits.map(|l| size(&l, c.gpu_sku.as_deref())),
                }),
                volume_mounts: (!c.volume_mounts.is_empty()).then(|| mounts(&c.volume_mounts)),
                liveness_probe: c.liveness_probe.as_ref().map(probe),
                readiness_probe: c.readiness_probe.as_ref().map(probe),
                security_context: c.security_context.as_ref().map(security),
                config_map: None,
                instance_view: with_instance_view.then(|| arm::ContainerInstanceView {
                    ready: Some(ready(group, &c.name)),
                    ..container_view(group, &c.name)
                }),
            }),
        })
        .collect();
    let init_containers = spec
        .init_containers
        .iter()
        .map(|c| arm::InitContainer {
            name: Some(c.name.clone()),
            properties: Some(arm::InitContainerProperties {
                image: Some(c.image.clone()),
                command: Some(c.command.clone()),
                environment_variables: Some(env(&c.env)),
                volume_mounts: (!c.volume_mounts.is_empty()).then(|| mounts(&c.volume_mounts)),
                security_context: c.security_context.as_ref().map(security),
                instance_view: with_instance_view.then(|| container_view(group, &c.name)),
            }),
        })
        .collect();
    let volumes: Vec<arm::Volume> = spec
        .volumes
        .iter()
        .map(|v| {
            let mut out = arm::Volume {
                name: Some(v.name.clone()),
                ..Default::default()
            };
            match &v.source {
                VolumeSource::EmptyDir => out.empty_dir = Some(serde_json::json!({})),
                // Secret contents are never returned; the file names are not secret.
                VolumeSource::Secret { files } => {
                    out.secret = Some(files.keys().map(|k| (k.clone(), String::new())).collect())
                }
                VolumeSource::GitRepo {
                    repository,
                    directory,
                    revision,
                } => {
                    out.git_repo = Some(arm::GitRepoVolume {
                        directory: directory.clone(),
                        repository: Some(repository.clone()),
                        revision: revision.clone(),
                    })
                }
                VolumeSource::AzureFile {
                    share_name,
                    storage_account_name,
                    read_only,
                    ..
                } => {
                    out.azure_file = Some(arm::AzureFileVolume {
                        share_name: Some(share_name.clone()),
                        read_only: Some(*read_only),
                        storage_account_name: Some(storage_account_name.clone()),
                        storage_account_key: None,
                        storage_account_key_reference: None,
                        user_managed_identity_client_id: None,
                    })
                }
            }
            out
        })
        .collect();
    let ip = group
        .status
        .as_ref()
        .map(|s| s.ip.clone())
        .filter(|ip| !ip.is_empty() && live);
    let ip_address = spec.ip_address.as_ref().map(|a| arm::IpAddress {
        ports: Some(ports(&a.ports)),
        kind: Some(a.kind.clone()),
        ip: ip.clone(),
        dns_name_label: a.dns_name_label.clone(),
        auto_generated_domain_name_label_scope: Some(a.label_scope.clone()),
        fqdn: group.fqdn.clone(),
    });
    let instance_view = with_instance_view.then(|| {
        let mut events: Vec<arm::Event> = group.events.iter().map(control_event).collect();
        if let Some(status) = &group.status {
            events.extend(status.events.iter().map(event));
        }
        if group.provisioning_state == ProvisioningState::Unhealthy {
            events.push(arm::Event {
                count: Some(1),
                first_timestamp: Some(timestamp(group.updated_ms)),
                last_timestamp: Some(timestamp(group.updated_ms)),
                name: Some("NodeNotReady".to_owned()),
                message: Some("The node running this container group stopped reporting; its state is unknown.".to_owned()),
                kind: Some("Warning".to_owned()),
            });
        }
        arm::GroupInstanceView { events: Some(events), state: Some(group_state(group).to_owned()) }
    });
    arm::ContainerGroup {
        id: Some(resource_id(
            &group.subscription,
            &group.resource_group,
            &group.name,
        )),
        name: Some(group.name.clone()),
        kind: Some(arm::CONTAINER_GROUP_TYPE.to_owned()),
        location: Some(group.location.clone()),
        tags: Some(group.tags.clone()),
        zones: None,
        identity: None,
        system_data: None,
        properties: Some(arm::ContainerGroupProperties {
            provisioning_state: Some(group.provisioning_state.as_str().to_owned()),
            containers: Some(containers),
            init_containers: Some(init_containers),
            image_registry_credentials: Some(
                spec.registry_credentials
                    .iter()
                    .map(|c| arm::ImageRegistryCredential {
                        server: Some(c.server.clone()),
                        username: c.username.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            restart_policy: Some(spec.restart_policy.as_str().to_owned()),
            ip_address,
            os_type: Some(spec.os_type.as_str().to_owned()),
            volumes: (!volumes.is_empty()).then_some(volumes),
            instance_view,
            dns_config: spec.dns_config.as_ref().map(|d| arm::DnsConfig {
                name_servers: Some(d.name_servers.clone()),
                search_domains: d.search_domains.clone(),
                options: d.options.clone(),
            }),
            sku: Some(spec.sku.clone()),
            priority: spec.priority.clone(),
            provisioning_timeout_in_seconds: Some(1800),
            is_custom_provisioning_timeout: Some(false),
            ..Default::default()
        }),
    }
}
