//! Liveness and readiness probes, ACI's way: `exec` (a command run in the container through
//! containerd exec; exit 0 passes) or `httpGet` (from inside the group's network namespace; a status
//! 200-399 passes), every `periodSeconds` after `initialDelaySeconds`, each bounded by
//! `timeoutSeconds`, judged by `failureThreshold` / `successThreshold`. Kubernetes' defaults where ACI
//! documents none: period 10 s, timeout 1 s, failure 3, success 1, initial delay 0.
//!
//! One prober task per probe of a running task ([`spawn`]); it tells its worker only changes
//! ([`Verdict`]), and the worker acts on them (events, ready bits, killing and restarting).

// TODO(probes lane): the state machine (pure, proptested), the exec and httpGet runners, the loop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::node::Probe;
use tokio::task::AbortHandle;

use super::Inner;

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeKind {
    Liveness,
    Readiness,
}

/// A change a prober reports to its worker (only changes, never every result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Readiness: the container became ready (`true`), or stopped being ready (`false`; `output`
    /// says what the failing probe printed or why it failed).
    Ready { ready: bool, output: String },
    /// Liveness: `failureThreshold` probes in a row failed. The worker records `Unhealthy` and
    /// `Killing`, kills the task and lets the restart policy decide. The prober ends after this.
    Unhealthy { output: String },
}

/// The task a prober watches.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The containerd container id (exec probes run in it).
    pub container_id: String,
    /// The process of the task being probed: the run the verdicts are about.
    pub pid: u32,
    /// The group's network namespace (httpGet probes connect from inside it).
    pub netns: PathBuf,
    /// The group's address, which httpGet probes connect to (as kubelet connects to the pod IP);
    /// `None` when the group has none (then loopback, inside the namespace).
    pub ip: Option<std::net::IpAddr>,
}

/// Starts probing `target` with `probe`; `report` is called with every [`Verdict`]. Aborting the
/// returned handle stops the prober (the worker does when the task exits or is stopped).
pub(super) fn spawn(
    inner: Arc<Inner>,
    target: Target,
    kind: ProbeKind,
    probe: Probe,
    report: impl Fn(Verdict) + Send + Sync + 'static,
) -> AbortHandle {
    let _ = (inner, target, kind, probe, report);
    tokio::spawn(std::future::pending::<()>()).abort_handle()
}
