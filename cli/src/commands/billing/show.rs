//! `berth billing show`: the subscription's usage and cost since the start of the month (or
//! `--from`), per group and meter, from the tenant usage route's monthly JSON lines.

use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::billing::decimal::DecimalError;
use crate::billing::lines::LineBuffer;
use crate::billing::summary::UsageSummary;
use crate::billing::{
    Granularity, UsageFormat, UsageQuery, UsageRow, format_time, start_of_month, tenant_usage_path,
};
use crate::cli::BillingShowArgs;
use crate::client::Streaming;
use crate::commands::Context;
use crate::output::{self, OutputFormat};

/// Prints the month-to-date summary table, or with `-o json|yaml` the rows as the server sent them.
pub async fn show(ctx: &Context, args: &BillingShowArgs) -> anyhow::Result<()> {
    let subscription = ctx.subscription()?;
    let now = OffsetDateTime::now_utc();
    let from = args.from.unwrap_or_else(|| start_of_month(now));
    let query = UsageQuery::new(
        Some(from),
        None,
        Some(Granularity::Monthly),
        Some(UsageFormat::Jsonl),
        now,
    )?;
    let target = query.target(&tenant_usage_path(subscription));
    let mut answer = ctx
        .client
        .stream(&target, UsageFormat::Jsonl.media_type())
        .await?;
    let mut usage = Usage::new(ctx.output);
    let mut lines = LineBuffer::default();
    while let Some(chunk) = answer.chunk().await? {
        lines.feed(&chunk, |line| {
            usage.add(line).map_err(|e| row_error(&answer, e))
        })?;
    }
    lines.finish(|line| usage.add(line).map_err(|e| row_error(&answer, e)))?;
    output::emit(&usage.render(ctx.output, from)?)
}

/// A row that is not one is the server's fault, as any undecodable answer is (exit 5).
fn row_error(answer: &Streaming, e: RowError) -> anyhow::Error {
    match e {
        RowError::Json { row, source } => anyhow::Error::new(answer.decode_error(source))
            .context(format!("row {row} of the usage answer is not a usage row")),
        other => other.into(),
    }
}

/// What `show` keeps of the rows: their summary for a table, the rows themselves for JSON or YAML.
#[derive(Debug)]
struct Usage {
    summary: UsageSummary,
    /// The rows as they came, for `-o json|yaml`.
    rows: Option<Vec<Box<RawValue>>>,
    seen: u64,
}

/// A line of the answer that cannot be shown.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// Not JSON, or not a usage row.
    #[error("row {row} of the usage answer is not a usage row")]
    Json {
        row: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot add up row {row}")]
    Sum {
        row: u64,
        #[source]
        source: DecimalError,
    },
}

impl Usage {
    fn new(format: OutputFormat) -> Self {
        Self {
            summary: UsageSummary::default(),
            rows: (format != OutputFormat::Table).then(Vec::new),
            seen: 0,
        }
    }

    /// One line of JSON lines.
    fn add(&mut self, line: &[u8]) -> Result<(), RowError> {
        self.seen += 1;
        let row = self.seen;
        let json = |source| RowError::Json { row, source };
        match &mut self.rows {
            Some(rows) => {
                let raw: Box<RawValue> = serde_json::from_slice(line).map_err(json)?;
                // Only objects are rows.
                serde_json::from_str::<serde_json::Map<String, Value>>(raw.get()).map_err(json)?;
                rows.push(raw);
            }
            None => {
                let usage: UsageRow = serde_json::from_slice(line).map_err(json)?;
                self.summary
                    .add(&usage)
                    .map_err(|source| RowError::Sum { row, source })?;
            }
        }
        Ok(())
    }

    /// The table (or `no usage since …`), or the rows as one JSON array (each row as the server wrote
    /// it, so its numbers keep their exact decimals) or YAML list.
    fn render(self, format: OutputFormat, from: OffsetDateTime) -> anyhow::Result<String> {
        let rows = self.rows.unwrap_or_default();
        Ok(match format {
            OutputFormat::Table => output::usage_table(&self.summary)
                .unwrap_or_else(|| format!("no usage since {}", format_time(from))),
            OutputFormat::Json => serde_json::to_string_pretty(&rows)?,
            OutputFormat::Yaml => {
                let values = rows
                    .iter()
                    .map(|raw| serde_json::from_str(raw.get()))
                    .collect::<Result<Vec<Value>, _>>()?;
                output::document(format, &Value::Array(values))?.unwrap_or_default()
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// A month-to-date answer: two hours of `web` (split at the hour, still running), a stopped
    /// Windows group, a GPU group.
    const FIXTURE: &str = r#"{"BillingPeriodStart":"2026-11-01T00:00:00.000Z","BillingPeriodEnd":"2026-12-01T00:00:00.000Z","ChargePeriodStart":"2026-11-01T00:00:00.000Z","ChargePeriodEnd":"2026-12-01T00:00:00.000Z","ChargeCategory":"Usage","ChargeClass":null,"ChargeDescription":"Linux vCPU","ConsumedQuantity":5400.5,"ConsumedUnit":"vCPU-Seconds","PricingQuantity":5400.5,"PricingUnit":"vCPU-Seconds","ListUnitPrice":0.0000113,"ListCost":0.06102565,"BilledCost":0.06102565,"EffectiveCost":0.06102565,"BillingCurrency":"USD","ResourceId":"/subscriptions/dev/resourceGroups/demo/providers/Microsoft.ContainerInstance/containerGroups/web","ResourceName":"web","ResourceType":"Microsoft.ContainerInstance/containerGroups","RegionId":"local","SubAccountId":"dev","ServiceCategory":"Compute","ServiceName":"Container Instances","SkuId":"linux/vcpu_seconds","Tags":{"env":"prod"},"x_ResourceGroup":"demo","x_GroupId":"g-1","x_NodeId":"n-1","x_OsType":"Linux","x_Accrued":false}
{"ChargePeriodStart":"2026-11-22T19:00:00.000Z","ChargePeriodEnd":"2026-11-22T19:30:00.000Z","ConsumedQuantity":1799.5,"ConsumedUnit":"vCPU-Seconds","BilledCost":0.02033435,"BillingCurrency":"USD","ResourceName":"web","SkuId":"linux/vcpu_seconds","Tags":{},"x_ResourceGroup":"demo","x_Accrued":true}
{"ConsumedQuantity":10800,"ConsumedUnit":"GiB-Seconds","BilledCost":0.0133,"BillingCurrency":"USD","ResourceName":"web","SkuId":"linux/memory_gib_seconds","Tags":{},"x_ResourceGroup":"demo","x_Accrued":true}
{"ConsumedQuantity":60,"ConsumedUnit":"vCPU-Seconds","BilledCost":0.1,"BillingCurrency":"USD","ResourceName":"iis","SkuId":"windows/vcpu_seconds","Tags":{},"x_ResourceGroup":"demo","x_Accrued":false}
{"ConsumedQuantity":0.2,"ConsumedUnit":"GPU-Seconds","BilledCost":0.2,"BillingCurrency":"USD","ResourceName":"train","SkuId":"gpu/v100/gpu_seconds","Tags":{},"x_ResourceGroup":"ml","x_Accrued":false}
{"ConsumedQuantity":0.1,"ConsumedUnit":"GPU-Seconds","BilledCost":0.1,"BillingCurrency":"USD","ResourceName":"train","SkuId":"gpu/v100/gpu_seconds","Tags":{},"x_ResourceGroup":"ml","x_Accrued":false}
"#;

    const FROM: OffsetDateTime = datetime!(2026-11-01 00:00:00 UTC);

    /// `body` through the same path as the command: split into chunks of `size`, then lines.
    fn render(body: &str, format: OutputFormat, size: usize) -> anyhow::Result<String> {
        let mut usage = Usage::new(format);
        let mut lines = LineBuffer::default();
        let mut add = |line: &[u8]| usage.add(line).map_err(anyhow::Error::from);
        for chunk in body.as_bytes().chunks(size) {
            lines.feed(chunk, &mut add)?;
        }
        lines.finish(&mut add)?;
        usage.render(format, FROM)
    }

    fn row_error(body: &str, format: OutputFormat) -> RowError {
        let err = render(body, format, 5).unwrap_err();
        err.downcast::<RowError>()
            .unwrap_or_else(|e| panic!("not a row error: {e:#}"))
    }

    #[test]
    fn the_table_sums_per_group_and_meter() {
        let table = render(FIXTURE, OutputFormat::Table, 4096).unwrap();
        assert_eq!(
            table,
            "\
GROUP     METER                     QUANTITY           COST         ACCRUING
--------- ------------------------- ------------------ ------------ ---------
demo/iis  windows/vcpu_seconds      60 vCPU-Seconds    0.10 USD     no
demo/web  linux/memory_gib_seconds  10800 GiB-Seconds  0.0133 USD   yes
demo/web  linux/vcpu_seconds        7200 vCPU-Seconds  0.08136 USD  yes
ml/train  gpu/v100/gpu_seconds      0.3 GPU-Seconds    0.30 USD     no
TOTAL                                                  0.49466 USD"
        );
        // Whatever the chunks.
        for size in [1, 7, 100] {
            assert_eq!(render(FIXTURE, OutputFormat::Table, size).unwrap(), table);
        }
    }

    #[test]
    fn no_rows_say_since_when() {
        assert_eq!(
            render("", OutputFormat::Table, 10).unwrap(),
            "no usage since 2026-11-01T00:00:00Z"
        );
        assert_eq!(render("\n", OutputFormat::Json, 10).unwrap(), "[]");
    }

    #[test]
    fn json_is_the_rows_as_the_server_wrote_them() {
        let json = render(FIXTURE, OutputFormat::Json, 13).unwrap();
        let lines: Vec<&str> = json.lines().collect();
        assert_eq!(lines.len(), 8, "{json}");
        assert_eq!(lines[0], "[");
        assert_eq!(lines[7], "]");
        // Exact decimals, the server's key order.
        let sent: Vec<&str> = FIXTURE.lines().collect();
        assert_eq!(lines[1], format!("  {},", sent[0]));
        assert_eq!(lines[6], format!("  {}", sent[5]));
        assert!(lines[1].contains("\"ListUnitPrice\":0.0000113"), "{json}");
        let parsed: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[1]["x_Accrued"], Value::Bool(true));

        let yaml = render(FIXTURE, OutputFormat::Yaml, 13).unwrap();
        // Numbers go through f64 for YAML; the shortest text that round-trips is the server's.
        assert!(yaml.contains("ListUnitPrice: 0.0000113"), "{yaml}");
        let parsed: Vec<Value> = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(parsed.len(), 6);
        assert_eq!(parsed[0]["SkuId"], "linux/vcpu_seconds");
        assert_eq!(parsed[0]["Tags"]["env"], "prod");
    }

    #[test]
    fn bad_rows_are_errors_that_say_which() {
        let body = "{\"SkuId\":\"m\",\"BilledCost\":1}\nnot json\n";
        for format in [OutputFormat::Table, OutputFormat::Json] {
            let err = row_error(body, format);
            assert!(
                matches!(err, RowError::Json { row: 2, .. }),
                "{format:?}: {err:?}"
            );
        }
        let err = row_error("[1,2]\n", OutputFormat::Json);
        assert!(matches!(err, RowError::Json { row: 1, .. }), "{err:?}");
        match row_error("{\"BilledCost\":\"1,5\"}", OutputFormat::Table) {
            RowError::Json { row: 1, source } => {
                assert!(source.to_string().contains("not a decimal"), "{source}");
            }
            other => panic!("{other:?}"),
        }
    }
}
