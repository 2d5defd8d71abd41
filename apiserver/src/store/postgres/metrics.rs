//! Container measurements in PostgreSQL: a batch goes in as arrays (`unnest`), so it costs one
//! statement however many samples it holds; the join with `groups` keeps only samples of groups
//! assigned to the sending node.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::store::metrics::{SAMPLE_COLUMNS, counter, finite, stored};
use crate::store::{LabeledSample, MetricSample, MetricStore, Result};

#[async_trait::async_trait]
impl MetricStore for PgStore {
    async fn record_samples(&self, node_id: &str, samples: &[MetricSample]) -> Result<u64> {
        if samples.is_empty() {
            return Ok(0);
        }
        let column = |f: fn(&MetricSample) -> i64| samples.iter().map(f).collect::<Vec<i64>>();
        let rate = |f: fn(&MetricSample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
        let done = sqlx::query(&format!(
            "INSERT INTO container_samples ({SAMPLE_COLUMNS}) \
             SELECT s.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::float8[], \
                                    $7::bigint[], $8::bigint[], $9::bigint[], $10::float8[], $11::float8[]) \
                  AS s({SAMPLE_COLUMNS}) \
             JOIN groups g ON g.id = s.group_id WHERE g.node_id = $1 \
             ON CONFLICT (group_id, at_ms, container) DO NOTHING"
        ))
        .bind(node_id)
        .bind(samples.iter().map(|s| s.group_id.as_str()).collect::<Vec<_>>())
        .bind(samples.iter().map(|s| s.container.as_str()).collect::<Vec<_>>())
        .bind(column(|s| s.at_ms))
        .bind(column(|s| stored(s.cpu_usage_ns)))
        .bind(rate(|s| finite(s.cpu_millicores)))
        .bind(column(|s| stored(s.memory_bytes)))
        .bind(column(|s| stored(s.rx_bytes)))
        .bind(column(|s| stored(s.tx_bytes)))
        .bind(rate(|s| finite(s.rx_bytes_per_second)))
        .bind(rate(|s| finite(s.tx_bytes_per_second)))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn group_samples(
        &self,
        group_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MetricSample>> {
        let rows = sqlx::query(&format!(
            "SELECT {SAMPLE_COLUMNS} FROM container_samples \
             WHERE group_id = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms, container"
        ))
        .bind(group_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sample_from_row).collect()
    }

    async fn latest_samples(&self, since_ms: i64) -> Result<Vec<LabeledSample>> {
        let rows = sqlx::query(&format!(
            "SELECT g.subscription, g.resource_group_as, g.name, s.* FROM \
             (SELECT DISTINCT ON (group_id, container) {SAMPLE_COLUMNS} FROM container_samples \
              WHERE at_ms >= $1 ORDER BY group_id, container, at_ms DESC) s \
             JOIN groups g ON g.id = s.group_id ORDER BY s.group_id, s.container"
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LabeledSample {
                    subscription: row.try_get("subscription")?,
                    resource_group: row.try_get("resource_group_as")?,
                    group_name: row.try_get("name")?,
                    sample: sample_from_row(row)?,
                })
            })
            .collect()
    }

    async fn prune_samples(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM container_samples WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn sample_from_row(row: &PgRow) -> Result<MetricSample> {
    Ok(MetricSample {
        group_id: row.try_get("group_id")?,
        container: row.try_get("container")?,
        at_ms: row.try_get("at_ms")?,
        cpu_usage_ns: counter(row.try_get("cpu_usage_ns")?),
        cpu_millicores: row.try_get("cpu_millicores")?,
        memory_bytes: counter(row.try_get("memory_bytes")?),
        rx_bytes: counter(row.try_get("rx_bytes")?),
        tx_bytes: counter(row.try_get("tx_bytes")?),
        rx_bytes_per_second: row.try_get("rx_bytes_per_second")?,
        tx_bytes_per_second: row.try_get("tx_bytes_per_second")?,
    })
}
