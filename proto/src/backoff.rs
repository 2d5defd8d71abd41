//! Jittered exponential back-off, for everything that reconnects or retries (node agents' joins
//! and `Sync` stream, standalone `berth-dns` following the apiserver).

use std::time::Duration;

use rand::Rng as _;

/// How far apart retries are: doubling from `initial` up to `max`, each delay drawn uniformly
/// between half and all of its step, so a fleet that lost the same server does not come back in
/// lock-step. The settings only; [`Backoff::delays`] counts one run of failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delays of one run of failures.
    pub fn delays(self) -> Delays {
        Delays {
            backoff: self,
            step: self.initial,
        }
    }
}

/// The next delays of a [`Backoff`].
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    step: Duration,
}

impl Delays {
    /// The delay before the next attempt: in `[step / 2, step]`, the step doubling up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step.min(self.backoff.max);
        self.step = step.saturating_mul(2).min(self.backoff.max);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=step - half)
    }

    /// An attempt worked: the next failure starts from the initial step again.
    pub fn reset(&mut self) {
        self.step = self.backoff.initial;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut delays = backoff.delays();
        for step in [100, 200, 400, 800, 1000, 1000, 1000] {
            let delay = delays.next_delay();
            let step = Duration::from_millis(step);
            assert!(delay >= step / 2 && delay <= step, "{delay:?} for {step:?}");
        }
        delays.reset();
        assert!(delays.next_delay() <= Duration::from_millis(100));
        // Jitter: a hundred draws at the cap are not all the same.
        let draws: HashSet<Duration> = (0..100).map(|_| delays.next_delay()).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn an_initial_step_above_the_cap_is_capped() {
        let backoff = Backoff {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(1),
        };
        let mut delays = backoff.delays();
        assert!(delays.next_delay() <= Duration::from_secs(1));
        let mut zero = Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        }
        .delays();
        assert_eq!(zero.next_delay(), Duration::ZERO);
    }
}
