//! The seam between the supervisor and whatever runs containers.
//!
//! A [`Runtime`] speaks of groups. Its operations accept work and return quickly; anything slow (pulls,
//! start delays, crash back-off) continues in the background and is announced through the [`Changes`]
//! handle the runtime was built with, after which the supervisor reads [`Runtime::status`] again.
//! Every operation is idempotent: calling it again for the same assignment changes nothing.
//!
//! [`Runtime::exec`] is the exception to "return quickly": it starts a process in a running container
//! and hands back an [`ExecProcess`], whose channels carry its input and output until it exits.

pub mod containerd;
pub mod hollow;
mod restart;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_proto::node::{Event, ExecStart, GroupAssignment, GroupStatus};
use tokio::sync::{Notify, mpsc};

pub(crate) use self::restart::{RestartPolicy, RunEnd};

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

    /// Adds a group event (`kind` `Normal` or `Warning`) to the status of `group_id`, kept like the
    /// runtime's own events (across runs and, where the runtime persists statuses, agent restarts),
    /// and announces the change. An unknown group: nothing.
    fn record_event(&self, group_id: &str, kind: &str, name: &str, message: String) {
        let _ = (group_id, kind, name, message);
    }

    /// Where the log files of `container` in `group_id` are (see [`containerd::logs`]), or `None` if
    /// the runtime has no such group or container, or keeps no logs (hollow).
    fn log_dir(&self, group_id: &str, container: &str) -> Option<PathBuf> {
        let _ = (group_id, container);
        None
    }

    /// Starts `start.command` in the running container `start.container` of `start.group_id` (its
    /// namespaces, cgroup, user, environment and working directory) and returns once the process
    /// runs. Runtimes without processes (hollow) answer [`ExecError::Unsupported`].
    fn exec<'a>(&'a self, start: &'a ExecStart) -> BoxFuture<'a, Result<ExecProcess, ExecError>> {
        let _ = start;
        Box::pin(std::future::ready(Err(ExecError::Unsupported)))
    }

    /// The nameserver the apiserver advertises for groups' resolv.conf (sent with every full desired
    /// state; `None`: none), used by groups set up from now on. Runtimes that write no resolv.conf
    /// (hollow) ignore it (the default).
    fn set_advertised_dns(&self, server: Option<std::net::IpAddr>) {
        let _ = server;
    }

    /// Measures every group with something running (see `GroupSample`): cumulative counters as
    /// read, rates over the interval since this runtime's previous call. Runtimes that measure
    /// nothing answer empty (the default).
    fn sample(&self) -> BoxFuture<'_, Vec<berth_proto::node::GroupSample>> {
        Box::pin(std::future::ready(Vec::new()))
    }
}

/// A process [`Runtime::exec`] started: its pid, a way in and a way out.
///
/// Dropping it before [`ProcessOutput::Exited`] has arrived means the caller went away: the runtime
/// kills the process and cleans up after it.
#[derive(Debug)]
pub struct ExecProcess {
    /// The process's pid in the node's pid namespace.
    pub pid: u32,
    /// Stdin, the end of stdin and terminal resizes, applied in order. Bounded: a process that does
    /// not read its stdin makes sending wait.
    pub input: mpsc::Sender<ProcessInput>,
    /// Output in the order it was read and, last, [`ProcessOutput::Exited`]; then the channel closes.
    pub output: mpsc::Receiver<ProcessOutput>,
}

/// What a caller sends to an exec process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessInput {
    /// Bytes for its stdin (dropped if stdin was not asked for or is closed).
    Stdin(Vec<u8>),
    /// No more stdin: the process reads end of file (on a terminal, the terminal hangs up).
    CloseStdin,
    /// The terminal's new size (ignored without a terminal).
    Resize { rows: u32, cols: u32 },
}

/// What an exec process answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessOutput {
    /// Bytes it wrote to stdout (with a terminal: everything it wrote).
    Stdout(Vec<u8>),
    /// Bytes it wrote to stderr (never with a terminal).
    Stderr(Vec<u8>),
    /// It exited with this code (128 + signal if a signal killed it); the last message.
    Exited(i32),
}

/// Why a process could not be started in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The runtime runs no real processes (hollow).
    #[error("this node's runtime cannot run processes in containers")]
    Unsupported,
    /// The node runs no such group, or the group no such container.
    #[error("this node runs no container '{container}' in group '{group_id}'")]
    NotFound { group_id: String, container: String },
    /// The container exists but its process is not running (waiting, terminated, stopped).
    #[error("container '{container}' is not running")]
    NotRunning { container: String },
    /// The command cannot be started, e.g. no such executable; the runtime's own words.
    #[error("{message}")]
    CannotStart { message: String },
    /// The container's stored spec has no process to start from.
    #[error("the spec of container '{container}' has no process")]
    NoProcessSpec { container: String },
    /// The process's FIFOs cannot be made or opened.
    #[error("cannot set up the process's input and output at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Starting the process was interrupted (its task panicked or the agent is stopping).
    #[error("starting the process was interrupted")]
    Interrupted,
    /// containerd refused or failed a call.
    #[error("containerd could not {action}")]
    Containerd {
        action: &'static str,
        #[source]
        status: tonic::Status,
    },
}

impl From<ExecError> for tonic::Status {
    fn from(error: ExecError) -> Self {
        use tonic::Code;
        let code = match &error {
            ExecError::Unsupported => Code::Unimplemented,
            ExecError::NotFound { .. } => Code::NotFound,
            ExecError::NotRunning { .. } => Code::FailedPrecondition,
            ExecError::CannotStart { .. } => Code::InvalidArgument,
            ExecError::Containerd { status, .. } if status.code() == Code::Unavailable => {
                Code::Unavailable
            }
            ExecError::NoProcessSpec { .. }
            | ExecError::Interrupted
            | ExecError::Io { .. }
            | ExecError::Containerd { .. } => Code::Internal,
        };
        let message = match &error {
            // tonic's `Status` displays its code and metadata too: only its message is wanted.
            ExecError::Containerd { status, .. } => format!("{error}: {}", status.message()),
            ExecError::Io { source, .. } => format!("{error}: {source}"),
            _ => error.to_string(),
        };
        tonic::Status::new(code, message)
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
