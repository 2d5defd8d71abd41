//! The bus's events in `NOTIFY` payloads: JSON, `{"o": origin, "e": [events]}`, each payload under
//! PostgreSQL's 8000-byte limit. A batch is coalesced first (one scheduler wake, one zone poke),
//! then packed; an assignment whose id lists alone pass the limit is split into several.

use serde::{Deserialize, Serialize};

use super::bus::Event;

/// The largest payload sent (PostgreSQL refuses 8000 bytes and more).
pub(super) const LIMIT: usize = 7900;

#[derive(Serialize)]
struct Out<'a> {
    o: &'a str,
    e: Vec<&'a Event>,
}

#[derive(Deserialize)]
struct In {
    o: String,
    e: Vec<Event>,
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
#[error("a bus payload does not parse")]
pub(super) struct Malformed(#[source] serde_json::Error);

/// The origin and the events of one payload.
pub(super) fn unpack(payload: &str) -> Result<(String, Vec<Event>), Malformed> {
    let parsed: In = serde_json::from_str(payload).map_err(Malformed)?;
    Ok((parsed.o, parsed.e))
}

/// `events` from `origin` as payloads under [`LIMIT`], in order (the coalesced ones first).
pub(super) fn pack(origin: &str, events: Vec<Event>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut size = overhead(origin);
    for event in coalesce(events)
        .into_iter()
        .flat_map(|e| split(e, LIMIT - overhead(origin)))
    {
        let len = encoded_len(&event) + 1;
        if !current.is_empty() && size + len > LIMIT {
            payloads.push(encode(origin, &current));
            current.clear();
            size = overhead(origin);
        }
        size += len;
        current.push(event);
    }
    if !current.is_empty() {
        payloads.push(encode(origin, &current));
    }
    payloads
}

fn overhead(origin: &str) -> usize {
    encode(origin, &[]).len()
}

fn encode(origin: &str, events: &[Event]) -> String {
    serde_json::to_string(&Out {
        o: origin,
        e: events.iter().collect(),
    })
    .unwrap_or_default()
}

fn encoded_len(event: &Event) -> usize {
    serde_json::to_string(event).map_or(0, |s| s.len())
}

/// One scheduler wake (a capacity change if any was) and one zone poke per batch, first; each
/// node size once; assignments as they came.
fn coalesce(events: Vec<Event>) -> Vec<Event> {
    let mut wake: Option<bool> = None;
    let mut zone = false;
    let mut joined = Vec::new();
    let mut assigns = Vec::new();
    for event in events {
        match event {
            Event::SchedulerWake { capacity_changed } => {
                wake = Some(wake.unwrap_or(false) || capacity_changed)
            }
            Event::ZoneDirty => zone = true,
            Event::NodeJoined { .. } => {
                if !joined.contains(&event) {
                    joined.push(event)
                }
            }
            // In order with the assignments: a deleted node's removals go before its close.
            Event::Assign { .. } | Event::NodeDeleted { .. } => assigns.push(event),
        }
    }
    let mut out: Vec<Event> = wake
        .map(|capacity_changed| Event::SchedulerWake { capacity_changed })
        .into_iter()
        .collect();
    if zone {
        out.push(Event::ZoneDirty);
    }
    out.extend(joined);
    out.extend(assigns);
    out
}

/// An assignment in pieces each encoding within `budget` bytes (one id that alone passes it stays
/// alone, and PostgreSQL refuses its payload: ids are the apiserver's own UUIDs, never that long).
fn split(event: Event, budget: usize) -> Vec<Event> {
    let Event::Assign {
        node,
        upserted,
        removed,
    } = event
    else {
        return vec![event];
    };
    let empty = |node: &str| Event::Assign {
        node: node.to_owned(),
        upserted: Vec::new(),
        removed: Vec::new(),
    };
    let base = encoded_len(&empty(&node));
    let mut pieces = Vec::new();
    let mut piece = empty(&node);
    let mut size = base;
    let tagged = upserted
        .into_iter()
        .map(|id| (true, id))
        .chain(removed.into_iter().map(|id| (false, id)));
    for (up, id) in tagged {
        // The id in quotes and a comma; generous for JSON escapes of odd characters.
        let len = serde_json::to_string(&id).map_or(0, |s| s.len()) + 1;
        if size + len > budget
            && let Event::Assign {
                upserted, removed, ..
            } = &piece
            && !(upserted.is_empty() && removed.is_empty())
        {
            pieces.push(std::mem::replace(&mut piece, empty(&node)));
            size = base;
        }
        size += len;
        if let Event::Assign {
            upserted, removed, ..
        } = &mut piece
        {
            if up {
                upserted.push(id)
            } else {
                removed.push(id)
            }
        }
    }
    if pieces.is_empty()
        || matches!(&piece, Event::Assign { upserted, removed, .. } if !(upserted.is_empty() && removed.is_empty()))
    {
        pieces.push(piece);
    }
    pieces
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn assign(node: &str, upserted: &[String], removed: &[String]) -> Event {
        Event::Assign {
            node: node.to_owned(),
            upserted: upserted.to_vec(),
            removed: removed.to_vec(),
        }
    }

    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix}-{i:08}-0000-0000-0000-000000000000"))
            .collect()
    }

    #[test]
    fn a_batch_wakes_once_and_pokes_the_zone_once() {
        let events = vec![
            Event::SchedulerWake {
                capacity_changed: false,
            },
            Event::ZoneDirty,
            assign("n1", &ids("g", 1), &[]),
            Event::SchedulerWake {
                capacity_changed: true,
            },
            Event::ZoneDirty,
            Event::SchedulerWake {
                capacity_changed: false,
            },
        ];
        let payloads = pack("me", events);
        assert_eq!(payloads.len(), 1);
        let (origin, events) = unpack(&payloads[0]).unwrap();
        assert_eq!(origin, "me");
        assert_eq!(
            events,
            vec![
                Event::SchedulerWake {
                    capacity_changed: true
                },
                Event::ZoneDirty,
                assign("n1", &ids("g", 1), &[]),
            ]
        );
    }

    #[test]
    fn a_deleted_node_is_closed_after_its_removals_whatever_else_is_coalesced() {
        let events = vec![
            assign("n1", &[], &ids("g", 2)),
            Event::ZoneDirty,
            Event::NodeDeleted {
                node: "n1".to_owned(),
            },
            assign("n2", &ids("h", 1), &[]),
        ];
        let (_, heard) = unpack(&pack("me", events)[0]).unwrap();
        assert_eq!(
            heard,
            vec![
                Event::ZoneDirty,
                assign("n1", &[], &ids("g", 2)),
                Event::NodeDeleted {
                    node: "n1".to_owned()
                },
                assign("n2", &ids("h", 1), &[]),
            ]
        );
    }

    #[test]
    fn a_garbled_payload_is_refused() {
        assert!(unpack("{\"o\":\"x\",\"e\":[{\"k\":\"nope\"}]}").is_err());
        assert!(unpack("not json").is_err());
    }

    proptest! {
        /// However many ids, every payload is under the limit and together they carry every id of
        /// every node, in order.
        #[test]
        fn payloads_stay_under_the_limit_and_lose_nothing(
            nodes in prop::collection::vec((0usize..600, 0usize..300), 1..6),
        ) {
            let events: Vec<Event> = nodes
                .iter()
                .enumerate()
                .map(|(i, (up, down))| assign(&format!("node-{i}"), &ids("u", *up), &ids("r", *down)))
                .collect();
            let payloads = pack("origin-0000", events);
            let mut got: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
            for payload in &payloads {
                prop_assert!(payload.len() < LIMIT, "{} bytes", payload.len());
                for event in unpack(payload).unwrap().1 {
                    let Event::Assign { node, upserted, removed } = event else {
                        panic!("only assignments were sent");
                    };
                    match got.last_mut() {
                        Some(last) if last.0 == node => {
                            last.1.extend(upserted);
                            last.2.extend(removed);
                        }
                        _ => got.push((node, upserted, removed)),
                    }
                }
            }
            let want: Vec<_> = nodes
                .iter()
                .enumerate()
                .map(|(i, (up, down))| (format!("node-{i}"), ids("u", *up), ids("r", *down)))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
