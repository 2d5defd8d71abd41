//! Nodes leaving: a lost node gives up its groups by their restart policy, its copies' reports are
//! fenced by the placement epoch, cordon keeps placements off, drain moves everything and ends
//! billing now, delete only empties; billing bills each second of a moved group once.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fixtures::{
    create_placed, group, join, new_group, new_group_with, operation, placement, report,
    run_report, used_cpu,
};
use crate::model::RestartPolicy;
use crate::model::reported::{EventKind, GroupPhase, ReportedStatus};
use crate::store::{
    Heartbeat, NodeDeleteRefusal, NodeReport, NodeStatus, OperationKind, ProvisioningState,
    StatusOutcome, Store, Unassigned, UsageFilter,
};

fn beat(node_id: &str, at_ms: i64, node_clock_ms: i64) -> Heartbeat {
    Heartbeat {
        node_id: node_id.to_owned(),
        at_ms,
        node_clock_ms,
    }
}

async fn not_ready(store: &dyn Store, node_id: &str, last_ms: i64) {
    assert!(
        store
            .set_node_status(node_id, NodeStatus::NotReady, last_ms, 0)
            .await
            .unwrap(),
        "{node_id} goes NotReady"
    );
}

/// Judges `node_id` lost (NotReady first), silent since `last_ms`.
async fn lose(store: &dyn Store, node_id: &str, last_ms: i64, now_ms: i64) -> Unassigned {
    not_ready(store, node_id, last_ms).await;
    store
        .lose_node(node_id, last_ms, now_ms, false)
        .await
        .unwrap()
        .expect("the node is lost")
}

/// One report through the batch path (the gateway's), with the node's clock.
async fn fold(
    store: &dyn Store,
    node_id: &str,
    status: ReportedStatus,
    now_ms: i64,
) -> StatusOutcome {
    let clock = status.observed_unix_ms;
    let outcomes = store
        .apply_statuses(
            &[NodeReport {
                node_id: node_id.to_owned(),
                seq: now_ms as u64,
                status,
            }],
            &[(node_id.to_owned(), clock)],
            now_ms,
        )
        .await
        .unwrap();
    outcomes[0].clone()
}

fn applied(state: ProvisioningState) -> StatusOutcome {
    StatusOutcome::Applied {
        provisioning_state: state,
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The vCPU time billed for `group_id` per node (ms: the ledger's net quantity over the group's
/// request) and whether any of it is still accruing, as an export at `now_ms` reads it.
async fn billed(
    store: &Arc<dyn Store>,
    group_id: &str,
    cpu_millis: i64,
    now_ms: i64,
) -> BTreeMap<String, (i64, bool)> {
    let store = store.clone();
    let group_id = group_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut reader = store.usage_reader().unwrap();
        let filter = UsageFilter {
            from_ms: 0,
            to_ms: 10 * 86_400_000,
            subscription: None,
        };
        let mut per_node: BTreeMap<String, (i64, bool)> = BTreeMap::new();
        reader
            .read(&filter, now_ms, &mut |row| {
                if row.group.id == group_id && row.meter == "linux/vcpu_seconds" {
                    let entry = per_node.entry(row.group.node_id.to_owned()).or_default();
                    entry.0 += row.quantity;
                    entry.1 |= row.accrued;
                }
                Ok(())
            })
            .unwrap();
        per_node
            .into_iter()
            .map(|(node, (quantity, accrued))| (node, (quantity / cpu_millis, accrued)))
            .collect()
    })
    .await
    .unwrap()
}

pub(crate) async fn a_loss_needs_not_ready_and_yields_to_a_later_heartbeat(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    assert_eq!(
        store.lose_node("n1", 100, 200, false).await.unwrap(),
        None,
        "a Ready node is not lost"
    );
    store
        .record_heartbeats(&[beat("n1", 50, 50)])
        .await
        .unwrap();
    not_ready(&*store, "n1", 50).await;
    // Another replica heard it after this one judged: the judgement does not hold.
    store
        .record_heartbeats(&[beat("n1", 80, 80)])
        .await
        .unwrap();
    assert_eq!(store.lose_node("n1", 50, 200, false).await.unwrap(), None);
    let node = store.node("n1").await.unwrap().unwrap();
    assert_eq!(node.status, NodeStatus::NotReady);
    assert_eq!(
        store.lose_node("n1", 80, 200, false).await.unwrap(),
        Some(Unassigned::default())
    );
    let node = store.node("n1").await.unwrap().unwrap();
    assert_eq!(node.status, NodeStatus::Lost);
    assert!(!node.cordoned, "a loss is no operator's cordon");
    assert_eq!(
        store.lose_node("n1", 80, 300, false).await.unwrap(),
        None,
        "lost once"
    );
    // Heard again: Ready, as from NotReady.
    assert!(
        store
            .set_node_status("n1", NodeStatus::Ready, 400, 0)
            .await
            .unwrap()
    );
    assert_eq!(
        store.node("n1").await.unwrap().unwrap().status,
        NodeStatus::Ready
    );
    // Forced: whatever its status, and cordoned (it is being deleted).
    join(&*store, "n2", 4000).await;
    assert_eq!(
        store.lose_node("n2", 0, 300, true).await.unwrap(),
        Some(Unassigned::default())
    );
    let node = store.node("n2").await.unwrap().unwrap();
    assert_eq!((node.status, node.cordoned), (NodeStatus::Lost, true));
    assert_eq!(store.lose_node("nope", 0, 300, true).await.unwrap(), None);
}

pub(crate) async fn a_lost_node_gives_up_its_groups_by_restart_policy(store: Arc<dyn Store>) {
    join(&*store, "n1", 8000).await;
    let cases = [
        (
            "always-done",
            RestartPolicy::Always,
            Some(GroupPhase::Succeeded),
            true,
        ),
        (
            "onfailure-ok",
            RestartPolicy::OnFailure,
            Some(GroupPhase::Succeeded),
            false,
        ),
        (
            "onfailure-bad",
            RestartPolicy::OnFailure,
            Some(GroupPhase::Failed),
            true,
        ),
        (
            "never-bad",
            RestartPolicy::Never,
            Some(GroupPhase::Failed),
            false,
        ),
        (
            "never-running",
            RestartPolicy::Never,
            Some(GroupPhase::Running),
            true,
        ),
        ("silent", RestartPolicy::Always, None, true),
    ];
    let mut moved = Vec::new();
    let mut settled = Vec::new();
    let mut ids = BTreeMap::new();
    for (name, policy, phase, moves) in cases {
        let g = new_group_with(name, 1000, policy);
        create_placed(&*store, &g, "n1").await;
        if let Some(phase) = phase {
            let outcome = store
                .apply_status("n1", &report(&g.id, 1, phase), 3)
                .await
                .unwrap();
            assert!(matches!(outcome, StatusOutcome::Applied { .. }), "{name}");
        }
        if moves { &mut moved } else { &mut settled }.push(g.id.clone());
        ids.insert(g.id.clone(), (name, phase, moves));
    }
    assert_eq!(used_cpu(&*store, "n1").await, 6000);

    let unassigned = lose(&*store, "n1", 10, 500).await;
    assert_eq!(sorted(unassigned.moved.clone()), sorted(moved.clone()));
    assert_eq!(sorted(unassigned.settled.clone()), sorted(settled.clone()));
    let node = store.node("n1").await.unwrap().unwrap();
    assert_eq!(node.status, NodeStatus::Lost);
    assert_eq!(
        node.used,
        crate::model::Size::default(),
        "capacity released"
    );
    assert!(store.groups_on_node("n1").await.unwrap().is_empty());
    assert!(store.group_counts_by_node().await.unwrap().is_empty());

    for (id, (name, phase, moves)) in &ids {
        let g = group(&*store, id).await;
        assert_eq!(g.node_id, None, "{name}");
        assert_eq!(
            g.placement, 2,
            "{name}: the old copy's epoch is stale at once"
        );
        let event = g.events.iter().find(|e| e.name == "NodeLost").expect(name);
        assert_eq!(event.kind, EventKind::Warning);
        assert!(
            event
                .message
                .starts_with("Node n1 stopped reporting at 1970-01-01T00:00:00"),
            "{name}: {}",
            event.message
        );
        if *moves {
            assert_eq!(g.provisioning_state, ProvisioningState::Pending, "{name}");
            assert_eq!(g.status, None, "{name}: the old run is gone");
            assert!(
                event
                    .message
                    .ends_with("; placing the group on another node.")
            );
        } else {
            assert_eq!(
                g.status.map(|s| s.phase),
                *phase,
                "{name}: its last status is kept"
            );
            assert_ne!(g.provisioning_state, ProvisioningState::Unhealthy, "{name}");
            assert!(event.message.ends_with(
                "; the group had finished and its restart policy does not run it again."
            ));
        }
    }
    let pending = store.pending_groups(100).await.unwrap();
    assert_eq!(
        sorted(pending.iter().map(|p| p.id.clone()).collect()),
        sorted(moved),
        "the moved wait for a node, the settled do not"
    );
    assert!(pending.iter().all(|p| p.pending_since_ms == 500));
}

pub(crate) async fn reports_of_a_copy_left_behind_are_ignored(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    join(&*store, "n2", 4000).await;
    let g = new_group("fenced", 1000);
    create_placed(&*store, &g, "n1").await;
    assert_eq!(group(&*store, &g.id).await.placement, 1);
    let first = report(&g.id, 1, GroupPhase::Running);
    assert_eq!(
        store.apply_status("n1", &first, 3).await.unwrap(),
        applied(ProvisioningState::Succeeded)
    );
    assert_eq!(lose(&*store, "n1", 10, 20).await.moved, vec![g.id.clone()]);
    assert_eq!(
        store.apply_status("n1", &first, 21).await.unwrap(),
        StatusOutcome::Ignored
    );
    assert_eq!(
        fold(&*store, "n1", first.clone(), 21).await,
        StatusOutcome::Ignored
    );

    // A lost node places nothing; another does, with a new epoch.
    let waited = crate::store::GroupEvent {
        name: "FailedScheduling".to_owned(),
        message: "no node".to_owned(),
        kind: EventKind::Warning,
        count: 1,
        first_ms: 25,
        last_ms: 25,
    };
    store.record_event(&g.id, waited).await.unwrap();
    let again = placement(&g, "n1", 1);
    assert!(
        store
            .commit_placements(&[again], 30)
            .await
            .unwrap()
            .is_empty()
    );
    let placed = store
        .commit_placements(&[placement(&g, "n2", 1)], 30)
        .await
        .unwrap();
    assert_eq!(placed.len(), 1);
    let placed_again = group(&*store, &g.id).await;
    let epoch = placed_again.placement;
    assert_eq!(epoch, 3);
    assert!(
        placed_again.events.iter().any(|e| e.name == "NodeLost"),
        "its events still say why it moved"
    );
    assert!(
        !placed_again
            .events
            .iter()
            .any(|e| e.name == "FailedScheduling")
    );
    // From the right node but an old copy: ignored.
    assert_eq!(
        store.apply_status("n2", &first, 31).await.unwrap(),
        StatusOutcome::Ignored
    );
    let current = ReportedStatus {
        placement: epoch as u64,
        ..first.clone()
    };
    assert_eq!(
        fold(&*store, "n2", current, 32).await,
        applied(ProvisioningState::Succeeded)
    );

    // Placed back on the first node once it is Ready again: its old copy still reports the first
    // epoch, and is still ignored; the new copy counts.
    assert_eq!(lose(&*store, "n2", 40, 50).await.moved, vec![g.id.clone()]);
    assert!(
        store
            .set_node_status("n1", NodeStatus::Ready, 60, 0)
            .await
            .unwrap()
    );
    let placed = store
        .commit_placements(&[placement(&g, "n1", 1)], 61)
        .await
        .unwrap();
    assert_eq!(placed.len(), 1);
    let epoch = group(&*store, &g.id).await.placement;
    assert_eq!(epoch, 5);
    assert_eq!(
        fold(&*store, "n1", first.clone(), 62).await,
        StatusOutcome::Ignored
    );
    assert_eq!(
        store.apply_status("n1", &first, 62).await.unwrap(),
        StatusOutcome::Ignored
    );
    assert_eq!(group(&*store, &g.id).await.status, None);
    let current = ReportedStatus {
        placement: epoch as u64,
        ..first
    };
    assert_eq!(
        store.apply_status("n1", &current, 63).await.unwrap(),
        applied(ProvisioningState::Succeeded)
    );
}

pub(crate) async fn a_cordoned_node_gets_no_placement(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("c", 1000);
    store.create_group(&g).await.unwrap();
    assert!(store.set_cordoned("n1", true).await.unwrap());
    assert!(store.node("n1").await.unwrap().unwrap().cordoned);
    assert!(
        store
            .commit_placements(&[placement(&g, "n1", 1)], 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(used_cpu(&*store, "n1").await, 0, "nothing reserved");
    assert_eq!(store.pending_groups(10).await.unwrap().len(), 1);
    assert!(store.set_cordoned("n1", false).await.unwrap());
    assert_eq!(
        store
            .commit_placements(&[placement(&g, "n1", 1)], 3)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(!store.set_cordoned("nope", true).await.unwrap());
    // A drain cordons; uncordon ends the drain too.
    store.drain_node("n1", 4).await.unwrap().unwrap();
    let node = store.node("n1").await.unwrap().unwrap();
    assert_eq!((node.cordoned, node.draining), (true, true));
    assert!(store.set_cordoned("n1", false).await.unwrap());
    let node = store.node("n1").await.unwrap().unwrap();
    assert_eq!((node.cordoned, node.draining), (false, false));
}

pub(crate) async fn a_drain_moves_everything_and_ends_billing_now(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    join(&*store, "n2", 4000).await;
    let g = new_group("web", 1000);
    let done = new_group_with("job", 1000, RestartPolicy::Never);
    create_placed(&*store, &g, "n1").await;
    create_placed(&*store, &done, "n1").await;
    let g_running = run_report(&g.id, 1, (1_000, 3_000, 0));
    assert!(matches!(
        fold(&*store, "n1", g_running, 5).await,
        StatusOutcome::Applied { .. }
    ));
    let done_report = ReportedStatus {
        phase: GroupPhase::Succeeded,
        ..run_report(&done.id, 1, (1_000, 2_000, 2_000))
    };
    assert!(matches!(
        fold(&*store, "n1", done_report, 5).await,
        StatusOutcome::Applied { .. }
    ));

    let unassigned = store.drain_node("n1", 10_000).await.unwrap().unwrap();
    assert_eq!(unassigned.moved, vec![g.id.clone()]);
    assert_eq!(unassigned.settled, vec![done.id.clone()]);
    let node = store.node("n1").await.unwrap().unwrap();
    assert_eq!(node.status, NodeStatus::Ready, "a drained node stays up");
    assert_eq!((node.cordoned, node.draining), (true, true));
    assert_eq!(node.used, crate::model::Size::default());
    let moved = group(&*store, &g.id).await;
    let event = moved
        .events
        .iter()
        .find(|e| e.name == "NodeDrained")
        .unwrap();
    assert_eq!(event.kind, EventKind::Normal);
    assert_eq!(
        event.message,
        "Node n1 is being drained; placing the group on another node."
    );
    assert_eq!(moved.provisioning_state, ProvisioningState::Pending);
    assert_eq!(
        store.pending_groups(10).await.unwrap()[0].pending_since_ms,
        10_000
    );

    assert!(
        store
            .commit_placements(&[placement(&g, "n1", 1)], 10_001)
            .await
            .unwrap()
            .is_empty(),
        "a drained node is cordoned"
    );
    assert_eq!(
        store
            .commit_placements(&[placement(&g, "n2", 1)], 10_001)
            .await
            .unwrap()
            .len(),
        1
    );
    // The old copy stops with its grace and says so: too late, and about a copy left behind.
    let stopped = run_report(&g.id, 1, (1_000, 12_000, 12_000));
    assert_eq!(
        fold(&*store, "n1", stopped, 12_001).await,
        StatusOutcome::Ignored
    );
    let bill = billed(&store, &g.id, 1000, 100_000).await;
    assert_eq!(
        bill.get("n1"),
        Some(&(9_000, false)),
        "from its start until the drain"
    );
    assert_eq!(
        billed(&store, &done.id, 1000, 100_000).await.get("n1"),
        Some(&(1_000, false))
    );
    assert_eq!(store.drain_node("nope", 1).await.unwrap(), None);
}

pub(crate) async fn a_node_is_deleted_only_when_empty(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("d", 1000);
    create_placed(&*store, &g, "n1").await;
    assert_eq!(
        store.delete_node("n1").await.unwrap(),
        Err(NodeDeleteRefusal::NotEmpty { groups: 1 })
    );
    assert!(store.node("n1").await.unwrap().is_some());
    store.drain_node("n1", 5).await.unwrap().unwrap();
    assert_eq!(store.delete_node("n1").await.unwrap(), Ok(true));
    assert!(store.node("n1").await.unwrap().is_none());
    assert!(store.nodes().await.unwrap().is_empty());
    assert_eq!(store.delete_node("n1").await.unwrap(), Ok(false));
    let g = group(&*store, &g.id).await;
    assert_eq!(g.node_id, None, "its group waits for another node");
    assert_eq!(store.pending_groups(10).await.unwrap().len(), 1);
}

pub(crate) async fn a_settled_group_waits_until_restarted_or_started(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    join(&*store, "n2", 4000).await;
    let job = new_group_with("job", 1000, RestartPolicy::Never);
    let other = new_group_with("other", 1000, RestartPolicy::OnFailure);
    create_placed(&*store, &job, "n1").await;
    create_placed(&*store, &other, "n1").await;
    for g in [&job, &other] {
        let ok = report(&g.id, 1, GroupPhase::Succeeded);
        store.apply_status("n1", &ok, 3).await.unwrap();
    }
    let unassigned = lose(&*store, "n1", 10, 500).await;
    assert_eq!(
        sorted(unassigned.settled),
        sorted(vec![job.id.clone(), other.id.clone()])
    );
    assert!(store.pending_groups(10).await.unwrap().is_empty());
    let settled = group(&*store, &job.id).await;
    assert_eq!(settled.provisioning_state, ProvisioningState::Succeeded);
    assert!(
        store
            .commit_placements(&[placement(&job, "n2", 1)], 501)
            .await
            .unwrap()
            .is_empty(),
        "a settled group is not placed"
    );

    let op = operation(&settled, OperationKind::Restart, 600);
    assert_eq!(store.restart_group(&job.id, &op, 600).await.unwrap(), None);
    let restarted = group(&*store, &job.id).await;
    assert_eq!(restarted.generation, 2);
    assert_eq!(restarted.provisioning_state, ProvisioningState::Pending);
    assert_eq!(restarted.status, None);
    let pending = store.pending_groups(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].generation, pending[0].pending_since_ms),
        (2, 600)
    );
    assert_eq!(
        store
            .commit_placements(&[placement(&job, "n2", 2)], 601)
            .await
            .unwrap()
            .len(),
        1
    );

    // Stopped and started, the other is placed again too.
    store.stop_group(&other.id, 700).await.unwrap().unwrap();
    let stopped = group(&*store, &other.id).await;
    let op = operation(&stopped, OperationKind::Start, 701);
    store.start_group(&other.id, &op, 701).await.unwrap();
    let pending = store.pending_groups(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id.as_str(), pending[0].pending_since_ms),
        (other.id.as_str(), 701)
    );
}

pub(crate) async fn a_created_group_waits_since_its_creation(store: Arc<dyn Store>) {
    let g = new_group("p", 1000);
    store.create_group(&g).await.unwrap();
    let pending = store.pending_groups(10).await.unwrap();
    assert_eq!(pending[0].pending_since_ms, g.now_ms);
}

pub(crate) async fn across_a_loss_and_a_new_placement_each_second_is_billed_once(
    store: Arc<dyn Store>,
) {
    join(&*store, "a", 4000).await;
    join(&*store, "b", 4000).await;
    let g = new_group("moved", 1000);
    create_placed(&*store, &g, "a").await;
    // A runs it from 1 s and is last heard of at 5 s.
    let on_a = run_report(&g.id, 1, (1_000, 5_000, 0));
    assert!(matches!(
        fold(&*store, "a", on_a, 5_000).await,
        StatusOutcome::Applied { .. }
    ));
    store
        .set_node_status("a", NodeStatus::NotReady, 5_000, 5_000)
        .await
        .unwrap();
    let unassigned = store
        .lose_node("a", 5_000, 35_000, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unassigned.moved, vec![g.id.clone()]);
    store
        .commit_placements(&[placement(&g, "b", 1)], 36_000)
        .await
        .unwrap();
    let epoch = group(&*store, &g.id).await.placement;
    // B pulls at 40 s and runs it until 50 s.
    let on_b = run_report(&g.id, epoch, (40_000, 50_000, 50_000));
    assert!(matches!(
        fold(&*store, "b", on_b, 50_000).await,
        StatusOutcome::Applied { .. }
    ));
    // A comes back: its copy still ran (it says so until 60 s, then stops): neither reopens A's run.
    store
        .set_node_status("a", NodeStatus::Ready, 60_000, 60_000)
        .await
        .unwrap();
    let still = run_report(&g.id, 1, (1_000, 60_000, 0));
    assert_eq!(
        fold(&*store, "a", still, 60_000).await,
        StatusOutcome::Ignored
    );
    let stopped = run_report(&g.id, 1, (1_000, 61_000, 61_000));
    assert_eq!(
        fold(&*store, "a", stopped, 61_000).await,
        StatusOutcome::Ignored
    );
    let bill = billed(&store, &g.id, 1000, 100_000).await;
    assert_eq!(
        bill.get("a"),
        Some(&(4_000, false)),
        "until A's last heartbeat"
    );
    assert_eq!(bill.get("b"), Some(&(10_000, false)), "from B's first pull");
    assert_eq!(bill.len(), 2);
    // Once the group is deleted nothing in its row tells the copies apart: still not billed.
    store.delete_group(&g.id, 70_000).await.unwrap().unwrap();
    let late = run_report(&g.id, 1, (1_000, 80_000, 80_000));
    assert_eq!(
        fold(&*store, "a", late, 80_000).await,
        StatusOutcome::Ignored
    );
    assert_eq!(billed(&store, &g.id, 1000, 100_000).await, bill);
}

/// Placements racing a drain or a forced loss of their node: whichever commits first, no group is
/// left on the node afterwards and its capacity is all free.
pub(crate) async fn placements_racing_a_drain_or_a_forced_loss_leave_nothing_behind(
    store: Arc<dyn Store>,
) {
    for (round, forced) in [(0, false), (1, true)] {
        let node = format!("n{round}");
        join(&*store, &node, 64_000).await;
        let groups: Vec<_> = (0..24)
            .map(|i| new_group(&format!("r{round}-{i}"), 1000))
            .collect();
        for g in &groups {
            store.create_group(g).await.unwrap();
        }
        let placer = {
            let store = store.clone();
            let node = node.clone();
            let groups = groups.clone();
            tokio::spawn(async move {
                for g in &groups {
                    store
                        .commit_placements(&[placement(g, &node, 1)], 10)
                        .await
                        .unwrap();
                }
            })
        };
        let taker = {
            let store = store.clone();
            let node = node.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                if forced {
                    store.lose_node(&node, 0, 20, true).await.unwrap().unwrap()
                } else {
                    store.drain_node(&node, 20).await.unwrap().unwrap()
                }
            })
        };
        placer.await.unwrap();
        let unassigned = taker.await.unwrap();
        assert!(
            store.groups_on_node(&node).await.unwrap().is_empty(),
            "round {round}: nothing placed on {node} after it was cordoned"
        );
        assert_eq!(used_cpu(&*store, &node).await, 0, "round {round}");
        let pending = store.pending_groups(100).await.unwrap();
        assert_eq!(
            pending.len(),
            groups.len(),
            "round {round}: every group waits for a node ({} were taken off)",
            unassigned.moved.len()
        );
        for g in &groups {
            let _ = store.delete_group(&g.id, 30).await.unwrap();
        }
    }
}
