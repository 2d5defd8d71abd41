//! The meter's property on a store, one body for every backend: whatever order node reports, API
//! stops and deletes, and node losses arrive in, however often each is replayed and however they are
//! batched, every run is billed exactly its true running time, and the exports (raw and rolled up)
//! add up to the ledger. A backend's tests say only how to reach its tables ([`MeterStore`]).

use proptest::prelude::*;

use super::MeterEvent;
use super::testing::{self, BASE, GROUP, report};
use crate::billing::export::{ExportQuery, Format, Granularity, write_export};
use crate::billing::prices::PriceSheet;
use crate::store::UsageStore;

/// How the shared tests reach a backend's meter tables.
#[async_trait::async_trait]
pub(crate) trait MeterStore: Send + Sync {
    /// Runs a statement (SQL both dialects read alike, values inline: they are the test's own).
    async fn execute(&self, sql: &str);
    /// The one integer a query returns.
    async fn scalar(&self, sql: &str) -> i64;
    /// `(started_ms, billed_until_ms, open)` of every run, in order of start.
    async fn runs(&self) -> Vec<(i64, i64, i64)>;
    /// Folds `events` in one transaction of their own, as a state change would.
    async fn apply(&self, events: &[MeterEvent]);
    /// The store, for exports (its reader is blocking: the tests run it on a blocking thread).
    fn usage(&self) -> Box<dyn UsageStore>;
}

/// Billing's memory of the test group, with these rates.
pub(crate) async fn remember_group(store: &dyn MeterStore, cpu: i64, memory: i64) {
    store
        .execute(&format!(
            "INSERT INTO usage_groups (id, subscription, resource_group, name, location, tags, os_type, \
             cpu_millis, memory_mib, gpu) VALUES ('{GROUP}', 'sub', 'rg', 'web', 'local', '{{}}', 'Linux', \
             {cpu}, {memory}, 0)"
        ))
        .await;
}

/// The test group's `generation` is placed on `node`.
pub(crate) async fn assign(store: &dyn MeterStore, generation: i64, node: &str) {
    store
        .execute(&format!(
            "INSERT INTO usage_assignments (group_id, generation, node_id) VALUES ('{GROUP}', {generation}, '{node}')"
        ))
        .await;
}

/// The ledger's sum of `meter`.
pub(crate) async fn ledger(store: &dyn MeterStore, meter: &str) -> i64 {
    store
        .scalar(&format!(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM usage_ledger WHERE meter = '{meter}'"
        ))
        .await
}

/// An export's lines (JSON Lines), read on a blocking thread.
pub(crate) async fn export(store: &dyn MeterStore, query: ExportQuery, now_ms: i64) -> Vec<String> {
    let usage = store.usage();
    let out = tokio::task::spawn_blocking(move || {
        let mut reader = usage.usage_reader().unwrap();
        let mut out = Vec::new();
        write_export(
            reader.as_mut(),
            &query,
            &PriceSheet::builtin(),
            now_ms,
            &mut out,
        )
        .unwrap();
        out
    })
    .await
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// An exact decimal (as JSON writes it) in units of 10^-13.
fn fixed(text: &str) -> i128 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = whole.starts_with('-');
    let whole: i128 = whole.trim_start_matches('-').parse().unwrap();
    let frac: i128 = format!("{frac:0<13}").parse().unwrap();
    let value = whole * 10i128.pow(13) + frac;
    if negative { -value } else { value }
}

/// What an export of every day of the test says was consumed of `meter`, in units of 10^-13.
async fn export_total(store: &dyn MeterStore, granularity: Granularity, meter: &str) -> i128 {
    let query = ExportQuery {
        from_ms: BASE - 86_400_000,
        to_ms: BASE + 10 * 86_400_000,
        granularity,
        format: Format::Jsonl,
        subscription: None,
    };
    // Read as text: a JSON parser would turn the exact decimals into floats.
    let field = |line: &str, name: &str| -> String {
        let at = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        let rest = &line[at..];
        rest[..rest.find(',').unwrap()].trim_matches('"').to_owned()
    };
    export(store, query, BASE)
        .await
        .iter()
        .filter(|line| field(line, "SkuId") == meter)
        .map(|line| fixed(&field(line, "ConsumedQuantity")))
        .sum()
}

/// The property for one case, on an empty store.
pub(crate) async fn billed_its_true_time(
    store: &dyn MeterStore,
    case: testing::Case,
) -> Result<(), TestCaseError> {
    let testing::Case {
        offset,
        cpu,
        memory,
        plan,
        order,
        duplicates,
        batches,
    } = case;
    let (events, truth, placed) = testing::timeline(offset, &plan);
    let delivered = testing::delivery(&events, &duplicates, order, &batches);
    remember_group(store, cpu, memory).await;
    // Placements precede every report about them.
    for (generation, node) in &placed {
        assign(store, *generation, node).await;
    }
    for batch in &delivered {
        store.apply(batch).await;
    }
    billed_exactly(store, &truth, cpu, memory).await
}

/// Every run billed its true time (`truth`, in order of start), ended, and the ledger and every
/// export granularity agreeing.
pub(crate) async fn billed_exactly(
    store: &dyn MeterStore,
    truth: &[i64],
    cpu: i64,
    memory: i64,
) -> Result<(), TestCaseError> {
    let runs = store.runs().await;
    let billed: Vec<i64> = runs.iter().map(|(s, until, _)| until - s).collect();
    prop_assert_eq!(&billed, &truth.to_vec(), "per run, in order of start");
    prop_assert!(
        runs.iter().all(|r| r.2 == 0),
        "every run has ended: {:?}",
        runs
    );

    let seconds: i64 = truth.iter().sum();
    for (meter, rate, per_second) in [
        ("linux/vcpu_seconds", cpu, 1_000_000i128),
        ("linux/memory_gib_seconds", memory, 1_024_000i128),
    ] {
        prop_assert_eq!(
            ledger(store, meter).await,
            seconds * rate,
            "{} in the ledger",
            meter
        );
        // Exports: quantities in units of 10^-13 of the meter's unit.
        let expected = i128::from(seconds * rate) * 10i128.pow(13) / per_second;
        for granularity in [
            Granularity::Raw,
            Granularity::Hourly,
            Granularity::Daily,
            Granularity::Monthly,
        ] {
            prop_assert_eq!(
                export_total(store, granularity, meter).await,
                expected,
                "{} {:?}",
                meter,
                granularity
            );
        }
    }
    let crossing = store
        .scalar(
            "SELECT COUNT(*) FROM usage_ledger WHERE start_ms / 86400000 != (end_ms - 1) / 86400000",
        )
        .await;
    prop_assert_eq!(crossing, 0, "no ledger row crosses midnight");
    Ok(())
}

/// A replayed report adds nothing, a node the group was never given opens no run, and an open run
/// is accrued to now in exports, marked as such.
pub(crate) async fn a_replayed_report_adds_nothing(store: &dyn MeterStore) {
    remember_group(store, 1000, 1024).await;
    assign(store, 1, "n1").await;
    let mut seq = 0;
    store
        .apply(&[report(
            "n2",
            &mut seq,
            1,
            BASE,
            BASE + 5_000,
            Some(BASE + 5_000),
        )])
        .await;
    assert_eq!(store.scalar("SELECT COUNT(*) FROM usage_runs").await, 0);
    let finished = report("n1", &mut seq, 1, BASE, BASE + 5_000, Some(BASE + 5_000));
    store.apply(&[finished.clone(), finished.clone()]).await;
    store.apply(&[finished]).await;
    assert_eq!(
        store.scalar("SELECT COUNT(*) FROM usage_ledger").await,
        2,
        "one row per meter"
    );
    let running = report("n1", &mut seq, 2, BASE + 10_000, BASE + 10_000, None);
    store.apply(&[running]).await;
    let query = ExportQuery {
        from_ms: BASE,
        to_ms: BASE + 60_000,
        granularity: Granularity::Raw,
        format: Format::Jsonl,
        subscription: None,
    };
    let rows: Vec<serde_json::Value> = export(store, query, BASE + 12_000)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accrued: Vec<&serde_json::Value> = rows.iter().filter(|r| r["x_Accrued"] == true).collect();
    assert_eq!(accrued.len(), 2, "{rows:?}");
    assert_eq!(accrued[0]["ConsumedQuantity"].to_string(), "2");
    assert_eq!(accrued[0]["x_LedgerId"], serde_json::Value::Null);
}
