//! The meter's property (`billing::meter::store_tests`) on PostgreSQL, and replicas folding the
//! same group at once.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::billing::meter::store_tests::{self, MeterStore, assign, remember_group};
use crate::billing::meter::testing::{self, BASE, Fate, GROUP, report};
use crate::billing::meter::{CapCause, MeterEvent};
use crate::store::UsageStore;
use crate::store::postgres::PgStore;
use crate::store::postgres::tests::fresh_store;

#[async_trait::async_trait]
impl MeterStore for PgStore {
    async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.unwrap();
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    async fn runs(&self) -> Vec<(i64, i64, i64)> {
        sqlx::query_as(
            "SELECT started_ms, billed_until_ms, open FROM usage_runs ORDER BY started_ms",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn apply(&self, events: &[MeterEvent]) {
        fold(self, events).await.unwrap();
    }

    fn usage(&self) -> Box<dyn UsageStore> {
        Box::new(self.clone())
    }
}

/// Folds `events` in a transaction of their own.
async fn fold(store: &PgStore, events: &[MeterEvent]) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    record(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_run_is_billed_its_true_time_whatever_the_order(case in testing::case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = fresh_store().await;
            let outcome = store_tests::billed_its_true_time(&store, case).await;
            store.close().await;
            outcome
        })?;
    }
}

#[tokio::test]
async fn a_replayed_report_adds_nothing() {
    let store = fresh_store().await;
    store_tests::a_replayed_report_adds_nothing(&store).await;
    store.close().await;
}

/// Two replicas (two stores, two pools) on one fresh database, with nodes n1 and n2 and the
/// test group (1 vCPU, 1 GiB) remembered.
async fn two_replicas() -> (PgStore, PgStore) {
    let pg = berth_testkit::postgres::TempPostgres::shared().unwrap();
    let url = pg.fresh_database("meter").unwrap();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    a.execute(
        "INSERT INTO nodes (id, name, os_type, cpu_millis, memory_mib, gpu, labels, agent_version, status, \
         last_heartbeat_ms, joined_ms) VALUES \
         ('n1', 'node-1', 'Linux', 4000, 8192, 0, '{}', 'test', 'Ready', 0, 0), \
         ('n2', 'node-2', 'Linux', 4000, 8192, 0, '{}', 'test', 'Ready', 0, 0)",
    )
    .await;
    remember_group(&a, 1000, 1024).await;
    (a, b)
}

/// Folds `first` on `a` and, while that transaction is still open, `second` on `b`; then
/// commits `a`. Both must succeed.
async fn race(a: &PgStore, first: &[MeterEvent], b: &PgStore, second: &[MeterEvent]) {
    let mut tx = a.pool.begin().await.unwrap();
    record(&mut tx, first).await.unwrap();
    let (b, second) = (b.clone(), second.to_vec());
    let other = tokio::spawn(async move { fold(&b, &second).await });
    // Time for the other fold to read what it may, before this one commits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    other.await.unwrap().unwrap();
}

#[tokio::test]
async fn two_replicas_folding_the_same_report_at_once_bill_it_once() {
    let (a, b) = two_replicas().await;
    assign(&a, 1, "n1").await;
    let mut seq = 0;
    let running = report("n1", &mut seq, 1, BASE, BASE + 5_000, None);
    let same = [running];
    race(&a, &same, &b, &same).await;
    // One run, open: its end is not known yet.
    assert_eq!(a.runs().await, vec![(BASE, BASE, 1)]);
    let finished = report("n1", &mut seq, 1, BASE, BASE + 9_000, Some(BASE + 9_000));
    let same = [finished];
    race(&b, &same, &a, &same).await;
    store_tests::billed_exactly(&a, &[9_000], 1000, 1024)
        .await
        .unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_stop_racing_a_report_bills_up_to_the_stop_whichever_commits_first() {
    // The run already open, or opened by the racing report itself.
    for (opened, stop_first) in [(true, true), (true, false), (false, true), (false, false)] {
        let (a, b) = two_replicas().await;
        assign(&a, 1, "n1").await;
        let mut seq = 0;
        if opened {
            a.apply(&[report("n1", &mut seq, 1, BASE, BASE + 2_000, None)])
                .await;
        }
        let stop = MeterEvent::Capped {
            group_id: GROUP.to_owned(),
            generation: 1,
            at_ms: BASE + 10_000,
            cause: CapCause::Stop,
        };
        let late = report("n1", &mut seq, 1, BASE, BASE + 20_000, Some(BASE + 20_000));
        if stop_first {
            race(&a, &[stop], &b, &[late]).await;
        } else {
            race(&a, &[late], &b, &[stop]).await;
        }
        store_tests::billed_exactly(&a, &[10_000], 1000, 1024)
            .await
            .unwrap_or_else(|e| panic!("opened {opened}, stop first {stop_first}: {e}"));
        a.close().await;
        b.close().await;
    }
}

#[tokio::test]
async fn a_node_lost_while_a_report_opens_a_run_on_it_ends_that_run() {
    let (a, b) = two_replicas().await;
    assign(&a, 1, "n1").await;
    let mut seq = 0;
    let opens = report("n1", &mut seq, 1, BASE, BASE + 5_000, None);
    let lost = MeterEvent::NodeLost {
        node_id: "n1".to_owned(),
        at_ms: BASE + 5_000,
    };
    race(&a, &[opens], &b, &[lost]).await;
    store_tests::billed_exactly(&a, &[5_000], 1000, 1024)
        .await
        .unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_live_group_is_billed_and_remembered_as_its_spec_says() {
    let (a, b) = two_replicas().await;
    let mut spec = crate::store::conformance::fixtures::spec(500);
    spec.containers[0].requests.gpu = 1;
    spec.containers[0].gpu_sku = Some("V100".to_owned());
    sqlx::query(
        "INSERT INTO groups (id, subscription, resource_group, resource_group_as, name, location, tags, spec, \
         sealed_spec, os_type, cpu_millis, memory_mib, gpu, generation, desired, provisioning_state, node_id, \
         events, created_ms, updated_ms) VALUES ('g-live', 'sub', 'rg', 'RG', 'gpu', 'local', '{\"team\":\"a\"}', \
         $1, '\\x00', 'Linux', 500, 1024, 1, 1, 'Running', 'Creating', 'n1', '[]', 0, 0)",
    )
    .bind(serde_json::to_string(&spec).unwrap())
    .execute(&a.pool)
    .await
    .unwrap();
    a.execute(
        "INSERT INTO usage_assignments (group_id, generation, node_id) VALUES ('g-live', 1, 'n1')",
    )
    .await;
    let finished = MeterEvent::Observed(crate::billing::meter::Observation {
        group_id: "g-live".to_owned(),
        node_id: "n1".to_owned(),
        seq: 1,
        generation: 1,
        started_ms: BASE,
        finished_ms: Some(BASE + 4_000),
        observed_ms: BASE + 4_000,
    });
    a.apply(&[finished]).await;
    assert_eq!(
        ledger_of(&a, "gpu/v100/gpu_seconds").await,
        4_000,
        "one GPU for 4 s"
    );
    assert_eq!(ledger_of(&a, "linux/vcpu_seconds").await, 500 * 4_000);
    let remembered: (String, String, Option<String>) = sqlx::query_as(
        "SELECT resource_group, tags, gpu_sku FROM usage_groups WHERE id = 'g-live'",
    )
    .fetch_one(&a.pool)
    .await
    .unwrap();
    assert_eq!(
        remembered,
        (
            "RG".to_owned(),
            "{\"team\":\"a\"}".to_owned(),
            Some("v100".to_owned())
        )
    );

    // What it was when deleted is what exports say of it afterwards.
    let mut tags = BTreeMap::new();
    tags.insert("team".to_owned(), "b".to_owned());
    let group = GroupRecord {
        placement: 0,
        id: "g-live".to_owned(),
        seq: 1,
        subscription: "sub".to_owned(),
        resource_group: "RG".to_owned(),
        name: "gpu".to_owned(),
        location: "local".to_owned(),
        tags,
        requests: spec.requests(),
        spec,
        fqdn: None,
        generation: 1,
        desired: crate::store::Desired::Running,
        provisioning_state: crate::store::ProvisioningState::Creating,
        node_id: Some("n1".to_owned()),
        status: None,
        events: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
    };
    let mut tx = b.pool.begin().await.unwrap();
    super::remember_group(&mut tx, &group).await.unwrap();
    tx.commit().await.unwrap();
    let tags: String = sqlx::query_scalar("SELECT tags FROM usage_groups WHERE id = 'g-live'")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    assert_eq!(tags, "{\"team\":\"b\"}");
    a.close().await;
    b.close().await;
}

async fn ledger_of(store: &PgStore, meter: &str) -> i64 {
    store_tests::ledger(store, meter).await
}

#[tokio::test]
async fn a_node_s_clock_only_moves_forward() {
    let (a, b) = two_replicas().await;
    let mut tx = a.pool.begin().await.unwrap();
    nodes_seen(
        &mut tx,
        &[
            ("n1".to_owned(), 400),
            ("n1".to_owned(), 300),
            ("n2".to_owned(), 100),
        ],
    )
    .await
    .unwrap();
    nodes_seen(&mut tx, &[("n1".to_owned(), 200)])
        .await
        .unwrap();
    assert_eq!(last_node_ms(&mut tx, "n1").await.unwrap(), 400);
    assert_eq!(last_node_ms(&mut tx, "n2").await.unwrap(), 100);
    assert_eq!(last_node_ms(&mut tx, "n3").await.unwrap(), 0, "unknown");
    tx.commit().await.unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn two_replicas_folding_the_same_timelines_at_once_bill_each_second_once() {
    let plan = vec![
        (
            false,
            61_000,
            1_000,
            Fate::Finish {
                stop_after: Some(700),
            },
        ),
        (true, 40_000, 2_000, Fate::Restart),
        (true, 30_000, 500, Fate::LostAndBack { back_after: 9_000 }),
        (
            false,
            20_000,
            800,
            Fate::Stop {
                teardown: Some(1_500),
            },
        ),
        (
            true,
            50_000,
            300,
            Fate::LostForever {
                stop_after: Some(2_000),
            },
        ),
    ];
    for order in 1..=6u64 {
        let (a, b) = two_replicas().await;
        let (events, truth, placed) = testing::timeline(59_000, &plan);
        for (generation, node) in &placed {
            assign(&a, *generation, node).await;
        }
        // Each replica hears everything once, in its own order, one event per transaction.
        let deliver = |store: PgStore, seed: u64| {
            let batches = testing::delivery(&events, &[], seed, &[1]);
            tokio::spawn(async move {
                for batch in batches {
                    fold(&store, &batch).await?;
                }
                Ok::<_, StoreError>(())
            })
        };
        let (one, other) = (deliver(a.clone(), order), deliver(b.clone(), order * 7919));
        one.await.unwrap().unwrap();
        other.await.unwrap().unwrap();
        store_tests::billed_exactly(&a, &truth, 1000, 1024)
            .await
            .unwrap();
        a.close().await;
        b.close().await;
    }
}
