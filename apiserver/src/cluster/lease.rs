//! The leader lease: the replica holding lease [`CONTROL`] runs the scheduler and the liveness
//! monitor. A leader renews it every [`Timing::renew`] for [`Timing::ttl`]; followers try every
//! [`Timing::retry`]. The store's clock judges expiry (PostgreSQL's own), and a holder counts its own
//! term from the moment it SENT the statement that won, ending [`Timing::margin`] before the ttl: the
//! database's expiry is never earlier than that, so a replica that cannot renew (cut off, stalled)
//! stops considering itself leader before anyone else can take over. On graceful shutdown the lease
//! is released so another replica takes over at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::LeaseStore;

/// The lease of the scheduler and the liveness monitor.
pub const CONTROL: &str = "control";

/// How the lease is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a won or renewed lease runs (in the store).
    pub ttl: Duration,
    /// How often the leader renews.
    pub renew: Duration,
    /// How often a follower tries to take it.
    pub retry: Duration,
    /// How long before the ttl a holder stops considering itself leader.
    pub margin: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3),
            renew: Duration::from_secs(1),
            retry: Duration::from_millis(500),
            margin: Duration::from_millis(500),
        }
    }
}

/// What a replica knows of its term: pure timing, no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    timing: Timing,
    /// Until when this replica is leader, if it is.
    until: Option<Instant>,
}

impl Term {
    fn new(timing: Timing) -> Self {
        Self {
            timing,
            until: None,
        }
    }

    /// An attempt sent at `sent` was answered: won (taken or renewed) or another holder's.
    fn answered(&mut self, sent: Instant, won: bool) {
        self.until = won.then(|| sent + self.timing.ttl.saturating_sub(self.timing.margin));
    }

    /// An attempt failed or timed out: the term runs on to its end, no further.
    fn failed(&mut self, now: Instant) {
        self.expire(now);
    }

    /// Forgets a term that ended by `now`.
    fn expire(&mut self, now: Instant) {
        if self.until.is_some_and(|until| now >= until) {
            self.until = None;
        }
    }

    fn leader_at(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// When to try next after an attempt sent at `sent`: a leader renews (before its term ends),
    /// a follower retries.
    fn next_attempt(&self, sent: Instant) -> Instant {
        match self.until {
            Some(until) => (sent + self.timing.renew).min(until),
            None => sent + self.timing.retry,
        }
    }

    /// How long an attempt sent at `sent` may take: a leader's until its term ends, a follower's
    /// until its next try.
    fn attempt_deadline(&self, sent: Instant) -> Instant {
        match self.until {
            Some(until) => until.max(sent + self.timing.retry),
            None => sent + self.timing.retry,
        }
    }
}

/// Whether this replica leads: cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct Leadership {
    term: watch::Receiver<Option<Instant>>,
}

impl Leadership {
    /// A replica that always leads (one process, tests).
    pub fn always() -> Self {
        let (tx, term) = watch::channel(Some(
            Instant::now() + Duration::from_secs(100 * 365 * 86_400),
        ));
        // The sender is dropped: the value never changes.
        drop(tx);
        Self { term }
    }

    /// Whether this replica leads now (its term has not ended, even if the lease loop stalled).
    pub fn is_leader(&self) -> bool {
        self.term
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Resolves when leadership may have changed (won, lost, renewed); never if it cannot any more.
    pub async fn changed(&mut self) {
        if self.term.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this replica leads.
    pub async fn acquired(&mut self) {
        while !self.is_leader() {
            self.changed().await;
        }
    }
}

/// The lease loop of one replica.
pub struct Lease {
    store: Arc<dyn LeaseStore>,
    holder: String,
    timing: Timing,
    term: watch::Sender<Option<Instant>>,
}

impl Lease {
    /// The loop for `holder` (this replica's id) and the handle saying whether it leads.
    pub fn new(store: Arc<dyn LeaseStore>, holder: &str, timing: Timing) -> (Self, Leadership) {
        let (term, rx) = watch::channel(None);
        let lease = Self {
            store,
            holder: holder.to_owned(),
            timing,
            term,
        };
        (lease, Leadership { term: rx })
    }

    /// Takes, renews and gives up lease [`CONTROL`] until `shutdown`, then releases it.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut term = Term::new(self.timing);
        loop {
            let sent = Instant::now();
            let attempt =
                self.store
                    .acquire_lease(CONTROL, &self.holder, self.timing.ttl.as_millis() as i64);
            let was = term.leader_at(sent);
            tokio::select! {
                () = shutdown.cancelled() => break,
                answer = tokio::time::timeout_at(term.attempt_deadline(sent), attempt) => match answer {
                    Ok(Ok(won)) => term.answered(sent, won),
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "cannot renew or take the leader lease");
                        term.failed(Instant::now());
                    }
                    Err(_) => {
                        tracing::warn!("the leader lease's store did not answer in time");
                        term.failed(Instant::now());
                    }
                },
            }
            self.publish(&term, was);
            // Wait for the next attempt, noticing the end of the term on the way.
            let next = term.next_attempt(sent);
            loop {
                let wake = term.until.map_or(next, |until| until.min(next));
                tokio::select! {
                    () = shutdown.cancelled() => return self.release(term).await,
                    () = tokio::time::sleep_until(wake) => {}
                }
                let now = Instant::now();
                let was = term.leader_at(now - Duration::from_nanos(1));
                term.expire(now);
                self.publish(&term, was);
                if now >= next {
                    break;
                }
            }
        }
        self.release(term).await;
    }

    fn publish(&self, term: &Term, was_leader: bool) {
        let now = Instant::now();
        let is = term.leader_at(now);
        if is != was_leader {
            if is {
                tracing::info!(holder = %self.holder, "this replica leads (scheduler, liveness)");
            } else {
                tracing::warn!(holder = %self.holder, "this replica no longer leads");
            }
        }
        self.term.send_if_modified(|until| {
            let changed = *until != term.until;
            *until = term.until;
            changed
        });
    }

    async fn release(&self, term: Term) {
        self.term.send_replace(None);
        if term.until.is_some() {
            match self.store.release_lease(CONTROL, &self.holder).await {
                Ok(()) => tracing::info!(holder = %self.holder, "leader lease released"),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot release the leader lease; it expires")
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::store::{Result, SqliteStore};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_term_counts_from_the_attempt_that_won_and_ends_before_the_ttl() {
        let timing = Timing::default();
        let t0 = Instant::now();
        let mut term = Term::new(timing);
        assert!(!term.leader_at(t0));
        assert_eq!(term.next_attempt(t0), t0 + ms(500), "a follower retries");
        term.answered(t0, true);
        assert!(term.leader_at(t0 + ms(2_499)));
        assert!(
            !term.leader_at(t0 + ms(2_500)),
            "ends the margin before the ttl"
        );
        assert_eq!(term.next_attempt(t0), t0 + ms(1_000), "a leader renews");
        assert_eq!(term.attempt_deadline(t0), t0 + ms(2_500));
        // A renewal sent at 1 s that wins extends from when it was sent, not when it came back.
        term.answered(t0 + ms(1_000), true);
        assert!(term.leader_at(t0 + ms(3_499)));
        assert!(!term.leader_at(t0 + ms(3_500)));
    }

    #[test]
    fn failed_renewals_keep_the_term_to_its_end_only() {
        let t0 = Instant::now();
        let mut term = Term::new(Timing::default());
        term.answered(t0, true);
        term.failed(t0 + ms(1_000));
        assert!(term.leader_at(t0 + ms(2_000)), "still within the term");
        assert_eq!(
            term.next_attempt(t0 + ms(2_000)),
            t0 + ms(2_500),
            "tries before it ends"
        );
        term.failed(t0 + ms(2_500));
        assert!(!term.leader_at(t0 + ms(2_500)));
        assert_eq!(term.until, None);
        assert_eq!(
            term.next_attempt(t0 + ms(2_500)),
            t0 + ms(3_000),
            "a follower now"
        );
    }

    #[test]
    fn losing_the_lease_ends_the_term_at_once() {
        let t0 = Instant::now();
        let mut term = Term::new(Timing::default());
        term.answered(t0, true);
        term.answered(t0 + ms(1_000), false);
        assert!(!term.leader_at(t0 + ms(1_000)));
    }

    /// A lease store one can cut a replica off from.
    struct Cuttable {
        store: Arc<dyn LeaseStore>,
        cut: AtomicBool,
    }

    #[async_trait::async_trait]
    impl LeaseStore for Cuttable {
        async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
            if self.cut.load(Ordering::SeqCst) {
                return Err(crate::store::StoreError::Unavailable);
            }
            self.store.acquire_lease(name, holder, ttl_ms).await
        }

        async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
            self.store.release_lease(name, holder).await
        }
    }

    const FAST: Timing = Timing {
        ttl: Duration::from_millis(600),
        renew: Duration::from_millis(200),
        retry: Duration::from_millis(100),
        margin: Duration::from_millis(100),
    };

    /// Samples both replicas every few ms for `how_long`: never both lead; returns who led last.
    async fn never_both(a: &Leadership, b: &Leadership, how_long: Duration) -> (bool, bool) {
        let end = Instant::now() + how_long;
        let mut last = (false, false);
        while Instant::now() < end {
            last = (a.is_leader(), b.is_leader());
            assert!(!(last.0 && last.1), "two leaders at once");
            tokio::time::sleep(ms(3)).await;
        }
        last
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_never_lead_at_once_and_hand_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        never_both_and_hand_over(db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_on_postgresql_never_lead_at_once_and_hand_over() {
        let db = Arc::new(crate::store::postgres::tests::fresh_store().await);
        never_both_and_hand_over(db).await;
    }

    /// Two lease loops on one store `db`: one leads; cut off from the store it stops leading before
    /// the other takes over; a leader that shuts down hands over at once.
    async fn never_both_and_hand_over(db: Arc<dyn LeaseStore>) {
        let store = |_: &str| {
            Arc::new(Cuttable {
                store: db.clone(),
                cut: AtomicBool::new(false),
            })
        };
        let (sa, sb) = (store("a"), store("b"));
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let (lease_a, a) = Lease::new(sa.clone(), "a", FAST);
        let (lease_b, b) = Lease::new(sb.clone(), "b", FAST);
        let task_a = tokio::spawn(lease_a.run(stop_a.clone()));
        tokio::spawn(lease_b.run(stop_b.clone()));
        let led = never_both(&a, &b, ms(800)).await;
        assert!(led.0 ^ led.1, "one of them leads: {led:?}");
        let (leader, follower, leader_store, leader_stop) = if led.0 {
            (&a, &b, &sa, &stop_a)
        } else {
            (&b, &a, &sb, &stop_b)
        };

        // Cut off from the store, the leader gives up before the follower can take over.
        leader_store.cut.store(true, Ordering::SeqCst);
        let cut = Instant::now();
        let led = never_both(&a, &b, ms(1_000)).await;
        assert!(!leader.is_leader(), "a cut-off leader stops leading");
        assert!(follower.is_leader(), "the follower took over: {led:?}");
        assert!(cut.elapsed() >= FAST.ttl - FAST.margin);

        // The old leader comes back as a follower; the new one shuts down and hands over at once.
        leader_store.cut.store(false, Ordering::SeqCst);
        never_both(&a, &b, ms(300)).await;
        assert!(follower.is_leader() && !leader.is_leader());
        let (follower_stop, mut new_follower) = if leader_stop == &stop_a {
            (&stop_b, a.clone())
        } else {
            (&stop_a, b.clone())
        };
        follower_stop.cancel();
        let released = Instant::now();
        tokio::time::timeout(ms(2_000), new_follower.acquired())
            .await
            .unwrap();
        assert!(
            released.elapsed() < FAST.ttl - FAST.margin,
            "released, not expired: {:?}",
            released.elapsed()
        );
        stop_a.cancel();
        stop_b.cancel();
        let _ = task_a.await;
    }
}
