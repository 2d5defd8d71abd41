//! The live Sync streams: one outbox per connected node, an epoch per connection (so an old stream
//! ending does not remove a newer one) and the sequence numbers of the `DesiredState`s sent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_proto::node::{DesiredState, GroupAssignment};
use tokio::sync::mpsc;
use tonic::Status;

use super::lock;

/// What a node's stream carries down.
pub(super) type Outbox = mpsc::UnboundedSender<Result<DesiredState, Status>>;
/// The receiving end, which becomes the response stream.
pub(super) type Inbox = mpsc::UnboundedReceiver<Result<DesiredState, Status>>;

#[derive(Debug)]
struct Session {
    epoch: u64,
    tx: Outbox,
}

#[derive(Debug)]
pub(super) struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    next_epoch: AtomicU64,
    next_seq: AtomicU64,
    /// The nameserver sent with every full state (`--dns-advertise`).
    dns_server: Option<IpAddr>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(None)
    }
}

/// A registered stream: its epoch (for [`Sessions::close`]) and its outbox.
pub(super) struct Opened {
    pub(super) epoch: u64,
    pub(super) tx: Outbox,
    pub(super) rx: Inbox,
}

impl Sessions {
    /// No stream yet; full states advertise `dns_server` for groups' resolv.conf.
    pub(super) fn new(dns_server: Option<IpAddr>) -> Self {
        Self {
            live: Mutex::default(),
            next_epoch: 1.into(),
            next_seq: 1.into(),
            dns_server,
        }
    }

    /// Registers a new stream for `node_id`, replacing any older one.
    pub(super) fn open(&self, node_id: &str) -> Opened {
        let (tx, rx) = mpsc::unbounded_channel();
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(
            node_id.to_owned(),
            Session {
                epoch,
                tx: tx.clone(),
            },
        );
        Opened { epoch, tx, rx }
    }

    /// The stream of `epoch` ended; forgets it unless a newer one replaced it.
    pub(super) fn close(&self, node_id: &str, epoch: u64) {
        let mut live = lock(&self.live);
        if live.get(node_id).is_some_and(|s| s.epoch == epoch) {
            live.remove(node_id);
        }
    }

    /// Ends `node_id`'s stream with `status` (its node was deleted) and forgets it; returns whether
    /// it streamed here.
    pub(super) fn end(&self, node_id: &str, status: Status) -> bool {
        match lock(&self.live).remove(node_id) {
            Some(session) => {
                // Dropping the only sender after the error ends the response stream.
                let _ = session.tx.send(Err(status));
                true
            }
            None => false,
        }
    }

    fn seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The full desired state of a node (the answer to its `Hello`).
    pub(super) fn full(&self, groups: Vec<GroupAssignment>) -> DesiredState {
        DesiredState {
            seq: self.seq(),
            full: true,
            groups,
            removed: Vec::new(),
            dns_server: self.dns_server.map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }

    /// Sends a delta to `node_id` if it is connected: `groups` upserted, `removed` torn down.
    pub(super) fn send(&self, node_id: &str, groups: Vec<GroupAssignment>, removed: Vec<String>) {
        let message = DesiredState {
            seq: self.seq(),
            full: false,
            groups,
            removed,
            dns_server: String::new(),
        };
        if let Some(session) = lock(&self.live).get(node_id) {
            // A closed channel means the stream is ending; the node gets full state when it reconnects.
            let _ = session.tx.send(Ok(message));
        }
    }

    /// Answers a heartbeat on the stream of `epoch` with an empty delta, so the agent knows a replica
    /// hears it (one that hears nothing for `--fence-after` fences itself). A replaced stream gets
    /// nothing: its agent is gone.
    pub(super) fn ack(&self, node_id: &str, epoch: u64) {
        let message = DesiredState {
            seq: self.seq(),
            full: false,
            groups: Vec::new(),
            removed: Vec::new(),
            dns_server: String::new(),
        };
        if let Some(session) = lock(&self.live).get(node_id).filter(|s| s.epoch == epoch) {
            let _ = session.tx.send(Ok(message));
        }
    }

    /// Sends `node_id` its whole desired state again mid-stream (after events may have been
    /// missed), if it is connected.
    pub(super) fn send_full(&self, node_id: &str, groups: Vec<GroupAssignment>) {
        let message = self.full(groups);
        if let Some(session) = lock(&self.live).get(node_id) {
            let _ = session.tx.send(Ok(message));
        }
    }

    /// Whether `node_id` streams to this replica.
    pub(super) fn has(&self, node_id: &str) -> bool {
        lock(&self.live).contains_key(node_id)
    }

    /// Node ids with a live stream.
    pub(super) fn connected(&self) -> Vec<String> {
        lock(&self.live).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(rx: &mut Inbox) -> Option<(u64, Vec<String>)> {
        match rx.try_recv() {
            Ok(Ok(m)) => Some((m.seq, m.removed)),
            _ => None,
        }
    }

    #[test]
    fn deltas_reach_the_newest_stream_with_rising_seqs() {
        let sessions = Sessions::default();
        let mut old = sessions.open("n1");
        let mut new = sessions.open("n1");
        assert!(new.epoch > old.epoch);
        sessions.send("n1", Vec::new(), vec!["g1".to_owned()]);
        sessions.send("n1", Vec::new(), vec!["g2".to_owned()]);
        sessions.send("other", Vec::new(), vec!["g3".to_owned()]);
        assert_eq!(
            removal(&mut old.rx),
            None,
            "the replaced stream hears nothing"
        );
        let (first, g1) = removal(&mut new.rx).expect("first delta");
        let (second, g2) = removal(&mut new.rx).expect("second delta");
        assert_eq!((g1, g2), (vec!["g1".to_owned()], vec!["g2".to_owned()]));
        assert!(second > first);
        assert!(sessions.full(Vec::new()).seq > second);
    }

    #[test]
    fn an_ended_stream_gets_the_error_then_closes() {
        let sessions = Sessions::default();
        let mut opened = sessions.open("n1");
        drop(opened.tx);
        assert!(sessions.end("n1", Status::permission_denied("deleted")));
        assert!(!sessions.has("n1"));
        assert!(!sessions.end("n1", Status::permission_denied("deleted")));
        match opened.rx.try_recv() {
            Ok(Err(status)) => assert_eq!(status.code(), tonic::Code::PermissionDenied),
            other => panic!("expected the error, got {other:?}"),
        }
        assert!(
            matches!(
                opened.rx.try_recv(),
                Err(mpsc::error::TryRecvError::Disconnected)
            ),
            "and the stream ends"
        );
        sessions.send("n1", Vec::new(), vec!["g".to_owned()]);
    }

    #[test]
    fn a_heartbeat_is_answered_with_an_empty_delta_on_its_own_stream_only() {
        let sessions = Sessions::default();
        let mut old = sessions.open("n1");
        let mut new = sessions.open("n1");
        sessions.ack("n1", new.epoch);
        let ack = new.rx.try_recv().expect("an answer").expect("not an error");
        assert!(!ack.full);
        assert!(ack.groups.is_empty() && ack.removed.is_empty());
        assert!(ack.seq > 0);
        sessions.ack("n1", old.epoch);
        assert!(
            old.rx.try_recv().is_err(),
            "the replaced stream hears nothing"
        );
        assert!(
            new.rx.try_recv().is_err(),
            "nor is its heartbeat answered on the new one"
        );
    }

    #[test]
    fn full_states_carry_the_advertised_nameserver_and_deltas_do_not() {
        let sessions = Sessions::new(Some("10.88.0.1".parse().unwrap()));
        assert_eq!(sessions.full(Vec::new()).dns_server, "10.88.0.1");
        let mut opened = sessions.open("n1");
        sessions.send("n1", Vec::new(), vec!["g".to_owned()]);
        let delta = opened
            .rx
            .try_recv()
            .expect("a delta")
            .expect("not an error");
        assert_eq!(delta.dns_server, "", "only full states set it");
        assert_eq!(Sessions::default().full(Vec::new()).dns_server, "");
    }

    #[test]
    fn an_old_stream_ending_keeps_the_newer_one() {
        let sessions = Sessions::default();
        let old = sessions.open("n1");
        let new = sessions.open("n1");
        sessions.close("n1", old.epoch);
        assert_eq!(sessions.connected(), vec!["n1".to_owned()]);
        sessions.close("n1", new.epoch);
        assert!(sessions.connected().is_empty());
    }
}
