//! Samples into time series: a metric's values, split by container or added up over the group,
//! combined per interval (average, minimum, maximum, total, count).

use std::collections::BTreeMap;

use super::catalogue::Metric;
use super::query::{Aggregation, Query, Split};
use crate::store::MetricSample;

/// One interval's values combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub start_ms: i64,
    pub count: u64,
    pub total: f64,
    pub minimum: f64,
    pub maximum: f64,
}

impl Point {
    fn empty(start_ms: i64) -> Self {
        Point {
            start_ms,
            count: 0,
            total: 0.0,
            minimum: f64::INFINITY,
            maximum: f64::NEG_INFINITY,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.total += value;
        self.minimum = self.minimum.min(value);
        self.maximum = self.maximum.max(value);
    }

    /// The aggregation's value; `None` for an interval without values (Azure Monitor leaves the
    /// field out), except the count, which is 0.
    pub fn value(&self, aggregation: Aggregation) -> Option<f64> {
        if aggregation == Aggregation::Count {
            return Some(self.count as f64);
        }
        if self.count == 0 {
            return None;
        }
        Some(match aggregation {
            Aggregation::Average => self.total / self.count as f64,
            Aggregation::Minimum => self.minimum,
            Aggregation::Maximum => self.maximum,
            Aggregation::Total => self.total,
            Aggregation::Count => self.count as f64,
        })
    }
}

/// One time series: a container's (`Some(name)`) or the whole group's.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub container: Option<String>,
    pub points: Vec<Point>,
}

/// `values` (`(at_ms, value)`) into the intervals `[from_ms + k·grain_ms, …)` before `to_ms`; every
/// interval has a point, with values or without.
pub fn intervals(values: &[(i64, f64)], from_ms: i64, to_ms: i64, grain_ms: i64) -> Vec<Point> {
    if grain_ms <= 0 || to_ms <= from_ms {
        return Vec::new();
    }
    let count = (to_ms - from_ms + grain_ms - 1) / grain_ms;
    let mut points: Vec<Point> = (0..count)
        .map(|k| Point::empty(from_ms + k * grain_ms))
        .collect();
    for &(at_ms, value) in values {
        if at_ms < from_ms || at_ms >= to_ms || !value.is_finite() {
            continue;
        }
        if let Some(point) = usize::try_from((at_ms - from_ms) / grain_ms)
            .ok()
            .and_then(|k| points.get_mut(k))
        {
            point.add(value);
        }
    }
    points
}

/// Values taken at one instant added up: a group's containers, sampled together.
pub fn sums_per_instant(values: impl IntoIterator<Item = (i64, f64)>) -> Vec<(i64, f64)> {
    let mut sums: BTreeMap<i64, f64> = BTreeMap::new();
    for (at_ms, value) in values {
        *sums.entry(at_ms).or_default() += value;
    }
    sums.into_iter().collect()
}

/// `metric`'s time series over `samples` (one group's), as `query` splits and bounds them.
pub fn series(metric: Metric, query: &Query, samples: &[MetricSample]) -> Vec<Series> {
    let rows = || samples.iter().filter(move |s| metric.reads(s));
    let of = |container: &str| -> Vec<(i64, f64)> {
        rows()
            .filter(|s| s.container == container)
            .map(|s| (s.at_ms, metric.value(s)))
            .collect()
    };
    let points =
        |values: &[(i64, f64)]| intervals(values, query.from_ms, query.to_ms, query.grain_ms);
    let containers: Vec<String> = match &query.split {
        Split::Group => {
            let values = sums_per_instant(rows().map(|s| (s.at_ms, metric.value(s))));
            return vec![Series {
                container: None,
                points: points(&values),
            }];
        }
        Split::EveryContainer => {
            let mut names: Vec<String> = rows().map(|s| s.container.clone()).collect();
            names.sort();
            names.dedup();
            names
        }
        Split::Containers(names) => names.clone(),
    };
    containers
        .into_iter()
        .take(query.top)
        .map(|name| Series {
            points: points(&of(&name)),
            container: Some(name),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample(container: &str, at_ms: i64, millicores: f64) -> MetricSample {
        MetricSample {
            group_id: "g".into(),
            container: container.into(),
            at_ms,
            cpu_usage_ns: 0,
            cpu_millicores: millicores,
            memory_bytes: (millicores as u64) << 20,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_second: millicores,
            tx_bytes_per_second: 0.0,
        }
    }

    fn query(split: Split) -> Query {
        Query {
            metrics: vec![Metric::CpuUsage],
            aggregations: vec![Aggregation::Average],
            from_ms: 0,
            to_ms: 120_000,
            grain_ms: 60_000,
            split,
            top: 10,
            metadata_only: false,
        }
    }

    #[test]
    fn each_interval_combines_its_values_and_an_empty_one_has_only_a_count() {
        let points = intervals(
            &[(0, 100.0), (10_000, 300.0), (59_999, 200.0)],
            0,
            120_000,
            60_000,
        );
        assert_eq!(points.len(), 2);
        let first = points[0];
        assert_eq!(first.value(Aggregation::Average), Some(200.0));
        assert_eq!(first.value(Aggregation::Minimum), Some(100.0));
        assert_eq!(first.value(Aggregation::Maximum), Some(300.0));
        assert_eq!(first.value(Aggregation::Total), Some(600.0));
        assert_eq!(first.value(Aggregation::Count), Some(3.0));
        assert_eq!(points[1].start_ms, 60_000);
        assert_eq!(points[1].value(Aggregation::Average), None);
        assert_eq!(points[1].value(Aggregation::Count), Some(0.0));
        assert_eq!(
            intervals(&[(120_000, 1.0), (-1, 1.0)], 0, 120_000, 60_000)[1].count,
            0,
            "the end is outside"
        );
        assert_eq!(
            intervals(&[], 0, 90_000, 60_000).len(),
            2,
            "a partial interval at the end counts"
        );
    }

    #[test]
    fn the_group_adds_its_containers_up_at_each_instant_then_averages_over_time() {
        let samples = [
            sample("a", 0, 100.0),
            sample("b", 0, 50.0),
            sample("a", 10_000, 300.0),
            sample("b", 10_000, 150.0),
            sample("", 0, 0.0),
        ];
        let group = series(Metric::CpuUsage, &query(Split::Group), &samples);
        assert_eq!(group.len(), 1);
        assert_eq!(group[0].container, None);
        assert_eq!(
            group[0].points[0].value(Aggregation::Average),
            Some(300.0),
            "(150 + 450) / 2"
        );
        assert_eq!(group[0].points[0].value(Aggregation::Maximum), Some(450.0));
        let every = series(Metric::CpuUsage, &query(Split::EveryContainer), &samples);
        let names: Vec<Option<&str>> = every.iter().map(|s| s.container.as_deref()).collect();
        assert_eq!(
            names,
            [Some("a"), Some("b")],
            "the group's own row is no container"
        );
        assert_eq!(every[1].points[0].value(Aggregation::Average), Some(100.0));
        let network = series(
            Metric::NetworkBytesReceivedPerSecond,
            &query(Split::Group),
            &samples,
        );
        assert_eq!(
            network[0].points[0].value(Aggregation::Count),
            Some(1.0),
            "the group's row only"
        );
    }

    #[test]
    fn named_containers_come_in_the_order_asked_even_without_data_and_top_bounds_them() {
        let samples = [
            sample("a", 0, 1.0),
            sample("b", 0, 2.0),
            sample("c", 0, 3.0),
        ];
        let named = series(
            Metric::CpuUsage,
            &query(Split::Containers(vec!["c".into(), "zz".into()])),
            &samples,
        );
        assert_eq!(named[0].container.as_deref(), Some("c"));
        assert_eq!(named[0].points[0].value(Aggregation::Average), Some(3.0));
        assert_eq!(named[1].points[0].value(Aggregation::Average), None);
        let mut top = query(Split::EveryContainer);
        top.top = 2;
        assert_eq!(series(Metric::CpuUsage, &top, &samples).len(), 2);
    }

    proptest! {
        /// Whatever the values, each point's count adds up to the values inside the span, its
        /// minimum ≤ average ≤ maximum, and there is one point per interval.
        #[test]
        fn points_account_for_every_value_inside(
            values in prop::collection::vec((-10_000i64..400_000, -1e6f64..1e6), 0..200),
            grain in prop::sample::select(vec![1_000i64, 60_000, 300_000]),
            span in 1i64..360_000,
        ) {
            let points = intervals(&values, 0, span, grain);
            prop_assert_eq!(points.len() as i64, (span + grain - 1) / grain);
            let inside = values.iter().filter(|(at, _)| *at >= 0 && *at < span).count() as u64;
            prop_assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), inside);
            for p in &points {
                if let (Some(min), Some(avg), Some(max)) = (
                    p.value(Aggregation::Minimum),
                    p.value(Aggregation::Average),
                    p.value(Aggregation::Maximum),
                ) {
                    prop_assert!(min <= avg + 1e-6 && avg <= max + 1e-6);
                }
            }
        }
    }
}
