//! Validation: a client's ARM JSON in, a [`GroupSpec`] out, or the first rule it breaks as a 400 that
//! names the field (`target` is the JSON path, e.g. `properties.containers[0].properties.image`).
//!
//! Rules and limits come from ACI (`shared/reference/aci-api.md` §5) and are listed in ARCHITECTURE.md.
//! Every rule the node agent applies to a spec is `berth_proto::spec`'s, called here field by field, and
//! once more as a whole ([`berth_proto::spec::admit`]) on the node spec about to be stored: nothing the
//! node would refuse gets a 201.
//!
//! # Layout
//! - [`codes`]: the error codes answered and their constructors.
//! - [`names`]: subscription, resource group, group name, location, tags.
//! - [`container`]: a container or init container: name, image, command, ports, env, security context.
//! - [`resources`]: sizes to exact integers, limits against requests and the group total.
//! - [`volumes`]: volumes and mounts.
//! - [`probe`]: liveness and readiness probes.
//! - [`network`]: the IP address and `dnsConfig`.
//! - [`registry`]: image registry credentials.
//! - [`update`]: what a PUT on an existing group may not change.

mod codes;
mod container;
mod names;
mod network;
mod probe;
mod registry;
mod resources;
mod update;
mod volumes;

use std::collections::{BTreeMap, HashSet};

use berth_proto::arm;
use serde_json::Value;

pub use codes::code;
use codes::{duplicate, invalid, missing, present, too_many, unsupported};
pub use names::{group_name, normalize_location, resource_group, subscription, tags};
pub use update::update;

use crate::error::ApiError;
use crate::model::*;

/// Limits that an operator may change; defaults are ACI's.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_containers: usize,
    pub max_volumes: usize,
    pub max_ports: usize,
    pub max_group: Size,
    pub allow_privileged: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_containers: 60,
            max_volumes: 20,
            max_ports: 5,
            max_group: Size {
                cpu_millis: 4000,
                memory_mib: 16 * 1024,
                gpu: 4,
            },
            allow_privileged: false,
        }
    }
}

/// What validation makes of a PUT body.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGroup {
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub spec: GroupSpec,
}

/// Validates a PUT body for group `name` against `limits`; `region` is the only location served.
pub fn container_group(
    body: &arm::ContainerGroup,
    name: &str,
    region: &str,
    api_version: &str,
    limits: &Limits,
) -> Result<ValidGroup, ApiError> {
    let location = body
        .location
        .as_deref()
        .ok_or_else(|| missing("location"))?;
    if normalize_location(location) != region {
        return Err(ApiError::bad_request(
            code::INVALID_LOCATION,
            "location",
            format!(
                "The provided location '{location}' is not available for resource type \
                 'Microsoft.ContainerInstance/containerGroups'. List of available regions is '{region}'."
            ),
        ));
    }
    let tags_in = body.tags.clone().unwrap_or_default();
    tags(&tags_in, "tags")?;
    if body.zones.as_ref().is_some_and(|z| !z.is_empty()) {
        return Err(unsupported("zones"));
    }
    if let Some(identity) = &body.identity {
        let kind = identity
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("None");
        if !identity.is_null() && !kind.eq_ignore_ascii_case("none") {
            return Err(unsupported("identity"));
        }
    }
    let props = body
        .properties
        .as_ref()
        .ok_or_else(|| missing("properties"))?;
    let spec = properties(props, name, api_version, limits)?;
    // The last gate: the node spec this group becomes passes every rule the node applies.
    berth_proto::spec::admit(&spec.to_proto(name, "", "", None), limits.allow_privileged)
        .map_err(codes::refusal)?;
    Ok(ValidGroup {
        location: region.to_owned(),
        tags: tags_in,
        spec,
    })
}

/// Whether `api_version` lets osType and a container's resources be left out (its schema makes them
/// optional, for container group profiles): ACI then gives Linux and 1 CPU, 1.5 GB.
fn defaults(api_version: &str) -> bool {
    arm::versions::has(api_version, arm::versions::Feature::Profiles)
}

fn properties(
    p: &arm::ContainerGroupProperties,
    group: &str,
    api_version: &str,
    limits: &Limits,
) -> Result<GroupSpec, ApiError> {
    let unsupported_fields: [(&str, &Option<Value>); 10] = [
        ("properties.subnetIds", &p.subnet_ids),
        ("properties.networkProfile", &p.network_profile),
        (
            "properties.confidentialComputeProperties",
            &p.confidential_compute_properties,
        ),
        ("properties.extensions", &p.extensions),
        ("properties.encryptionProperties", &p.encryption_properties),
        ("properties.diagnostics", &p.diagnostics),
        ("properties.secretReferences", &p.secret_references),
        ("properties.identityAcls", &p.identity_acls),
        (
            "properties.containerGroupProfile",
            &p.container_group_profile,
        ),
        ("properties.standbyPoolProfile", &p.standby_pool_profile),
    ];
    if let Some((target, _)) = unsupported_fields.iter().find(|(_, v)| present(v)) {
        return Err(unsupported(*target));
    }

    // Berth has required osType from 2023-05-01 on, and older YAML files leave it out. The api-versions
    // that bring container group profiles make it optional again; without a profile ACI gives Linux.
    let os_type = match p.os_type.as_deref() {
        Some(os) => OsType::parse(os)
            .ok_or_else(|| invalid("properties.osType", "expected 'Linux' or 'Windows'"))?,
        None if api_version >= "2023-05-01" && !defaults(api_version) => {
            return Err(missing("properties.osType"));
        }
        None => OsType::Linux,
    };
    let restart_policy = match p
        .restart_policy
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("always") => RestartPolicy::Always,
        Some("onfailure") => RestartPolicy::OnFailure,
        Some("never") => RestartPolicy::Never,
        Some(_) => {
            return Err(invalid(
                "properties.restartPolicy",
                "expected 'Always', 'OnFailure' or 'Never'",
            ));
        }
    };
    let sku = match p.sku.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("standard") | Some("notspecified") => "Standard".to_owned(),
        Some("dedicated") | Some("confidential") => return Err(unsupported("properties.sku")),
        Some(_) => return Err(invalid("properties.sku", "expected 'Standard'")),
    };
    let priority = match p
        .priority
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("regular") => Some("Regular".to_owned()),
        Some("spot") => return Err(unsupported("properties.priority")),
        Some(_) => return Err(invalid("properties.priority", "expected 'Regular'")),
    };

    let volumes = volumes::volumes(p.volumes.as_deref().unwrap_or_default(), limits)?;
    let volume_names: HashSet<&str> = volumes.iter().map(|v| v.name.as_str()).collect();

    let arm_containers = p.containers.as_deref().unwrap_or_default();
    if arm_containers.is_empty() {
        return Err(missing("properties.containers"));
    }
    let arm_inits = p.init_containers.as_deref().unwrap_or_default();
    if arm_containers.len() + arm_inits.len() > limits.max_containers {
        return Err(too_many(
            "properties.containers",
            "containers (init containers included)",
            limits.max_containers,
        ));
    }
    if os_type == OsType::Windows && (arm_containers.len() > 1 || !arm_inits.is_empty()) {
        return Err(ApiError::bad_request(
            code::WINDOWS_MULTI,
            "properties.containers",
            "Windows container groups may have only one container and no init containers.",
        ));
    }

    let mut names = HashSet::new();
    let mut containers = Vec::with_capacity(arm_containers.len());
    for (i, c) in arm_containers.iter().enumerate() {
        let target = format!("properties.containers[{i}]");
        let spec = container::container(c, &target, &volume_names, limits, defaults(api_version))?;
        if !names.insert(spec.name.clone()) {
            return Err(duplicate(
                &format!("{target}.name"),
                "container",
                &spec.name,
            ));
        }
        containers.push(spec);
    }
    let mut init_containers = Vec::with_capacity(arm_inits.len());
    for (i, c) in arm_inits.iter().enumerate() {
        let target = format!("properties.initContainers[{i}]");
        let spec = container::init_container(c, &target, &volume_names, limits)?;
        if !names.insert(spec.name.clone()) {
            return Err(duplicate(
                &format!("{target}.name"),
                "container",
                &spec.name,
            ));
        }
        init_containers.push(spec);
    }

    // Containers share one network namespace: a port may be bound by one container only.
    let mut bound = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, port) in c.ports.iter().enumerate() {
            if !bound.insert(port.clone()) {
                return Err(ApiError::bad_request(
                    code::DUPLICATE_PORT,
                    format!("properties.containers[{i}].properties.ports[{j}].port"),
                    format!(
                        "Port {} {} is opened by more than one container of the group.",
                        port.port, port.protocol
                    ),
                ));
            }
        }
    }

    resources::group_total(&containers, group, &limits.max_group)?;
    let ip_address = match &p.ip_address {
        Some(ip) => Some(network::ip_address(ip, group, &bound, limits)?),
        None => None,
    };
    let registry_credentials = registry::registry_credentials(
        p.image_registry_credentials.as_deref().unwrap_or_default(),
    )?;
    let dns_config = match &p.dns_config {
        Some(d) => Some(network::dns_config(d)?),
        None => None,
    };

    Ok(GroupSpec {
        os_type,
        restart_policy,
        sku,
        containers,
        init_containers,
        volumes,
        registry_credentials,
        ip_address,
        dns_config,
        priority,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
