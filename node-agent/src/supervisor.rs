//! The reconcile loop: converges the runtime to the desired state and decides which statuses to report.
//!
//! Level-triggered and idempotent. For every group that may have changed (a `DesiredState` named it,
//! or the runtime announced a change) the supervisor compares what is desired with what the runtime
//! observes, asks the runtime for one [`Action`], and reports the group's whole status if it differs
//! from the last one reported. A group that disappears from the runtime is reported once more, as
//! `REMOVED`, then forgotten. A runtime error requeues the group with back-off.
//!
//! [`fencing`]: while no apiserver is heard, the node stops its groups and starts none.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{DesiredPhase, DesiredState, GroupAssignment, GroupPhase, GroupStatus};

use crate::runtime::{Changes, Runtime};
use crate::sampling::Directory;

mod fencing;

use self::fencing::FencedRun;

/// What the runtime must do for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Desired and observed agree.
    Nothing,
    /// Run the assignment (create, restart or re-create).
    Start,
    /// Stop everything but keep the group.
    Stop,
    /// Tear the group down.
    Remove,
}

/// The one decision of the reconcile loop, pure so it can be tested on its own. A copy running with
/// another placement epoch than the assignment's is a copy of another placement (the group left the
/// node and came back): like an older generation, it is re-created.
pub fn decide(desired: Option<&GroupAssignment>, observed: Option<&GroupStatus>) -> Action {
    let Some(desired) = desired else {
        return match observed {
            Some(_) => Action::Remove,
            None => Action::Nothing,
        };
    };
    let stopped_wanted = desired.phase == DesiredPhase::Stopped as i32;
    let Some(observed) = observed else {
        return if stopped_wanted {
            Action::Stop
        } else {
            Action::Start
        };
    };
    let same_generation =
        observed.generation == desired.generation && observed.placement == desired.placement;
    let phase = observed.phase;
    if stopped_wanted {
        let may_run = phase == GroupPhase::Pending as i32 || phase == GroupPhase::Running as i32;
        if !same_generation || may_run {
            Action::Stop
        } else {
            Action::Nothing
        }
    } else if !same_generation || phase == GroupPhase::Stopped as i32 {
        Action::Start
    } else {
        Action::Nothing
    }
}

/// The shortest and longest wait before retrying a group whose runtime operation failed.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Converges one node's runtime; lives as long as the node, across stream reconnects.
pub struct Supervisor {
    runtime: Arc<dyn Runtime>,
    changes: Changes,
    desired: HashMap<String, GroupAssignment>,
    /// The last status reported per group, with `observed_unix_ms` zeroed for comparison.
    reported: HashMap<String, GroupStatus>,
    /// Consecutive runtime errors per group, for the retry back-off.
    failures: HashMap<String, u32>,
    /// No apiserver heard for `--fence-after` and no full desired state since: nothing is started.
    cut_off: bool,
    /// The runs stopped by fencing, per group; reported `STOPPED` until a new run begins.
    fenced: HashMap<String, FencedRun>,
    /// How long no apiserver had been heard when the node fenced (for the `Fenced` event).
    silent: Duration,
    /// The ARM names of the desired groups, for the sampling loop's labels.
    directory: Directory,
}

/// `DesiredState.dns_server`: an IP address, or empty for none. Anything else is taken as none.
fn advertised_dns(server: &str) -> Option<std::net::IpAddr> {
    if server.is_empty() {
        return None;
    }
    let parsed = server.parse().ok();
    if parsed.is_none() {
        tracing::warn!(
            server,
            "the apiserver advertises a nameserver that is not an IP address"
        );
    }
    parsed
}

fn comparable(status: &GroupStatus) -> GroupStatus {
    GroupStatus {
        observed_unix_ms: 0,
        ..status.clone()
    }
}

fn removed(group_id: &str, generation: u64, placement: u64) -> GroupStatus {
    GroupStatus {
        group_id: group_id.to_string(),
        generation,
        placement,
        phase: GroupPhase::Removed as i32,
        observed_unix_ms: now_ms(),
        ..Default::default()
    }
}

impl Supervisor {
    /// A supervisor over `runtime`, which announces its changes on `changes`.
    pub fn new(runtime: Arc<dyn Runtime>, changes: Changes) -> Self {
        Self {
            runtime,
            changes,
            desired: HashMap::new(),
            reported: HashMap::new(),
            failures: HashMap::new(),
            cut_off: false,
            fenced: HashMap::new(),
            silent: Duration::ZERO,
            directory: Directory::default(),
        }
    }

    /// The ARM names of the groups assigned to the node, as the supervisor keeps them.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The handle the runtime announces changes on; wait on it and pass what it yields to
    /// [`Supervisor::on_changes`].
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Everything the runtime has, for `Hello`. A new stream starts here: what was reported on the
    /// previous one no longer counts.
    pub fn hello_groups(&mut self) -> Vec<GroupStatus> {
        // A Hello is a fresh observation of every group: billing reads "still running at this time".
        let now = now_ms();
        let mut groups: Vec<GroupStatus> = self
            .runtime
            .groups()
            .into_iter()
            .map(|group| self.present(group))
            .collect();
        for group in &mut groups {
            group.observed_unix_ms = now;
        }
        self.reported = groups
            .iter()
            .map(|g| (g.group_id.clone(), comparable(g)))
            .collect();
        groups
    }

    /// Applies a `DesiredState` and returns the statuses to report, in group-id order.
    pub async fn apply(&mut self, desired: DesiredState) -> Vec<GroupStatus> {
        let mut out = Vec::new();
        let mut touched = BTreeSet::new();
        if desired.full {
            self.reconnected();
            self.runtime
                .set_advertised_dns(advertised_dns(&desired.dns_server));
            let mut next: HashMap<String, GroupAssignment> = HashMap::new();
            for assignment in desired.groups {
                let newer = next
                    .get(&assignment.group_id)
                    .is_none_or(|seen| seen.generation <= assignment.generation);
                if newer {
                    next.insert(assignment.group_id.clone(), assignment);
                }
            }
            touched.extend(self.desired.keys().cloned());
            touched.extend(next.keys().cloned());
            touched.extend(self.reported.keys().cloned());
            touched.extend(self.runtime.groups().into_iter().map(|g| g.group_id));
            self.directory.replace(next.values());
            self.desired = next;
        } else {
            for assignment in desired.groups {
                let stale = self
                    .desired
                    .get(&assignment.group_id)
                    .is_some_and(|d| d.generation > assignment.generation);
                if stale {
                    tracing::debug!(group = %assignment.group_id, "ignoring an older generation");
                    continue;
                }
                touched.insert(assignment.group_id.clone());
                self.directory.assign(&assignment);
                self.desired.insert(assignment.group_id.clone(), assignment);
            }
            for group_id in desired.removed {
                let previous = self.desired.remove(&group_id);
                self.directory.unassign(&group_id);
                let known = self.reported.contains_key(&group_id)
                    || self.runtime.status(&group_id).is_some();
                if known {
                    touched.insert(group_id);
                } else {
                    // Never had it (or already gone): confirm the removal once.
                    let (generation, placement) =
                        previous.map_or((0, 0), |p| (p.generation, p.placement));
                    out.push(removed(&group_id, generation, placement));
                }
            }
        }
        for group_id in touched {
            out.extend(self.reconcile(&group_id).await);
        }
        out
    }

    /// Reconciles groups the runtime announced and returns the statuses to report.
    pub async fn on_changes(&mut self, group_ids: Vec<String>) -> Vec<GroupStatus> {
        let mut out = Vec::new();
        for group_id in group_ids {
            out.extend(self.reconcile(&group_id).await);
        }
        out
    }

    /// Converges one group and returns its status if it changed since last reported.
    async fn reconcile(&mut self, group_id: &str) -> Option<GroupStatus> {
        let desired = self.desired.get(group_id);
        let observed = self.runtime.status(group_id);
        let mut action = decide(desired, observed.as_ref());
        let mut fence_stop = None;
        if self.cut_off {
            action = self.while_cut_off(action, observed.as_ref());
            if action == Action::Stop {
                fence_stop = observed.as_ref().map(fencing::stop_of);
            }
        }
        let desired = self.desired.get(group_id);
        let result = match (action, desired, &fence_stop) {
            (Action::Stop, _, Some(stop)) => self.runtime.stop(stop).await,
            (Action::Start, Some(assignment), _) => self.runtime.start(assignment).await,
            (Action::Stop, Some(assignment), None) => self.runtime.stop(assignment).await,
            (Action::Remove, _, _) => self.runtime.remove(group_id).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                if fence_stop.is_some() {
                    self.fence_stop_sent(group_id);
                }
                if action != Action::Nothing {
                    tracing::debug!(group = group_id, ?action, "reconciled");
                    self.failures.remove(group_id);
                }
            }
            Err(error) => {
                let failures = self.failures.entry(group_id.to_string()).or_default();
                let delay = RETRY_MIN
                    .saturating_mul(1 << (*failures).min(6))
                    .min(RETRY_MAX);
                *failures += 1;
                tracing::warn!(group = group_id, ?action, %error, ?delay, "runtime failed; retrying");
                self.changes.mark_after(group_id, delay);
            }
        }
        self.report(group_id)
    }

    /// The status to send for `group_id`, if it differs from the last one sent.
    fn report(&mut self, group_id: &str) -> Option<GroupStatus> {
        match self.runtime.status(group_id) {
            Some(status) => {
                let status = self.present(status);
                let key = comparable(&status);
                if self.reported.get(group_id) == Some(&key) {
                    return None;
                }
                self.reported.insert(group_id.to_string(), key);
                Some(status)
            }
            None => {
                self.fenced.remove(group_id);
                let last = self.reported.remove(group_id)?;
                self.failures.remove(group_id);
                Some(removed(group_id, last.generation, last.placement))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
