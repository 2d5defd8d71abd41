//! Bringing a group up: images, sandbox, volumes, specs, init containers, app containers.
//!
//! Cancellable only where that leaves nothing half made: while images are pulled, between steps,
//! and while an init container runs (its task stays, for the halt to stop). A step that makes
//! something on the node (the network namespace, CNI, containers and tasks, volumes) always
//! finishes, so the halt that cancelled it finds what it made.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{Container, GroupAssignment};
use futures::future::Either;
use tokio_util::sync::CancellationToken;

use super::status::{StatusHandle, container_id, exit_detail, mark_started, terminated};
use super::{NORMAL, WARNING};
use crate::runtime::containerd::image::{ImageConfig, PulledImage};
use crate::runtime::containerd::network::{NetworkError, PortSpec, Protocol};
use crate::runtime::containerd::resolv::{self, hostname, hosts_file};
use crate::runtime::containerd::spec::{self, SpecContext};
use crate::runtime::containerd::{self as containerd, Inner, logs, volumes};
use crate::runtime::restart::START_ERROR_EXIT;

/// How starting one app container went: its pid and start time, or why it could not start.
type Started = Result<(u32, i64), String>;

/// What a bring-up made: how each app container (by slot) started.
pub(super) struct BringUp {
    pub(super) started: Vec<(usize, Started)>,
}

/// Why a bring-up failed.
pub(super) enum StartFailure {
    /// Shown as a group event with this ACI code as its name, and the group fails.
    Group { code: &'static str, message: String },
    /// Init container `slot` exited with `exit_code`.
    Init { slot: usize, exit_code: i32 },
    /// A halt asked it to stop.
    Cancelled,
}

/// Pulls, builds the sandbox and volumes, runs init containers and starts the app containers.
pub(super) async fn bring_up(
    inner: Arc<Inner>,
    handle: StatusHandle,
    assignment: GroupAssignment,
    cancel: CancellationToken,
) -> Result<BringUp, StartFailure> {
    let checkpoint = || {
        if cancel.is_cancelled() {
            Err(StartFailure::Cancelled)
        } else {
            Ok(())
        }
    };
    let group_id = assignment.group_id.clone();
    let spec = assignment.spec.clone().unwrap_or_default();
    let all: Vec<(usize, &Container, bool)> = spec
        .init_containers
        .iter()
        .map(|c| (c, true))
        .chain(spec.containers.iter().map(|c| (c, false)))
        .enumerate()
        .map(|(i, (c, init))| (i, c, init))
        .collect();
    // Every rule the apiserver applied, once more before anything touches the node.
    if let Err(refusal) = berth_proto::spec::admit(&spec, inner.config.allow_privileged) {
        return Err(StartFailure::Group {
            code: "InvalidSpec",
            message: format!("the node refuses the group's spec: {refusal}"),
        });
    }

    // Images: each distinct one once, all at once.
    let mut images: HashMap<String, PulledImage> = HashMap::new();
    let distinct: Vec<String> = {
        let mut v: Vec<String> = all.iter().map(|(_, c, _)| c.image.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    for (i, c, _) in &all {
        handle.event(
            Some(*i),
            NORMAL,
            "Pulling",
            format!("pulling image \"{}\"", c.image),
        );
    }
    let pulls = distinct.iter().map(|image| {
        let inner = Arc::clone(&inner);
        let credentials = spec.registry_credentials.clone();
        async move {
            (
                image.clone(),
                inner.images.ensure(image, &credentials).await,
            )
        }
    });
    let pulled = tokio::select! {
        pulled = futures::future::join_all(pulls) => pulled,
        () = cancel.cancelled() => return Err(StartFailure::Cancelled),
    };
    for (image, result) in pulled {
        match result {
            Ok(pulled) => {
                for (i, c, _) in &all {
                    if c.image == image {
                        let how = if pulled.cached {
                            "already present on the node"
                        } else {
                            "pulled"
                        };
                        handle.event(
                            Some(*i),
                            NORMAL,
                            "Pulled",
                            format!("Successfully {how}: image \"{image}\""),
                        );
                    }
                }
                images.insert(image, pulled);
            }
            Err(error) => {
                for (i, c, _) in &all {
                    if c.image == image {
                        handle.event(Some(*i), WARNING, "Failed", error.to_string());
                    }
                }
                return Err(StartFailure::Group {
                    code: "InaccessibleImage",
                    message: format!(
                        "The image '{image}' in container group '{}' is not accessible: {error}",
                        spec.name
                    ),
                });
            }
        }
    }

    // The sandbox: a network namespace now, attached by CNI (the slow part) while the containers are
    // made; the files every container sees.
    let network_failure = |error: NetworkError| StartFailure::Group {
        code: "Failed",
        message: format!("cannot set up the group's network: {error}"),
    };
    let netns = inner
        .network
        .prepare(&group_id)
        .await
        .map_err(network_failure)?;
    checkpoint()?;
    let host = hostname(&spec.name);
    let etc_dir = inner.group_dir(&group_id).join("etc");
    let etc_files: Vec<(PathBuf, &'static str)> = vec![
        (etc_dir.join("hosts"), "/etc/hosts"),
        (etc_dir.join("resolv.conf"), "/etc/resolv.conf"),
        (etc_dir.join("hostname"), "/etc/hostname"),
    ];
    let io_failure = |error: std::io::Error| StartFailure::Group {
        code: "Failed",
        message: format!("cannot write the group's /etc files: {error}"),
    };
    std::fs::create_dir_all(&etc_dir).map_err(io_failure)?;
    // Rewritten in place (same inode, so bind mounts see it) once the IP is known.
    std::fs::write(&etc_files[0].0, hosts_file(None, &host)).map_err(io_failure)?;
    std::fs::write(
        &etc_files[1].0,
        resolv::resolv_conf(&spec, inner.dns_server(), &resolv::node_resolv_conf()),
    )
    .map_err(io_failure)?;
    std::fs::write(&etc_files[2].0, format!("{host}\n")).map_err(io_failure)?;
    let attach = {
        let inner = Arc::clone(&inner);
        let handle = handle.clone();
        let group_id = group_id.clone();
        let hosts_path = etc_files[0].0.clone();
        let host = host.clone();
        let ports = ports(&assignment);
        async move {
            let sandbox = inner
                .network
                .setup(&group_id, &ports)
                .await
                .map_err(network_failure)?;
            let ip = sandbox.ip.to_string();
            std::fs::write(&hosts_path, hosts_file(Some(&ip), &host)).map_err(io_failure)?;
            handle.update(|s| s.ip = ip.clone());
            Ok::<(), StartFailure>(())
        }
    };

    // Volumes, with secret files owned by the user of the first container that mounts them.
    let mut owners: HashMap<String, (u32, u32)> = HashMap::new();
    for (_, c, _) in &all {
        let Some(image) = images.get(&c.image) else {
            continue;
        };
        let user = spec::user(c, &image.config).unwrap_or(spec::User { uid: 0, gid: 0 });
        for mount in &c.volume_mounts {
            owners
                .entry(mount.name.clone())
                .or_insert((user.uid, user.gid));
        }
    }
    // A gitRepo clone runs in the group's network namespace, so it waits for CNI; other volumes are
    // made while CNI attaches.
    let git_sandbox = volumes::has_git_repo(&spec).then(|| volumes::git::GitSandbox {
        netns: netns.clone(),
        resolv_conf: etc_files[1].0.clone(),
        hosts: etc_files[0].0.clone(),
        staging: inner.group_dir(&group_id).join("git"),
        hide: [inner.dir.parent().unwrap_or(&inner.dir)]
            .into_iter()
            .chain(inner.config.share_root.as_deref())
            .map(PathBuf::from)
            .collect(),
    });
    let attach = match &git_sandbox {
        Some(_) => {
            attach.await?;
            checkpoint()?;
            Either::Left(futures::future::ready(Ok(())))
        }
        None => Either::Right(attach),
    };
    let prepared = volumes::prepare(
        &spec,
        &inner.group_dir(&group_id).join("volumes"),
        inner.config.share_root.as_deref(),
        &owners,
        git_sandbox.as_ref().map(|s| (&inner.config.git, s)),
    )
    .await
    .map_err(|error| StartFailure::Group {
        code: "Failed",
        message: error.to_string(),
    })?;

    // Every container's spec, checked before anything runs.
    let inits = spec.init_containers.len();
    let mut specs = Vec::new();
    for (i, c, init) in &all {
        let image = images
            .get(&c.image)
            .map(|p| p.config.clone())
            .unwrap_or_else(empty_config);
        let mounts = prepared
            .mounts_for(c)
            .map_err(|error| StartFailure::Group {
                code: "Failed",
                message: error.to_string(),
            })?;
        let ctx = SpecContext {
            hostname: &host,
            netns: &netns,
            etc_files: &etc_files,
            volumes: &mounts,
            cgroups_path: format!("/{}/{group_id}/{}", inner.config.cgroup_parent, c.name),
            allow_privileged: inner.config.allow_privileged,
        };
        let oci = spec::build(c, &image, &ctx).map_err(|error| StartFailure::Group {
            code: "Failed",
            message: error.to_string(),
        })?;
        let pulled = images.get(&c.image);
        specs.push(Planned {
            slot: *i,
            id: container_id(&group_id, *init, if *init { *i } else { *i - inits }),
            name: c.name.clone(),
            init: *init,
            oci,
            reference: pulled.map(|p| p.reference.clone()).unwrap_or_default(),
            chain: pulled.map(|p| p.chain_id.clone()).unwrap_or_default(),
        });
    }

    let placement = assignment.placement.to_string();
    let create = |planned: Planned| {
        let inner = Arc::clone(&inner);
        let handle = handle.clone();
        let group_id = group_id.clone();
        let placement = placement.clone();
        async move {
            let labels = HashMap::from([
                (containerd::LABEL_GROUP.to_string(), group_id.clone()),
                (
                    containerd::LABEL_CONTAINER.to_string(),
                    planned.name.clone(),
                ),
                (containerd::LABEL_INIT.to_string(), planned.init.to_string()),
                (containerd::LABEL_PLACEMENT.to_string(), placement),
            ]);
            inner
                .cd
                .create_container(
                    &planned.id,
                    &planned.reference,
                    &planned.chain,
                    &planned.oci,
                    labels,
                )
                .await
                .map_err(|s| s.message().to_string())?;
            handle.event(
                Some(planned.slot),
                NORMAL,
                "Created",
                format!("Created container {}", planned.name),
            );
            let dir = inner.log_dir(&group_id, &planned.name);
            logs::begin_run(&dir).map_err(|e| e.to_string())?;
            inner
                .cd
                .create_task(&planned.id, &inner.stdio_uri(&dir))
                .await
                .map_err(|s| s.message().to_string())?;
            Ok::<Planned, String>(planned)
        }
    };
    let start = |planned: Planned| {
        let inner = Arc::clone(&inner);
        let handle = handle.clone();
        async move {
            let pid = inner
                .cd
                .start_created(&planned.id)
                .await
                .map_err(|s| s.message().to_string())?;
            let now = now_ms();
            handle.container(planned.slot, |c| mark_started(c, now));
            Ok::<(u32, i64), String>((pid, now))
        }
    };
    let create_all = |planned: Vec<Planned>| {
        futures::future::join_all(planned.into_iter().map(|p| {
            let slot = p.slot;
            let fut = create(p);
            async move { (slot, fut.await) }
        }))
    };
    let (init_specs, app_specs): (Vec<Planned>, Vec<Planned>) =
        specs.into_iter().partition(|p| p.init);

    // Without init containers, CNI runs while the app containers' tasks are created; the processes
    // start once the network is up. With them, the network comes first.
    let created: Vec<(usize, Result<Planned, String>)> = if init_specs.is_empty() {
        let (attached, created) = tokio::join!(attach, create_all(app_specs));
        attached?;
        checkpoint()?;
        created
    } else {
        attach.await?;
        for planned in init_specs {
            checkpoint()?;
            let (slot, id) = (planned.slot, planned.id.clone());
            let started = match create(planned).await {
                Ok(planned) => start(planned).await,
                Err(reason) => Err(reason),
            };
            let started = match started {
                Ok((_, started)) => started,
                Err(reason) => {
                    handle.start_failed(slot, &reason);
                    let _ = inner.cd.destroy(&id).await;
                    return Err(StartFailure::Init {
                        slot,
                        exit_code: START_ERROR_EXIT,
                    });
                }
            };
            let exited = async {
                loop {
                    match inner.cd.wait(&id).await {
                        Ok(done) => break done,
                        Err(status) if status.code() == tonic::Code::NotFound => {
                            break (137, now_ms());
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            };
            // Only waiting: a halt may stop here (and stops the init container's task).
            let (exit_status, at_ms) = tokio::select! {
                exited = exited => exited,
                () = cancel.cancelled() => return Err(StartFailure::Cancelled),
            };
            let code = i32::try_from(exit_status).unwrap_or(i32::MAX);
            handle.container(slot, |c| {
                c.current = Some(terminated(started, at_ms, code, exit_detail(code)));
            });
            let _ = inner.cd.destroy(&id).await;
            if code != 0 {
                handle.event(
                    Some(slot),
                    WARNING,
                    "Failed",
                    format!("init container exited with code {code}"),
                );
                return Err(StartFailure::Init {
                    slot,
                    exit_code: code,
                });
            }
        }
        let created = create_all(app_specs).await;
        checkpoint()?;
        created
    };

    // App containers start all at once.
    let starting = created.into_iter().map(|(slot, created)| {
        let start = &start;
        async move {
            match created {
                Ok(planned) => (slot, start(planned).await),
                Err(reason) => (slot, Err(reason)),
            }
        }
    });
    let started = futures::future::join_all(starting).await;
    Ok(BringUp { started })
}

/// One container of a bring-up, its spec built.
struct Planned {
    slot: usize,
    id: String,
    name: String,
    init: bool,
    oci: serde_json::Value,
    reference: String,
    chain: String,
}

/// The ports the sandbox exposes: its `ipAddress.ports`, none without an `ipAddress`. A container's own
/// `ports` only say what it listens on; as in ACI, nothing outside the group reaches them.
pub(super) fn ports(assignment: &GroupAssignment) -> Vec<PortSpec> {
    let Some(spec) = &assignment.spec else {
        return Vec::new();
    };
    let mut out: Vec<PortSpec> = Vec::new();
    for port in spec.ip_address.iter().flat_map(|ip| ip.ports.iter()) {
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let protocol = if port.protocol.eq_ignore_ascii_case("udp") {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        if !out
            .iter()
            .any(|p| p.port == number && p.protocol == protocol)
        {
            out.push(PortSpec {
                port: number,
                protocol,
            });
        }
    }
    out
}

fn empty_config() -> ImageConfig {
    ImageConfig {
        env: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        working_dir: String::new(),
        user: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::node::{Container, GroupSpec, IpAddress, Port};

    use super::*;

    fn port(port: u32, protocol: &str) -> Port {
        Port {
            port,
            protocol: protocol.to_string(),
        }
    }

    #[test]
    fn only_the_ip_address_ports_are_exposed() {
        let container = Container {
            ports: vec![port(80, "TCP"), port(81, "TCP"), port(53, "UDP")],
            ..Default::default()
        };
        let mut assignment = GroupAssignment {
            spec: Some(GroupSpec {
                containers: vec![container],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(ports(&assignment), [], "no ipAddress: nothing is exposed");

        if let Some(spec) = assignment.spec.as_mut() {
            spec.ip_address = Some(IpAddress {
                ports: vec![
                    port(80, "TCP"),
                    port(53, "udp"),
                    port(80, "TCP"),
                    port(70_000, "TCP"),
                ],
                ..Default::default()
            });
        }
        let exposed = [
            PortSpec {
                port: 80,
                protocol: Protocol::Tcp,
            },
            PortSpec {
                port: 53,
                protocol: Protocol::Udp,
            },
        ];
        assert_eq!(ports(&assignment), exposed);
    }
}
