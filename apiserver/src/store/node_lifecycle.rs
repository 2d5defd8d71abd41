//! Nodes leaving: lost (silent past `--node-lost-after`), cordoned, drained, deleted. The rule for
//! which groups run again elsewhere ([`runs_again_elsewhere`]) is pure and shared by both backends.

use super::rows::json;
use super::{GroupEvent, GroupRecord, ProvisioningState, Result, merge_event, provisioning_for};
use crate::model::reported::{EventKind, GroupPhase};

/// What taking every group off a node did (a lost node, a drain, a forced delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unassigned {
    /// Groups waiting for a node again (their restart policy runs them again): the scheduler places
    /// them through the normal rounds, with a new placement epoch.
    pub moved: Vec<String>,
    /// Groups that had finished and whose policy does not run them again: taken off the node, their
    /// last status kept, never placed again until started or restarted.
    pub settled: Vec<String>,
}

impl Unassigned {
    /// Every group taken off the node (the node's stream is told to remove them all).
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.moved.iter().chain(self.settled.iter())
    }
}

/// Why a node delete was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeDeleteRefusal {
    /// Groups are still assigned to it (drain it first, or force).
    NotEmpty { groups: u64 },
}

/// Whether a group on a lost or drained node is placed again: `Always` always; `OnFailure` unless
/// it succeeded; `Never` only if it had not finished. `phase` is the node's last report of it
/// (`None`: never reported).
pub fn runs_again_elsewhere(restart_policy: &str, phase: Option<GroupPhase>) -> bool {
    match restart_policy {
        "OnFailure" => phase != Some(GroupPhase::Succeeded),
        "Never" => !matches!(phase, Some(GroupPhase::Succeeded | GroupPhase::Failed)),
        // Always, and (never stored) anything else: ACI's default runs it again.
        _ => true,
    }
}

/// Why every group was taken off a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Eviction {
    /// Silent since `last_heard_ms` (apiserver clock), past `--node-lost-after`, or deleted by force.
    Lost { last_heard_ms: i64 },
    /// An operator drained it.
    Drained,
}

/// What becomes of one group taken off its node (both backends write exactly this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TakenOff {
    pub id: String,
    /// Pending again (status cleared, waiting since now); else settled (status kept).
    pub moved: bool,
    /// Pending if moved; a settled group's is what its last report says (no longer `Unhealthy`).
    pub provisioning_state: ProvisioningState,
    /// Its events with the eviction's event merged in, as stored (JSON).
    pub events: String,
}

/// Decides, for one group on a node being lost or drained, whether it moves or settles, and adds
/// the event saying so (`NodeLost` Warning, `NodeDrained` Normal).
pub(super) fn take_off(
    group: &GroupRecord,
    node_name: &str,
    why: Eviction,
    now_ms: i64,
) -> TakenOff {
    let moved = runs_again_elsewhere(
        group.spec.restart_policy.as_str(),
        group.status.as_ref().map(|s| s.phase),
    );
    let outcome = if moved {
        "placing the group on another node."
    } else {
        "the group had finished and its restart policy does not run it again."
    };
    let (name, kind, message) = match why {
        Eviction::Lost { last_heard_ms } => (
            "NodeLost",
            EventKind::Warning,
            format!(
                "Node {node_name} stopped reporting at {}; {outcome}",
                crate::render::timestamp(last_heard_ms)
            ),
        ),
        Eviction::Drained => (
            "NodeDrained",
            EventKind::Normal,
            format!("Node {node_name} is being drained; {outcome}"),
        ),
    };
    let mut events = group.events.clone();
    merge_event(
        &mut events,
        GroupEvent {
            name: name.to_owned(),
            message,
            kind,
            count: 1,
            first_ms: now_ms,
            last_ms: now_ms,
        },
    );
    let provisioning_state = match &group.status {
        _ if moved => ProvisioningState::Pending,
        Some(status) => provisioning_for(status).unwrap_or(group.provisioning_state),
        None => group.provisioning_state,
    };
    TakenOff {
        id: group.id.clone(),
        moved,
        provisioning_state,
        events: json(&events),
    }
}

impl Unassigned {
    /// The answer for these groups, in their order.
    pub(super) fn of(taken: &[TakenOff]) -> Unassigned {
        let (moved, settled): (Vec<&TakenOff>, Vec<&TakenOff>) =
            taken.iter().partition(|t| t.moved);
        Unassigned {
            moved: moved.into_iter().map(|t| t.id.clone()).collect(),
            settled: settled.into_iter().map(|t| t.id.clone()).collect(),
        }
    }
}

/// Lost, cordoned, drained and deleted nodes.
#[async_trait::async_trait]
pub trait NodeLifecycleStore: Send + Sync {
    /// Judges a node lost, in one transaction: only if it is `NotReady` and its stored
    /// `last_heartbeat_ms` is not after `not_heard_since_ms` (no replica heard from it since; with
    /// `force`, whatever its status, and it is cordoned too: it is being deleted). Sets it `Lost`;
    /// takes every group off it (capacity released, `used` back to zero, a new placement epoch);
    /// each group [`runs_again_elsewhere`] goes back to Pending (status cleared, `pending_since_ms =
    /// now_ms`, event `NodeLost`), the others are settled (event `NodeLost` too). Billing of its runs
    /// ended at its last heartbeat already (NotReady; a forced loss ends them there) and never
    /// reopens: the node's later reports about them carry an old epoch, and are neither applied nor
    /// metered. `None`: no such node, or the guard did not hold.
    async fn lose_node(
        &self,
        id: &str,
        not_heard_since_ms: i64,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<Unassigned>>;
    /// Cordons (no new placement) or uncordons a node; uncordon also ends a drain. Returns whether
    /// the node exists.
    async fn set_cordoned(&self, id: &str, cordoned: bool) -> Result<bool>;
    /// Cordons the node, marks it draining, and takes every group off it as a stop does (billing of
    /// each run ends at `now_ms`), moving or settling each as [`NodeLifecycleStore::lose_node`] does
    /// (event `NodeDrained`). `None`: no such node.
    async fn drain_node(&self, id: &str, now_ms: i64) -> Result<Option<Unassigned>>;
    /// Deletes a node with no group assigned (`Ok(Err(NotEmpty))` otherwise); `false`: no such node.
    async fn delete_node(&self, id: &str) -> Result<std::result::Result<bool, NodeDeleteRefusal>>;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PHASES: [Option<GroupPhase>; 8] = [
        None,
        Some(GroupPhase::Unspecified),
        Some(GroupPhase::Pending),
        Some(GroupPhase::Running),
        Some(GroupPhase::Succeeded),
        Some(GroupPhase::Failed),
        Some(GroupPhase::Stopped),
        Some(GroupPhase::Removed),
    ];

    #[test]
    fn the_restart_policy_decides_who_runs_again() {
        use GroupPhase::*;
        let table = [
            ("Always", Some(Succeeded), true),
            ("Always", Some(Failed), true),
            ("Always", None, true),
            ("OnFailure", Some(Succeeded), false),
            ("OnFailure", Some(Failed), true),
            ("OnFailure", Some(Running), true),
            ("OnFailure", None, true),
            ("Never", Some(Succeeded), false),
            ("Never", Some(Failed), false),
            ("Never", Some(Running), true),
            ("Never", Some(Pending), true),
            ("Never", Some(Stopped), true),
            ("Never", None, true),
        ];
        for (policy, phase, expected) in table {
            assert_eq!(
                runs_again_elsewhere(policy, phase),
                expected,
                "{policy} {phase:?}"
            );
        }
    }

    proptest! {
        /// Whatever the phase: Always runs again; a group that has not finished runs again under
        /// every policy; the stricter the policy, the fewer run again (Never ⊆ OnFailure ⊆ Always).
        #[test]
        fn stricter_policies_run_no_more_groups_again(i in 0..PHASES.len()) {
            let phase = PHASES[i];
            let always = runs_again_elsewhere("Always", phase);
            let on_failure = runs_again_elsewhere("OnFailure", phase);
            let never = runs_again_elsewhere("Never", phase);
            prop_assert!(always);
            prop_assert!(!never || on_failure);
            let finished = matches!(phase, Some(GroupPhase::Succeeded | GroupPhase::Failed));
            prop_assert_eq!(never, !finished);
            prop_assert_eq!(on_failure, phase != Some(GroupPhase::Succeeded));
        }

        /// A policy the store never writes is treated as ACI's default, Always.
        #[test]
        fn an_unknown_policy_runs_again(policy in "\\PC*", i in 0..PHASES.len()) {
            prop_assume!(policy != "OnFailure" && policy != "Never");
            prop_assert!(runs_again_elsewhere(&policy, PHASES[i]));
        }
    }
}
