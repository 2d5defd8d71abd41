//! The meter's storage in PostgreSQL: runs, caps, node losses and the append-only ledger (the rules
//! are `crate::billing::meter`'s). Everything here runs inside the caller's transaction, so a ledger
//! row commits with the state change it comes from or not at all.
//!
//! LANE pg-billing: the bodies below are being written (issue 15); the signatures are the contract the
//! rest of the PostgreSQL store calls.

#![allow(dead_code, unused_variables)]

use sqlx::PgConnection;

use crate::billing::meter::MeterEvent;
use crate::store::{GroupRecord, Result};

/// Folds `events` through the meter in the transaction `conn` is in.
pub(super) async fn record(conn: &mut PgConnection, events: &[MeterEvent]) -> Result<()> {
    todo!("lane pg-billing")
}

/// Keeps who the group is (and what it requests) for billing, also after it is deleted.
pub(super) async fn remember_group(conn: &mut PgConnection, group: &GroupRecord) -> Result<()> {
    todo!("lane pg-billing")
}

/// Records the node clock of nodes' latest messages (their last heartbeat should they go silent).
pub(super) async fn nodes_seen(conn: &mut PgConnection, clocks: &[(String, i64)]) -> Result<()> {
    todo!("lane pg-billing")
}

/// The node clock of the node's latest message, 0 if unknown.
pub(super) async fn last_node_ms(conn: &mut PgConnection, node_id: &str) -> Result<i64> {
    todo!("lane pg-billing")
}
