//! The restart policy and crash back-off, written once for every runtime.
//!
//! A container's run ends for one of three reasons ([`RunEnd`]): its process exited, it could not be
//! started, or a failed liveness probe killed it. ACI's [`RestartPolicy`] says whether it runs again;
//! [`BackOff`] says when: the first restart after [`Schedule::first`], each next one twice as late, at
//! most [`Schedule::max`], and afresh after a run of [`BACKOFF_RESET`] (as Kubernetes does). Pure: the
//! caller passes the time, so paused-clock tests see exact delays.

use std::time::Duration;

use tokio::time::Instant;

/// A container that ran this long without exiting starts its back-off afresh.
pub(crate) const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The exit code reported for a container whose process could not be started (as Kubernetes does).
pub(crate) const START_ERROR_EXIT: i32 = 128;

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

    /// Whether a container whose run ended so runs again. A container killed by its liveness probe
    /// or that could not start has failed; under `Never` nothing runs again (ACI: the policy wins
    /// over the probe).
    pub(crate) fn restarts(self, end: RunEnd) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => end.failed(),
            Self::Never => false,
        }
    }
}

/// Why a container's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// Its process exited with this code (128 + signal when a signal ended it).
    Exited(i32),
    /// Its process could not be started.
    CouldNotStart,
    /// Its liveness probe failed `failureThreshold` times and it was killed.
    Unhealthy,
}

impl RunEnd {
    /// Anything but a clean exit 0.
    pub(crate) fn failed(self) -> bool {
        !matches!(self, Self::Exited(0))
    }
}

/// How long restarts wait: `first`, doubling per restart, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub first: Duration,
    pub max: Duration,
}

impl Schedule {
    /// The wait before restart number `step` + 1 of a crash loop.
    pub(crate) fn delay(self, step: u32) -> Duration {
        self.first.saturating_mul(1 << step.min(16)).min(self.max)
    }
}

/// One container's (or one init sequence's) back-off: how many restarts in a row, and the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BackOff {
    /// Restarts since the last reset; the next waits `Schedule::delay(step)`.
    step: u32,
    /// When the current run began (none between runs).
    started: Option<Instant>,
    /// When the container runs again (none unless in back-off).
    restart_at: Option<Instant>,
}

impl BackOff {
    /// A run began at `now`.
    pub(crate) fn started(&mut self, now: Instant) {
        self.started = Some(now);
        self.restart_at = None;
    }

    /// The run ended at `now` for `end`. Returns the wait before the container runs again, or `None`
    /// when `policy` lets it rest. A run of [`BACKOFF_RESET`] or longer starts the back-off afresh.
    pub(crate) fn ended(
        &mut self,
        now: Instant,
        policy: RestartPolicy,
        end: RunEnd,
        schedule: Schedule,
    ) -> Option<Duration> {
        let started = self.started.take();
        if started.is_some_and(|s| now.saturating_duration_since(s) >= BACKOFF_RESET) {
            self.step = 0;
        }
        if !policy.restarts(end) {
            self.restart_at = None;
            return None;
        }
        let delay = schedule.delay(self.step);
        self.step = self.step.saturating_add(1);
        self.restart_at = Some(now + delay);
        Some(delay)
    }

    /// Back in back-off as a previous agent left it after `restarts` restarts (adoption): the next
    /// restart waits what that count implies.
    pub(crate) fn resume(&mut self, restarts: u32, now: Instant, schedule: Schedule) {
        self.step = restarts;
        self.started = None;
        self.restart_at = Some(now + schedule.delay(restarts));
    }

    /// When the next restart is due, if one is.
    pub(crate) fn restart_at(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Whether a restart is due at `now`; if so it is taken (the caller starts the container).
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            true
        } else {
            false
        }
    }

    /// No restart is pending and no run is going (a stop), but the count is kept.
    pub(crate) fn cancel(&mut self) {
        self.started = None;
        self.restart_at = None;
    }

    /// Starts afresh (a run that went well, e.g. an init sequence that completed).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SCHEDULE: Schedule = Schedule {
        first: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };

    fn policy() -> impl Strategy<Value = RestartPolicy> {
        prop_oneof![
            Just(RestartPolicy::Always),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::Never),
        ]
    }

    fn end() -> impl Strategy<Value = RunEnd> {
        prop_oneof![
            any::<i32>().prop_map(RunEnd::Exited),
            Just(RunEnd::Exited(0)),
            Just(RunEnd::CouldNotStart),
            Just(RunEnd::Unhealthy),
        ]
    }

    #[test]
    fn policies_parse_as_aci_spells_them() {
        assert_eq!(RestartPolicy::parse("Never"), RestartPolicy::Never);
        assert_eq!(RestartPolicy::parse("onfailure"), RestartPolicy::OnFailure);
        assert_eq!(RestartPolicy::parse("Always"), RestartPolicy::Always);
        assert_eq!(RestartPolicy::parse(""), RestartPolicy::Always);
        assert_eq!(RestartPolicy::parse("sometimes"), RestartPolicy::Always);
    }

    #[test]
    fn the_back_off_doubles_to_its_cap_and_resets_after_ten_minutes_of_running() {
        let t0 = Instant::now();
        let mut backoff = BackOff::default();
        let crash = |b: &mut BackOff, at: Instant| {
            b.started(at);
            b.ended(
                at + Duration::from_secs(1),
                RestartPolicy::Always,
                RunEnd::Exited(1),
                SCHEDULE,
            )
        };
        let delays: Vec<u64> = (0..7)
            .map(|i| crash(&mut backoff, t0 + Duration::from_secs(1000 * i)))
            .map(|d| d.map_or(0, |d| d.as_secs()))
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);

        // A run of ten minutes: the next crash waits the first delay again.
        let at = t0 + Duration::from_secs(100_000);
        backoff.started(at);
        let delay = backoff.ended(
            at + BACKOFF_RESET,
            RestartPolicy::Always,
            RunEnd::Unhealthy,
            SCHEDULE,
        );
        assert_eq!(delay, Some(SCHEDULE.first));
        assert_eq!(
            backoff.restart_at(),
            Some(at + BACKOFF_RESET + SCHEDULE.first)
        );
    }

    #[test]
    fn a_restart_is_taken_once_when_due() {
        let t0 = Instant::now();
        let mut backoff = BackOff::default();
        backoff.started(t0);
        backoff.ended(
            t0,
            RestartPolicy::OnFailure,
            RunEnd::CouldNotStart,
            SCHEDULE,
        );
        assert!(!backoff.take_due(t0 + SCHEDULE.first - Duration::from_millis(1)));
        assert!(backoff.take_due(t0 + SCHEDULE.first));
        assert!(!backoff.take_due(t0 + SCHEDULE.first));
        assert_eq!(backoff.restart_at(), None);

        backoff.resume(3, t0, SCHEDULE);
        assert_eq!(backoff.restart_at(), Some(t0 + SCHEDULE.delay(3)));
        backoff.cancel();
        assert_eq!(backoff.restart_at(), None);
    }

    proptest! {
        #[test]
        fn the_delay_never_exceeds_the_cap_and_never_shrinks(
            first_ms in 0u64..1_000_000,
            max_ms in 0u64..1_000_000,
            step in 0u32..100,
        ) {
            let schedule = Schedule {
                first: Duration::from_millis(first_ms),
                max: Duration::from_millis(max_ms),
            };
            prop_assert!(schedule.delay(step) <= schedule.max);
            prop_assert!(schedule.delay(step) <= schedule.delay(step.saturating_add(1)));
            prop_assert_eq!(schedule.delay(0), schedule.first.min(schedule.max));
        }

        #[test]
        fn the_policy_alone_decides_whether_a_run_comes_again(
            policy in policy(),
            ends in proptest::collection::vec((end(), 0u64..2_000), 1..20),
        ) {
            let mut now = Instant::now();
            let mut backoff = BackOff::default();
            let mut last_step_delay = Duration::ZERO;
            for (end, ran_secs) in ends {
                backoff.started(now);
                now += Duration::from_secs(ran_secs);
                let delay = backoff.ended(now, policy, end, SCHEDULE);
                if Duration::from_secs(ran_secs) >= BACKOFF_RESET {
                    last_step_delay = Duration::ZERO;
                }
                let expected = match policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => end != RunEnd::Exited(0),
                    RestartPolicy::Never => false,
                };
                prop_assert_eq!(delay.is_some(), expected);
                prop_assert_eq!(backoff.restart_at(), delay.map(|d| now + d));
                if let Some(delay) = delay {
                    prop_assert!(delay <= SCHEDULE.max);
                    if Duration::from_secs(ran_secs) >= BACKOFF_RESET {
                        prop_assert_eq!(delay, SCHEDULE.first);
                    } else {
                        prop_assert!(delay >= last_step_delay);
                    }
                    last_step_delay = delay;
                    now += delay;
                }
            }
        }
    }
}
