//! Lost nodes: the liveness monitor's second judgement. A node NotReady in the store that nobody has
//! heard from for `--node-lost-after` (the store's heartbeats and this replica's own, whichever is
//! later, and not before the start of this leader's term) is lost: the store takes every group off
//! it in one guarded transaction (`NodeLifecycleStore::lose_node`: it holds only if no replica wrote
//! a later heartbeat), the ones their restart policy runs again wait for a node, and the gateway
//! tells everyone ([`NodeGateway::evacuated`]). Both timeouts count from the node's last message, so
//! a node is NotReady after `--node-timeout-secs` and lost `--node-lost-after` after it went silent.

use super::NodeGateway;
use super::liveness::{Lost, SeenMap, silent_since};
use crate::store::{NodeRecord, NodeStatus};

/// The nodes NotReady in the store (`nodes`) that nobody has heard from for longer than
/// `lost_after_ms` (the store's last heartbeat or this replica's, whichever is later, and not
/// before `from_ms`, the start of this leader's term).
pub(super) fn take_lost(
    seen: &SeenMap,
    nodes: &[NodeRecord],
    from_ms: i64,
    now_ms: i64,
    lost_after_ms: i64,
) -> Vec<Lost> {
    nodes
        .iter()
        .filter(|node| node.status == NodeStatus::NotReady)
        .filter_map(|node| {
            let here = seen.get(&node.id);
            let heard_ms = silent_since(node, here, from_ms, now_ms, lost_after_ms)?;
            Some(Lost {
                id: node.id.clone(),
                heard_ms,
                node_clock_ms: here.map_or(0, |s| s.node_clock_ms),
            })
        })
        .collect()
}

impl NodeGateway {
    /// Loses the nodes of `nodes` (as the store had them this pass) silent past `--node-lost-after`
    /// since `from_ms` at the earliest: their groups are taken off them and the moved ones placed
    /// elsewhere.
    pub(super) async fn lose_silent(&self, nodes: &[NodeRecord], from_ms: i64) {
        let liveness = &self.inner.liveness;
        let now = crate::now_ms();
        let lost = take_lost(
            &super::lock(&liveness.seen),
            nodes,
            from_ms,
            now,
            liveness.node_lost_after_ms,
        );
        for node in lost {
            match liveness
                .store
                .lose_node(&node.id, node.heard_ms, now, false)
                .await
            {
                Ok(Some(unassigned)) => {
                    tracing::warn!(
                        node = %node.id,
                        silent_ms = now - node.heard_ms,
                        moved = unassigned.moved.len(),
                        settled = unassigned.settled.len(),
                        "node lost: its groups are placed on other nodes"
                    );
                    self.evacuated(&node.id, &unassigned);
                }
                // Heard from since (by another replica), or no longer NotReady: not lost.
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %err, node = %node.id, "cannot judge node lost");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::liveness::heard;

    fn stored(id: &str, status: NodeStatus, last_heartbeat_ms: i64) -> NodeRecord {
        NodeRecord {
            status,
            last_heartbeat_ms,
            ..crate::store::conformance::fixtures::node(id, 1000)
        }
    }

    fn ids(lost: Vec<Lost>) -> Vec<String> {
        lost.into_iter().map(|l| l.id).collect()
    }

    #[test]
    fn only_a_not_ready_node_silent_past_the_timeout_is_lost() {
        let seen = SeenMap::new();
        let nodes = [
            stored("silent", NodeStatus::NotReady, 1_000),
            stored("ready", NodeStatus::Ready, 1_000),
            stored("lost", NodeStatus::Lost, 1_000),
        ];
        assert!(
            take_lost(&seen, &nodes, 0, 31_000, 30_000).is_empty(),
            "exactly the timeout is not lost"
        );
        assert_eq!(
            take_lost(&seen, &nodes, 0, 31_001, 30_000),
            vec![Lost {
                id: "silent".to_owned(),
                heard_ms: 1_000,
                node_clock_ms: 0
            }],
            "a Ready node is first NotReady; a lost one is not lost twice"
        );
    }

    #[test]
    fn the_later_of_the_stores_word_and_this_replicas_counts() {
        let mut seen = SeenMap::new();
        heard(&mut seen, "heard-here", 9_000, 77);
        heard(&mut seen, "stale-here", 500, 0);
        let nodes = [
            stored("heard-here", NodeStatus::NotReady, 1_000),
            stored("stale-here", NodeStatus::NotReady, 5_000),
        ];
        assert_eq!(
            ids(take_lost(&seen, &nodes, 0, 36_000, 30_000)),
            ["stale-here"],
            "this replica's later news keeps a node"
        );
        assert_eq!(
            take_lost(&seen, &nodes, 0, 39_001, 30_000)
                .into_iter()
                .find(|l| l.id == "heard-here"),
            Some(Lost {
                id: "heard-here".to_owned(),
                heard_ms: 9_000,
                node_clock_ms: 77
            }),
            "judged on the last message anyone heard, the guard the store checks"
        );
    }

    #[test]
    fn a_new_leader_gives_every_node_the_whole_timeout_from_its_takeover() {
        let seen = SeenMap::new();
        let nodes = [stored("n1", NodeStatus::NotReady, 1_000)];
        assert!(take_lost(&seen, &nodes, 50_000, 80_000, 30_000).is_empty());
        assert_eq!(
            ids(take_lost(&seen, &nodes, 50_000, 80_001, 30_000)),
            ["n1"]
        );
    }
}
