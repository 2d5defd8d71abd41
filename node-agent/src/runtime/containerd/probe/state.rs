//! The judgement of a probe, pure: its timings with Kubernetes' defaults filled in ([`Timing`]), and
//! the thresholds that turn a run of results into the few changes a worker hears of ([`Judge`]).
//!
//! As kubelet: a liveness probe starts out passing and fails after `failureThreshold` failures in a
//! row (then it is done: the task is killed); a readiness probe starts out not ready, becomes ready
//! after `successThreshold` passes in a row and not ready again after `failureThreshold` failures in
//! a row. A result that changes nothing says nothing.

use std::time::Duration;

use berth_proto::node::Probe;

use super::{ProbeKind, Verdict};

/// Kubernetes' defaults, used where the spec gives 0 (absent).
pub(super) const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
pub(super) const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;

/// When and how patiently a probe runs, and how many results make a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timing {
    /// From the task's start to the first probe.
    pub initial_delay: Duration,
    /// From one probe's start to the next.
    pub period: Duration,
    /// The most one probe may take; longer is a failure.
    pub timeout: Duration,
    pub failure_threshold: u32,
    /// Always 1 for liveness (as Kubernetes requires).
    pub success_threshold: u32,
}

impl Timing {
    pub(super) fn of(probe: &Probe, kind: ProbeKind) -> Self {
        let seconds = |n: u32, default: Duration| {
            if n == 0 {
                default
            } else {
                Duration::from_secs(u64::from(n))
            }
        };
        let count = |n: u32, default: u32| if n == 0 { default } else { n };
        Self {
            initial_delay: Duration::from_secs(u64::from(probe.initial_delay_seconds)),
            period: seconds(probe.period_seconds, DEFAULT_PERIOD),
            timeout: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT),
            failure_threshold: count(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            success_threshold: match kind {
                ProbeKind::Liveness => 1,
                ProbeKind::Readiness => count(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
            },
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Passed; what it printed (exec) or its status line (httpGet), for a readiness change.
    Pass(String),
    /// Failed; what it printed, or why it failed (timeout, refused connection, status code).
    Fail(String),
}

/// The running judgement of one probe of one task.
#[derive(Debug, Clone)]
pub(super) struct Judge {
    kind: ProbeKind,
    timing: Timing,
    /// Liveness: still alive; readiness: ready.
    passing: bool,
    /// Results in a row that disagree with `passing`.
    streak: u32,
    /// Liveness only: `Unhealthy` was told; nothing more is.
    done: bool,
}

impl Judge {
    pub(super) fn new(kind: ProbeKind, timing: Timing) -> Self {
        Self {
            kind,
            timing,
            passing: kind == ProbeKind::Liveness,
            streak: 0,
            done: false,
        }
    }

    /// Is the task judged passing (alive, or ready)?
    #[cfg(test)]
    pub(super) fn passing(&self) -> bool {
        self.passing
    }

    /// Has the judgement ended (a liveness probe that declared its task unhealthy)?
    pub(super) fn done(&self) -> bool {
        self.done
    }

    /// Takes one result; returns the change it makes, if any.
    pub(super) fn observe(&mut self, outcome: Outcome) -> Option<Verdict> {
        if self.done {
            return None;
        }
        let (passed, output) = match outcome {
            Outcome::Pass(output) => (true, output),
            Outcome::Fail(output) => (false, output),
        };
        if passed == self.passing {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let needed = if passed {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.passing = passed;
        Some(match self.kind {
            ProbeKind::Liveness => {
                // Liveness starts passing, so the only change is to failing.
                self.done = true;
                Verdict::Unhealthy { output }
            }
            ProbeKind::Readiness => Verdict::Ready {
                ready: passed,
                output,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn timing(failure: u32, success: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failure_threshold: failure,
            success_threshold: success,
        }
    }

    fn pass() -> Outcome {
        Outcome::Pass(String::new())
    }

    fn fail(why: &str) -> Outcome {
        Outcome::Fail(why.into())
    }

    #[test]
    fn zero_means_kubernetes_defaults_and_liveness_needs_one_success() {
        let absent = Probe::default();
        assert_eq!(
            Timing::of(&absent, ProbeKind::Readiness),
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                failure_threshold: 3,
                success_threshold: 1,
            }
        );
        let given = Probe {
            initial_delay_seconds: 4,
            period_seconds: 2,
            timeout_seconds: 5,
            failure_threshold: 7,
            success_threshold: 3,
            ..Probe::default()
        };
        let readiness = Timing::of(&given, ProbeKind::Readiness);
        assert_eq!(readiness.initial_delay, Duration::from_secs(4));
        assert_eq!(readiness.period, Duration::from_secs(2));
        assert_eq!(readiness.timeout, Duration::from_secs(5));
        assert_eq!(
            (readiness.failure_threshold, readiness.success_threshold),
            (7, 3)
        );
        assert_eq!(Timing::of(&given, ProbeKind::Liveness).success_threshold, 1);
    }

    #[test]
    fn liveness_fails_after_the_threshold_in_a_row_with_the_last_output_then_says_nothing() {
        let mut judge = Judge::new(ProbeKind::Liveness, timing(3, 1));
        assert!(judge.passing());
        assert_eq!(judge.observe(fail("a")), None);
        assert_eq!(judge.observe(fail("b")), None);
        // A pass in between starts the count again.
        assert_eq!(judge.observe(pass()), None);
        assert_eq!(judge.observe(fail("c")), None);
        assert_eq!(judge.observe(fail("d")), None);
        assert_eq!(
            judge.observe(fail("e")),
            Some(Verdict::Unhealthy { output: "e".into() })
        );
        assert!(judge.done() && !judge.passing());
        assert_eq!(judge.observe(fail("f")), None);
        assert_eq!(judge.observe(pass()), None);
    }

    #[test]
    fn readiness_starts_not_ready_and_turns_on_each_threshold() {
        let mut judge = Judge::new(ProbeKind::Readiness, timing(2, 2));
        assert!(!judge.passing());
        assert_eq!(judge.observe(fail("x")), None);
        assert_eq!(judge.observe(pass()), None);
        assert_eq!(
            judge.observe(Outcome::Pass("ok".into())),
            Some(Verdict::Ready {
                ready: true,
                output: "ok".into()
            })
        );
        assert_eq!(judge.observe(pass()), None);
        assert_eq!(judge.observe(fail("1")), None);
        assert_eq!(
            judge.observe(fail("2")),
            Some(Verdict::Ready {
                ready: false,
                output: "2".into()
            })
        );
        assert!(!judge.done());
        assert_eq!(judge.observe(pass()), None);
    }

    /// The judgement computed the long way: the state after each result from the last `n` results.
    fn expected(kind: ProbeKind, t: Timing, results: &[bool]) -> Vec<Option<bool>> {
        let mut passing = kind == ProbeKind::Liveness;
        let mut done = false;
        let mut streak = 0;
        let mut changes = Vec::new();
        for &r in results {
            if done {
                changes.push(None);
                continue;
            }
            streak = if r == passing { 0 } else { streak + 1 };
            let needed = if r {
                t.success_threshold
            } else {
                t.failure_threshold
            };
            if r != passing && streak >= needed {
                passing = r;
                streak = 0;
                done = kind == ProbeKind::Liveness;
                changes.push(Some(r));
            } else {
                changes.push(None);
            }
        }
        changes
    }

    proptest! {
        #[test]
        fn only_changes_are_told_and_they_alternate(
            liveness in any::<bool>(),
            failure in 1u32..6,
            success in 1u32..6,
            results in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let kind = if liveness { ProbeKind::Liveness } else { ProbeKind::Readiness };
            let t = Timing::of(
                &Probe { failure_threshold: failure, success_threshold: success, period_seconds: 1, ..Probe::default() },
                kind,
            );
            let mut judge = Judge::new(kind, t);
            let mut state = judge.passing();
            let mut told = Vec::new();
            for &r in &results {
                let verdict = judge.observe(if r { pass() } else { fail("f") });
                let change = match verdict {
                    None => None,
                    Some(Verdict::Unhealthy { .. }) => {
                        prop_assert!(liveness);
                        Some(false)
                    }
                    Some(Verdict::Ready { ready, .. }) => {
                        prop_assert!(!liveness);
                        Some(ready)
                    }
                };
                if let Some(now) = change {
                    // A change is a change: never the state already told.
                    prop_assert_ne!(now, state);
                    state = now;
                }
                prop_assert_eq!(judge.passing(), state);
                told.push(change);
            }
            prop_assert_eq!(told, expected(kind, t, &results));
        }

        #[test]
        fn a_run_of_failures_as_long_as_the_threshold_always_ends_liveness(
            failure in 1u32..10,
            before in proptest::collection::vec(any::<bool>(), 0..50),
        ) {
            let mut judge = Judge::new(ProbeKind::Liveness, timing(failure, 1));
            for r in before {
                judge.observe(if r { pass() } else { fail("f") });
            }
            for _ in 0..failure {
                judge.observe(fail("f"));
            }
            prop_assert!(judge.done());
        }
    }
}
