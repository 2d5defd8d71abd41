//! A metrics query as Azure Monitor reads one: `metricnames`, `aggregation`, `interval`, `timespan`,
//! `$filter`, `top`, `resultType`, `metricnamespace` (parameter names without case). What does not
//! parse is a [`QueryError`] naming the parameter.

use std::collections::HashMap;

use super::catalogue::{CONTAINER_DIMENSION, Metric, NAMESPACE, unknown_metric};
use super::iso8601::{format_duration, format_instant, parse_duration, parse_instant};

/// The time grains ACI's metrics have (Azure Monitor's list for containerGroups, and P1D).
pub const GRAINS_MS: [i64; 8] = [
    60_000, 300_000, 900_000, 1_800_000, 3_600_000, 21_600_000, 43_200_000, 86_400_000,
];

/// The span a query covers when it names none: the last hour, as az asks by default.
pub const DEFAULT_SPAN_MS: i64 = 3_600_000;

/// The longest span a query may cover (Azure Monitor keeps 93 days).
pub const MAX_SPAN_MS: i64 = 93 * 86_400_000;

/// The most data points one time series may have (a span over a grain).
pub const MAX_POINTS: i64 = 50_000;

/// The most time series one metric answers with when split (`top`'s default, as Azure Monitor's).
pub const DEFAULT_TOP: usize = 10;

/// How values within one interval are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Average,
    Minimum,
    Maximum,
    Total,
    Count,
}

impl Aggregation {
    pub const ALL: [Aggregation; 5] = [
        Aggregation::Average,
        Aggregation::Minimum,
        Aggregation::Maximum,
        Aggregation::Total,
        Aggregation::Count,
    ];

    fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The name in a query (`aggregation=Average`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Average => "Average",
            Aggregation::Minimum => "Minimum",
            Aggregation::Maximum => "Maximum",
            Aggregation::Total => "Total",
            Aggregation::Count => "Count",
        }
    }

    /// The field of a data point that carries it (`"average"`).
    pub fn field(self) -> &'static str {
        match self {
            Aggregation::Average => "average",
            Aggregation::Minimum => "minimum",
            Aggregation::Maximum => "maximum",
            Aggregation::Total => "total",
            Aggregation::Count => "count",
        }
    }
}

/// Which time series a metric is split into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// One series for the whole group (its containers added up).
    Group,
    /// One series per container (`containerName eq '*'`).
    EveryContainer,
    /// One series per named container (`containerName eq 'a' or containerName eq 'b'`).
    Containers(Vec<String>),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub metrics: Vec<Metric>,
    pub aggregations: Vec<Aggregation>,
    /// The span, `[from_ms, to_ms)`, Unix ms.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The interval of each data point, ms; the whole span for `FULL`.
    pub grain_ms: i64,
    pub split: Split,
    /// The most time series per metric when split.
    pub top: usize,
    /// `resultType=Metadata`: the series without their data.
    pub metadata_only: bool,
}

impl Query {
    /// The span as the response writes it: `start/end`.
    pub fn timespan(&self) -> String {
        format!(
            "{}/{}",
            format_instant(self.from_ms),
            format_instant(self.to_ms)
        )
    }

    /// The interval as the response writes it (`PT1M`; for `FULL`, the span's length).
    pub fn interval(&self) -> String {
        format_duration(self.grain_ms)
    }
}

/// A query parameter that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct QueryError {
    pub parameter: &'static str,
    pub message: String,
}

fn refuse(parameter: &'static str, message: impl Into<String>) -> QueryError {
    QueryError {
        parameter,
        message: message.into(),
    }
}

/// Parses a query (`params` as sent, any case of names) at `now_ms`.
pub fn parse(params: &HashMap<String, String>, now_ms: i64) -> Result<Query, QueryError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    };
    if let Some(namespace) = get("metricnamespace")
        && !namespace.trim().eq_ignore_ascii_case(NAMESPACE)
    {
        return Err(refuse(
            "metricnamespace",
            format!("Metric namespace {namespace} is not {NAMESPACE}, the container group's."),
        ));
    }
    let metrics = metrics(get("metricnames"))?;
    let aggregations = aggregations(get("aggregation"))?;
    let (from_ms, to_ms) = timespan(get("timespan"), now_ms)?;
    let (grain_ms, full) = grain(get("interval"), to_ms - from_ms)?;
    // Data points start on multiples of the grain (UTC), as Azure Monitor's do; FULL starts at the span.
    let from_ms = if full {
        from_ms
    } else {
        from_ms - from_ms.rem_euclid(grain_ms)
    };
    if (to_ms - from_ms) / grain_ms > MAX_POINTS {
        return Err(refuse(
            "interval",
            format!(
                "The interval {} over the timespan gives more than {MAX_POINTS} data points.",
                format_duration(grain_ms)
            ),
        ));
    }
    let split = match get("$filter") {
        Some(filter) => self::filter(filter)?,
        None => Split::Group,
    };
    if split != Split::Group
        && let Some(metric) = metrics.iter().find(|m| !m.per_container())
    {
        return Err(refuse(
            "$filter",
            format!(
                "Metric {} has no dimension {CONTAINER_DIMENSION}: it is the group's network.",
                metric.name()
            ),
        ));
    }
    let top = match get("top") {
        Some(top) => top
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| refuse("top", format!("top {top} is not a positive whole number.")))?,
        None => DEFAULT_TOP,
    };
    let metadata_only = match get("resultType") {
        None => false,
        Some(kind) if kind.eq_ignore_ascii_case("Data") => false,
        Some(kind) if kind.eq_ignore_ascii_case("Metadata") => true,
        Some(kind) => {
            return Err(refuse(
                "resultType",
                format!("resultType {kind} is neither Data nor Metadata."),
            ));
        }
    };
    Ok(Query {
        metrics,
        aggregations,
        from_ms,
        to_ms,
        grain_ms,
        split,
        top,
        metadata_only,
    })
}

/// `metricnames`: comma-separated, each named once; none means CpuUsage (ACI's first metric).
fn metrics(names: Option<&str>) -> Result<Vec<Metric>, QueryError> {
    let Some(names) = names else {
        return Ok(vec![Metric::CpuUsage]);
    };
    let mut metrics = Vec::new();
    for name in names.split(',') {
        let metric = Metric::parse(name)
            .ok_or_else(|| refuse("metricnames", unknown_metric(name.trim())))?;
        if !metrics.contains(&metric) {
            metrics.push(metric);
        }
    }
    if metrics.len() > 20 {
        return Err(refuse(
            "metricnames",
            "At most 20 metrics may be asked for at once.",
        ));
    }
    Ok(metrics)
}

/// `aggregation`: comma-separated; none means Average (the primary aggregation of ACI's metrics).
fn aggregations(names: Option<&str>) -> Result<Vec<Aggregation>, QueryError> {
    let Some(names) = names else {
        return Ok(vec![Aggregation::Average]);
    };
    let mut aggregations = Vec::new();
    for name in names.split(',') {
        let aggregation = Aggregation::parse(name).ok_or_else(|| {
            refuse(
                "aggregation",
                format!(
                    "Aggregation {} is not one of Average, Minimum, Maximum, Total, Count.",
                    name.trim()
                ),
            )
        })?;
        if !aggregations.contains(&aggregation) {
            aggregations.push(aggregation);
        }
    }
    Ok(aggregations)
}

/// `timespan`: `start/end`, `start/duration`, `duration/end` or `duration` (ending now); none means
/// the last hour. az sends its value percent-encoded once more than the query is: that is decoded.
fn timespan(text: Option<&str>, now_ms: i64) -> Result<(i64, i64), QueryError> {
    let Some(text) = text else {
        return Ok((now_ms - DEFAULT_SPAN_MS, now_ms));
    };
    let decoded: String = if text.contains('%') {
        form_urlencoded::parse(format!("t={text}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    } else {
        text.to_owned()
    };
    let bad = || {
        refuse(
            "timespan",
            format!(
                "Timespan {text} is not start/end, start/duration, duration/end or a duration (ISO 8601)."
            ),
        )
    };
    let (from_ms, to_ms) = match decoded.trim().split_once('/') {
        None => (now_ms - parse_duration(&decoded).ok_or_else(bad)?, now_ms),
        Some((start, end)) => match (parse_instant(start), parse_instant(end)) {
            (Some(from), Some(to)) => (from, to),
            (Some(from), None) => (
                from,
                from.saturating_add(parse_duration(end).ok_or_else(bad)?),
            ),
            (None, Some(to)) => (
                to.saturating_sub(parse_duration(start).ok_or_else(bad)?),
                to,
            ),
            (None, None) => return Err(bad()),
        },
    };
    if to_ms <= from_ms {
        return Err(refuse(
            "timespan",
            format!("Timespan {text} ends before it starts."),
        ));
    }
    if to_ms - from_ms > MAX_SPAN_MS {
        return Err(refuse(
            "timespan",
            format!("Timespan {text} is longer than 93 days."),
        ));
    }
    Ok((from_ms, to_ms))
}

/// `interval`: one of ACI's grains, or `FULL` (one data point for the whole span); none means PT1M.
/// Returns the grain and whether it is `FULL`.
fn grain(text: Option<&str>, span_ms: i64) -> Result<(i64, bool), QueryError> {
    let Some(text) = text else {
        return Ok((GRAINS_MS[0], false));
    };
    if text.trim().eq_ignore_ascii_case("FULL") {
        return Ok((span_ms, true));
    }
    parse_duration(text)
        .filter(|ms| GRAINS_MS.contains(ms))
        .map(|ms| (ms, false))
        .ok_or_else(|| {
            let grains: Vec<String> = GRAINS_MS.iter().map(|g| format_duration(*g)).collect();
            refuse(
                "interval",
                format!(
                    "Invalid time grain {text}: supported are {} and FULL.",
                    grains.join(", ")
                ),
            )
        })
}

/// `$filter`: clauses `containerName eq '<name>'` joined by `or` (or `and`, which for one
/// dimension means the same here); `'*'` splits by every container.
fn filter(text: &str) -> Result<Split, QueryError> {
    let bad = |why: &str| refuse("$filter", format!("$filter {text}: {why}"));
    let mut names = Vec::new();
    let mut every = false;
    let mut rest = text.trim();
    loop {
        let (dimension, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected `containerName eq '<name>'`"))?;
        if !dimension.eq_ignore_ascii_case(CONTAINER_DIMENSION) {
            return Err(bad(&format!(
                "the only dimension is {CONTAINER_DIMENSION}, not {dimension}"
            )));
        }
        let after = after.trim_start();
        let Some(after) = after
            .get(..2)
            .filter(|op| op.eq_ignore_ascii_case("eq"))
            .map(|_| after[2..].trim_start())
        else {
            return Err(bad("the only operator is eq"));
        };
        let (value, after) = quoted(after).ok_or_else(|| bad("a value is quoted, as in 'name'"))?;
        if value.is_empty() {
            return Err(bad("a container name is not empty"));
        }
        if value == "*" {
            every = true;
        } else if !names.contains(&value) {
            names.push(value);
        }
        let after = after.trim_start();
        if after.is_empty() {
            break;
        }
        let (joiner, next) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("clauses are joined by `or`"))?;
        if !joiner.eq_ignore_ascii_case("or") && !joiner.eq_ignore_ascii_case("and") {
            return Err(bad("clauses are joined by `or`"));
        }
        rest = next.trim_start();
    }
    Ok(if every {
        Split::EveryContainer
    } else {
        Split::Containers(names)
    })
}

/// A single-quoted value at the start of `text` (`''` inside is a quote) and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let inner = text.strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = inner.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
            continue;
        }
        if let Some((_, '\'')) = chars.peek() {
            value.push('\'');
            chars.next();
            continue;
        }
        return Some((value, &inner[i + 1..]));
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_764_676_800_000; // 2025-12-02T12:00:00Z

    fn query(pairs: &[(&str, &str)]) -> Result<Query, QueryError> {
        let params = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(&params, NOW)
    }

    fn refused(pairs: &[(&str, &str)]) -> &'static str {
        query(pairs).expect_err("refused").parameter
    }

    #[test]
    fn what_the_issue_names_parses() {
        let q = query(&[
            ("api-version", "2018-01-01"),
            ("metricnames", "CpuUsage,MemoryUsage"),
            ("timespan", "2025-12-02T11:00:00Z/2025-12-02T12:00:00Z"),
            ("interval", "PT1M"),
            ("aggregation", "Average"),
            ("$filter", "containerName eq '*'"),
        ])
        .unwrap();
        assert_eq!(q.metrics, [Metric::CpuUsage, Metric::MemoryUsage]);
        assert_eq!(q.aggregations, [Aggregation::Average]);
        assert_eq!((q.from_ms, q.to_ms), (NOW - 3_600_000, NOW));
        assert_eq!(q.grain_ms, 60_000);
        assert_eq!(q.split, Split::EveryContainer);
        assert_eq!(q.top, 10);
        assert_eq!(q.timespan(), "2025-12-02T11:00:00Z/2025-12-02T12:00:00Z");
        assert_eq!(q.interval(), "PT1M");
    }

    #[test]
    fn nothing_but_the_version_is_the_last_hour_of_cpu_by_the_minute_on_average() {
        let q = query(&[]).unwrap();
        assert_eq!(q.metrics, [Metric::CpuUsage]);
        assert_eq!(q.aggregations, [Aggregation::Average]);
        assert_eq!(
            (q.from_ms, q.to_ms, q.grain_ms),
            (NOW - 3_600_000, NOW, 60_000)
        );
        assert_eq!(q.split, Split::Group);
    }

    #[test]
    fn the_timespan_forms_and_azs_double_encoding() {
        let span = |t: &str| {
            let q = query(&[("timespan", t), ("interval", "FULL")]).unwrap();
            (q.from_ms, q.to_ms)
        };
        let hour = (NOW - 3_600_000, NOW);
        assert_eq!(span("2025-12-02T11:00:00Z/2025-12-02T12:00:00Z"), hour);
        assert_eq!(span("2025-12-02T11:00:00Z/PT1H"), hour);
        assert_eq!(span("PT1H/2025-12-02T12:00:00Z"), hour);
        assert_eq!(span("PT1H"), hour);
        // az: quote_plus(isoformat of a naive UTC time), sent inside a query that is encoded again.
        assert_eq!(
            span("2025-12-02T11%3A00%3A00.000000%2F2025-12-02T12%3A00%3A00.000000"),
            hour
        );
        for bad in [
            "yesterday",
            "2025-12-02T12:00:00Z/2025-12-02T11:00:00Z",
            "P1D/P1D",
            "P100D",
            "/",
        ] {
            assert_eq!(refused(&[("timespan", bad)]), "timespan", "{bad}");
        }
    }

    #[test]
    fn intervals_are_acis_grains_or_full_and_points_start_on_the_grain() {
        let q = query(&[
            ("interval", "pt5m"),
            ("timespan", "2025-12-02T11:02:30Z/PT1H"),
        ])
        .unwrap();
        assert_eq!(q.grain_ms, 300_000);
        assert_eq!(
            q.from_ms,
            NOW - 3_600_000,
            "11:02:30 starts the 11:00 point"
        );
        let full = query(&[
            ("interval", "FULL"),
            ("timespan", "2025-12-02T11:02:30Z/PT1H"),
        ])
        .unwrap();
        assert_eq!((full.from_ms, full.grain_ms), (NOW - 3_450_000, 3_600_000));
        assert_eq!(full.interval(), "PT1H");
        for bad in ["PT2M", "PT10S", "P1Y", "often"] {
            assert_eq!(refused(&[("interval", bad)]), "interval", "{bad}");
        }
        assert_eq!(
            refused(&[("interval", "PT1M"), ("timespan", "P93D")]),
            "interval"
        );
    }

    #[test]
    fn filters_split_by_every_or_named_containers() {
        let split = |f: &str| query(&[("$filter", f)]).unwrap().split;
        assert_eq!(split("containerName eq '*'"), Split::EveryContainer);
        assert_eq!(
            split("ContainerName EQ 'web'"),
            Split::Containers(vec!["web".into()])
        );
        assert_eq!(
            split("containerName eq 'a' or containerName eq 'b' or containerName eq 'a'"),
            Split::Containers(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            split("containerName eq 'it''s'"),
            Split::Containers(vec!["it's".into()])
        );
        for bad in [
            "containerName ne 'a'",
            "zone eq 'a'",
            "containerName eq a",
            "containerName eq 'a",
            "containerName eq 'a' xor containerName eq 'b'",
            "containerName eq 'a' or",
            "containerName",
            "containerName eq ''",
        ] {
            assert_eq!(refused(&[("$filter", bad)]), "$filter", "{bad}");
        }
        assert_eq!(
            refused(&[
                ("metricnames", "CpuUsage,NetworkBytesReceivedPerSecond"),
                ("$filter", "containerName eq '*'")
            ]),
            "$filter",
            "the network has no container dimension"
        );
    }

    #[test]
    fn names_aggregations_and_the_rest_are_checked() {
        let q = query(&[
            ("MetricNames", "memoryusage,MemoryUsage"),
            ("Aggregation", "average,count,Maximum,minimum,TOTAL"),
            ("top", "3"),
            ("resultType", "metadata"),
            (
                "metricnamespace",
                "microsoft.containerinstance/containergroups",
            ),
        ])
        .unwrap();
        assert_eq!(q.metrics, [Metric::MemoryUsage]);
        assert_eq!(q.aggregations.len(), 5);
        assert_eq!(q.top, 3);
        assert!(q.metadata_only);
        assert_eq!(refused(&[("metricnames", "CpuUsage,Foo")]), "metricnames");
        assert_eq!(refused(&[("aggregation", "Median")]), "aggregation");
        assert_eq!(refused(&[("top", "0")]), "top");
        assert_eq!(refused(&[("resultType", "All")]), "resultType");
        assert_eq!(
            refused(&[("metricnamespace", "Microsoft.Storage/storageAccounts")]),
            "metricnamespace"
        );
    }

    proptest! {
        /// Whatever a client sends, the query parses or is refused naming a parameter; a parsed one
        /// has a span that is not empty and at most MAX_POINTS points per series.
        #[test]
        fn any_query_is_parsed_or_refused(
            timespan in ".{0,30}|PT[0-9]{1,3}[HMS]|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z/P[0-9]{1,3}D",
            interval in "FULL|PT[0-9]{1,2}[HM]|P1D|.{0,6}",
            filter in ".{0,30}|containerName eq '[a-z*]{0,4}'( or containerName eq '[a-z]{1,3}')?",
            names in "[A-Za-z,]{0,40}",
        ) {
            match query(&[("timespan", &timespan), ("interval", &interval), ("$filter", &filter), ("metricnames", &names)]) {
                Ok(q) => {
                    prop_assert!(q.to_ms > q.from_ms);
                    prop_assert!(q.grain_ms > 0);
                    prop_assert!((q.to_ms - q.from_ms) / q.grain_ms <= MAX_POINTS);
                    prop_assert!(!q.metrics.is_empty());
                }
                Err(e) => prop_assert!(!e.parameter.is_empty()),
            }
        }
    }
}
