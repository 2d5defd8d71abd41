//! The meter over an in-memory store: the rules alone, and that a batch costs one load and one save
//! whatever its size.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::super::testing::{self, BASE, GROUP};
use super::super::{
    Keys, LedgerRow, MeterChanges, MeterEvent, MeterState, MeterTx, Observation, Run, RunId, record,
};
use crate::billing::Rates;
use crate::model::OsType;
use crate::store::Result;

#[derive(Default)]
struct Memory {
    runs: Vec<Run>,
    caps: HashMap<String, BTreeMap<i64, i64>>,
    losses: HashMap<String, BTreeSet<i64>>,
    assignments: HashMap<String, BTreeMap<i64, String>>,
    rates: HashMap<String, Rates>,
    ledger: Vec<LedgerRow>,
    written: HashSet<(RunId, &'static str, i64, String, i64)>,
    calls: Vec<&'static str>,
}

fn rates(cpu: i64, memory: i64) -> Rates {
    Rates {
        os_type: OsType::Linux,
        cpu_millis: cpu,
        memory_mib: memory,
        gpu: 0,
        gpu_sku: None,
    }
}

impl Memory {
    fn with_group(group: &str, cpu: i64, memory: i64) -> Self {
        let mut memory_store = Memory::default();
        memory_store.add_group(group, cpu, memory);
        memory_store
    }

    fn add_group(&mut self, group: &str, cpu: i64, memory: i64) {
        self.rates.insert(group.to_owned(), rates(cpu, memory));
    }

    fn assign(&mut self, group: &str, generation: i64, node: &str) {
        self.assignments
            .entry(group.to_owned())
            .or_default()
            .insert(generation, node.to_owned());
    }

    async fn apply(&mut self, events: &[MeterEvent]) {
        record(self, events).await.unwrap();
    }
}

#[async_trait::async_trait]
impl MeterTx for Memory {
    async fn load(&mut self, keys: &Keys) -> Result<MeterState> {
        self.calls.push("load");
        let runs: Vec<Run> = self
            .runs
            .iter()
            .filter(|r| {
                keys.groups.contains(&r.group_id)
                    || (keys.lost_nodes.contains(&r.node_id) && r.facts.finished_ms.is_none())
            })
            .cloned()
            .collect();
        Ok(MeterState {
            runs,
            caps: self.caps.clone(),
            losses: self.losses.clone(),
            assignments: self.assignments.clone(),
            rates: keys
                .groups
                .iter()
                .filter_map(|g| Some((g.clone(), self.rates.get(g)?.clone())))
                .collect(),
        })
    }

    async fn save(&mut self, changes: &MeterChanges) -> Result<()> {
        self.calls.push("save");
        let base = self.runs.len() as i64 + 1;
        let id = |run: RunId| match run {
            RunId::New(k) => RunId::Stored(base + k as i64),
            stored => stored,
        };
        for (k, run) in changes.new_runs.iter().enumerate() {
            assert_eq!(run.id, RunId::New(k));
            self.runs.push(Run {
                id: id(run.id),
                ..run.clone()
            });
        }
        for run in &changes.updated_runs {
            let at = self.runs.iter().position(|r| r.id == run.id).unwrap();
            self.runs[at] = run.clone();
        }
        for row in &changes.ledger {
            let row = LedgerRow {
                run: id(row.run),
                ..row.clone()
            };
            if self.written.insert((
                row.run,
                row.cause,
                row.cause_seq,
                row.meter.clone(),
                row.start_ms,
            )) {
                self.ledger.push(row);
            }
        }
        for (group, generation, at) in &changes.caps {
            let caps = self.caps.entry(group.clone()).or_default();
            let stored = caps.entry(*generation).or_insert(*at);
            *stored = (*stored).min(*at);
        }
        for (node, at) in &changes.losses {
            self.losses.entry(node.clone()).or_default().insert(*at);
        }
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn sum(store: &Memory, meter: &str) -> i64 {
    store
        .ledger
        .iter()
        .filter(|r| r.meter == meter)
        .map(|r| r.quantity)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever order reports, stops, deletes and node losses arrive in, however often each is
    /// replayed and however they are cut into batches, every run is billed exactly its true time.
    #[test]
    fn every_run_is_billed_its_true_time_whatever_the_order_and_batching(case in testing::case()) {
        let testing::Case { offset, cpu, memory, plan, order, duplicates, batches } = case;
        let (events, truth, placed) = testing::timeline(offset, &plan);
        let mut store = Memory::with_group(GROUP, cpu, memory);
        for (generation, node) in &placed {
            store.assign(GROUP, *generation, node);
        }
        let runtime = runtime();
        for batch in testing::delivery(&events, &duplicates, order, &batches) {
            runtime.block_on(store.apply(&batch));
        }
        let mut runs = store.runs.clone();
        runs.sort_by_key(|r| r.facts.started_ms);
        let billed: Vec<i64> = runs.iter().map(|r| r.billed_until_ms - r.facts.started_ms).collect();
        prop_assert_eq!(&billed, &truth, "per run, in order of start");
        prop_assert!(runs.iter().all(|r| !r.open), "every run has ended: {:?}", runs);
        let seconds: i64 = truth.iter().sum();
        prop_assert_eq!(sum(&store, "linux/vcpu_seconds"), seconds * cpu);
        prop_assert_eq!(sum(&store, "linux/memory_gib_seconds"), seconds * memory);
        prop_assert!(
            store.ledger.iter().all(|r| r.start_ms.div_euclid(86_400_000) == (r.end_ms - 1).div_euclid(86_400_000)),
            "no ledger row crosses midnight"
        );
    }
}

fn observed(
    group: &str,
    node: &str,
    seq: u64,
    started: i64,
    observed: i64,
    finished: Option<i64>,
) -> MeterEvent {
    MeterEvent::Observed(Observation {
        group_id: group.to_owned(),
        node_id: node.to_owned(),
        seq,
        generation: 1,
        started_ms: started,
        finished_ms: finished,
        observed_ms: observed,
    })
}

#[tokio::test]
async fn a_replayed_report_adds_nothing_and_a_stranger_opens_no_run() {
    let mut store = Memory::with_group(GROUP, 1000, 1024);
    store.assign(GROUP, 1, "n1");
    store
        .apply(&[observed(
            GROUP,
            "n2",
            1,
            BASE,
            BASE + 5_000,
            Some(BASE + 5_000),
        )])
        .await;
    assert!(store.runs.is_empty(), "n2 was never given the group");
    let finished = observed(GROUP, "n1", 2, BASE, BASE + 5_000, Some(BASE + 5_000));
    store.apply(&[finished.clone(), finished.clone()]).await;
    store.apply(&[finished]).await;
    assert_eq!(
        store.ledger.len(),
        2,
        "one row per meter: {:?}",
        store.ledger
    );
    assert_eq!(sum(&store, "linux/vcpu_seconds"), 1000 * 5_000);
}

/// A group moved off a lost node keeps its generation and is placed on another: the lost node's
/// later reports of its old run (it came back, the copy still ran) never extend that run, even once
/// the group is gone and nothing else tells them apart.
#[tokio::test]
async fn a_run_its_group_was_moved_off_is_never_extended() {
    let mut store = Memory::with_group(GROUP, 1000, 1024);
    store.assign(GROUP, 1, "a");
    store
        .apply(&[observed(GROUP, "a", 1, BASE, BASE + 4_000, None)])
        .await;
    store
        .apply(&[MeterEvent::NodeLost {
            node_id: "a".to_owned(),
            at_ms: BASE + 4_000,
        }])
        .await;
    store.assign(GROUP, 1, "b");
    store
        .apply(&[observed(
            GROUP,
            "b",
            1,
            BASE + 9_000,
            BASE + 19_000,
            Some(BASE + 19_000),
        )])
        .await;
    store
        .apply(&[observed(
            GROUP,
            "a",
            2,
            BASE,
            BASE + 30_000,
            Some(BASE + 30_000),
        )])
        .await;
    let a = store.runs.iter().find(|r| r.node_id == "a").unwrap();
    assert_eq!((a.billed_until_ms, a.open), (BASE + 4_000, false));
    assert_eq!(sum(&store, "linux/vcpu_seconds"), 1000 * (4_000 + 10_000));
}

#[tokio::test]
async fn a_late_stop_corrects_what_was_billed_with_a_negative_row() {
    let mut store = Memory::with_group(GROUP, 1000, 1024);
    store.assign(GROUP, 1, "n1");
    // The node says the group ran 10 s; the API had stopped it after 4 s (the node heard late).
    store
        .apply(&[observed(
            GROUP,
            "n1",
            1,
            BASE,
            BASE + 10_000,
            Some(BASE + 10_000),
        )])
        .await;
    store
        .apply(&[MeterEvent::Capped {
            group_id: GROUP.to_owned(),
            generation: 1,
            at_ms: BASE + 4_000,
            cause: super::super::CapCause::Stop,
        }])
        .await;
    let cpu: Vec<i64> = store
        .ledger
        .iter()
        .filter(|r| r.meter == "linux/vcpu_seconds")
        .map(|r| r.quantity)
        .collect();
    assert_eq!(cpu, vec![1000 * 10_000, -1000 * 6_000]);
    assert_eq!(store.runs[0].billed_until_ms, BASE + 4_000);
}

#[tokio::test]
async fn a_batch_costs_one_load_and_one_save_whatever_its_size() {
    let mut store = Memory::default();
    let mut events = Vec::new();
    for i in 0..500 {
        let group = format!("g-{i}");
        store.add_group(&group, 250, 512);
        store.assign(&group, 1, "n1");
        events.push(observed(&group, "n1", i, BASE + 1, BASE + 1, None));
        events.push(observed(&group, "n1", i, BASE + 1, BASE + 9, None));
    }
    store.apply(&events).await;
    assert_eq!(store.calls, ["load", "save"]);
    assert_eq!(store.runs.len(), 500);
    assert!(
        store
            .runs
            .iter()
            .all(|r| r.open && r.facts.alive_ms == BASE + 9)
    );
    assert!(store.ledger.is_empty(), "running: nothing is final yet");
}
