//! The rules a container group's spec keeps, written once for both ends of the agent protocol.
//!
//! A tenant's spec ends up executed as root on a node, so the node checks every assignment before it
//! touches the disk, the network or a process; and the apiserver refuses, before it writes anything,
//! whatever the node would refuse, so a spec the node will refuse never gets a 201. Both call these
//! functions: the apiserver field by field while it validates ARM JSON (its error names the field), and
//! then [`admit`] on the node spec it is about to store, as a last gate; the agent calls [`admit`] on
//! every assignment it receives.
//!
//! What the node can still refuse that no apiserver can know is listed on [`admit`].
//!
//! # Layout
//! - [`names`]: containers, volumes, environment variables, secret files, shares, storage accounts.
//! - [`paths`]: mount paths and their normal form.
//! - [`git`]: gitRepo repository URLs, directories and revisions.
//! - [`image`]: image references (Docker's grammar), parsed the same way the node pulls them.
//! - [`process`]: argv and environment text, Linux capabilities.
//! - [`dns`]: dnsConfig name servers, search domains and options.
//! - [`probe`]: liveness and readiness probes (action, command, httpGet request, timings).

pub mod dns;
pub mod git;
pub mod image;
pub mod names;
pub mod paths;
pub mod probe;
pub mod process;

use std::collections::{HashMap, HashSet};

use crate::node;

/// The most a secret volume may hold, counting each file in whole 4 KiB pages (the node keeps it in a
/// tmpfs of its own, 16 MiB).
pub const MAX_SECRET_VOLUME_BYTES: u64 = 8 * 1024 * 1024;

/// The broken rule behind a [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error(transparent)]
    Name(#[from] names::NameError),
    #[error(transparent)]
    Path(#[from] paths::PathError),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("'{image}' is not an image reference: {source}")]
    Image {
        image: String,
        #[source]
        source: image::ReferenceError,
    },
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    /// A group needs at least one (non-init) container.
    #[error("a container group has at least one container")]
    NoContainers,
    /// Two containers (init containers included) or two volumes share a name.
    #[error("the name '{0}' is used more than once")]
    DuplicateName(String),
    /// A mount names a volume the group does not define.
    #[error("the volume '{0}' is mounted but not defined in 'properties.volumes'")]
    UnknownVolume(String),
    /// Two mounts of one container are the same path once normalised (`/d` and `/d/`).
    #[error("'{0}' is mounted twice in one container")]
    DuplicateMountPath(String),
    /// A volume with no source.
    #[error("a volume has exactly one of 'azureFile', 'emptyDir', 'secret' or 'gitRepo'")]
    NoSource,
    /// A secret volume over [`MAX_SECRET_VOLUME_BYTES`].
    #[error("a secret volume holds at most {} MiB", MAX_SECRET_VOLUME_BYTES / 1024 / 1024)]
    SecretTooLarge,
    /// A privileged container where the operator allows none.
    #[error("privileged containers are not allowed on this cluster")]
    Privileged,
}

/// A spec refused: the ARM JSON path of the field at fault (`properties.volumes[0].gitRepo.repository`)
/// and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {broken}")]
pub struct Refusal {
    pub target: String,
    #[source]
    pub broken: Broken,
}

fn at<E: Into<Broken>>(target: impl Into<String>) -> impl FnOnce(E) -> Refusal {
    let target = target.into();
    move |error| Refusal {
        target,
        broken: error.into(),
    }
}

/// Checks a whole node spec against every rule above; the first field that breaks one is refused.
/// `allow_privileged` is the operator's permission for privileged containers and capabilities beyond
/// the baseline.
///
/// Targets are ARM JSON paths, which the node spec mirrors (`containers[i]` is
/// `properties.containers[i]`, `init_containers[i]` is `properties.initContainers[i]`).
///
/// What a node may refuse besides (no apiserver can know it): an image that cannot be pulled, an
/// image with neither entrypoint nor command when the spec gives none, an image `User` that is not
/// numeric, an `azureFile` volume on a node started without `--share-root`, and a privileged container
/// on a node whose own operator forbids it.
pub fn admit(spec: &node::GroupSpec, allow_privileged: bool) -> Result<(), Refusal> {
    if spec.containers.is_empty() {
        return Err(Refusal {
            target: "properties.containers".into(),
            broken: Broken::NoContainers,
        });
    }
    let volumes = admit_volumes(&spec.volumes)?;
    let mut names = HashSet::new();
    let all = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("properties.initContainers[{i}]"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("properties.containers[{i}]"), c)),
        );
    for (target, container) in all {
        admit_container(container, &target, &volumes, allow_privileged)?;
        if !names.insert(container.name.as_str()) {
            return Err(Refusal {
                target: format!("{target}.name"),
                broken: Broken::DuplicateName(container.name.clone()),
            });
        }
    }
    if let Some(dns) = &spec.dns_config {
        let t = "properties.dnsConfig";
        for (i, server) in dns.name_servers.iter().enumerate() {
            dns::name_server(server).map_err(at(format!("{t}.nameServers[{i}]")))?;
        }
        for domains in &dns.search_domains {
            dns::search_domains(domains).map_err(at(format!("{t}.searchDomains")))?;
        }
        dns::options(&dns.options).map_err(at(format!("{t}.options")))?;
    }
    Ok(())
}

fn admit_volumes(volumes: &[node::Volume]) -> Result<HashSet<&str>, Refusal> {
    use node::volume::Source;
    let mut names = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let t = format!("properties.volumes[{i}]");
        names::volume(&volume.name).map_err(at(format!("{t}.name")))?;
        if !names.insert(volume.name.as_str()) {
            return Err(Refusal {
                target: format!("{t}.name"),
                broken: Broken::DuplicateName(volume.name.clone()),
            });
        }
        match &volume.source {
            None => {
                return Err(Refusal {
                    target: t,
                    broken: Broken::NoSource,
                });
            }
            Some(Source::EmptyDir(_)) => {}
            Some(Source::Secret(secret)) => secret_volume(&secret.files, &t)?,
            Some(Source::GitRepo(repo)) => {
                let t = format!("{t}.gitRepo");
                git::repository(&repo.repository).map_err(at(format!("{t}.repository")))?;
                git::directory(&repo.repository, &repo.directory)
                    .map_err(at(format!("{t}.directory")))?;
                git::revision(&repo.revision).map_err(at(format!("{t}.revision")))?;
            }
            Some(Source::AzureFile(share)) => {
                let t = format!("{t}.azureFile");
                names::share(&share.share_name).map_err(at(format!("{t}.shareName")))?;
                names::storage_account(&share.storage_account_name)
                    .map_err(at(format!("{t}.storageAccountName")))?;
            }
        }
    }
    Ok(names)
}

fn secret_volume(files: &HashMap<String, Vec<u8>>, target: &str) -> Result<(), Refusal> {
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    for name in names {
        names::secret_file(name).map_err(at(format!("{target}.secret.{name}")))?;
    }
    let pages: u64 = files
        .values()
        .map(|contents| (contents.len() as u64).div_ceil(4096).max(1) * 4096)
        .sum();
    if pages > MAX_SECRET_VOLUME_BYTES {
        return Err(Refusal {
            target: format!("{target}.secret"),
            broken: Broken::SecretTooLarge,
        });
    }
    Ok(())
}

fn admit_container(
    container: &node::Container,
    target: &str,
    volumes: &HashSet<&str>,
    allow_privileged: bool,
) -> Result<(), Refusal> {
    names::container(&container.name).map_err(at(format!("{target}.name")))?;
    let p = format!("{target}.properties");
    image::Reference::parse(&container.image).map_err(|source| Refusal {
        target: format!("{p}.image"),
        broken: Broken::Image {
            image: container.image.clone(),
            source,
        },
    })?;
    for (i, arg) in container.command.iter().enumerate() {
        process::text(arg).map_err(at(format!("{p}.command[{i}]")))?;
    }
    let mut env = HashSet::new();
    for (i, var) in container.env.iter().enumerate() {
        let t = format!("{p}.environmentVariables[{i}]");
        names::env_var(&var.name).map_err(at(format!("{t}.name")))?;
        if !env.insert(var.name.as_str()) {
            return Err(Refusal {
                target: format!("{t}.name"),
                broken: Broken::DuplicateName(var.name.clone()),
            });
        }
        let field = if var.secure { "secureValue" } else { "value" };
        process::text(&var.value).map_err(at(format!("{t}.{field}")))?;
    }
    let mut paths = HashSet::new();
    for (i, mount) in container.volume_mounts.iter().enumerate() {
        let t = format!("{p}.volumeMounts[{i}]");
        if !volumes.contains(mount.name.as_str()) {
            return Err(Refusal {
                target: format!("{t}.name"),
                broken: Broken::UnknownVolume(mount.name.clone()),
            });
        }
        let normal = paths::mount_path(&mount.mount_path).map_err(at(format!("{t}.mountPath")))?;
        if !paths.insert(normal.clone()) {
            return Err(Refusal {
                target: format!("{t}.mountPath"),
                broken: Broken::DuplicateMountPath(normal),
            });
        }
    }
    if let Some(sc) = &container.security_context {
        let t = format!("{p}.securityContext");
        if sc.privileged == Some(true) && !allow_privileged {
            return Err(Refusal {
                target: format!("{t}.privileged"),
                broken: Broken::Privileged,
            });
        }
        for (i, cap) in sc.capabilities_add.iter().enumerate() {
            process::capability_to_add(cap, allow_privileged)
                .map_err(at(format!("{t}.capabilities.add[{i}]")))?;
        }
        for (i, cap) in sc.capabilities_drop.iter().enumerate() {
            process::capability_to_drop(cap).map_err(at(format!("{t}.capabilities.drop[{i}]")))?;
        }
    }
    if let Some(liveness) = &container.liveness_probe {
        admit_probe(liveness, &format!("{p}.livenessProbe"), true)?;
    }
    if let Some(readiness) = &container.readiness_probe {
        admit_probe(readiness, &format!("{p}.readinessProbe"), false)?;
    }
    Ok(())
}

/// A probe as the node gets it: 0 is "absent" for every timing (the node uses Kubernetes' default).
fn admit_probe(p: &node::Probe, t: &str, liveness: bool) -> Result<(), Refusal> {
    let exec = !p.exec_command.is_empty();
    if exec == p.http_get.is_some() {
        return Err(Refusal {
            target: t.to_string(),
            broken: probe::ProbeError::Action.into(),
        });
    }
    if exec {
        probe::command(&p.exec_command).map_err(at(format!("{t}.exec.command")))?;
    }
    if let Some(get) = &p.http_get {
        let h = format!("{t}.httpGet");
        probe::port(i64::from(get.port)).map_err(at(format!("{h}.port")))?;
        probe::scheme(&get.scheme).map_err(at(format!("{h}.scheme")))?;
        probe::path(&get.path).map_err(at(format!("{h}.path")))?;
        probe::header_count(get.headers.len()).map_err(at(format!("{h}.httpHeaders")))?;
        // The node gets a map: positions are those of the names in order.
        let mut names: Vec<&String> = get.headers.keys().collect();
        names.sort();
        for (i, name) in names.into_iter().enumerate() {
            let t = format!("{h}.httpHeaders[{i}]");
            probe::header_name(name).map_err(at(format!("{t}.name")))?;
            probe::header_value(name, &get.headers[name]).map_err(at(format!("{t}.value")))?;
        }
    }
    let field = |name: &str| format!("{t}.{name}");
    probe::seconds(p.initial_delay_seconds.into(), 0).map_err(at(field("initialDelaySeconds")))?;
    probe::seconds(p.period_seconds.into(), 0).map_err(at(field("periodSeconds")))?;
    probe::seconds(p.timeout_seconds.into(), 0).map_err(at(field("timeoutSeconds")))?;
    probe::threshold(p.failure_threshold.into(), 0).map_err(at(field("failureThreshold")))?;
    probe::threshold(p.success_threshold.into(), 0).map_err(at(field("successThreshold")))?;
    if liveness {
        probe::liveness_success(p.success_threshold.into(), 0)
            .map_err(at(field("successThreshold")))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
