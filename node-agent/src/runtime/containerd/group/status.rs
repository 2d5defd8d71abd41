//! The group's observed status as the worker keeps it ([`StatusHandle`]) and the container runs it
//! is made of.

use std::sync::{Arc, Mutex, PoisonError};

use berth_proto::clock::now_ms;
use berth_proto::node::{ContainerRun, ContainerState, ContainerStatus, GroupStatus};
use prost::Message as _;

use super::readiness;
use super::{Inner, NORMAL, WARNING};
use crate::runtime::record;

/// The group's observed status, shared with [`super::ContainerdRuntime::status`]; every change is
/// saved to the group's directory (so a restarted agent knows it) and announced.
///
/// Every change also recomputes the containers' `ready` and the group's `not_ready` from what runs
/// and what the readiness probers last said (see [`readiness`]).
#[derive(Clone)]
pub(in crate::runtime::containerd) struct StatusHandle {
    observed: Arc<Mutex<Observed>>,
    inner: Arc<Inner>,
    pub(super) group_id: String,
}

struct Observed {
    status: GroupStatus,
    /// Per container of `status`: `None` without a readiness probe, else whether its probe passes.
    probed: Vec<Option<bool>>,
}

impl StatusHandle {
    pub(in crate::runtime::containerd) fn new(inner: Arc<Inner>, status: GroupStatus) -> Self {
        Self {
            group_id: status.group_id.clone(),
            observed: Arc::new(Mutex::new(Observed {
                status,
                probed: Vec::new(),
            })),
            inner,
        }
    }

    pub(in crate::runtime::containerd) fn get(&self) -> GroupStatus {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .clone()
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut GroupStatus)) {
        self.change(|observed| change(&mut observed.status));
    }

    /// What the readiness probers say: per container, `None` without a readiness probe, else
    /// whether it passes (a new plan sets them all).
    pub(super) fn set_probed(&self, probed: Vec<Option<bool>>) {
        self.change(|observed| observed.probed = probed);
    }

    /// Container `i`'s readiness probe passes (`true`) or not; nothing if it has no readiness probe.
    pub(super) fn set_ready(&self, i: usize, ready: bool) {
        self.change(|observed| {
            if let Some(Some(probed)) = observed.probed.get_mut(i) {
                *probed = ready;
            }
        });
    }

    fn change(&self, change: impl FnOnce(&mut Observed)) {
        let snapshot = {
            let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut observed);
            let Observed { status, probed } = &mut *observed;
            readiness::apply(status, probed);
            status.observed_unix_ms = now_ms();
            status.clone()
        };
        let path = self.inner.group_dir(&self.group_id).join("status.pb");
        if let Err(error) = write_atomic(&path, &snapshot.encode_to_vec()) {
            tracing::warn!(group = %self.group_id, %error, "cannot save the group's status");
        }
        self.inner.changes.mark(&self.group_id);
    }

    pub(in crate::runtime::containerd) fn event(
        &self,
        container: Option<usize>,
        kind: &str,
        name: &str,
        message: String,
    ) {
        let now = now_ms();
        self.update(|s| {
            let events = match container {
                Some(i) => match s.containers.get_mut(i) {
                    Some(c) => &mut c.events,
                    None => return,
                },
                None => &mut s.events,
            };
            record(events, now, kind, name, message);
        });
    }

    /// The `Failed` event of container `i` whose process could not be started.
    pub(super) fn start_failed(&self, i: usize, reason: &str) {
        let message = format!("Error: failed to start container: {reason}");
        self.event(Some(i), WARNING, "Failed", message);
    }

    pub(super) fn container(&self, i: usize, change: impl FnOnce(&mut ContainerStatus)) {
        self.update(|s| {
            if let Some(c) = s.containers.get_mut(i) {
                change(c);
            }
        });
    }
}

pub(super) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
    }
    std::fs::rename(tmp, path)
}

pub(super) fn waiting(detail: &str) -> ContainerRun {
    ContainerRun {
        state: ContainerState::Waiting as i32,
        detail_status: detail.to_string(),
        ..Default::default()
    }
}

fn running(start_ms: i64) -> ContainerRun {
    ContainerRun {
        state: ContainerState::Running as i32,
        start_time_unix_ms: start_ms,
        ..Default::default()
    }
}

/// Container `c` runs from `now`, with its `Started` event.
pub(super) fn mark_started(c: &mut ContainerStatus, now: i64) {
    c.current = Some(running(now));
    let message = format!("Started container {}", c.name);
    record(&mut c.events, now, NORMAL, "Started", message);
}

pub(super) fn terminated(
    start_ms: i64,
    finish_ms: i64,
    exit_code: i32,
    detail: &str,
) -> ContainerRun {
    ContainerRun {
        state: ContainerState::Terminated as i32,
        start_time_unix_ms: start_ms,
        finish_time_unix_ms: finish_ms,
        exit_code,
        detail_status: detail.to_string(),
    }
}

pub(super) fn exit_detail(exit_code: i32) -> &'static str {
    match exit_code {
        0 => "Completed",
        137 => "Killed",
        _ => "Error",
    }
}

/// The containerd id of container `index` of a group (`i` init, `c` app): short enough for
/// containerd's 76-character limit whatever the container's name.
pub(in crate::runtime::containerd) fn container_id(
    group_id: &str,
    init: bool,
    index: usize,
) -> String {
    format!("{group_id}-{}{index}", if init { 'i' } else { 'c' })
}
