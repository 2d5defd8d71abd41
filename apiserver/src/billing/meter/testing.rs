//! Timelines for the meter's property tests (here and in each store's): a group's runs on two nodes,
//! each ending by itself, by a stop, by a restart or by its node going silent, with the true billed
//! time of every run.

use proptest::prelude::*;

use super::{CapCause, MeterEvent, Observation};

pub(crate) const GROUP: &str = "g-1";
/// 2026-11-22T23:59:00Z: runs cross midnight often.
pub(crate) const BASE: i64 = 1_795_391_940_000;

#[derive(Debug, Clone)]
pub(crate) enum Fate {
    /// The group exits by itself; maybe stopped through the API afterwards.
    Finish { stop_after: Option<i64> },
    /// Stopped through the API; the node maybe reports its teardown.
    Stop { teardown: Option<i64> },
    /// Restarted: the next run begins on the same node where this one ends.
    Restart,
    /// The node goes silent for good; maybe stopped through the API afterwards.
    LostForever { stop_after: Option<i64> },
    /// The node goes silent, comes back still running the group, then the group exits.
    LostAndBack { back_after: i64 },
}

pub(crate) type Plan = Vec<(bool, i64, i64, Fate)>;

pub(crate) fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        proptest::option::of(1i64..5_000).prop_map(|stop_after| Fate::Finish { stop_after }),
        proptest::option::of(0i64..3_000).prop_map(|teardown| Fate::Stop { teardown }),
        Just(Fate::Restart),
        proptest::option::of(1i64..5_000).prop_map(|stop_after| Fate::LostForever { stop_after }),
        (1i64..20_000).prop_map(|back_after| Fate::LostAndBack { back_after }),
    ]
}

pub(crate) fn plan() -> impl Strategy<Value = Plan> {
    proptest::collection::vec((any::<bool>(), 1i64..90_000, 1i64..10_000, fate()), 1..6)
}

/// One case of the meter's property: a group's sizes and when its first run starts, what happens to
/// its runs, and how their events reach the meter (shuffled by `order`, some replayed, cut into
/// batches of these sizes).
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) offset: i64,
    pub(crate) cpu: i64,
    pub(crate) memory: i64,
    pub(crate) plan: Plan,
    pub(crate) order: u64,
    pub(crate) duplicates: Vec<prop::sample::Index>,
    pub(crate) batches: Vec<usize>,
}

/// The cases both property tests (in memory and each store's) draw from.
pub(crate) fn case() -> impl Strategy<Value = Case> {
    (
        0i64..120_000,
        1i64..4_000,
        1i64..16_384,
        plan(),
        any::<u64>(),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        proptest::collection::vec(1usize..6, 1..4),
    )
        .prop_map(
            |(offset, cpu, memory, plan, order, duplicates, batches)| Case {
                offset,
                cpu,
                memory,
                plan,
                order,
                duplicates,
                batches,
            },
        )
}

pub(crate) fn report(
    node: &str,
    seq: &mut u64,
    generation: i64,
    started: i64,
    observed: i64,
    finished: Option<i64>,
) -> MeterEvent {
    *seq += 1;
    MeterEvent::Observed(Observation {
        group_id: GROUP.to_owned(),
        node_id: node.to_owned(),
        seq: *seq,
        generation,
        started_ms: started,
        finished_ms: finished,
        observed_ms: observed,
    })
}

fn stop(generation: i64, at_ms: i64) -> MeterEvent {
    MeterEvent::Capped {
        group_id: GROUP.to_owned(),
        generation,
        at_ms,
        cause: CapCause::Stop,
    }
}

/// The events of a plan, each run's true billed duration (in order of start), and where each
/// generation was placed.
#[allow(clippy::type_complexity)]
pub(crate) fn timeline(
    offset: i64,
    plan: &Plan,
) -> (Vec<MeterEvent>, Vec<i64>, Vec<(i64, &'static str)>) {
    let nodes = ["n1", "n2"];
    let mut dead = [false, false];
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut truth = Vec::new();
    let mut placed = Vec::new();
    let mut t = BASE + offset;
    let mut generation = 1i64;
    let mut forced: Option<usize> = None;
    let mut plan = plan.clone();
    if matches!(plan.last(), Some((_, _, _, Fate::Restart))) {
        let (pick, dur, gap, _) = plan[0].clone();
        plan.push((pick, dur, gap, Fate::Finish { stop_after: None }));
    }
    for (pick, dur, gap, fate) in plan {
        let restarted = forced.is_some();
        let n = match forced.take() {
            Some(n) => n,
            None => {
                let preferred = usize::from(pick);
                if !dead[preferred] {
                    preferred
                } else if !dead[1 - preferred] {
                    1 - preferred
                } else {
                    break;
                }
            }
        };
        let node = nodes[n];
        placed.push((generation, node));
        // A restart's new run begins where the old one was ended.
        let started = if restarted { t } else { t + gap };
        events.push(report(node, &mut seq, generation, started, started, None));
        events.push(report(
            node,
            &mut seq,
            generation,
            started,
            started + dur / 2,
            None,
        ));
        let end;
        match fate {
            Fate::Finish { stop_after } => {
                end = started + dur;
                events.push(report(node, &mut seq, generation, started, end, Some(end)));
                truth.push(dur);
                if let Some(after) = stop_after {
                    events.push(stop(generation, end + after));
                }
                t = end + stop_after.unwrap_or(0);
                generation += 1;
            }
            Fate::Stop { teardown } => {
                end = started + dur;
                events.push(stop(generation, end));
                if let Some(td) = teardown {
                    events.push(report(
                        node,
                        &mut seq,
                        generation,
                        started,
                        end + td,
                        Some(end + td),
                    ));
                }
                truth.push(dur);
                t = end + teardown.unwrap_or(0);
                generation += 1;
            }
            Fate::Restart => {
                end = started + dur.max(1);
                truth.push(end - started);
                t = end;
                generation += 1;
                forced = Some(n);
                continue;
            }
            Fate::LostForever { stop_after } => {
                // The last message was the report at started + dur / 2; the loss is noticed later.
                let last = started + dur / 2;
                events.push(MeterEvent::NodeLost {
                    node_id: node.to_owned(),
                    at_ms: last,
                });
                truth.push(last - started);
                dead[n] = true;
                if let Some(after) = stop_after {
                    events.push(stop(generation, last + after));
                }
                t = last + stop_after.unwrap_or(0);
                generation += 1;
            }
            Fate::LostAndBack { back_after } => {
                let last = started + dur / 2;
                events.push(MeterEvent::NodeLost {
                    node_id: node.to_owned(),
                    at_ms: last,
                });
                let back = last + back_after;
                events.push(report(node, &mut seq, generation, started, back, None));
                end = back + dur / 2 + 1;
                events.push(report(node, &mut seq, generation, started, end, Some(end)));
                truth.push(end - started);
                t = end;
                generation += 1;
            }
        }
    }
    events.push(MeterEvent::Capped {
        group_id: GROUP.to_owned(),
        generation: generation - 1,
        at_ms: t + 1,
        cause: CapCause::Delete,
    });
    (events, truth, placed)
}

/// The events with some delivered twice, in a seeded shuffled order, cut into batches of the given
/// sizes (cycled).
pub(crate) fn delivery(
    events: &[MeterEvent],
    duplicates: &[prop::sample::Index],
    order: u64,
    batches: &[usize],
) -> Vec<Vec<MeterEvent>> {
    let mut delivered = events.to_vec();
    for index in duplicates {
        delivered.push(events[index.index(events.len())].clone());
    }
    let mut state = order | 1;
    for i in (1..delivered.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        delivered.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut out = Vec::new();
    let mut sizes = batches.iter().copied().filter(|s| *s > 0).cycle();
    let mut rest = delivered.as_slice();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}
