//! Validation: a client's ARM JSON in, a [`GroupSpec`] out, or the first rule it breaks as a 400 that
//! names the field (`target` is the JSON path, e.g. `properties.containers[0].properties.image`).
//!
//! Rules and limits come from ACI (`shared/reference/aci-api.md` §5) and are listed in ARCHITECTURE.md.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::LazyLock;

use axum::http::StatusCode;
use base64::Engine as _;
use berth_proto::arm;
use regex::Regex;
use serde_json::Value;

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

static GROUP_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"));
static CONTAINER_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"));
static VOLUME_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z0-9][a-z0-9-]{3,61}[a-z0-9]$"));
static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z][a-z0-9-]{3,61}[a-z0-9]$"));
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[A-Za-z0-9]([A-Za-z0-9_]{0,61}[A-Za-z0-9])?$"));
static RESOURCE_GROUP: LazyLock<Regex> = LazyLock::new(|| re(r"^[-\w\._\(\)]{1,90}$"));
static CAPABILITY: LazyLock<Regex> = LazyLock::new(|| re(r"^[A-Z_]{1,64}$"));
static SUBSCRIPTION: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
});

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the pattern is a literal that compiles")
}

const MAX_TAGS: usize = 50;

/// Codes answered by validation.
pub mod code {
    pub const INVALID_CONTENT: &str = "InvalidRequestContent";
    pub const MISSING: &str = "MissingRequiredProperty";
    pub const INVALID_VALUE: &str = "InvalidPropertyValue";
    pub const UNSUPPORTED: &str = "UnsupportedProperty";
    pub const INVALID_NAME: &str = "InvalidResourceName";
    pub const INVALID_RESOURCE_GROUP: &str = "InvalidResourceGroupName";
    pub const INVALID_SUBSCRIPTION: &str = "InvalidSubscriptionId";
    pub const INVALID_LOCATION: &str = "LocationNotAvailableForResourceType";
    pub const INVALID_DNS_LABEL: &str = "InvalidDnsNameLabel";
    pub const DUPLICATE_NAME: &str = "DuplicateName";
    pub const TOO_MANY: &str = "LimitExceeded";
    pub const LIMIT_OVER_TOTAL: &str = "ContainerLimitGreaterThanContainerGroupTotalRequest";
    pub const GROUP_TOO_LARGE: &str = "ContainerGroupResourcesExceedLimit";
    pub const VOLUME_NOT_FOUND: &str = "VolumeNotFound";
    pub const PORT_NOT_EXPOSED: &str = "PortNotExposedByContainer";
    pub const DUPLICATE_PORT: &str = "DuplicatePort";
    pub const WINDOWS_MULTI: &str = "WindowsMultiContainerNotSupported";
    pub const PRIVILEGED: &str = "PrivilegedContainerNotAllowed";
}

fn missing(target: impl Into<String>) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::MISSING,
        target.clone(),
        format!("The property '{target}' is required."),
    )
}

fn invalid(target: impl Into<String>, why: impl std::fmt::Display) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::INVALID_VALUE,
        target.clone(),
        format!("The value of '{target}' is invalid: {why}."),
    )
}

fn unsupported(target: impl Into<String>) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::UNSUPPORTED,
        target.clone(),
        format!(
            "The property '{target}' is not supported by Berth yet; remove it from the request."
        ),
    )
}

fn too_many(target: impl Into<String>, what: &str, limit: usize) -> ApiError {
    let target = target.into();
    ApiError::bad_request(
        code::TOO_MANY,
        target,
        format!("A container group may have at most {limit} {what}."),
    )
}

fn present(value: &Option<Value>) -> bool {
    !matches!(value, None | Some(Value::Null))
}

pub fn subscription(id: &str) -> Result<(), ApiError> {
    if SUBSCRIPTION.is_match(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::INVALID_SUBSCRIPTION,
            "subscriptionId",
            format!("The provided subscription identifier '{id}' is malformed or invalid."),
        ))
    }
}

pub fn resource_group(name: &str) -> Result<(), ApiError> {
    if RESOURCE_GROUP.is_match(name) && !name.ends_with('.') {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::INVALID_RESOURCE_GROUP,
            "resourceGroupName",
            format!(
                "Resource group '{name}' is invalid: 1-90 letters, digits, underscores, hyphens, periods and \
                 parentheses, not ending in a period."
            ),
        ))
    }
}

pub fn group_name(name: &str) -> Result<(), ApiError> {
    if GROUP_NAME.is_match(name) && !name.contains("--") {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::INVALID_NAME,
            "containerGroupName",
            format!(
                "The container group name '{name}' is invalid. It can contain only lowercase letters, numbers \
                 and hyphens, must start and end with a letter or number, may not contain '--', and must be \
                 1 to 63 characters long."
            ),
        ))
    }
}

/// ARM compares locations without case or spaces ("West US" == "westus").
pub fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

pub fn tags(tags: &BTreeMap<String, String>, target: &str) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(too_many(target, "tags", MAX_TAGS));
    }
    for (key, value) in tags {
        if key.is_empty() || key.len() > 512 || key.contains(['<', '>', '%', '&', '\\', '?', '/']) {
            return Err(invalid(
                format!("{target}.{key}"),
                "a tag name has 1-512 characters and none of <>%&\\?/",
            ));
        }
        if value.len() > 256 {
            return Err(invalid(
                format!("{target}.{key}"),
                "a tag value has at most 256 characters",
            ));
        }
    }
    Ok(())
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
    Ok(ValidGroup {
        location: region.to_owned(),
        tags: tags_in,
        spec,
    })
}

fn properties(
    p: &arm::ContainerGroupProperties,
    group: &str,
    api_version: &str,
    limits: &Limits,
) -> Result<GroupSpec, ApiError> {
    let unsupported_fields: [(&str, &Option<Value>); 9] = [
        ("properties.subnetIds", &p.subnet_ids),
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

    // osType became required in 2023-05-01; older YAML files may leave it out.
    let os_type = match p.os_type.as_deref() {
        Some(os) => OsType::parse(os)
            .ok_or_else(|| invalid("properties.osType", "expected 'Linux' or 'Windows'"))?,
        None if api_version >= "2023-05-01" => return Err(missing("properties.osType")),
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

    let volumes = volumes(p.volumes.as_deref().unwrap_or_default(), limits)?;
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
        let spec = container(c, &target, &volume_names, limits)?;
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
        let spec = init_container(c, &target, &volume_names, limits)?;
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

    // The group total, and each container's limits against it (ACI's rule).
    let total = containers
        .iter()
        .fold(Size::default(), |sum, c| sum.add(&c.requests));
    for (i, c) in containers.iter().enumerate() {
        let Some(lim) = c.limits else { continue };
        let target = format!("properties.containers[{i}].properties.resources.limits");
        let over = |what: &str, limit: f64, total: f64, field: &str| {
            ApiError::bad_request(
                code::LIMIT_OVER_TOTAL,
                format!("{target}.{field}"),
                format!(
                    "The '{what}' limit '{limit}' in container '{}' is greater than the total request '{total}' of \
                     container group '{group}'.",
                    c.name
                ),
            )
        };
        if lim.cpu_millis > total.cpu_millis {
            return Err(over(
                "Cpu",
                cpu_cores(lim.cpu_millis),
                cpu_cores(total.cpu_millis),
                "cpu",
            ));
        }
        if lim.memory_mib > total.memory_mib {
            return Err(over(
                "MemoryInGB",
                memory_gb(lim.memory_mib),
                memory_gb(total.memory_mib),
                "memoryInGB",
            ));
        }
        if lim.gpu > total.gpu {
            return Err(over(
                "Gpu",
                f64::from(lim.gpu),
                f64::from(total.gpu),
                "gpu.count",
            ));
        }
    }
    if !total.fits_in(&limits.max_group) {
        return Err(ApiError::bad_request(
            code::GROUP_TOO_LARGE,
            "properties.containers",
            format!(
                "The container group requests {} CPU, {} GB memory and {} GPU; a group may request at most {} CPU, \
                 {} GB memory and {} GPU.",
                cpu_cores(total.cpu_millis),
                memory_gb(total.memory_mib),
                total.gpu,
                cpu_cores(limits.max_group.cpu_millis),
                memory_gb(limits.max_group.memory_mib),
                limits.max_group.gpu
            ),
        ));
    }

    let ip_address = match &p.ip_address {
        Some(ip) => Some(ip_address(ip, group, &bound, limits)?),
        None => None,
    };
    let registry_credentials =
        registry_credentials(p.image_registry_credentials.as_deref().unwrap_or_default())?;
    let dns_config = match &p.dns_config {
        Some(d) => Some(dns_config(d)?),
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

fn duplicate(target: &str, what: &str, name: &str) -> ApiError {
    ApiError::bad_request(
        code::DUPLICATE_NAME,
        target,
        format!("The {what} name '{name}' is used more than once."),
    )
}

fn container_name(name: Option<&str>, target: &str) -> Result<String, ApiError> {
    let name = name.ok_or_else(|| missing(format!("{target}.name")))?;
    if !CONTAINER_NAME.is_match(name) {
        return Err(ApiError::bad_request(
            code::INVALID_NAME,
            format!("{target}.name"),
            format!(
                "The container name '{name}' is invalid. It can contain only lowercase letters, numbers and hyphens, \
                 must start and end with a letter or number, and must be 1 to 63 characters long."
            ),
        ));
    }
    Ok(name.to_owned())
}

fn image(image: Option<&str>, target: &str) -> Result<String, ApiError> {
    let target = format!("{target}.properties.image");
    let image = image
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(&target))?;
    if image.len() > 1024 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            target,
            "an image reference has no spaces and at most 1024 characters",
        ));
    }
    Ok(image.to_owned())
}

fn container(
    c: &arm::Container,
    target: &str,
    volumes: &HashSet<&str>,
    limits: &Limits,
) -> Result<ContainerSpec, ApiError> {
    let name = container_name(c.name.as_deref(), target)?;
    let p = c
        .properties
        .as_ref()
        .ok_or_else(|| missing(format!("{target}.properties")))?;
    let ptarget = format!("{target}.properties");
    if present(&p.config_map) {
        return Err(unsupported(format!("{ptarget}.configMap")));
    }
    let image = image(p.image.as_deref(), target)?;
    let command = p.command.clone().unwrap_or_default();
    let mut ports = Vec::new();
    for (i, port) in p.ports.as_deref().unwrap_or_default().iter().enumerate() {
        ports.push(self::port(port, &format!("{ptarget}.ports[{i}]"))?);
    }
    let env = env_vars(
        p.environment_variables.as_deref().unwrap_or_default(),
        &ptarget,
    )?;
    let resources = p
        .resources
        .as_ref()
        .ok_or_else(|| missing(format!("{ptarget}.resources")))?;
    let rtarget = format!("{ptarget}.resources");
    let req = resources
        .requests
        .as_ref()
        .ok_or_else(|| missing(format!("{rtarget}.requests")))?;
    let (requests, gpu_sku) = size(req, &format!("{rtarget}.requests"), true)?;
    let limits_size = match &resources.limits {
        Some(l) => {
            let (mut lim, _) = size(l, &format!("{rtarget}.limits"), false)?;
            // A limit left out is the request (ACI's default).
            if l.cpu.is_none() {
                lim.cpu_millis = requests.cpu_millis;
            }
            if l.memory_in_gb.is_none() {
                lim.memory_mib = requests.memory_mib;
            }
            if l.gpu.is_none() {
                lim.gpu = requests.gpu;
            }
            if lim.cpu_millis < requests.cpu_millis {
                return Err(invalid(
                    format!("{rtarget}.limits.cpu"),
                    "a limit may not be below the request",
                ));
            }
            if lim.memory_mib < requests.memory_mib {
                return Err(invalid(
                    format!("{rtarget}.limits.memoryInGB"),
                    "a limit may not be below the request",
                ));
            }
            Some(lim)
        }
        None => None,
    };
    let volume_mounts = volume_mounts(
        p.volume_mounts.as_deref().unwrap_or_default(),
        &ptarget,
        volumes,
    )?;
    let liveness_probe = p
        .liveness_probe
        .as_ref()
        .map(|pr| probe(pr, &format!("{ptarget}.livenessProbe")))
        .transpose()?;
    let readiness_probe = p
        .readiness_probe
        .as_ref()
        .map(|pr| probe(pr, &format!("{ptarget}.readinessProbe")))
        .transpose()?;
    let security_context = p
        .security_context
        .as_ref()
        .map(|s| security_context(s, &format!("{ptarget}.securityContext"), limits))
        .transpose()?;
    Ok(ContainerSpec {
        name,
        image,
        command,
        ports,
        env,
        requests,
        limits: limits_size,
        gpu_sku,
        volume_mounts,
        liveness_probe,
        readiness_probe,
        security_context,
    })
}

fn init_container(
    c: &arm::InitContainer,
    target: &str,
    volumes: &HashSet<&str>,
    limits: &Limits,
) -> Result<InitContainerSpec, ApiError> {
    let name = container_name(c.name.as_deref(), target)?;
    let p = c
        .properties
        .as_ref()
        .ok_or_else(|| missing(format!("{target}.properties")))?;
    let ptarget = format!("{target}.properties");
    Ok(InitContainerSpec {
        name,
        image: image(p.image.as_deref(), target)?,
        command: p.command.clone().unwrap_or_default(),
        env: env_vars(
            p.environment_variables.as_deref().unwrap_or_default(),
            &ptarget,
        )?,
        volume_mounts: volume_mounts(
            p.volume_mounts.as_deref().unwrap_or_default(),
            &ptarget,
            volumes,
        )?,
        security_context: p
            .security_context
            .as_ref()
            .map(|s| security_context(s, &format!("{ptarget}.securityContext"), limits))
            .transpose()?,
    })
}

fn port(p: &arm::ContainerPort, target: &str) -> Result<Port, ApiError> {
    let number = p.port.ok_or_else(|| missing(format!("{target}.port")))?;
    let number = u16::try_from(number)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            invalid(
                format!("{target}.port"),
                format!("{number} is not a port between 1 and 65535"),
            )
        })?;
    let protocol = match p
        .protocol
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("TCP") => "TCP",
        Some("UDP") => "UDP",
        Some(_) => {
            return Err(invalid(
                format!("{target}.protocol"),
                "expected 'TCP' or 'UDP'",
            ));
        }
    };
    Ok(Port {
        port: number,
        protocol: protocol.to_owned(),
    })
}

fn env_vars(vars: &[arm::EnvironmentVariable], target: &str) -> Result<Vec<EnvVar>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(vars.len());
    for (i, v) in vars.iter().enumerate() {
        let t = format!("{target}.environmentVariables[{i}]");
        let name = v
            .name
            .as_deref()
            .ok_or_else(|| missing(format!("{t}.name")))?;
        if !ENV_NAME.is_match(name) {
            return Err(ApiError::bad_request(
                code::INVALID_NAME,
                format!("{t}.name"),
                format!(
                    "The environment variable name '{name}' is invalid. It can contain only letters, numbers and \
                     underscores, must start and end with a letter or number, and must be 1 to 63 characters long."
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(duplicate(
                &format!("{t}.name"),
                "environment variable",
                name,
            ));
        }
        if present(&v.secure_value_reference) {
            return Err(unsupported(format!("{t}.secureValueReference")));
        }
        let var = match (&v.value, &v.secure_value) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    format!("{t}.secureValue"),
                    "set either 'value' or 'secureValue', not both",
                ));
            }
            (_, Some(secret)) => EnvVar {
                name: name.to_owned(),
                value: Some(secret.clone()),
                secure: true,
            },
            (value, None) => EnvVar {
                name: name.to_owned(),
                value: Some(value.clone().unwrap_or_default()),
                secure: false,
            },
        };
        out.push(var);
    }
    Ok(out)
}

/// A double in ARM units to an exact integer count of `scale`ths (cores -> millicores, GB -> MiB).
fn exact(
    value: Option<f64>,
    scale: f64,
    max: f64,
    target: &str,
    what: &str,
    required: bool,
) -> Result<u64, ApiError> {
    match value {
        Some(v) => {
            let units = v * scale;
            if !v.is_finite() || v <= 0.0 || units.round() < 1.0 || units > max {
                return Err(invalid(target, format!("{v} is not {what}")));
            }
            Ok(units.round() as u64)
        }
        None if required => Err(missing(target)),
        None => Ok(0),
    }
}

/// Converts ARM doubles to exact integers, once.
fn size(
    r: &arm::ResourceRequests,
    target: &str,
    required: bool,
) -> Result<(Size, Option<String>), ApiError> {
    let cpu_millis = exact(
        r.cpu,
        1000.0,
        1e9,
        &format!("{target}.cpu"),
        "a positive number of cores",
        required,
    )?;
    let memory_mib = exact(
        r.memory_in_gb,
        1024.0,
        1e12,
        &format!("{target}.memoryInGB"),
        "a positive size in GB",
        required,
    )?;
    let (gpu, sku) = match &r.gpu {
        Some(g) => {
            let count = g
                .count
                .ok_or_else(|| missing(format!("{target}.gpu.count")))?;
            let count = u32::try_from(count)
                .ok()
                .filter(|c| (1..=8).contains(c))
                .ok_or_else(|| {
                    invalid(
                        format!("{target}.gpu.count"),
                        "a GPU count is between 1 and 8",
                    )
                })?;
            let sku = match g.sku.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some(s @ ("K80" | "P100" | "V100")) => s.to_owned(),
                None => return Err(missing(format!("{target}.gpu.sku"))),
                Some(_) => {
                    return Err(invalid(
                        format!("{target}.gpu.sku"),
                        "expected 'K80', 'P100' or 'V100'",
                    ));
                }
            };
            (count, Some(sku))
        }
        None => (0, None),
    };
    Ok((
        Size {
            cpu_millis,
            memory_mib,
            gpu,
        },
        sku,
    ))
}

fn volume_mounts(
    mounts: &[arm::VolumeMount],
    target: &str,
    volumes: &HashSet<&str>,
) -> Result<Vec<VolumeMount>, ApiError> {
    let mut paths = HashSet::new();
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let t = format!("{target}.volumeMounts[{i}]");
        let name = m
            .name
            .as_deref()
            .ok_or_else(|| missing(format!("{t}.name")))?;
        if !volumes.contains(name) {
            return Err(ApiError::bad_request(
                code::VOLUME_NOT_FOUND,
                format!("{t}.name"),
                format!("The volume '{name}' is mounted but not defined in 'properties.volumes'."),
            ));
        }
        let path = m
            .mount_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| missing(format!("{t}.mountPath")))?;
        if path.contains(':') || !path.starts_with('/') || path.split('/').any(|seg| seg == "..") {
            return Err(invalid(
                format!("{t}.mountPath"),
                "a mount path is absolute, has no ':' and no '..'",
            ));
        }
        if !paths.insert(path) {
            return Err(invalid(
                format!("{t}.mountPath"),
                format!("'{path}' is mounted twice in one container"),
            ));
        }
        out.push(VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

fn volumes(volumes: &[arm::Volume], limits: &Limits) -> Result<Vec<VolumeSpec>, ApiError> {
    if volumes.len() > limits.max_volumes {
        return Err(too_many(
            "properties.volumes",
            "volumes",
            limits.max_volumes,
        ));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(volumes.len());
    for (i, v) in volumes.iter().enumerate() {
        let t = format!("properties.volumes[{i}]");
        let name = v
            .name
            .as_deref()
            .ok_or_else(|| missing(format!("{t}.name")))?;
        if !VOLUME_NAME.is_match(name) || name.contains("--") {
            return Err(ApiError::bad_request(
                code::INVALID_NAME,
                format!("{t}.name"),
                format!(
                    "The volume name '{name}' is invalid. It can contain only lowercase letters, numbers and hyphens, \
                     must start and end with a letter or number, may not contain '--', and must be 5 to 63 \
                     characters long."
                ),
            ));
        }
        if !names.insert(name) {
            return Err(duplicate(&format!("{t}.name"), "volume", name));
        }
        if present(&v.secret_reference) {
            return Err(unsupported(format!("{t}.secretReference")));
        }
        let kinds = [
            v.azure_file.is_some(),
            present(&v.empty_dir),
            v.secret.is_some(),
            v.git_repo.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(invalid(
                t,
                "a volume has exactly one of 'azureFile', 'emptyDir', 'secret' or 'gitRepo'",
            ));
        }
        let source = if let Some(af) = &v.azure_file {
            if present(&af.storage_account_key_reference) {
                return Err(unsupported(format!(
                    "{t}.azureFile.storageAccountKeyReference"
                )));
            }
            VolumeSource::AzureFile {
                share_name: af
                    .share_name
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing(format!("{t}.azureFile.shareName")))?,
                storage_account_name: af
                    .storage_account_name
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing(format!("{t}.azureFile.storageAccountName")))?,
                read_only: af.read_only.unwrap_or(false),
                storage_account_key: af.storage_account_key.clone(),
            }
        } else if let Some(files) = &v.secret {
            for (file, contents) in files {
                if file.is_empty() || file.contains('/') || file == "." || file == ".." {
                    return Err(invalid(
                        format!("{t}.secret.{file}"),
                        "a secret file name is not empty and has no '/'",
                    ));
                }
                if base64::engine::general_purpose::STANDARD
                    .decode(contents)
                    .is_err()
                {
                    return Err(invalid(
                        format!("{t}.secret.{file}"),
                        "secret volume contents are base64",
                    ));
                }
            }
            VolumeSource::Secret {
                files: files.clone(),
            }
        } else if let Some(git) = &v.git_repo {
            let repository = git
                .repository
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing(format!("{t}.gitRepo.repository")))?;
            if let Some(dir) = &git.directory
                && (dir.starts_with("..") || dir.split('/').any(|seg| seg == ".."))
            {
                return Err(invalid(
                    format!("{t}.gitRepo.directory"),
                    "the directory may not contain or start with '..'",
                ));
            }
            VolumeSource::GitRepo {
                repository,
                directory: git.directory.clone(),
                revision: git.revision.clone(),
            }
        } else {
            if !matches!(v.empty_dir, Some(Value::Object(_))) {
                return Err(invalid(
                    format!("{t}.emptyDir"),
                    "'emptyDir' is a JSON object",
                ));
            }
            VolumeSource::EmptyDir
        };
        out.push(VolumeSpec {
            name: name.to_owned(),
            source,
        });
    }
    Ok(out)
}

fn probe(p: &arm::ContainerProbe, target: &str) -> Result<Probe, ApiError> {
    if p.exec.is_some() == p.http_get.is_some() {
        return Err(invalid(
            target,
            "a probe has exactly one of 'exec' or 'httpGet'",
        ));
    }
    let exec_command = match &p.exec {
        Some(e) => {
            let cmd = e
                .command
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| missing(format!("{target}.exec.command")))?;
            Some(cmd)
        }
        None => None,
    };
    let http_get = match &p.http_get {
        Some(h) => {
            let t = format!("{target}.httpGet");
            let port = h.port.ok_or_else(|| missing(format!("{t}.port")))?;
            let port = u16::try_from(port)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    invalid(
                        format!("{t}.port"),
                        format!("{port} is not a port between 1 and 65535"),
                    )
                })?;
            let scheme = match h.scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => None,
                Some(s @ ("http" | "https")) => Some(s.to_owned()),
                Some(_) => {
                    return Err(invalid(format!("{t}.scheme"), "expected 'http' or 'https'"));
                }
            };
            let mut headers = Vec::new();
            for (i, hd) in h
                .http_headers
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let name = hd
                    .name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| missing(format!("{t}.httpHeaders[{i}].name")))?;
                headers.push((name, hd.value.clone().unwrap_or_default()));
            }
            Some(HttpGet {
                path: h.path.clone(),
                port,
                scheme,
                headers,
            })
        }
        None => None,
    };
    let seconds = |v: Option<i64>, field: &str, min: i64| -> Result<Option<u32>, ApiError> {
        match v {
            None => Ok(None),
            Some(n) if n >= min && n <= 3600 => Ok(Some(n as u32)),
            Some(n) => Err(invalid(
                format!("{target}.{field}"),
                format!("{n} is not between {min} and 3600"),
            )),
        }
    };
    Ok(Probe {
        exec_command,
        http_get,
        initial_delay_seconds: seconds(p.initial_delay_seconds, "initialDelaySeconds", 0)?,
        period_seconds: seconds(p.period_seconds, "periodSeconds", 1)?,
        failure_threshold: seconds(p.failure_threshold, "failureThreshold", 1)?,
        success_threshold: seconds(p.success_threshold, "successThreshold", 1)?,
        timeout_seconds: seconds(p.timeout_seconds, "timeoutSeconds", 1)?,
    })
}

fn security_context(
    s: &arm::SecurityContext,
    target: &str,
    limits: &Limits,
) -> Result<SecurityContext, ApiError> {
    if s.privileged == Some(true) && !limits.allow_privileged {
        return Err(ApiError::bad_request(
            code::PRIVILEGED,
            format!("{target}.privileged"),
            "Privileged containers are not allowed on this cluster.",
        ));
    }
    let caps = |list: Option<&Vec<String>>, field: &str| -> Result<Option<Vec<String>>, ApiError> {
        let Some(list) = list else { return Ok(None) };
        for (i, cap) in list.iter().enumerate() {
            if !CAPABILITY.is_match(cap) {
                return Err(invalid(
                    format!("{target}.capabilities.{field}[{i}]"),
                    "capabilities are upper-case names like NET_ADMIN",
                ));
            }
        }
        Ok(Some(list.clone()))
    };
    let caps_ref = s.capabilities.as_ref();
    for (field, v) in [("runAsUser", s.run_as_user), ("runAsGroup", s.run_as_group)] {
        if let Some(id) = v
            && !(0..=i64::from(u32::MAX)).contains(&id)
        {
            return Err(invalid(
                format!("{target}.{field}"),
                format!("{id} is not a user or group id"),
            ));
        }
    }
    if let Some(profile) = &s.seccomp_profile
        && base64::engine::general_purpose::STANDARD
            .decode(profile)
            .is_err()
    {
        return Err(invalid(
            format!("{target}.seccompProfile"),
            "the seccomp profile is base64",
        ));
    }
    Ok(SecurityContext {
        privileged: s.privileged,
        allow_privilege_escalation: s.allow_privilege_escalation,
        capabilities_add: caps(caps_ref.and_then(|c| c.add.as_ref()), "add")?,
        capabilities_drop: caps(caps_ref.and_then(|c| c.drop.as_ref()), "drop")?,
        run_as_user: s.run_as_user,
        run_as_group: s.run_as_group,
        seccomp_profile: s.seccomp_profile.clone(),
    })
}

fn ip_address(
    ip: &arm::IpAddress,
    group: &str,
    bound: &HashSet<Port>,
    limits: &Limits,
) -> Result<IpAddressSpec, ApiError> {
    let t = "properties.ipAddress";
    let kind = match ip.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("public") => "Public",
        Some("private") => "Private",
        None => return Err(missing(format!("{t}.type"))),
        Some(_) => {
            return Err(invalid(
                format!("{t}.type"),
                "expected 'Public' or 'Private'",
            ));
        }
    };
    let arm_ports = ip.ports.as_deref().unwrap_or_default();
    if arm_ports.is_empty() {
        return Err(missing(format!("{t}.ports")));
    }
    if arm_ports.len() > limits.max_ports {
        return Err(too_many(
            format!("{t}.ports"),
            "ports on its IP address",
            limits.max_ports,
        ));
    }
    let mut ports = Vec::with_capacity(arm_ports.len());
    let mut seen = HashSet::new();
    for (i, p) in arm_ports.iter().enumerate() {
        let pt = format!("{t}.ports[{i}]");
        let port = port(p, &pt)?;
        if !seen.insert(port.clone()) {
            return Err(ApiError::bad_request(
                code::DUPLICATE_PORT,
                format!("{pt}.port"),
                format!("Port {} {} is listed twice.", port.port, port.protocol),
            ));
        }
        // ACI has no port mapping: a group port must be a container port.
        if !bound.contains(&port) {
            return Err(ApiError::bad_request(
                code::PORT_NOT_EXPOSED,
                format!("{pt}.port"),
                format!(
                    "Port {} {} of the IP address is not opened by any container of container group '{group}'.",
                    port.port, port.protocol
                ),
            ));
        }
        ports.push(port);
    }
    let dns_name_label = match ip.dns_name_label.as_deref() {
        None | Some("") => None,
        Some(label) => {
            if !DNS_LABEL.is_match(label) {
                return Err(ApiError::bad_request(
                    code::INVALID_DNS_LABEL,
                    format!("{t}.dnsNameLabel"),
                    format!(
                        "The DNS name label '{label}' in container group '{group}' is invalid. It can contain only \
                         lowercase letters, numbers and hyphens. The first character must be a letter. The last \
                         character must be a letter or number. The value must be between 5 and 63 characters long."
                    ),
                ));
            }
            if kind == "Private" {
                return Err(invalid(
                    format!("{t}.dnsNameLabel"),
                    "a DNS name label needs a 'Public' IP address",
                ));
            }
            Some(label.to_owned())
        }
    };
    let label_scope = match ip
        .auto_generated_domain_name_label_scope
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("unsecure") => "Unsecure",
        Some("tenantreuse") => "TenantReuse",
        Some("subscriptionreuse") => "SubscriptionReuse",
        Some("resourcegroupreuse") => "ResourceGroupReuse",
        Some("noreuse") => "Noreuse",
        Some(_) => {
            return Err(invalid(
                format!("{t}.autoGeneratedDomainNameLabelScope"),
                "expected 'Unsecure', 'TenantReuse', 'SubscriptionReuse', 'ResourceGroupReuse' or 'Noreuse'",
            ));
        }
    };
    Ok(IpAddressSpec {
        kind: kind.to_owned(),
        ports,
        dns_name_label,
        label_scope: label_scope.to_owned(),
    })
}

fn registry_credentials(
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
        if server.contains(['/', ' ']) {
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

fn dns_config(d: &arm::DnsConfig) -> Result<DnsConfigSpec, ApiError> {
    let t = "properties.dnsConfig.nameServers";
    let servers = d
        .name_servers
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(t))?;
    for (i, s) in servers.iter().enumerate() {
        if s.parse::<IpAddr>().is_err() {
            return Err(invalid(
                format!("{t}[{i}]"),
                format!("'{s}' is not an IP address"),
            ));
        }
    }
    Ok(DnsConfigSpec {
        name_servers: servers,
        search_domains: d.search_domains.clone(),
        options: d.options.clone(),
    })
}

/// ACI's rule for PUT on an existing group: these changes need delete and re-create.
pub fn update(existing: &GroupSpec, new: &GroupSpec, group: &str) -> Result<(), ApiError> {
    let network = |s: &GroupSpec| {
        s.ip_address.as_ref().map(|ip| {
            (
                ip.kind.clone(),
                ip.ports.clone(),
                ip.dns_name_label.clone(),
                ip.label_scope.clone(),
            )
        })
    };
    let changed = existing.os_type != new.os_type
        || existing.restart_policy != new.restart_policy
        || existing.requests() != new.requests()
        || network(existing) != network(new)
        || existing
            .containers
            .iter()
            .map(|c| (&c.name, c.requests, c.gpu_sku.clone()))
            .collect::<Vec<_>>()
            != new
                .containers
                .iter()
                .map(|c| (&c.name, c.requests, c.gpu_sku.clone()))
                .collect::<Vec<_>>();
    if changed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ContainerGroupUpdateRequiresRecreate",
            format!(
                "The updates on container group '{group}' are invalid. If you are going to update the os type, \
                 restart policy, network profile, CPU, memory or GPU resources for a container group, you must \
                 delete it first and then create a new one."
            ),
        )
        .with_target("properties"));
    }
    Ok(())
}
