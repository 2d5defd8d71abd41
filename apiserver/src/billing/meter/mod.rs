//! The meter: folds what nodes report and what the API decides (stops, deletes, node losses) into
//! runs and the append-only ledger, by the rules of [`crate::billing`].
//!
//! - This module: the meter's input ([`MeterEvent`]), what it reads and writes ([`MeterState`],
//!   [`MeterChanges`]), the transaction it works in ([`MeterTx`]), and [`record`], which loads the
//!   state a batch of events needs at once, folds the whole batch, and saves the changes at once.
//! - [`fold`]: the decisions, pure functions over the loaded state.
//!
//! A store implements [`MeterTx`] inside the transaction of the state change the events come from,
//! so a ledger row commits with that change or not at all; it stores, it decides nothing.

mod fold;
#[cfg(test)]
pub(crate) mod store_tests;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use fold::fold;

use super::{Rates, RunFacts};
use crate::model::reported::ReportedStatus;
use crate::store::Result;

/// A node's word about one run of a group, from its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub group_id: String,
    pub node_id: String,
    /// The report's sequence number on its node stream: the cause of what it writes.
    pub seq: u64,
    pub generation: i64,
    /// Node clock; a report without a run (0) says nothing billing needs.
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub observed_ms: i64,
}

/// Why the API capped a group's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapCause {
    Stop,
    Delete,
}

impl CapCause {
    pub fn as_str(self) -> &'static str {
        match self {
            CapCause::Stop => "stop",
            CapCause::Delete => "delete",
        }
    }
}

/// Something billing must hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterEvent {
    Observed(Observation),
    /// The API stopped or deleted the group at `at_ms` (apiserver clock): every run of `generation`
    /// or older ends there at the latest.
    Capped {
        group_id: String,
        generation: i64,
        at_ms: i64,
        cause: CapCause,
    },
    /// The node went silent; `at_ms` is its last heartbeat (node clock).
    NodeLost {
        node_id: String,
        at_ms: i64,
    },
}

/// What a batch of events touches: the store loads state for these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// Every run, cap and assignment of these groups.
    pub groups: BTreeSet<String>,
    /// Every run of these nodes not known to have finished.
    pub lost_nodes: BTreeSet<String>,
    /// Nodes that reported: their losses (also those of every node a loaded run is on).
    pub nodes: BTreeSet<String>,
}

impl Keys {
    pub fn of(events: &[MeterEvent]) -> Keys {
        let mut keys = Keys::default();
        for event in events {
            match event {
                MeterEvent::Observed(o) if o.started_ms > 0 => {
                    keys.groups.insert(o.group_id.clone());
                    keys.nodes.insert(o.node_id.clone());
                }
                MeterEvent::Observed(_) => {}
                MeterEvent::Capped { group_id, .. } => {
                    keys.groups.insert(group_id.clone());
                }
                MeterEvent::NodeLost { node_id, .. } => {
                    keys.lost_nodes.insert(node_id.clone());
                }
            }
        }
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.lost_nodes.is_empty()
    }
}

/// A run: a stored one by its id, or one this batch opens (its index among the batch's new runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunId {
    Stored(i64),
    New(usize),
}

/// One start of a group on a node, with its facts and what the ledger holds of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub group_id: String,
    pub node_id: String,
    /// The generation of the report that opened it.
    pub generation: i64,
    /// `lost_ms` is not stored: the meter works it out from the node's losses.
    pub facts: RunFacts,
    pub rates: Rates,
    /// The ledger holds `[started_ms, billed_until_ms)` of this run.
    pub billed_until_ms: i64,
    /// The end is not known yet: exports accrue it to now.
    pub open: bool,
}

/// What the meter reads, for the [`Keys`] of a batch.
#[derive(Debug, Clone, Default)]
pub struct MeterState {
    /// The runs of `Keys::groups`, and the unfinished runs of `Keys::lost_nodes`.
    pub runs: Vec<Run>,
    /// Group → generation → earliest cap.
    pub caps: HashMap<String, BTreeMap<i64, i64>>,
    /// Node → the times it was declared lost, for every node of `runs` and of `Keys::lost_nodes`.
    pub losses: HashMap<String, BTreeSet<i64>>,
    /// Group → generation → the node it was placed on from that generation.
    pub assignments: HashMap<String, BTreeMap<i64, String>>,
    /// What each group of `Keys::groups` requests: from the live group, or once it is deleted from
    /// what billing remembered of it.
    pub rates: HashMap<String, Rates>,
}

/// One ledger row: a run's meter over a stretch within one UTC day; negative is a correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub run: RunId,
    pub meter: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub quantity: i64,
    /// `report` (cause_seq: the report's sequence number), `stop`/`delete` (the generation), `lost`
    /// (the loss time).
    pub cause: &'static str,
    pub cause_seq: i64,
}

/// What the meter writes for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterChanges {
    /// Runs the batch opened, in their final state; `RunId::New(i)` is `new_runs[i]`.
    pub new_runs: Vec<Run>,
    /// Stored runs the batch changed, in their final state.
    pub updated_runs: Vec<Run>,
    /// Rows to append, in order.
    pub ledger: Vec<LedgerRow>,
    /// `(group, generation, at_ms)`: a store keeps the earliest per (group, generation).
    pub caps: Vec<(String, i64, i64)>,
    /// `(node, at_ms)`.
    pub losses: Vec<(String, i64)>,
}

impl MeterChanges {
    pub fn is_empty(&self) -> bool {
        *self == MeterChanges::default()
    }
}

/// The meter's view of the transaction it runs in: storage only.
#[async_trait::async_trait]
pub trait MeterTx: Send {
    /// Everything the events of `keys` may touch (see [`MeterState`]).
    async fn load(&mut self, keys: &Keys) -> Result<MeterState>;
    /// Writes the changes: remembers who the groups of new runs are (so a deleted group's usage can
    /// still be exported), inserts new runs, updates changed ones, appends the ledger rows (a row the
    /// same cause wrote before is not written twice), keeps caps and losses.
    async fn save(&mut self, changes: &MeterChanges) -> Result<()>;
}

/// Folds a batch of events, in order, with two storage calls: one load, one save.
pub async fn record(tx: &mut dyn MeterTx, events: &[MeterEvent]) -> Result<()> {
    let keys = Keys::of(events);
    if keys.is_empty() {
        return Ok(());
    }
    let mut state = tx.load(&keys).await?;
    let changes = fold(&mut state, events);
    if changes.is_empty() {
        return Ok(());
    }
    tx.save(&changes).await
}

/// A node's report as the meter sees it.
pub fn observation(node_id: &str, seq: u64, status: &ReportedStatus) -> MeterEvent {
    MeterEvent::Observed(Observation {
        group_id: status.group_id.clone(),
        node_id: node_id.to_owned(),
        seq,
        generation: status.generation as i64,
        started_ms: status.run_started_unix_ms,
        finished_ms: (status.run_finished_unix_ms > 0).then_some(status.run_finished_unix_ms),
        observed_ms: status.observed_unix_ms,
    })
}
