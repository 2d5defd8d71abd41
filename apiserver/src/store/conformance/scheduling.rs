//! Scheduling: placements never overcommit, stale ones drop out, racing commits, events, failures.

use std::sync::Arc;

use super::fixtures::{group, join, new_group, operation, placement, used_cpu};
use crate::store::{
    EventKind, GroupEvent, NewGroup, OperationKind, OperationStatus, ProvisioningState, Store,
};

pub(crate) async fn placements_never_overcommit_and_give_back_what_did_not_stick(
    store: Arc<dyn Store>,
) {
    join(&*store, "n1", 2000).await;
    let groups = [
        new_group("a", 1500),
        new_group("b", 1500),
        new_group("c", 500),
    ];
    for g in &groups {
        store.create_group(g).await.unwrap();
    }
    let place = |g: &NewGroup| placement(g, "n1", 1);
    // a + b together exceed the node: the node's reservation fails and nothing is placed.
    let committed = store
        .commit_placements(&[place(&groups[0]), place(&groups[1])], 2)
        .await
        .unwrap();
    assert!(committed.is_empty());
    assert_eq!(used_cpu(&*store, "n1").await, 0);

    // c is deleted before its placement commits: its reservation is given back.
    store.delete_group(&groups[2].id, 10).await.unwrap();
    let committed = store
        .commit_placements(&[place(&groups[0]), place(&groups[2])], 3)
        .await
        .unwrap();
    assert_eq!(committed, [place(&groups[0])]);
    assert_eq!(used_cpu(&*store, "n1").await, 1500);
    let a = group(&*store, &groups[0].id).await;
    assert_eq!(a.node_id.as_deref(), Some("n1"));
    assert_eq!(a.provisioning_state, ProvisioningState::Creating);
    let on_node = store.groups_on_node("n1").await.unwrap();
    assert_eq!(on_node.len(), 1);
    let pending: Vec<String> = store
        .pending_groups(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(pending, [groups[1].id.clone()]);

    // Placing a twice changes nothing.
    let again = store
        .commit_placements(&[place(&groups[0])], 4)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(used_cpu(&*store, "n1").await, 1500);

    // Deleting a releases its capacity.
    store.delete_group(&groups[0].id, 10).await.unwrap();
    assert_eq!(used_cpu(&*store, "n1").await, 0);
}

pub(crate) async fn a_placement_of_a_stale_generation_drops_out(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("s", 1000);
    store.create_group(&g).await.unwrap();
    // Updated (generation 2) after the scheduler read generation 1.
    let read = group(&*store, &g.id).await;
    let op = operation(&read, OperationKind::Update, 2);
    store
        .update_group(&g.id, 1, &g.spec, &[], &read.tags, None, &op, 2)
        .await
        .unwrap();
    let committed = store
        .commit_placements(&[placement(&g, "n1", 1)], 3)
        .await
        .unwrap();
    assert!(committed.is_empty());
    assert_eq!(used_cpu(&*store, "n1").await, 0);
    assert_eq!(group(&*store, &g.id).await.node_id, None);
    // A NotReady node takes nothing either.
    store
        .set_node_status("n1", crate::store::NodeStatus::NotReady, 4, 0)
        .await
        .unwrap();
    assert!(
        store
            .commit_placements(&[placement(&g, "n1", 2)], 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(used_cpu(&*store, "n1").await, 0);
}

pub(crate) async fn racing_commits_never_overcommit_a_node(store: Arc<dyn Store>) {
    // Eight schedulers each place their own four groups of 1000 on a node of 10,000, and all of
    // them also try one shared group.
    join(&*store, "n1", 10_000).await;
    let shared = new_group("shared", 1000);
    store.create_group(&shared).await.unwrap();
    let mut rounds = Vec::new();
    for s in 0..8 {
        let mut round = vec![placement(&shared, "n1", 1)];
        for i in 0..4 {
            let g = new_group(&format!("s{s}g{i}"), 1000);
            store.create_group(&g).await.unwrap();
            round.push(placement(&g, "n1", 1));
        }
        rounds.push(round);
    }
    let tasks: Vec<_> = rounds
        .into_iter()
        .map(|round| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut placed = Vec::new();
                // One at a time as well as together: both paths race.
                for chunk in round.chunks(2) {
                    placed.extend(store.commit_placements(chunk, 2).await.unwrap());
                }
                placed
            })
        })
        .collect();
    let mut placed = Vec::new();
    for task in tasks {
        placed.extend(task.await.unwrap());
    }
    let used = used_cpu(&*store, "n1").await;
    assert!(used <= 10_000, "overcommitted: {used}");
    assert_eq!(
        used,
        1000 * placed.len() as u64,
        "reservations equal placements"
    );
    let shared_placed = placed.iter().filter(|p| p.group_id == shared.id).count();
    assert!(shared_placed <= 1, "the shared group is placed once");
    assert_eq!(
        store.groups_on_node("n1").await.unwrap().len(),
        placed.len(),
        "every placement answered is a group on the node"
    );
}

pub(crate) async fn racing_events_are_all_kept(store: Arc<dyn Store>) {
    let g = new_group("e", 100);
    store.create_group(&g).await.unwrap();
    let event = |name: &str, at: i64| GroupEvent {
        name: name.to_owned(),
        message: format!("{name} at {at}"),
        kind: EventKind::Warning,
        count: 1,
        first_ms: at,
        last_ms: at,
    };
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, id) = (store.clone(), g.id.clone());
            let name = if i % 2 == 0 {
                "Repeated".to_owned()
            } else {
                format!("Own{i}")
            };
            let e = event(&name, i);
            tokio::spawn(async move { store.record_event(&id, e).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let events = group(&*store, &g.id).await.events;
    assert_eq!(
        events.len(),
        9,
        "one repeated event and eight of their own: {events:?}"
    );
    let repeated = events.iter().find(|e| e.name == "Repeated").unwrap();
    assert_eq!(repeated.count, 8, "every repetition counts");
    assert_eq!(repeated.kind, EventKind::Warning);
    // An event for a group that is gone is dropped quietly.
    store.record_event("gone", event("X", 1)).await.unwrap();
    let pending = store.pending_groups(10).await.unwrap();
    assert!(
        pending[0].last_reason.is_none(),
        "only FailedScheduling is a reason"
    );
    store
        .record_event(&g.id, event("FailedScheduling", 20))
        .await
        .unwrap();
    let pending = store.pending_groups(10).await.unwrap();
    assert_eq!(
        pending[0].last_reason.as_deref(),
        Some("FailedScheduling at 20")
    );
}

pub(crate) async fn an_unplaceable_group_fails_with_its_operation(store: Arc<dyn Store>) {
    let g = new_group("f", 100);
    store.create_group(&g).await.unwrap();
    store
        .fail_group(&g.id, "ResourceUnavailable", "no node fits", 5)
        .await
        .unwrap();
    let failed = group(&*store, &g.id).await;
    assert_eq!(failed.provisioning_state, ProvisioningState::Failed);
    assert!(
        store.pending_groups(10).await.unwrap().is_empty(),
        "a failed group waits no more"
    );
    let op = store.operation(&g.operation_id).await.unwrap().unwrap();
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.error_code.as_deref(), Some("ResourceUnavailable"));
    assert_eq!(op.error_message.as_deref(), Some("no node fits"));
    assert_eq!(op.ended_ms, Some(5));
}
