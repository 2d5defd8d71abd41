//! Liveness and readiness probes, ACI's way: `exec` (a command run in the container through
//! containerd exec; exit 0 passes) or `httpGet` (from inside the group's network namespace; a status
//! 200-399 passes), every `periodSeconds` after `initialDelaySeconds`, each bounded by
//! `timeoutSeconds`, judged by `failureThreshold` / `successThreshold`. Kubernetes' defaults where ACI
//! documents none: period 10 s, timeout 1 s, failure 3, success 1, initial delay 0.
//!
//! One prober task per probe of a running task ([`spawn`]); it tells its worker only changes
//! ([`Verdict`]), and the worker acts on them (events, ready bits, killing and restarting).
//!
//! # Layout
//! - [`state`]: timings with their defaults, and the thresholds that turn results into changes (pure).
//! - [`exec`]: the `exec` runner, through containerd exec.
//! - [`http`]: the `httpGet` runner, from inside the group's network namespace.
//! - here: [`spawn`] and the loop, which runs a probe every period after the initial delay (a probe
//!   that takes long delays the next: never two at once) and ends after [`Verdict::Unhealthy`].

mod exec;
mod http;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod real;
mod state;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::node::Probe;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use self::state::{Judge, Outcome, Timing};
use super::Inner;

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeKind {
    Liveness,
    Readiness,
}

/// A change a prober reports to its worker (only changes, never every result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Readiness: the container became ready (`true`), or stopped being ready (`false`; `output`
    /// says what the failing probe printed or why it failed).
    Ready { ready: bool, output: String },
    /// Liveness: `failureThreshold` probes in a row failed. The worker records `Unhealthy` and
    /// `Killing`, kills the task and lets the restart policy decide. The prober ends after this.
    Unhealthy { output: String },
}

/// The task a prober watches.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The containerd container id (exec probes run in it).
    pub container_id: String,
    /// The process of the task being probed: the run the verdicts are about.
    pub pid: u32,
    /// The group's network namespace (httpGet probes connect from inside it).
    pub netns: PathBuf,
    /// The group's address, which httpGet probes connect to (as kubelet connects to the pod IP);
    /// `None` when the group has none (then loopback, inside the namespace).
    pub ip: Option<std::net::IpAddr>,
}

/// Starts probing `target` with `probe`; `report` is called with every [`Verdict`]. Aborting the
/// returned handle stops the prober (the worker does when the task exits or is stopped).
///
/// A probe with no action (the spec rules refuse one) never reports.
pub(super) fn spawn(
    inner: Arc<Inner>,
    target: Target,
    kind: ProbeKind,
    probe: Probe,
    report: impl Fn(Verdict) + Send + Sync + 'static,
) -> AbortHandle {
    let timing = Timing::of(&probe, kind);
    tracing::debug!(container = %target.container_id, pid = target.pid, ?kind, ?timing, "probing");
    let task = async move {
        if let Some(get) = &probe.http_get {
            let tls = match http::insecure_tls() {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::error!(container = %target.container_id, %error, "cannot make the TLS client of an httpGet probe");
                    return;
                }
            };
            let request = Arc::new(http::Request::new(&target.netns, target.ip, get));
            probe_loop(kind, timing, report, || {
                let (request, tls) = (Arc::clone(&request), Arc::clone(&tls));
                async move { http::run(&request, &tls, timing.timeout).await }
            })
            .await;
        } else if !probe.exec_command.is_empty() {
            let command = Arc::new(probe.exec_command);
            let container = Arc::new(target.container_id);
            probe_loop(kind, timing, report, || {
                let (inner, command, container) = (
                    Arc::clone(&inner),
                    Arc::clone(&command),
                    Arc::clone(&container),
                );
                async move {
                    let root = inner.exec_root();
                    exec::run(&inner.cd, &root, &container, &command, timing.timeout).await
                }
            })
            .await;
        } else {
            tracing::warn!(container = %target.container_id, ?kind, "a probe with neither exec nor httpGet is not run");
        }
    };
    tokio::spawn(task).abort_handle()
}

/// Runs `attempt` every `timing.period` after `timing.initial_delay`, telling `report` each change,
/// until a liveness probe fails.
async fn probe_loop<F, Fut>(
    kind: ProbeKind,
    timing: Timing,
    report: impl Fn(Verdict),
    mut attempt: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut judge = Judge::new(kind, timing);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.initial_delay,
        timing.period,
    );
    // A probe that overran its period is followed by the next a whole period later, not at once.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(verdict) = judge.observe(attempt().await) {
            report(verdict);
        }
        if judge.done() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Runs the loop over scripted results (then passes), with tokio's clock paused, and returns
    /// when each probe ran (from the start) and what was reported.
    async fn script(
        kind: ProbeKind,
        probe: Probe,
        results: Vec<bool>,
        run_for: Duration,
    ) -> (Vec<Duration>, Vec<Verdict>) {
        let start = tokio::time::Instant::now();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let told = Arc::new(Mutex::new(Vec::new()));
        let results = Arc::new(Mutex::new(results.into_iter()));
        let task = {
            let (runs, told) = (Arc::clone(&runs), Arc::clone(&told));
            probe_loop(
                kind,
                Timing::of(&probe, kind),
                move |v| told.lock().unwrap().push(v),
                move || {
                    runs.lock().unwrap().push(start.elapsed());
                    let next = results.lock().unwrap().next().unwrap_or(true);
                    async move {
                        if next {
                            Outcome::Pass(String::new())
                        } else {
                            Outcome::Fail("nope".into())
                        }
                    }
                },
            )
        };
        let _ = tokio::time::timeout(run_for, task).await;
        let runs = runs.lock().unwrap().clone();
        let told = told.lock().unwrap().clone();
        (runs, told)
    }

    #[tokio::test(start_paused = true)]
    async fn probes_run_every_period_after_the_initial_delay() {
        let probe = Probe {
            initial_delay_seconds: 5,
            period_seconds: 2,
            ..Probe::default()
        };
        let (runs, told) = script(
            ProbeKind::Readiness,
            probe,
            vec![],
            Duration::from_millis(11_500),
        )
        .await;
        let secs: Vec<u64> = runs.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 7, 9, 11]);
        assert_eq!(
            told,
            [Verdict::Ready {
                ready: true,
                output: String::new()
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_period_is_ten_seconds_and_liveness_ends_when_unhealthy() {
        let (runs, told) = script(
            ProbeKind::Liveness,
            Probe::default(),
            vec![true, false, false, false, false],
            Duration::from_secs(120),
        )
        .await;
        let secs: Vec<u64> = runs.iter().map(Duration::as_secs).collect();
        // Failures at 10, 20 and 30 s make three: nothing runs after.
        assert_eq!(secs, [0, 10, 20, 30]);
        assert_eq!(
            told,
            [Verdict::Unhealthy {
                output: "nope".into()
            }]
        );
    }
}
