//! Container measurements in SQLite: a batch goes in as one JSON array (`json_each`), so it costs one
//! statement however many samples it holds; the join with `groups` keeps only samples of groups
//! assigned to the sending node.

use sqlx::Row;

use super::SqliteStore;
use crate::store::metrics::{SAMPLE_COLUMNS, counter, finite, stored};
use crate::store::{LabeledSample, MetricSample, MetricStore, Result};

#[async_trait::async_trait]
impl MetricStore for SqliteStore {
    async fn record_samples(&self, node_id: &str, samples: &[MetricSample]) -> Result<u64> {
        if samples.is_empty() {
            return Ok(0);
        }
        let rows: Vec<serde_json::Value> = samples
            .iter()
            .map(|s| {
                serde_json::json!([
                    s.group_id,
                    s.container,
                    s.at_ms,
                    stored(s.cpu_usage_ns),
                    finite(s.cpu_millicores),
                    stored(s.memory_bytes),
                    stored(s.rx_bytes),
                    stored(s.tx_bytes),
                    finite(s.rx_bytes_per_second),
                    finite(s.tx_bytes_per_second),
                ])
            })
            .collect();
        let batch = serde_json::Value::Array(rows).to_string();
        let done = sqlx::query(&format!(
            "INSERT INTO container_samples ({SAMPLE_COLUMNS}) \
             SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), \
             json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), \
             json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]'), json_extract(j.value, '$[8]'), \
             json_extract(j.value, '$[9]') \
             FROM json_each(?1) j JOIN groups g ON g.id = json_extract(j.value, '$[0]') \
             WHERE g.node_id = ?2 \
             ON CONFLICT (group_id, at_ms, container) DO NOTHING"
        ))
        .bind(batch)
        .bind(node_id)
        .execute(&self.writer)
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
             WHERE group_id = ? AND at_ms >= ? AND at_ms < ? ORDER BY at_ms, container"
        ))
        .bind(group_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(sample_from_row).collect()
    }

    async fn latest_samples(&self, since_ms: i64) -> Result<Vec<LabeledSample>> {
        let rows = sqlx::query(&format!(
            "SELECT g.subscription, g.resource_group_as, g.name, {SAMPLE_COLUMNS} FROM \
             (SELECT *, row_number() OVER (PARTITION BY group_id, container ORDER BY at_ms DESC) AS newest \
              FROM container_samples WHERE at_ms >= ?) s \
             JOIN groups g ON g.id = s.group_id WHERE s.newest = 1 ORDER BY s.group_id, s.container"
        ))
        .bind(since_ms)
        .fetch_all(&self.reader)
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
        let done = sqlx::query("DELETE FROM container_samples WHERE at_ms < ?")
            .bind(before_ms)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

fn sample_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MetricSample> {
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
