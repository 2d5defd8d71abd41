//! Container measurements: only a group's own node writes them, a retry writes nothing twice, a
//! window reads oldest first, the newest per container carries its group's ARM names, and pruning
//! drops by age only.

use std::sync::Arc;

use super::fixtures;
use crate::store::{MetricSample, Store};

fn container(group_id: &str, name: &str, at_ms: i64, millicores: f64) -> MetricSample {
    MetricSample {
        group_id: group_id.to_owned(),
        container: name.to_owned(),
        at_ms,
        cpu_usage_ns: 7_000_000 * at_ms as u64,
        cpu_millicores: millicores,
        memory_bytes: 64 << 20,
        rx_bytes: 0,
        tx_bytes: 0,
        rx_bytes_per_second: 0.0,
        tx_bytes_per_second: 0.0,
    }
}

fn network(group_id: &str, at_ms: i64) -> MetricSample {
    MetricSample {
        rx_bytes: 10 * at_ms as u64,
        tx_bytes: 20 * at_ms as u64,
        rx_bytes_per_second: 1.5,
        tx_bytes_per_second: 2.5,
        cpu_usage_ns: 0,
        cpu_millicores: 0.0,
        memory_bytes: 0,
        ..container(group_id, "", at_ms, 0.0)
    }
}

pub(crate) async fn only_samples_of_a_nodes_own_groups_are_kept(store: Arc<dyn Store>) {
    fixtures::join(&*store, "n1", 4000).await;
    fixtures::join(&*store, "n2", 4000).await;
    let mine = fixtures::new_group("mine", 100);
    let theirs = fixtures::new_group("theirs", 100);
    let unplaced = fixtures::new_group("unplaced", 100);
    fixtures::create_placed(&*store, &mine, "n1").await;
    fixtures::create_placed(&*store, &theirs, "n2").await;
    store.create_group(&unplaced).await.unwrap();
    let batch = [
        container(&mine.id, "c", 1000, 250.0),
        network(&mine.id, 1000),
        container(&theirs.id, "c", 1000, 250.0),
        container(&unplaced.id, "c", 1000, 250.0),
        container("no-such-group", "c", 1000, 250.0),
    ];
    assert_eq!(store.record_samples("n1", &batch).await.unwrap(), 2);
    assert_eq!(
        store.record_samples("n1", &batch).await.unwrap(),
        0,
        "a retried batch stores nothing twice"
    );
    assert_eq!(store.record_samples("n1", &[]).await.unwrap(), 0);
    assert_eq!(
        store
            .group_samples(&mine.id, 0, i64::MAX)
            .await
            .unwrap()
            .len(),
        2
    );
    for other in [&theirs.id, &unplaced.id] {
        assert!(
            store
                .group_samples(other, 0, i64::MAX)
                .await
                .unwrap()
                .is_empty(),
            "n1 cannot write samples of a group it does not run"
        );
    }
    assert_eq!(
        store.record_samples("n2", &batch).await.unwrap(),
        1,
        "n2 writes its own"
    );
}

pub(crate) async fn a_window_reads_back_oldest_first_and_values_round_trip(store: Arc<dyn Store>) {
    fixtures::join(&*store, "n1", 4000).await;
    let g = fixtures::new_group("web", 100);
    fixtures::create_placed(&*store, &g, "n1").await;
    let mut huge = container(&g.id, "b", 3000, f64::NAN);
    huge.cpu_usage_ns = u64::MAX;
    let batch = vec![
        container(&g.id, "a", 2000, 120.5),
        container(&g.id, "b", 1000, 10.0),
        container(&g.id, "a", 1000, 100.0),
        network(&g.id, 1000),
        container(&g.id, "a", 3000, 130.0),
        huge,
    ];
    assert_eq!(store.record_samples("n1", &batch).await.unwrap(), 6);
    let window = store.group_samples(&g.id, 1000, 3000).await.unwrap();
    let order: Vec<(i64, &str)> = window
        .iter()
        .map(|s| (s.at_ms, s.container.as_str()))
        .collect();
    assert_eq!(
        order,
        [(1000, ""), (1000, "a"), (1000, "b"), (2000, "a")],
        "from is inclusive, to exclusive, oldest first"
    );
    assert_eq!(window[0], network(&g.id, 1000));
    assert_eq!(window[3], container(&g.id, "a", 2000, 120.5));
    let last = store.group_samples(&g.id, 3000, 3001).await.unwrap();
    let b = last.iter().find(|s| s.container == "b").unwrap();
    assert_eq!(
        b.cpu_usage_ns,
        i64::MAX as u64,
        "a counter past i64 saturates"
    );
    assert_eq!(b.cpu_millicores, 0.0, "a rate that is not a number is 0");
}

pub(crate) async fn the_latest_samples_are_the_newest_per_row_with_arm_names(
    store: Arc<dyn Store>,
) {
    fixtures::join(&*store, "n1", 4000).await;
    let web = fixtures::new_group("web", 100);
    let gone = fixtures::new_group("gone", 100);
    fixtures::create_placed(&*store, &web, "n1").await;
    fixtures::create_placed(&*store, &gone, "n1").await;
    let batch = [
        container(&web.id, "a", 1000, 1.0),
        container(&web.id, "a", 2000, 2.0),
        container(&web.id, "b", 500, 5.0),
        network(&web.id, 1000),
        network(&web.id, 2000),
        container(&gone.id, "a", 2000, 9.0),
    ];
    assert_eq!(store.record_samples("n1", &batch).await.unwrap(), 6);
    store.delete_group(&gone.id, 3).await.unwrap();
    let latest = store.latest_samples(800).await.unwrap();
    let seen: Vec<(&str, &str, &str, &str, i64)> = latest
        .iter()
        .map(|l| {
            (
                l.subscription.as_str(),
                l.resource_group.as_str(),
                l.group_name.as_str(),
                l.sample.container.as_str(),
                l.sample.at_ms,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("sub", "rg", "web", "", 2000),
            ("sub", "rg", "web", "a", 2000)
        ],
        "b is older than `since`; a deleted group's samples are not shown"
    );
    assert_eq!(latest[1].sample.cpu_millicores, 2.0);
}

pub(crate) async fn pruning_drops_samples_older_than_the_cut_only(store: Arc<dyn Store>) {
    fixtures::join(&*store, "n1", 4000).await;
    let g = fixtures::new_group("web", 100);
    fixtures::create_placed(&*store, &g, "n1").await;
    let batch: Vec<MetricSample> = (1..=5)
        .map(|i| container(&g.id, "a", i * 1000, 1.0))
        .collect();
    store.record_samples("n1", &batch).await.unwrap();
    assert_eq!(store.prune_samples(3000).await.unwrap(), 2);
    assert_eq!(store.prune_samples(3000).await.unwrap(), 0);
    let left: Vec<i64> = store
        .group_samples(&g.id, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|s| s.at_ms)
        .collect();
    assert_eq!(left, [3000, 4000, 5000]);
}
