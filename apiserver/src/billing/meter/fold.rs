//! The meter's decisions: a batch of events folded, in order, over the state loaded for it.
//!
//! Each event is handled as if alone in its transaction; a later event of the batch sees what the
//! earlier ones changed. Every rule lives here, none in a store.

use std::collections::{BTreeSet, HashMap};

use super::{LedgerRow, MeterChanges, MeterEvent, MeterState, Observation, Run, RunId};
use crate::billing::{Period, RunFacts, split};

/// The node a group was placed on at `generation`: the latest assignment at or below it (restarts
/// and updates keep the node and bump the generation).
fn placed_on<'a>(state: &'a MeterState, group_id: &str, generation: i64) -> Option<&'a str> {
    state
        .assignments
        .get(group_id)?
        .range(..=generation)
        .next_back()
        .map(|(_, node)| node.as_str())
}

/// Folds `events` over `state` (which ends up holding the result) and says what to write.
pub fn fold(state: &mut MeterState, events: &[MeterEvent]) -> MeterChanges {
    let mut folder = Folder::new(state);
    for event in events {
        match event {
            MeterEvent::Observed(o) => folder.observe(o),
            MeterEvent::Capped {
                group_id,
                generation,
                at_ms,
                cause,
            } => folder.cap(group_id, *generation, *at_ms, cause.as_str()),
            MeterEvent::NodeLost { node_id, at_ms } => folder.node_lost(node_id, *at_ms),
        }
    }
    folder.finish()
}

type Cause = (&'static str, i64);

struct Folder<'a> {
    state: &'a mut MeterState,
    /// (group, node, started) → index in `state.runs`.
    by_key: HashMap<(String, String, i64), usize>,
    by_group: HashMap<String, Vec<usize>>,
    touched: BTreeSet<usize>,
    opened: usize,
    changes: MeterChanges,
}

impl<'a> Folder<'a> {
    fn new(state: &'a mut MeterState) -> Self {
        let mut folder = Folder {
            by_key: HashMap::with_capacity(state.runs.len()),
            by_group: HashMap::new(),
            touched: BTreeSet::new(),
            opened: 0,
            changes: MeterChanges::default(),
            state,
        };
        for i in 0..folder.state.runs.len() {
            folder.index(i);
        }
        folder
    }

    fn index(&mut self, i: usize) {
        let run = &self.state.runs[i];
        self.by_key.insert(
            (
                run.group_id.clone(),
                run.node_id.clone(),
                run.facts.started_ms,
            ),
            i,
        );
        self.by_group
            .entry(run.group_id.clone())
            .or_default()
            .push(i);
    }

    fn runs_of(&self, group_id: &str) -> Vec<usize> {
        self.by_group.get(group_id).cloned().unwrap_or_default()
    }

    /// Folds a node's report into its run: opens the run on its first report, records that it
    /// finished, and bills whatever that changes.
    fn observe(&mut self, o: &Observation) {
        let started = o.started_ms;
        if started <= 0 {
            return;
        }
        let observed = o.observed_ms.max(started);
        let cause = ("report", o.seq as i64);
        let key = (o.group_id.clone(), o.node_id.clone(), started);
        if let Some(&i) = self.by_key.get(&key) {
            if placed_on(self.state, &o.group_id, o.generation).is_some_and(|n| n != o.node_id) {
                // The group was placed on another node at this generation since (its node was
                // lost or drained): this run ended there, and a copy left behind never extends it.
                tracing::debug!(node = %o.node_id, group = %o.group_id,
                    "a report of a run its group was moved off; not billed");
                return;
            }
            let run = &mut self.state.runs[i];
            let before = run.facts.clone();
            if run.facts.finished_ms.is_none() {
                run.facts.finished_ms = o.finished_ms;
            }
            run.facts.alive_ms = run.facts.alive_ms.max(observed);
            if run.facts == before {
                return;
            }
            if run.open && run.facts.finished_ms.is_none() {
                // Still running and said so later: no loss can apply past this, the end stays unknown.
                self.touched.insert(i);
            } else {
                self.settle(i, cause);
            }
            return;
        }

        if placed_on(self.state, &o.group_id, o.generation) != Some(o.node_id.as_str()) {
            tracing::warn!(node = %o.node_id, group = %o.group_id, generation = o.generation,
                "a node reported a run of a group it was not given; not billed");
            return;
        }
        let Some(rates) = self.state.rates.get(&o.group_id).cloned() else {
            tracing::debug!(group = %o.group_id, "a report about a group billing never knew");
            return;
        };
        let cap_ms = self
            .state
            .caps
            .get(&o.group_id)
            .and_then(|caps| caps.range(o.generation..).map(|(_, at)| *at).min());
        let same_place: Vec<usize> = self
            .runs_of(&o.group_id)
            .into_iter()
            .filter(|&i| self.state.runs[i].node_id == o.node_id)
            .collect();
        let superseded_ms = same_place
            .iter()
            .map(|&i| self.state.runs[i].facts.started_ms)
            .filter(|&s| s > started)
            .min();
        let id = RunId::New(self.opened);
        self.opened += 1;
        self.state.runs.push(Run {
            id,
            group_id: o.group_id.clone(),
            node_id: o.node_id.clone(),
            generation: o.generation,
            facts: RunFacts {
                started_ms: started,
                finished_ms: o.finished_ms,
                alive_ms: observed,
                cap_ms,
                superseded_ms,
                lost_ms: None,
            },
            rates,
            billed_until_ms: started,
            open: true,
        });
        let i = self.state.runs.len() - 1;
        self.index(i);
        self.settle(i, cause);

        // This run ends the earlier runs of the group on this node (a restart or an update).
        for j in same_place {
            let facts = &mut self.state.runs[j].facts;
            if facts.started_ms < started && facts.superseded_ms.is_none_or(|s| s > started) {
                facts.superseded_ms = Some(started);
                self.settle(j, cause);
            }
        }
    }

    /// The API stopped or deleted the group at `at_ms`: every run of `generation` or older ends there
    /// at the latest.
    fn cap(&mut self, group_id: &str, generation: i64, at_ms: i64, cause: &'static str) {
        let caps = self.state.caps.entry(group_id.to_owned()).or_default();
        let at = caps.entry(generation).or_insert(at_ms);
        *at = (*at).min(at_ms);
        self.changes
            .caps
            .push((group_id.to_owned(), generation, at_ms));
        for i in self.runs_of(group_id) {
            let run = &mut self.state.runs[i];
            if run.generation <= generation && run.facts.cap_ms.is_none_or(|c| c > at_ms) {
                run.facts.cap_ms = Some(at_ms);
                self.settle(i, (cause, generation));
            }
        }
    }

    /// The node went silent at `at_ms`: its runs not known to have finished end there, until the
    /// node reports them again.
    fn node_lost(&mut self, node_id: &str, at_ms: i64) {
        if !self
            .state
            .losses
            .entry(node_id.to_owned())
            .or_default()
            .insert(at_ms)
        {
            return;
        }
        self.changes.losses.push((node_id.to_owned(), at_ms));
        for i in 0..self.state.runs.len() {
            let run = &self.state.runs[i];
            if run.node_id == node_id && run.facts.finished_ms.is_none() {
                self.settle(i, ("lost", at_ms));
            }
        }
    }

    /// Works out the run's end from its facts and bills the difference.
    fn settle(&mut self, i: usize, cause: Cause) {
        let run = &mut self.state.runs[i];
        run.facts.lost_ms = self
            .state
            .losses
            .get(&run.node_id)
            .and_then(|at| at.range(run.facts.alive_ms..).next().copied());
        match run.facts.end() {
            Some(end) => {
                if end != run.billed_until_ms {
                    self.changes
                        .ledger
                        .extend(ledger_rows(run, run.billed_until_ms, end, cause));
                    run.billed_until_ms = end;
                }
                run.open = false;
            }
            None => run.open = true,
        }
        self.touched.insert(i);
    }

    fn finish(mut self) -> MeterChanges {
        for i in std::mem::take(&mut self.touched) {
            let run = self.state.runs[i].clone();
            match run.id {
                RunId::New(_) => self.changes.new_runs.push(run),
                RunId::Stored(_) => self.changes.updated_runs.push(run),
            }
        }
        self.changes
    }
}

/// The rows for moving a run's billed end from `from` to `to`: positive when it grows, negative (a
/// correction) when it shrinks; one row per meter and UTC day.
fn ledger_rows(run: &Run, from: i64, to: i64, (cause, cause_seq): Cause) -> Vec<LedgerRow> {
    let (lo, hi, sign) = if to > from {
        (from, to, 1)
    } else {
        (to, from, -1)
    };
    let mut rows = Vec::new();
    for (meter, rate) in run.rates.meters() {
        if rate == 0 {
            continue;
        }
        for (start, end) in split(lo, hi, Period::Day) {
            rows.push(LedgerRow {
                run: run.id,
                meter: meter.clone(),
                start_ms: start,
                end_ms: end,
                quantity: sign * rate * (end - start),
                cause,
                cause_seq,
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests;
