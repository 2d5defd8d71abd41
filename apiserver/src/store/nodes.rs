//! Nodes: join tokens, joining, readiness and heartbeats.

use std::collections::BTreeMap;

use super::Result;
use crate::model::{OsType, Size};

/// A node's last message as the gateway saw it, for [`NodeStore::record_heartbeats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: String,
    /// Apiserver clock.
    pub at_ms: i64,
    /// The node's clock in it (0: none).
    pub node_clock_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Ready,
    NotReady,
    /// Silent past `--node-lost-after`: its groups were taken off it (moved or settled). Ready again
    /// when it is heard from; it then runs none of them.
    Lost,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "Ready",
            NodeStatus::NotReady => "NotReady",
            NodeStatus::Lost => "Lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Ready" => Some(NodeStatus::Ready),
            "NotReady" => Some(NodeStatus::NotReady),
            "Lost" => Some(NodeStatus::Lost),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub name: String,
    pub os_type: OsType,
    pub capacity: Size,
    pub used: Size,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub status: NodeStatus,
    pub last_heartbeat_ms: i64,
    pub joined_ms: i64,
    /// No new placement on it (`berth admin node cordon`, or a drain).
    pub cordoned: bool,
    /// A drain was asked for (until uncordoned); its groups were taken off it.
    pub draining: bool,
}

impl NodeRecord {
    pub fn free(&self) -> Size {
        self.capacity.saturating_sub(&self.used)
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefusal {
    /// Unknown token, wrong secret, no uses left or expired: deliberately one answer.
    InvalidToken,
    NameTaken,
}

/// Join tokens and nodes.
#[async_trait::async_trait]
pub trait NodeStore: Send + Sync {
    async fn insert_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        uses: u32,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// Consumes one use of the join token and records the node, in one transaction; a use is
    /// consumed once however many joins race for it, and a refused join consumes none.
    async fn join_node(
        &self,
        token_id: &str,
        secret_hash: &str,
        node: &NodeRecord,
    ) -> Result<Result<(), JoinRefusal>>;
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
    async fn node(&self, id: &str) -> Result<Option<NodeRecord>>;
    /// Sets a node's readiness; returns whether it changed anything. Ready always applies.
    /// NotReady is a judgement on silence and is guarded: it applies only to a Ready node whose stored
    /// `last_heartbeat_ms` is not after the given one (no replica heard from it since), so replicas
    /// never declare a node lost that another one hears. NotReady also marks its groups `Unhealthy`
    /// and ends billing of the node's runs at its last message (the latest node clock known,
    /// `node_clock_ms` or stored), until it reports them again. `last_heartbeat_ms` never moves the
    /// stored one back.
    async fn set_node_status(
        &self,
        id: &str,
        status: NodeStatus,
        last_heartbeat_ms: i64,
        node_clock_ms: i64,
    ) -> Result<bool>;
    /// Records nodes' last messages in one statement per few hundred nodes (the gateway calls it
    /// every few seconds with the nodes whose heartbeat moved); never moves either time back.
    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<()>;
    /// The node id of every placed group (for per-node counts).
    async fn group_counts_by_node(&self) -> Result<Vec<String>>;
}
