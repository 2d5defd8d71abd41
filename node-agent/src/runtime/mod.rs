//! The seam between the supervisor and whatever runs containers.
//!
//! A [`Runtime`] speaks of groups. Its operations accept work and return quickly; anything slow (pulls,
//! start delays, crash back-off) continues in the background and is announced through the [`Changes`]
//! handle the runtime was built with, after which the supervisor reads [`Runtime::status`] again.
//! Every operation is idempotent: calling it again for the same assignment changes nothing.

pub mod containerd;
pub mod hollow;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_proto::node::{Event, GroupAssignment, GroupStatus};
use tokio::sync::Notify;

/// A boxed, sendable future: what [`Runtime`] methods return, so the trait works as `dyn Runtime`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a runtime could not accept an operation. A group that was accepted but fails (bad image, crash)
/// is not an error: it is a status (phase `FAILED`, events).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The backend cannot be reached or is not ready; the supervisor retries with back-off.
    #[error("the {runtime} runtime is unavailable: {reason}")]
    Unavailable {
        runtime: &'static str,
        reason: String,
    },
}

/// Converges container groups on one node.
pub trait Runtime: Send + Sync + 'static {
    /// Makes the group run as `assignment` says: creates it if unknown, re-creates it if the spec
    /// changed, restarts it if only the generation is newer or it was stopped.
    fn start<'a>(
        &'a self,
        assignment: &'a GroupAssignment,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Makes nothing of the group run, but keeps it (phase `STOPPED` once everything has stopped).
    /// An unknown group is recorded as stopped.
    fn stop<'a>(
        &'a self,
        assignment: &'a GroupAssignment,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Tears the group down. Once it is gone, [`Runtime::status`] answers `None` and the change is
    /// announced. Removing an unknown group does nothing.
    fn remove<'a>(&'a self, group_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// The whole observed status of one group, or `None` if the runtime does not have it.
    fn status(&self, group_id: &str) -> Option<GroupStatus>;

    /// The status of every group the runtime has (for `Hello`).
    fn groups(&self) -> Vec<GroupStatus>;

    /// Where the log files of `container` in `group_id` are (see [`containerd::logs`]), or `None` if
    /// the runtime has no such group or container, or keeps no logs (hollow).
    fn log_dir(&self, group_id: &str, container: &str) -> Option<PathBuf> {
        let _ = (group_id, container);
        None
    }
}

/// ACI's restart policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// ACI's values, case-insensitively; ACI's default (`Always`) when empty or unknown.
    pub(crate) fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("never") {
            Self::Never
        } else if s.eq_ignore_ascii_case("onfailure") {
            Self::OnFailure
        } else {
            Self::Always
        }
    }

    /// Whether a container that exited with `exit_code` runs again.
    pub(crate) fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// Adds an event, or counts it again if the same one is already there (as Kubernetes aggregates).
pub(crate) fn record(events: &mut Vec<Event>, now: i64, kind: &str, name: &str, message: String) {
    if let Some(event) = events
        .iter_mut()
        .find(|e| e.name == name && e.r#type == kind && e.message == message)
    {
        event.count += 1;
        event.last_timestamp_unix_ms = now;
        return;
    }
    events.push(Event {
        name: name.to_string(),
        message,
        r#type: kind.to_string(),
        count: 1,
        first_timestamp_unix_ms: now,
        last_timestamp_unix_ms: now,
    });
}

/// A set of group ids whose observed state may have changed, plus a wake-up. Cheap to clone; bounded
/// by the number of groups however long nobody reads it (e.g. while the stream is down).
#[derive(Clone, Default)]
pub struct Changes {
    inner: Arc<ChangesInner>,
}

#[derive(Default)]
struct ChangesInner {
    dirty: Mutex<BTreeSet<String>>,
    notify: Notify,
}

impl Changes {
    /// Notes that `group_id` may have changed.
    pub fn mark(&self, group_id: &str) {
        self.inner
            .dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group_id.to_string());
        self.inner.notify.notify_one();
    }

    /// Marks `group_id` after `delay` (used to requeue a failed reconcile).
    pub fn mark_after(&self, group_id: &str, delay: Duration) {
        let changes = self.clone();
        let group_id = group_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            changes.mark(&group_id);
        });
    }

    /// Waits until something is marked and takes everything marked so far. Cancel-safe: ids marked
    /// while a cancelled call waited are returned by the next call.
    pub async fn next(&self) -> Vec<String> {
        loop {
            let taken = std::mem::take(
                &mut *self
                    .inner
                    .dirty
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if !taken.is_empty() {
                return taken.into_iter().collect();
            }
            self.inner.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn changes_are_deduplicated_and_survive_a_cancelled_wait() {
        let changes = Changes::default();
        // A wait that is cancelled must not swallow what is marked afterwards.
        let waited = tokio::time::timeout(Duration::from_millis(10), changes.next()).await;
        assert!(waited.is_err());
        changes.mark("b");
        changes.mark("a");
        changes.mark("b");
        assert_eq!(changes.next().await, vec!["a".to_string(), "b".to_string()]);

        changes.mark_after("c", Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        assert_eq!(changes.next().await, vec!["c".to_string()]);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
