//! Rates from cumulative counters: the change since the previous reading of the same counter, over
//! the time between the two. A counter that starts afresh (its container ran again, its sandbox was
//! made again, the counter went backwards, the clock went backwards) gives 0 for that interval,
//! never a negative rate or the huge one an unsigned subtraction would make.

use std::collections::HashMap;

/// One reading of a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reading {
    /// What the counter counts since: a container's run, a sandbox. Readings of different runs are
    /// never compared.
    pub(super) run: Run,
    pub(super) value: u64,
    /// When it was read, Unix ms.
    pub(super) at_ms: i64,
}

/// The identity of the thing a counter counts since: a container's restart count and start time,
/// or a group's placement epoch and run start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Run(pub(super) u64, pub(super) i64);

/// Units per second between two readings; 0 when they cannot be compared (see the module doc).
pub(super) fn per_second(previous: Option<&Reading>, current: &Reading) -> f64 {
    let Some(previous) = previous else {
        return 0.0;
    };
    if previous.run != current.run
        || current.value < previous.value
        || current.at_ms <= previous.at_ms
    {
        return 0.0;
    }
    let elapsed_ms = current.at_ms.abs_diff(previous.at_ms) as f64;
    (current.value - previous.value) as f64 * 1000.0 / elapsed_ms
}

/// CPU nanoseconds per second as millicores (one core is 10^9 ns/s, 1000 millicores).
pub(super) fn millicores(ns_per_second: f64) -> f64 {
    ns_per_second / 1_000_000.0
}

/// Which counter of which group: a container's CPU, or the group's received or sent bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Counter {
    Cpu { group: String, container: String },
    Rx { group: String },
    Tx { group: String },
}

/// The previous reading of every counter, kept between samples. Forgets counters of groups no
/// longer sampled, so it never holds more than what runs.
#[derive(Debug, Default)]
pub(super) struct Rates {
    last: HashMap<Counter, Reading>,
}

impl Rates {
    /// The rate of `counter` since its previous reading, which `reading` replaces.
    pub(super) fn observe(&mut self, counter: Counter, reading: Reading) -> f64 {
        let rate = per_second(self.last.get(&counter), &reading);
        self.last.insert(counter, reading);
        rate
    }

    /// Keeps only the counters `keep` says to (those read in the latest sample).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Counter) -> bool) {
        self.last.retain(|counter, _| keep(counter));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(run: Run, value: u64, at_ms: i64) -> Reading {
        Reading { run, value, at_ms }
    }

    #[test]
    fn a_rate_is_the_change_over_the_interval() {
        let run = Run(0, 1000);
        // 2.5 s of CPU in 10 s: 250 millicores.
        let rate = per_second(
            Some(&at(run, 1_000_000_000, 10_000)),
            &at(run, 3_500_000_000, 20_000),
        );
        assert_eq!(millicores(rate), 250.0);
        assert_eq!(
            per_second(Some(&at(run, 100, 0)), &at(run, 1100, 500)),
            2000.0
        );
    }

    #[test]
    fn a_counter_that_starts_afresh_gives_zero_never_a_negative_or_huge_rate() {
        let run = Run(0, 1000);
        let first = at(run, 5_000_000_000, 10_000);
        assert_eq!(per_second(None, &first), 0.0, "the first reading");
        assert_eq!(
            per_second(Some(&first), &at(run, 10, 20_000)),
            0.0,
            "the counter went backwards"
        );
        assert_eq!(
            per_second(Some(&first), &at(Run(1, 15_000), 9_000_000_000, 20_000)),
            0.0,
            "the container ran again, with a larger counter already"
        );
        assert_eq!(
            per_second(Some(&first), &at(run, 6_000_000_000, 10_000)),
            0.0,
            "no time passed"
        );
        assert_eq!(
            per_second(Some(&first), &at(run, 6_000_000_000, 9_000)),
            0.0,
            "the clock went back"
        );
    }

    #[test]
    fn rates_remember_each_counter_and_forget_what_is_no_longer_sampled() {
        let mut rates = Rates::default();
        let run = Run(1, 0);
        let cpu = |container: &str| Counter::Cpu {
            group: "g".into(),
            container: container.into(),
        };
        assert_eq!(rates.observe(cpu("a"), at(run, 0, 0)), 0.0);
        assert_eq!(rates.observe(cpu("b"), at(run, 0, 0)), 0.0);
        assert_eq!(rates.observe(cpu("a"), at(run, 1000, 1000)), 1000.0);
        assert_eq!(
            rates.observe(Counter::Rx { group: "g".into() }, at(run, 7, 0)),
            0.0
        );
        assert_eq!(rates.len(), 3);
        rates.retain(|counter| *counter == cpu("a"));
        assert_eq!(rates.len(), 1);
        assert_eq!(
            rates.observe(cpu("b"), at(run, 5000, 2000)),
            0.0,
            "b was forgotten"
        );
    }

    proptest! {
        #[test]
        fn every_rate_is_finite_and_never_negative(
            readings in proptest::collection::vec((0u64..3, any::<u64>(), any::<i64>()), 1..40),
        ) {
            let mut rates = Rates::default();
            for (run, value, at_ms) in readings {
                let rate = rates.observe(Counter::Rx { group: "g".into() }, at(Run(run, 0), value, at_ms));
                prop_assert!(rate.is_finite() && rate >= 0.0, "{rate}");
            }
        }

        #[test]
        fn a_steady_counter_gives_its_own_rate(
            per_ms in 0u64..1_000_000, steps in proptest::collection::vec(1i64..60_000, 1..20),
        ) {
            let mut rates = Rates::default();
            let (mut value, mut now) = (0u64, 1_000_000i64);
            rates.observe(Counter::Tx { group: "g".into() }, at(Run(0, 0), value, now));
            for step in steps {
                now += step;
                value += per_ms * step as u64;
                let rate = rates.observe(Counter::Tx { group: "g".into() }, at(Run(0, 0), value, now));
                prop_assert!((rate - per_ms as f64 * 1000.0).abs() <= 1e-6 * rate.max(1.0), "{rate}");
            }
        }
    }
}
