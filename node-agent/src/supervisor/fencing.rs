//! Fencing, the node's half: when no apiserver has been heard for `--fence-after`, the control plane
//! may already have moved the node's groups elsewhere, so the node stops them all (the normal stop
//! with grace; sandbox and IP kept) and starts nothing until it hears a full desired state again.
//!
//! The stopped runs are remembered: until a new run of the group begins they are reported `STOPPED`
//! (with the `Fenced` event the runtime keeps), even while the runtime is still stopping them. The
//! full desired state then decides as always: groups still listed start a fresh run, the others are
//! torn down; neither is ever reported running in between.

use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{DesiredPhase, GroupAssignment, GroupPhase, GroupStatus};

use super::{Action, Supervisor};

/// The name of the event a fenced group gets.
const FENCED: &str = "Fenced";

/// One run stopped by fencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FencedRun {
    /// The run's start (node clock): a status with another start is a later run.
    run_started_unix_ms: i64,
    /// When the node fenced it: the run's end as reported.
    fenced_unix_ms: i64,
    /// The runtime accepted the stop.
    stop_sent: bool,
}

/// Whether a group in `phase` may have something running.
fn may_run(phase: i32) -> bool {
    phase == GroupPhase::Pending as i32 || phase == GroupPhase::Running as i32
}

/// The stop of the run `observed`: its own generation and placement, so the stopped status still says
/// which assignment it ran.
pub(super) fn stop_of(observed: &GroupStatus) -> GroupAssignment {
    GroupAssignment {
        group_id: observed.group_id.clone(),
        generation: observed.generation,
        placement: observed.placement,
        phase: DesiredPhase::Stopped as i32,
        spec: None,
    }
}

/// What the reconcile loop does with a group while the node is cut off: tear-downs and stops go on,
/// starts do not happen, and whatever may still run is stopped.
pub(super) fn cut_off_action(action: Action, observed: Option<&GroupStatus>) -> Action {
    match action {
        Action::Remove | Action::Stop => action,
        Action::Start | Action::Nothing => match observed {
            Some(status) if may_run(status.phase) => Action::Stop,
            _ => Action::Nothing,
        },
    }
}

impl Supervisor {
    /// Fences the node: no apiserver was heard for `silent`. Every group that may run is stopped, and
    /// nothing starts until the next full desired state. Statuses are not returned: the stream is
    /// down, and the next `Hello` says it all.
    pub async fn fence(&mut self, silent: Duration) {
        if !self.cut_off {
            tracing::warn!(
                silent_secs = silent.as_secs(),
                "no apiserver heard; fencing: stopping every group until the control plane is back"
            );
        }
        self.cut_off = true;
        self.silent = silent;
        let mut ids: Vec<String> = self
            .runtime
            .groups()
            .into_iter()
            .map(|g| g.group_id)
            .collect();
        ids.sort();
        for group_id in ids {
            let _ = self.reconcile(&group_id).await;
        }
    }

    /// Whether the node is fenced (cut off, waiting for a full desired state).
    pub fn is_fenced(&self) -> bool {
        self.cut_off
    }

    /// The action while cut off; a run about to be stopped is remembered as fenced (and gets its
    /// event) the first time.
    pub(super) fn while_cut_off(
        &mut self,
        action: Action,
        observed: Option<&GroupStatus>,
    ) -> Action {
        let action = cut_off_action(action, observed);
        if let (Action::Stop, Some(status)) = (action, observed) {
            let known = self
                .fenced
                .get(&status.group_id)
                .is_some_and(|run| run.run_started_unix_ms == status.run_started_unix_ms);
            if known {
                // Asked once; the runtime is on it (a failed stop is retried: `stop_sent` is false).
                if self.fenced[&status.group_id].stop_sent {
                    return Action::Nothing;
                }
            } else {
                let message = format!("no apiserver heard for {} s", self.silent.as_secs());
                self.runtime
                    .record_event(&status.group_id, "Warning", FENCED, message);
                self.fenced.insert(
                    status.group_id.clone(),
                    FencedRun {
                        run_started_unix_ms: status.run_started_unix_ms,
                        fenced_unix_ms: now_ms(),
                        stop_sent: false,
                    },
                );
            }
        }
        action
    }

    /// The runtime accepted the fencing stop of `group_id`.
    pub(super) fn fence_stop_sent(&mut self, group_id: &str) {
        if let Some(run) = self.fenced.get_mut(group_id) {
            run.stop_sent = true;
        }
    }

    /// A full desired state arrived: the control plane is back and decides again. Runs whose stop never
    /// reached the runtime are running still, and are reported as they are.
    pub(super) fn reconnected(&mut self) {
        if self.cut_off {
            tracing::info!(
                fenced = self.fenced.len(),
                "full desired state heard: fencing over"
            );
        }
        self.cut_off = false;
        self.fenced.retain(|_, run| run.stop_sent);
    }

    /// `status` as reported: a fenced run is `STOPPED`, ended when it was fenced, whatever the runtime
    /// still does to stop it. A later run ends the fence of its group.
    pub(super) fn present(&mut self, mut status: GroupStatus) -> GroupStatus {
        let Some(run) = self.fenced.get(&status.group_id).copied() else {
            return status;
        };
        if status.run_started_unix_ms != run.run_started_unix_ms {
            if !self.cut_off {
                self.fenced.remove(&status.group_id);
            }
            return status;
        }
        if may_run(status.phase) {
            status.phase = GroupPhase::Stopped as i32;
        }
        if status.run_finished_unix_ms == 0 {
            status.run_finished_unix_ms = run.fenced_unix_ms;
        }
        status
    }
}
