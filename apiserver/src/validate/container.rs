//! One container (or init container): name, image, command, ports, environment, resources, mounts,
//! probes and security context.

use std::collections::HashSet;

use berth_proto::arm;
use berth_proto::spec::{image::Reference, names, process};
use serde_json::Value;

use super::codes::{code, duplicate, invalid, invalid_name, missing, present, unsupported};
use super::resources::size;
use super::volumes::volume_mounts;
use super::{Limits, probe::probe};
use crate::error::ApiError;
use crate::model::*;

pub(super) fn container_name(name: Option<&str>, target: &str) -> Result<String, ApiError> {
    let name = name.ok_or_else(|| missing(format!("{target}.name")))?;
    if names::container(name).is_err() {
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

/// An image reference, parsed by the same grammar the node pulls with.
pub(super) fn image(image: Option<&str>, target: &str) -> Result<String, ApiError> {
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
    if let Err(error) = Reference::parse(image) {
        return Err(invalid(
            target,
            format!("'{image}' is not an image reference: {error}"),
        ));
    }
    Ok(image.to_owned())
}

/// The argv: every argument is text a process can receive (no NUL).
fn command(command: Option<&Vec<String>>, target: &str) -> Result<Vec<String>, ApiError> {
    let command = command.cloned().unwrap_or_default();
    for (i, arg) in command.iter().enumerate() {
        process::text(arg).map_err(|e| invalid(format!("{target}.command[{i}]"), e))?;
    }
    Ok(command)
}

/// What ACI gives a container that names no resources: 1 CPU, 1.5 GB.
fn default_resources_of_aci() -> arm::ResourceRequirements {
    arm::ResourceRequirements {
        requests: Some(arm::ResourceRequests {
            cpu: Some(1.0),
            memory_in_gb: Some(1.5),
            gpu: None,
        }),
        limits: None,
    }
}

/// A config map: empty (what `az` 2.67+ always sends) means nothing; config files Berth does not write.
fn config_map(map: Option<&Value>, ptarget: &str) -> Result<(), ApiError> {
    let target = format!("{ptarget}.configMap");
    match map {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(fields)) => match fields.get("keyValuePairs") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(pairs)) if pairs.is_empty() => Ok(()),
            Some(Value::Object(_)) => Err(unsupported(format!("{target}.keyValuePairs"))),
            Some(_) => Err(invalid(
                format!("{target}.keyValuePairs"),
                "'keyValuePairs' is a JSON object of strings",
            )),
        },
        Some(_) => Err(invalid(target, "'configMap' is a JSON object")),
    }
}

pub(super) fn container(
    c: &arm::Container,
    target: &str,
    volumes: &HashSet<&str>,
    limits: &Limits,
    default_resources: bool,
) -> Result<ContainerSpec, ApiError> {
    let name = container_name(c.name.as_deref(), target)?;
    let p = c
        .properties
        .as_ref()
        .ok_or_else(|| missing(format!("{target}.properties")))?;
    let ptarget = format!("{target}.properties");
    config_map(p.config_map.as_ref(), &ptarget)?;
    let image = image(p.image.as_deref(), target)?;
    let command = command(p.command.as_ref(), &ptarget)?;
    let mut ports = Vec::new();
    for (i, port) in p.ports.as_deref().unwrap_or_default().iter().enumerate() {
        ports.push(self::port(port, &format!("{ptarget}.ports[{i}]"))?);
    }
    let env = env_vars(
        p.environment_variables.as_deref().unwrap_or_default(),
        &ptarget,
    )?;
    let default = default_resources.then(default_resources_of_aci);
    let resources = p
        .resources
        .as_ref()
        .or(default.as_ref())
        .ok_or_else(|| missing(format!("{ptarget}.resources")))?;
    let rtarget = format!("{ptarget}.resources");
    let req = resources
        .requests
        .as_ref()
        .ok_or_else(|| missing(format!("{rtarget}.requests")))?;
    let (requests, gpu_sku) = size(req, &format!("{rtarget}.requests"), true)?;
    let limits_size = match &resources.limits {
        Some(l) => Some(super::resources::limits(l, &requests, &rtarget)?),
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
        .map(|pr| probe(pr, &format!("{ptarget}.livenessProbe"), true))
        .transpose()?;
    let readiness_probe = p
        .readiness_probe
        .as_ref()
        .map(|pr| probe(pr, &format!("{ptarget}.readinessProbe"), false))
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

pub(super) fn init_container(
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
        command: command(p.command.as_ref(), &ptarget)?,
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

pub(super) fn port(p: &arm::ContainerPort, target: &str) -> Result<Port, ApiError> {
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
        names::env_var(name).map_err(|e| invalid_name(format!("{t}.name"), e))?;
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
            (_, Some(secret)) => {
                process::text(secret).map_err(|e| invalid(format!("{t}.secureValue"), e))?;
                EnvVar {
                    name: name.to_owned(),
                    value: Some(secret.clone()),
                    secure: true,
                }
            }
            (value, None) => {
                let value = value.clone().unwrap_or_default();
                process::text(&value).map_err(|e| invalid(format!("{t}.value"), e))?;
                EnvVar {
                    name: name.to_owned(),
                    value: Some(value),
                    secure: false,
                }
            }
        };
        out.push(var);
    }
    Ok(out)
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
    let caps_ref = s.capabilities.as_ref();
    let add = caps_ref.and_then(|c| c.add.as_ref());
    for (i, cap) in add.into_iter().flatten().enumerate() {
        let t = format!("{target}.capabilities.add[{i}]");
        match process::capability_to_add(cap, limits.allow_privileged) {
            Ok(_) => {}
            Err(e @ process::ProcessError::PrivilegedCapability(_)) => {
                return Err(ApiError::bad_request(
                    code::PRIVILEGED,
                    t,
                    format!("{}.", capitalized(&e.to_string())),
                ));
            }
            Err(e) => return Err(invalid(t, e)),
        }
    }
    let drop = caps_ref.and_then(|c| c.drop.as_ref());
    for (i, cap) in drop.into_iter().flatten().enumerate() {
        process::capability_to_drop(cap)
            .map_err(|e| invalid(format!("{target}.capabilities.drop[{i}]"), e))?;
    }
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
    if let Some(profile) = &s.seccomp_profile {
        use base64::Engine as _;
        if base64::engine::general_purpose::STANDARD
            .decode(profile)
            .is_err()
        {
            return Err(invalid(
                format!("{target}.seccompProfile"),
                "the seccomp profile is base64",
            ));
        }
    }
    Ok(SecurityContext {
        privileged: s.privileged,
        allow_privilege_escalation: s.allow_privilege_escalation,
        capabilities_add: add.cloned(),
        capabilities_drop: drop.cloned(),
        run_as_user: s.run_as_user,
        run_as_group: s.run_as_group,
        seccomp_profile: s.seccomp_profile.clone(),
    })
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn arm_container(props: Value) -> arm::Container {
        let mut base = json!({
            "name": "app",
            "properties": {"image": "busybox", "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}
        });
        for (k, v) in props.as_object().unwrap() {
            base["properties"][k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn check(props: Value, limits: &Limits) -> Result<ContainerSpec, ApiError> {
        container(
            &arm_container(props),
            "c",
            &HashSet::from(["cache"]),
            limits,
            false,
        )
    }

    fn target_of(props: Value) -> String {
        check(props, &Limits::default())
            .unwrap_err()
            .target
            .unwrap_or_default()
    }

    #[test]
    fn a_plain_container_converts_sizes_once() {
        let c = check(json!({}), &Limits::default()).unwrap();
        assert_eq!(c.requests.cpu_millis, 1000);
        assert_eq!(c.requests.memory_mib, 1536);
        assert_eq!(c.image, "busybox");
    }

    #[test]
    fn what_the_node_would_refuse_is_refused_here() {
        assert_eq!(target_of(json!({"image": "BusyBox"})), "c.properties.image");
        assert_eq!(
            target_of(json!({"image": "reg.example.com/a:"})),
            "c.properties.image"
        );
        assert_eq!(
            target_of(json!({"command": ["sh", "a\u{0}b"]})),
            "c.properties.command[1]"
        );
        assert_eq!(
            target_of(json!({"environmentVariables": [{"name": "1abc", "value": "x"}]})),
            "c.properties.environmentVariables[0].name"
        );
        assert_eq!(
            target_of(json!({"environmentVariables": [{"name": "A", "secureValue": "\u{0}"}]})),
            "c.properties.environmentVariables[0].secureValue"
        );
        assert_eq!(
            target_of(json!({"securityContext": {"capabilities": {"add": ["CAP_"]}}})),
            "c.properties.securityContext.capabilities.add[0]"
        );
        assert_eq!(
            target_of(json!({"securityContext": {"capabilities": {"drop": ["FOO"]}}})),
            "c.properties.securityContext.capabilities.drop[0]"
        );
    }

    #[test]
    fn capabilities_beyond_the_baseline_need_the_operator() {
        let sys_admin = json!({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}});
        let err = check(sys_admin.clone(), &Limits::default()).unwrap_err();
        assert_eq!(err.code, code::PRIVILEGED);
        let operator = Limits {
            allow_privileged: true,
            ..Limits::default()
        };
        assert!(check(sys_admin, &operator).is_ok());
        let baseline = json!({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}});
        assert!(check(baseline, &Limits::default()).is_ok());
    }

    proptest! {
        /// Whatever image string validation accepts, the node's parser accepts too.
        #[test]
        fn accepted_images_parse_on_the_node(image in "[a-zA-Z0-9./:@_-]{0,40}") {
            if let Ok(image) = self::image(Some(&image), "c") {
                prop_assert!(Reference::parse(&image).is_ok());
            }
        }

        /// Accepted environment variables carry no NUL and start with a letter.
        #[test]
        fn accepted_env_is_exec_safe(name in "[A-Za-z0-9_]{0,5}", value in "\\PC{0,5}|\u{0}") {
            let props = json!({"environmentVariables": [{"name": name, "value": value}]});
            if let Ok(c) = check(props, &Limits::default()) {
                let var = &c.env[0];
                prop_assert!(var.name.starts_with(|ch: char| ch.is_ascii_alphabetic()));
                prop_assert!(!var.value.as_deref().unwrap_or_default().contains('\0'));
            }
        }
    }
}
