//! Azure Monitor's response to a metrics query (`cost`, `timespan`, `interval`, `namespace`,
//! `resourceregion`, `value[]` of metrics with their `timeseries`), and its error shape.

use serde_json::{Map, Value, json};

use super::aggregate::{Series, series};
use super::catalogue::NAMESPACE;
use super::iso8601::format_instant;
use super::query::{Query, QueryError};
use crate::store::MetricSample;

/// The dimension's name in `metadatavalues`: Azure Monitor writes dimension names in lower case.
const DIMENSION_IN_RESPONSE: &str = "containername";

/// The response to `query` over one group's `samples`; `resource_id` is the group's ARM id.
pub fn metrics(resource_id: &str, region: &str, query: &Query, samples: &[MetricSample]) -> Value {
    let value: Vec<Value> = query
        .metrics
        .iter()
        .map(|metric| {
            json!({
                "id": format!("{resource_id}/providers/Microsoft.Insights/metrics/{}", metric.name()),
                "type": "Microsoft.Insights/metrics",
                "name": { "value": metric.name(), "localizedValue": metric.display_name() },
                "displayDescription": metric.description(),
                "unit": metric.unit(),
                "timeseries": series(*metric, query, samples)
                    .iter()
                    .map(|s| timeseries(query, s))
                    .collect::<Vec<_>>(),
                "errorCode": "Success",
            })
        })
        .collect();
    json!({
        "cost": 0,
        "timespan": query.timespan(),
        "interval": query.interval(),
        "value": value,
        "namespace": NAMESPACE,
        "resourceregion": region,
    })
}

fn timeseries(query: &Query, series: &Series) -> Value {
    let metadata: Vec<Value> = series
        .container
        .iter()
        .map(|name| {
            json!({
                "name": { "value": DIMENSION_IN_RESPONSE, "localizedValue": DIMENSION_IN_RESPONSE },
                "value": name,
            })
        })
        .collect();
    let data: Vec<Value> = if query.metadata_only {
        Vec::new()
    } else {
        series
            .points
            .iter()
            .map(|point| {
                let mut fields = Map::new();
                fields.insert("timeStamp".into(), format_instant(point.start_ms).into());
                for aggregation in &query.aggregations {
                    if let Some(value) = point.value(*aggregation) {
                        fields.insert(aggregation.field().into(), value.into());
                    }
                }
                Value::Object(fields)
            })
            .collect()
    };
    json!({ "metadatavalues": metadata, "data": data })
}

/// Azure Monitor's answer to a query it refuses (400): `{"code","message"}`, naming the parameter.
pub fn refusal(error: &QueryError) -> Value {
    json!({
        "code": "BadRequest",
        "message": format!("Invalid parameter {}: {}", error.parameter, error.message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::catalogue::Metric;
    use crate::monitor::query::{Aggregation, Split};

    fn sample(container: &str, at_ms: i64, millicores: f64) -> MetricSample {
        MetricSample {
            group_id: "g".into(),
            container: container.into(),
            at_ms,
            cpu_usage_ns: 0,
            cpu_millicores: millicores,
            memory_bytes: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_second: 0.0,
            tx_bytes_per_second: 0.0,
        }
    }

    fn query() -> Query {
        Query {
            metrics: vec![Metric::CpuUsage],
            aggregations: vec![Aggregation::Average, Aggregation::Count],
            from_ms: 1_764_676_800_000,
            to_ms: 1_764_676_920_000,
            grain_ms: 60_000,
            split: Split::EveryContainer,
            top: 10,
            metadata_only: false,
        }
    }

    #[test]
    fn the_shape_azure_monitor_answers_with() {
        let q = query();
        let body = metrics(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web",
            "local",
            &q,
            &[sample("app", q.from_ms + 5_000, 250.0)],
        );
        assert_eq!(
            body["timespan"],
            "2025-12-02T12:00:00Z/2025-12-02T12:02:00Z"
        );
        assert_eq!(body["interval"], "PT1M");
        assert_eq!(body["namespace"], NAMESPACE);
        assert_eq!(body["resourceregion"], "local");
        let metric = &body["value"][0];
        assert_eq!(
            metric["id"],
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web/providers/Microsoft.Insights/metrics/CpuUsage"
        );
        assert_eq!(metric["type"], "Microsoft.Insights/metrics");
        assert_eq!(metric["name"]["localizedValue"], "CPU Usage");
        assert_eq!(metric["unit"], "Count");
        assert_eq!(metric["errorCode"], "Success");
        let series = &metric["timeseries"][0];
        assert_eq!(
            series["metadatavalues"][0]["name"]["value"],
            "containername"
        );
        assert_eq!(series["metadatavalues"][0]["value"], "app");
        assert_eq!(
            series["data"],
            json!([
                {"timeStamp": "2025-12-02T12:00:00Z", "average": 250.0, "count": 1.0},
                {"timeStamp": "2025-12-02T12:01:00Z", "count": 0.0},
            ])
        );
    }

    #[test]
    fn metadata_only_keeps_the_series_without_data_and_refusals_name_the_parameter() {
        let mut q = query();
        q.metadata_only = true;
        let body = metrics("/x", "local", &q, &[sample("app", q.from_ms, 1.0)]);
        assert_eq!(body["value"][0]["timeseries"][0]["data"], json!([]));
        let refusal = refusal(&QueryError {
            parameter: "interval",
            message: "Invalid time grain PT2M.".into(),
        });
        assert_eq!(refusal["code"], "BadRequest");
        assert!(refusal["message"].as_str().unwrap().contains("interval"));
    }
}
