//! The report writer: node reports (and the node clocks sent with them) are queued as they arrive
//! and one task folds whatever has arrived into the store in one `apply_statuses` call, so a burst of
//! thousands of reports costs a handful of commits rather than thousands. Reports keep their arrival
//! order; a node's clock is the latest it sent in the batch (billing needs the store's node clock
//! never behind a report it holds).

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::node;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{NodeReport, Store};

/// Most reports written in one transaction.
const REPORT_BATCH: usize = 1024;

/// What the report writer stores.
#[derive(Debug)]
enum Incoming {
    Report(NodeReport),
    /// A node's clock in its latest message.
    Clock(String, i64),
}

/// The queue into the report writer; clones share one writer.
#[derive(Debug, Clone)]
pub(super) struct ReportQueue {
    tx: mpsc::UnboundedSender<Incoming>,
}

impl ReportQueue {
    /// Starts the writer; it runs until `shutdown`, when reports no longer matter.
    pub(super) fn start(
        store: Arc<dyn Store>,
        zone_dirty: crate::dns::ZoneDirty,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_reports(store, rx, zone_dirty, shutdown));
        Self { tx }
    }

    /// Queues a report; reports are applied in arrival order.
    pub(super) fn report(&self, node_id: &str, seq: u64, status: &node::GroupStatus) {
        // The writer only stops at shutdown, when reports no longer matter.
        let _ = self
            .tx
            .send(Incoming::Report(to_report(node_id, seq, status)));
    }

    /// Queues the node clock of a message that carried reports, to be written with them.
    pub(super) fn clock(&self, node_id: &str, node_clock_ms: i64) {
        let _ = self
            .tx
            .send(Incoming::Clock(node_id.to_owned(), node_clock_ms));
    }
}

/// The store's form of a report from `node_id`.
fn to_report(node_id: &str, seq: u64, status: &node::GroupStatus) -> NodeReport {
    NodeReport {
        node_id: node_id.to_owned(),
        seq,
        status: status.into(),
    }
}

/// Sorts one batch: reports in arrival order onto `reports`, each node's latest clock into `clocks`.
fn sort_batch(
    incoming: &mut Vec<Incoming>,
    reports: &mut Vec<NodeReport>,
    clocks: &mut HashMap<String, i64>,
) {
    for item in incoming.drain(..) {
        match item {
            Incoming::Report(report) => reports.push(report),
            Incoming::Clock(node, ms) => {
                let clock = clocks.entry(node).or_default();
                *clock = (*clock).max(ms);
            }
        }
    }
}

async fn write_reports(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    zone_dirty: crate::dns::ZoneDirty,
    shutdown: CancellationToken,
) {
    let mut incoming = Vec::with_capacity(REPORT_BATCH);
    let mut reports = Vec::with_capacity(REPORT_BATCH);
    let mut clocks: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            n = rx.recv_many(&mut incoming, REPORT_BATCH) => {
                if n == 0 {
                    return;
                }
            }
        }
        sort_batch(&mut incoming, &mut reports, &mut clocks);
        let clocks_now: Vec<(String, i64)> = clocks.drain().collect();
        if let Err(err) = store
            .apply_statuses(&reports, &clocks_now, crate::now_ms())
            .await
        {
            tracing::error!(error = %err, reports = reports.len(), "cannot apply node reports");
        }
        if !reports.is_empty() {
            // A group may have started running with an IP, or stopped.
            zone_dirty.poke();
        }
        reports.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node_id: &str, seq: u64) -> Incoming {
        Incoming::Report(to_report(node_id, seq, &node::GroupStatus::default()))
    }

    #[test]
    fn a_batch_keeps_reports_in_arrival_order_and_each_nodes_latest_clock() {
        let mut incoming = vec![
            report("a", 7),
            Incoming::Clock("a".to_owned(), 2_000),
            report("b", 3),
            Incoming::Clock("b".to_owned(), 900),
            // Clocks from one node may arrive out of order: the latest is kept.
            Incoming::Clock("a".to_owned(), 1_500),
            report("a", 8),
        ];
        let (mut reports, mut clocks) = (Vec::new(), HashMap::new());
        sort_batch(&mut incoming, &mut reports, &mut clocks);
        assert!(incoming.is_empty(), "the batch is taken whole");
        let order: Vec<(&str, u64)> = reports
            .iter()
            .map(|r| (r.node_id.as_str(), r.seq))
            .collect();
        assert_eq!(order, vec![("a", 7), ("b", 3), ("a", 8)]);
        assert_eq!(clocks.get("a"), Some(&2_000));
        assert_eq!(clocks.get("b"), Some(&900));
    }

    #[test]
    fn a_batch_of_clocks_only_has_no_reports() {
        let mut incoming = vec![Incoming::Clock("a".to_owned(), 5)];
        let (mut reports, mut clocks) = (Vec::new(), HashMap::new());
        sort_batch(&mut incoming, &mut reports, &mut clocks);
        assert!(reports.is_empty());
        assert_eq!(clocks.len(), 1);
    }
}
