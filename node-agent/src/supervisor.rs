//! The reconcile loop: converges the runtime to the desired state and decides which statuses to report.
//!
//! Level-triggered and idempotent. For every group that may have changed (a `DesiredState` named it,
//! or the runtime announced a change) the supervisor compares what is desired with what the runtime
//! observes, asks the runtime for one [`Action`], and reports the group's whole status if it differs
//! from the last one reported. A group that disappears from the runtime is reported once more, as
//! `REMOVED`, then forgotten. A runtime error requeues the group with back-off.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{DesiredPhase, DesiredState, GroupAssignment, GroupPhase, GroupStatus};

use crate::runtime::{Changes, Runtime};

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

/// The one decision of the reconcile loop, pure so it can be tested on its own.
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
    let same_generation = observed.generation == desired.generation;
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
}

fn comparable(status: &GroupStatus) -> GroupStatus {
    GroupStatus {
        observed_unix_ms: 0,
        ..status.clone()
    }
}

fn removed(group_id: &str, generation: u64) -> GroupStatus {
    GroupStatus {
        group_id: group_id.to_string(),
        generation,
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
        }
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
        let mut groups = self.runtime.groups();
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
                self.desired.insert(assignment.group_id.clone(), assignment);
            }
            for group_id in desired.removed {
                let previous = self.desired.remove(&group_id);
                let known = self.reported.contains_key(&group_id)
                    || self.runtime.status(&group_id).is_some();
                if known {
                    touched.insert(group_id);
                } else {
                    // Never had it (or already gone): confirm the removal once.
                    let generation = previous.map_or(0, |p| p.generation);
                    out.push(removed(&group_id, generation));
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
        let action = decide(desired, observed.as_ref());
        let result = match (action, desired) {
            (Action::Start, Some(assignment)) => self.runtime.start(assignment).await,
            (Action::Stop, Some(assignment)) => self.runtime.stop(assignment).await,
            (Action::Remove, _) => self.runtime.remove(group_id).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
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
                let key = comparable(&status);
                if self.reported.get(group_id) == Some(&key) {
                    return None;
                }
                self.reported.insert(group_id.to_string(), key);
                Some(status)
            }
            None => {
                let last = self.reported.remove(group_id)?;
                self.failures.remove(group_id);
                Some(removed(group_id, last.generation))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::hollow::{HollowConfig, HollowRuntime};
    use berth_proto::node::{Container, ContainerState, GroupSpec};

    fn assignment(id: &str, generation: u64, phase: DesiredPhase, image: &str) -> GroupAssignment {
        GroupAssignment {
            placement: 1,
            group_id: id.into(),
            generation,
            phase: phase as i32,
            spec: Some(GroupSpec {
                name: id.into(),
                restart_policy: "Always".into(),
                containers: vec![Container {
                    name: "app".into(),
                    image: image.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn running(id: &str, generation: u64) -> GroupAssignment {
        assignment(id, generation, DesiredPhase::Running, "nginx")
    }

    fn full(groups: Vec<GroupAssignment>) -> DesiredState {
        DesiredState {
            full: true,
            groups,
            ..Default::default()
        }
    }

    fn delta(groups: Vec<GroupAssignment>, removed: &[&str]) -> DesiredState {
        DesiredState {
            full: false,
            groups,
            removed: removed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn supervisor() -> Supervisor {
        let changes = Changes::default();
        let runtime = HollowRuntime::new(HollowConfig::default(), "node-a", changes.clone());
        Supervisor::new(Arc::new(runtime), changes)
    }

    /// Lets the runtime's timers fire and feeds the changes to the supervisor until it is quiet.
    async fn settle(sup: &mut Supervisor) -> Vec<GroupStatus> {
        let mut out = Vec::new();
        let changes = sup.changes().clone();
        while let Ok(ids) = tokio::time::timeout(Duration::from_secs(1), changes.next()).await {
            out.extend(sup.on_changes(ids).await);
        }
        out
    }

    fn phase(s: &GroupStatus) -> GroupPhase {
        GroupPhase::try_from(s.phase).unwrap()
    }

    #[test]
    fn decide_covers_the_table() {
        let run1 = running("g", 1);
        let stop2 = assignment("g", 2, DesiredPhase::Stopped, "nginx");
        let obs = |generation, phase: GroupPhase| GroupStatus {
            group_id: "g".into(),
            generation,
            phase: phase as i32,
            ..Default::default()
        };
        assert_eq!(decide(None, None), Action::Nothing);
        assert_eq!(
            decide(None, Some(&obs(1, GroupPhase::Running))),
            Action::Remove
        );
        assert_eq!(decide(Some(&run1), None), Action::Start);
        assert_eq!(
            decide(Some(&run1), Some(&obs(1, GroupPhase::Running))),
            Action::Nothing
        );
        assert_eq!(
            decide(Some(&run1), Some(&obs(1, GroupPhase::Failed))),
            Action::Nothing
        );
        assert_eq!(
            decide(Some(&run1), Some(&obs(1, GroupPhase::Stopped))),
            Action::Start
        );
        assert_eq!(
            decide(Some(&run1), Some(&obs(0, GroupPhase::Running))),
            Action::Start
        );
        assert_eq!(decide(Some(&stop2), None), Action::Stop);
        assert_eq!(
            decide(Some(&stop2), Some(&obs(1, GroupPhase::Running))),
            Action::Stop
        );
        assert_eq!(
            decide(Some(&stop2), Some(&obs(2, GroupPhase::Running))),
            Action::Stop
        );
        assert_eq!(
            decide(Some(&stop2), Some(&obs(2, GroupPhase::Stopped))),
            Action::Nothing
        );
        assert_eq!(
            decide(Some(&stop2), Some(&obs(1, GroupPhase::Stopped))),
            Action::Stop
        );
    }

    #[tokio::test(start_paused = true)]
    async fn full_state_starts_what_is_desired_and_removes_everything_else() {
        let mut sup = supervisor();
        let out = sup
            .apply(full(vec![running("a", 1), running("b", 1)]))
            .await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| phase(s) == GroupPhase::Pending));
        let out = settle(&mut sup).await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| phase(s) == GroupPhase::Running));

        // A new full state without "a": "a" is torn down and reported REMOVED exactly once.
        let mut out = sup.apply(full(vec![running("b", 1)])).await;
        out.extend(settle(&mut sup).await);
        let about_a: Vec<_> = out.iter().filter(|s| s.group_id == "a").collect();
        let removals: Vec<_> = about_a
            .iter()
            .filter(|s| phase(s) == GroupPhase::Removed)
            .collect();
        assert_eq!(removals.len(), 1, "{out:#?}");
        assert_eq!(removals[0].generation, 1);
        assert!(
            out.iter().all(|s| s.group_id != "b"),
            "b did not change: {out:#?}"
        );
        assert!(sup.runtime.status("a").is_none());

        // Nothing more is said about "a", however often the same state is applied.
        let mut again = sup.apply(full(vec![running("b", 1)])).await;
        again.extend(settle(&mut sup).await);
        assert!(again.is_empty(), "{again:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn full_state_removes_groups_the_runtime_has_but_nobody_asked_for() {
        let mut sup = supervisor();
        // The runtime already runs "stray" (e.g. from before a reconnect), reported in Hello.
        sup.runtime.start(&running("stray", 3)).await.unwrap();
        let hello = sup.hello_groups();
        assert_eq!(hello.len(), 1);
        let mut out = sup.apply(full(vec![])).await;
        out.extend(settle(&mut sup).await);
        let last = out.last().unwrap();
        assert_eq!(last.group_id, "stray");
        assert_eq!(phase(last), GroupPhase::Removed);
        assert_eq!(last.generation, 3);
        assert_eq!(
            out.iter()
                .filter(|s| phase(s) == GroupPhase::Removed)
                .count(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delta_with_a_newer_generation_restarts_and_an_older_one_is_ignored() {
        let mut sup = supervisor();
        sup.apply(full(vec![running("a", 1)])).await;
        settle(&mut sup).await;
        let first = sup.runtime.status("a").unwrap();
        let first_start = first.containers[0]
            .current
            .as_ref()
            .unwrap()
            .start_time_unix_ms;

        tokio::time::advance(Duration::from_secs(5)).await;
        let out = sup.apply(delta(vec![running("a", 2)], &[])).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].generation, 2);
        assert_eq!(phase(&out[0]), GroupPhase::Pending);
        let out = settle(&mut sup).await;
        let restarted = out.last().unwrap();
        assert_eq!(phase(restarted), GroupPhase::Running);
        let container = &restarted.containers[0];
        let current = container.current.as_ref().unwrap();
        assert_eq!(current.state, ContainerState::Running as i32);
        assert!(current.start_time_unix_ms >= first_start + 5000);
        assert_eq!(
            container.previous.as_ref().unwrap().start_time_unix_ms,
            first_start
        );

        // An older generation arriving late changes nothing.
        let out = sup.apply(delta(vec![running("a", 1)], &[])).await;
        assert!(out.is_empty(), "{out:#?}");
        assert!(settle(&mut sup).await.is_empty());
        assert_eq!(sup.runtime.status("a").unwrap().generation, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn statuses_are_whole_and_never_repeated() {
        let mut sup = supervisor();
        let mut out = sup.apply(full(vec![running("a", 1)])).await;
        out.extend(settle(&mut sup).await);
        for status in &out {
            assert_eq!(status.group_id, "a");
            assert_eq!(status.containers.len(), 1, "whole status: {status:#?}");
            assert!(!status.ip.is_empty());
            assert!(status.observed_unix_ms > 0);
        }
        // The same desired state twice is a no-op.
        assert!(sup.apply(full(vec![running("a", 1)])).await.is_empty());
        assert!(
            sup.apply(delta(vec![running("a", 1)], &[]))
                .await
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_then_start_again() {
        let mut sup = supervisor();
        sup.apply(full(vec![running("a", 1)])).await;
        settle(&mut sup).await;
        let stop = assignment("a", 2, DesiredPhase::Stopped, "nginx");
        let mut out = sup.apply(delta(vec![stop], &[])).await;
        out.extend(settle(&mut sup).await);
        let stopped = out.last().unwrap();
        assert_eq!(phase(stopped), GroupPhase::Stopped);
        assert_eq!(stopped.generation, 2);
        assert!(stopped.run_finished_unix_ms > 0);
        assert_eq!(
            stopped.containers[0].current.as_ref().unwrap().state,
            ContainerState::Terminated as i32
        );

        let mut out = sup.apply(delta(vec![running("a", 3)], &[])).await;
        out.extend(settle(&mut sup).await);
        let started = out.last().unwrap();
        assert_eq!(phase(started), GroupPhase::Running);
        assert_eq!(started.generation, 3);
        assert_eq!(started.run_finished_unix_ms, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn removing_an_unknown_group_is_confirmed_once() {
        let mut sup = supervisor();
        let out = sup.apply(delta(vec![], &["ghost"])).await;
        assert_eq!(out.len(), 1);
        assert_eq!(phase(&out[0]), GroupPhase::Removed);
        assert!(settle(&mut sup).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delta_removal_tears_down_and_reports_removed_once() {
        let mut sup = supervisor();
        sup.apply(full(vec![running("a", 1), running("b", 1)]))
            .await;
        settle(&mut sup).await;
        let mut out = sup.apply(delta(vec![], &["a"])).await;
        out.extend(settle(&mut sup).await);
        let removals: Vec<_> = out
            .iter()
            .filter(|s| phase(s) == GroupPhase::Removed)
            .collect();
        assert_eq!(removals.len(), 1);
        assert_eq!(removals[0].group_id, "a");
        assert!(sup.runtime.status("b").is_some());
        // The teardown is over: later changes say nothing more about "a".
        assert!(sup.on_changes(vec!["a".into()]).await.is_empty());
        // A removal asked for again is answered again (a status applied twice changes nothing).
        let again = sup.apply(delta(vec![], &["a"])).await;
        assert_eq!(again.len(), 1);
        assert_eq!(phase(&again[0]), GroupPhase::Removed);
    }
}
