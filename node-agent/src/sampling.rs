//! Each node's sampling loop and where its measurements go: every `--metrics-interval` the loop asks
//! the runtime to [sample](crate::runtime::Runtime::sample) its running groups, hands the result to
//! the node's `Sync` stream ([`Outgoing`]: the newest only, sent once, after the stream's `Hello`)
//! and publishes it, with the groups' ARM names, on the process's [`Board`] (which the agent's
//! `/metrics` reads).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_proto::node::{GroupAssignment, GroupSample, Metrics};
use rand::Rng as _;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// One group's newest sample, with the ARM names its labels need.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledGroup {
    pub subscription: String,
    pub resource_group: String,
    /// The container group's name.
    pub name: String,
    pub sample: GroupSample,
}

/// The newest samples of each node of the process, by node name. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Board {
    nodes: Arc<Mutex<BTreeMap<String, Arc<Vec<SampledGroup>>>>>,
}

impl Board {
    /// Replaces what `node` measured last.
    pub fn publish(&self, node: &str, groups: Vec<SampledGroup>) {
        self.lock().insert(node.to_owned(), Arc::new(groups));
    }

    /// Every node's newest samples, by node name.
    pub fn snapshot(&self) -> Vec<(String, Arc<Vec<SampledGroup>>)> {
        self.lock()
            .iter()
            .map(|(node, groups)| (node.clone(), Arc::clone(groups)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<SampledGroup>>>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A group's ARM names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    subscription: String,
    resource_group: String,
    name: String,
}

/// The ARM names of the groups assigned to one node, kept by its supervisor as desired states
/// arrive, read by its sampling loop. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    groups: Arc<Mutex<HashMap<String, Names>>>,
}

impl Directory {
    /// Notes (or updates) the names of `assignment`'s group.
    pub(crate) fn assign(&self, assignment: &GroupAssignment) {
        let Some(spec) = &assignment.spec else {
            return;
        };
        let names = Names {
            subscription: spec.subscription.clone(),
            resource_group: spec.resource_group.clone(),
            name: spec.name.clone(),
        };
        self.lock().insert(assignment.group_id.clone(), names);
    }

    /// Forgets a group no longer assigned.
    pub(crate) fn unassign(&self, group_id: &str) {
        self.lock().remove(group_id);
    }

    /// Forgets every group but `assignments`' (a full desired state).
    pub(crate) fn replace<'a>(&self, assignments: impl IntoIterator<Item = &'a GroupAssignment>) {
        self.lock().clear();
        for assignment in assignments {
            self.assign(assignment);
        }
    }

    /// `samples` with their groups' names; a group not assigned (any more) has none and is left out.
    fn label(&self, samples: &[GroupSample]) -> Vec<SampledGroup> {
        let groups = self.lock();
        samples
            .iter()
            .filter_map(|sample| {
                let names = groups.get(&sample.group_id)?;
                Some(SampledGroup {
                    subscription: names.subscription.clone(),
                    resource_group: names.resource_group.clone(),
                    name: names.name.clone(),
                    sample: sample.clone(),
                })
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Names>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The newest metrics of a node on their way to its `Sync` stream: each is sent once, whichever
/// stream is up when it arrives (or the next one); one a stream did not take in time is replaced by
/// the next, never queued.
#[derive(Debug)]
pub struct Outgoing {
    rx: Option<watch::Receiver<Option<Metrics>>>,
}

impl Outgoing {
    /// Nothing ever to send (sampling is off).
    pub fn none() -> Outgoing {
        Outgoing { rx: None }
    }

    /// The next metrics to send. Waits forever if there are none (sampling off or its loop gone).
    /// Cancel-safe: metrics that arrive while a cancelled call waited are returned by the next.
    pub async fn next(&mut self) -> Metrics {
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return std::future::pending().await;
            };
            if rx.changed().await.is_err() {
                self.rx = None;
                continue;
            }
            if let Some(metrics) = rx.borrow_and_update().clone() {
                return metrics;
            }
        }
    }
}

/// What one node's sampling loop needs.
pub(crate) struct Sampling {
    /// The node's name on the board.
    pub node: String,
    pub runtime: Arc<dyn Runtime>,
    pub directory: Directory,
    pub board: Board,
    pub interval: Duration,
}

impl Sampling {
    /// Starts the loop; it runs until `shutdown`. Returns where its metrics come out.
    pub(crate) fn start(self, shutdown: CancellationToken) -> Outgoing {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = self.run(tx) => {}
            }
        });
        Outgoing { rx: Some(rx) }
    }

    async fn run(self, tx: watch::Sender<Option<Metrics>>) {
        // At a random point of the first interval, so many nodes do not sample in step.
        let first = rand::rng().random_range(Duration::ZERO..=self.interval);
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + first, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let groups = self.runtime.sample().await;
            self.board
                .publish(&self.node, self.directory.label(&groups));
            if !groups.is_empty() {
                tx.send_replace(Some(Metrics { groups }));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use berth_proto::node::GroupSpec;

    use super::*;
    use crate::runtime::BoxFuture;

    /// A runtime whose every sample is one sample of group `g1` and one of `g2`, numbered.
    struct Counting(Mutex<i64>);

    impl Runtime for Counting {
        fn start<'a>(
            &'a self,
            _: &'a GroupAssignment,
        ) -> BoxFuture<'a, Result<(), crate::runtime::RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
        fn stop<'a>(
            &'a self,
            _: &'a GroupAssignment,
        ) -> BoxFuture<'a, Result<(), crate::runtime::RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
        fn remove<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), crate::runtime::RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
        fn status(&self, _: &str) -> Option<berth_proto::node::GroupStatus> {
            None
        }
        fn groups(&self) -> Vec<berth_proto::node::GroupStatus> {
            Vec::new()
        }
        fn sample(&self) -> BoxFuture<'_, Vec<GroupSample>> {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            let at = *n;
            Box::pin(async move {
                ["g1", "g2"]
                    .map(|id| GroupSample {
                        group_id: id.into(),
                        observed_unix_ms: at,
                        ..Default::default()
                    })
                    .to_vec()
            })
        }
    }

    fn assignment(id: &str, name: &str) -> GroupAssignment {
        GroupAssignment {
            group_id: id.into(),
            spec: Some(GroupSpec {
                name: name.into(),
                subscription: "sub".into(),
                resource_group: "rg".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_interval_the_newest_sample_is_sent_once_and_published_with_names() {
        let directory = Directory::default();
        directory.replace([&assignment("g1", "web")]);
        let board = Board::default();
        let shutdown = CancellationToken::new();
        let mut outgoing = Sampling {
            node: "n1".into(),
            runtime: Arc::new(Counting(Mutex::new(0))),
            directory: directory.clone(),
            board: board.clone(),
            interval: Duration::from_secs(10),
        }
        .start(shutdown.clone());

        let first = outgoing.next().await;
        assert_eq!(first.groups.len(), 2, "the apiserver decides what it keeps");
        assert_eq!(first.groups[0].observed_unix_ms, 1);
        let published = board.snapshot();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].0, "n1");
        let labelled: Vec<(&str, &str)> = published[0]
            .1
            .iter()
            .map(|g| (g.sample.group_id.as_str(), g.name.as_str()))
            .collect();
        assert_eq!(
            labelled,
            [("g1", "web")],
            "an unassigned group has no labels"
        );

        // A stream that is down for three intervals gets the newest only, once.
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(outgoing.next().await.groups[0].observed_unix_ms, 4);
        let waited = tokio::time::timeout(Duration::from_secs(4), outgoing.next()).await;
        assert!(waited.is_err(), "nothing new yet: {waited:?}");
        assert_eq!(outgoing.next().await.groups[0].observed_unix_ms, 5);

        directory.unassign("g1");
        directory.assign(&assignment("g2", "api"));
        outgoing.next().await;
        let names: Vec<String> = board.snapshot()[0]
            .1
            .iter()
            .map(|g| g.name.clone())
            .collect();
        assert_eq!(names, ["api"]);

        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(60), outgoing.next()).await;
        assert!(ended.is_err(), "no metrics after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn with_sampling_off_nothing_is_ever_sent() {
        let mut outgoing = Outgoing::none();
        let waited = tokio::time::timeout(Duration::from_secs(3600), outgoing.next()).await;
        assert!(waited.is_err());
    }
}
