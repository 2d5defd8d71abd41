//! The census: nodes by status, groups by state, the groups waiting for a node, ledger rows.

use std::sync::Arc;

use super::fixtures::{self, create_placed, join, new_group, run_report};
use crate::store::{Census, GroupCount, NodeReport, NodeStatus, Store};

fn groups(census: &Census) -> Vec<(&str, &str, u64)> {
    census
        .groups
        .iter()
        .map(|g: &GroupCount| (g.provisioning_state.as_str(), g.desired.as_str(), g.count))
        .collect()
}

pub(crate) async fn the_census_counts_nodes_groups_waiting_groups_and_ledger_rows(
    store: Arc<dyn Store>,
) {
    assert_eq!(store.census().await.unwrap(), Census::default(), "empty");

    join(&*store, "n1", 4000).await;
    join(&*store, "n2", 4000).await;
    join(&*store, "n3", 4000).await;
    assert!(
        store
            .set_node_status("n2", NodeStatus::NotReady, 10, 10)
            .await
            .unwrap()
    );
    let waiting = new_group("waiting", 100);
    store.create_group(&waiting).await.unwrap();
    let failed = new_group("failed", 100);
    store.create_group(&failed).await.unwrap();
    store
        .fail_group(&failed.id, "ResourceUnavailable", "no node fits", 5)
        .await
        .unwrap();
    let stopped = new_group("stopped", 100);
    store.create_group(&stopped).await.unwrap();
    store.stop_group(&stopped.id, 6).await.unwrap();
    let running = new_group("running", 1000);
    create_placed(&*store, &running, "n1").await;

    let census = store.census().await.unwrap();
    assert_eq!(
        census.nodes,
        vec![("NotReady".to_owned(), 1), ("Ready".to_owned(), 2)]
    );
    assert_eq!(
        census.pending_groups, 1,
        "stopped, failed and placed ones wait for nothing"
    );
    assert_eq!(
        groups(&census),
        vec![
            ("Creating", "Running", 1),
            ("Failed", "Running", 1),
            ("Pending", "Running", 1),
            ("Succeeded", "Stopped", 1),
        ],
        "placed: creating; stopped before it ran: done"
    );
    assert_eq!(census.ledger_rows, 0, "nothing ran yet");

    // The group runs from node time 1 000 to 9 000: its meters get ledger rows.
    let report = |observed: i64, finished: i64| NodeReport {
        node_id: "n1".to_owned(),
        seq: observed as u64,
        status: run_report(&running.id, 1, (1_000, observed, finished)),
    };
    store
        .apply_statuses(&[report(1_000, 0), report(3_000, 0)], &[], 7)
        .await
        .unwrap();
    store
        .apply_statuses(&[report(9_000, 9_000)], &[("n1".to_owned(), 9_000)], 8)
        .await
        .unwrap();
    let census = store.census().await.unwrap();
    assert!(census.ledger_rows > 0, "{census:?}");
    assert_eq!(
        groups(&census),
        vec![
            ("Failed", "Running", 1),
            ("Pending", "Running", 1),
            ("Succeeded", "Running", 1),
            ("Succeeded", "Stopped", 1),
        ],
        "{census:?}"
    );
    let _ = fixtures::spec(1);
}
