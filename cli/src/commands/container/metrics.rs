//! `berth container metrics`: a metric of a group's containers over a recent span, through ACI's
//! metrics route (Azure Monitor's `…/providers/Microsoft.Insights/metrics`), as a table of values per
//! container or, with `--chart`, a sparkline per container.

use serde_json::Value;

use crate::UsageError;
use crate::cli::MetricsArgs;
use crate::client::segment;
use crate::commands::{Context, group_path};
use crate::output::{self, OutputFormat, new_table, trim_lines};

/// Azure Monitor's metrics API version az sends.
const API_VERSION: &str = "2018-01-01";

/// The metrics ACI has, and whether each is per container (the network is the group's).
const METRICS: [(&str, bool); 4] = [
    ("CpuUsage", true),
    ("MemoryUsage", true),
    ("NetworkBytesReceivedPerSecond", false),
    ("NetworkBytesTransmittedPerSecond", false),
];

/// The levels of a sparkline, lowest first.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub async fn metrics(ctx: &Context, args: &MetricsArgs) -> anyhow::Result<()> {
    let (metric, per_container) = METRICS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&args.metric))
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = METRICS.iter().map(|(name, _)| *name).collect();
            UsageError(format!(
                "--metric {:?} is not one of {}",
                args.metric,
                names.join(", ")
            ))
        })?;
    if args.target.container.is_some() && !per_container {
        return Err(UsageError(format!(
            "{metric} is the group's network, not a container's: drop --container"
        ))
        .into());
    }
    let interval = interval_for(args.since);
    let mut query = format!(
        "api-version={API_VERSION}&metricnames={metric}&aggregation=Average&interval={interval}&timespan=PT{}S",
        args.since
    );
    if per_container {
        let name = args.target.container.as_deref().unwrap_or("*");
        let filter = format!("containerName eq '{}'", name.replace('\'', "''"));
        query.push_str(&format!("&$filter={}", segment(&filter)));
    }
    let path = format!(
        "{}/providers/Microsoft.Insights/metrics?{query}",
        group_path(
            ctx.subscription()?,
            &args.target.resource_group,
            args.target.group_name()
        )
    );
    let answer: Value = ctx.client.get(&path).await?.json()?;
    if ctx.output != OutputFormat::Table {
        if let Some(text) = output::document(ctx.output, &answer)? {
            output::emit(&text)?;
        }
        return Ok(());
    }
    let series = series_of(&answer);
    if series.iter().all(|s| s.values.iter().all(Option::is_none)) {
        crate::commands::note(&format!(
            "no {metric} samples in the last {}: is the group running?",
            span(args.since)
        ));
        return Ok(());
    }
    let text = if args.chart {
        chart(metric, &series, args.since, interval)
    } else {
        table(metric, &series)
    };
    output::emit(&text)
}

/// A grain that gives at most about 60 points over `since_secs`.
pub fn interval_for(since_secs: u64) -> &'static str {
    const GRAINS: [(u64, &str); 8] = [
        (60, "PT1M"),
        (300, "PT5M"),
        (900, "PT15M"),
        (1800, "PT30M"),
        (3600, "PT1H"),
        (21_600, "PT6H"),
        (43_200, "PT12H"),
        (86_400, "P1D"),
    ];
    GRAINS
        .iter()
        .find(|(secs, _)| since_secs <= secs * 60)
        .map_or("P1D", |(_, grain)| grain)
}

/// One time series of the answer: its container (`None`: the whole group) and its averages.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub container: Option<String>,
    pub times: Vec<String>,
    pub values: Vec<Option<f64>>,
}

/// The series of the answer's first metric.
pub fn series_of(answer: &Value) -> Vec<Series> {
    answer["value"][0]["timeseries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| {
            let container = series["metadatavalues"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| {
                    m["name"]["value"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("containerName"))
                })
                .and_then(|m| m["value"].as_str())
                .map(str::to_owned);
            let data = series["data"].as_array().cloned().unwrap_or_default();
            Series {
                container,
                times: data
                    .iter()
                    .map(|d| d["timeStamp"].as_str().unwrap_or_default().to_owned())
                    .collect(),
                values: data.iter().map(|d| d["average"].as_f64()).collect(),
            }
        })
        .collect()
}

/// A value in the metric's unit: millicores (`250m`), bytes (`12.5MiB`) or bytes per second.
pub fn value_text(metric: &str, value: f64) -> String {
    match metric {
        "CpuUsage" => format!("{}m", trimmed(value)),
        "MemoryUsage" => bytes(value),
        _ => format!("{}/s", bytes(value)),
    }
}

fn bytes(value: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{}{}", trimmed(value), UNITS[unit])
}

/// At most one decimal, none when whole.
fn trimmed(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

fn column(series: &Series) -> String {
    series
        .container
        .clone()
        .unwrap_or_else(|| "GROUP".to_owned())
}

/// A row per point in time, a column per container; `-` where no sample fell.
pub fn table(metric: &str, series: &[Series]) -> String {
    let mut header = vec!["TIME".to_owned()];
    header.extend(series.iter().map(column));
    let mut table = new_table(&header.iter().map(String::as_str).collect::<Vec<_>>());
    let times = series.first().map(|s| s.times.clone()).unwrap_or_default();
    for (i, time) in times.iter().enumerate() {
        let mut row = vec![time.clone()];
        for s in series {
            row.push(
                s.values
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or_else(|| "-".to_owned(), |v| value_text(metric, v)),
            );
        }
        table.add_row(row);
    }
    trim_lines(&table.to_string())
}

/// A line per container: its name, a sparkline scaled to the largest value of all, its last value
/// and its peak.
pub fn chart(metric: &str, series: &[Series], since_secs: u64, interval: &str) -> String {
    let peak = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b));
    let width = series
        .iter()
        .map(|s| column(s).chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = vec![format!(
        "{metric}, last {}, average per {}:",
        span(since_secs),
        interval
            .trim_start_matches('P')
            .trim_start_matches('T')
            .to_lowercase()
    )];
    for s in series {
        let own_peak = s.values.iter().flatten().fold(f64::NAN, |a, b| a.max(*b));
        let last = s.values.iter().rev().flatten().next();
        lines.push(format!(
            "{:width$}  {}  last {}  peak {}",
            column(s),
            sparkline(&s.values, peak),
            last.map_or_else(|| "-".to_owned(), |v| value_text(metric, *v)),
            if own_peak.is_nan() {
                "-".to_owned()
            } else {
                value_text(metric, own_peak)
            },
        ));
    }
    lines.join("\n")
}

/// One block per value, its height the value over `peak`; a space where there is none.
pub fn sparkline(values: &[Option<f64>], peak: f64) -> String {
    values
        .iter()
        .map(|value| match value {
            None => ' ',
            Some(v) if peak <= 0.0 || !v.is_finite() => BLOCKS[0],
            Some(v) => {
                let level = (v.max(0.0) / peak * (BLOCKS.len() - 1) as f64).round() as usize;
                BLOCKS[level.min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

/// `3600` as `1h`, `5400` as `1h30m`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_interval_keeps_a_chart_near_sixty_points() {
        assert_eq!(interval_for(600), "PT1M");
        assert_eq!(interval_for(3600), "PT1M");
        assert_eq!(interval_for(3601), "PT5M");
        assert_eq!(interval_for(86_400), "PT30M");
        assert_eq!(interval_for(30 * 86_400), "PT12H");
        assert_eq!(interval_for(31 * 86_400), "P1D");
    }

    #[test]
    fn sparklines_scale_to_the_peak_and_leave_gaps_blank() {
        assert_eq!(
            sparkline(&[Some(0.0), Some(50.0), Some(100.0), None], 100.0),
            "▁▅█ "
        );
        assert_eq!(sparkline(&[Some(0.0), Some(0.0)], 0.0), "▁▁");
        assert_eq!(sparkline(&[Some(-5.0), Some(f64::NAN)], 10.0), "▁▁");
    }

    #[test]
    fn values_carry_their_unit() {
        assert_eq!(value_text("CpuUsage", 250.04), "250m");
        assert_eq!(value_text("MemoryUsage", 12.5 * 1024.0 * 1024.0), "12.5MiB");
        assert_eq!(
            value_text("NetworkBytesReceivedPerSecond", 2048.0),
            "2KiB/s"
        );
        assert_eq!(span(5400), "1h30m");
    }

    fn answer() -> Value {
        json!({"value": [{"name": {"value": "CpuUsage"}, "timeseries": [
            {"metadatavalues": [{"name": {"value": "containername"}, "value": "web"}],
             "data": [{"timeStamp": "2025-01-01T00:00:00Z", "average": 100.0}, {"timeStamp": "2025-01-01T00:01:00Z"}]},
            {"metadatavalues": [{"name": {"value": "containername"}, "value": "sidecar"}],
             "data": [{"timeStamp": "2025-01-01T00:00:00Z", "average": 5.0}, {"timeStamp": "2025-01-01T00:01:00Z", "average": 10.0}]}
        ]}]})
    }

    #[test]
    fn the_table_has_a_column_per_container_and_a_dash_where_nothing_was_sampled() {
        let text = table("CpuUsage", &series_of(&answer()));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("TIME")
                && lines[0].contains("web")
                && lines[0].contains("sidecar"),
            "{text}"
        );
        assert!(
            lines[2].contains("100m") && lines[2].contains("5m"),
            "{text}"
        );
        assert!(lines[3].contains('-') && lines[3].contains("10m"), "{text}");
    }

    #[test]
    fn the_chart_has_a_line_per_container() {
        let text = chart("CpuUsage", &series_of(&answer()), 120, "PT1M");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "CpuUsage, last 2m, average per 1m:");
        assert_eq!(lines[1], "web      █   last 100m  peak 100m");
        assert_eq!(lines[2], "sidecar  ▁▂  last 10m  peak 10m");
    }
}
