//! Usage on PostgreSQL: a subscription's quota usage, and the reader exports use
//! (`usage_reader.rs`).

use sqlx::Row;

use super::PgStore;
use super::usage_reader::PgUsageReader;
use crate::model::Size;
use crate::store::{Result, UsageReader, UsageStore};

#[async_trait::async_trait]
impl UsageStore for PgStore {
    async fn usage(&self, subscription: &str) -> Result<(i64, Size)> {
        let row = sqlx::query(
            "SELECT groups, cpu_millis FROM subscription_usage WHERE subscription = $1",
        )
        .bind(subscription)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => (
                row.try_get("groups")?,
                Size {
                    cpu_millis: row.try_get::<i64, _>("cpu_millis")?.max(0) as u64,
                    ..Size::default()
                },
            ),
            None => (0, Size::default()),
        })
    }

    fn usage_reader(&self) -> Result<Box<dyn UsageReader>> {
        Ok(Box::new(PgUsageReader::open(&self.url)?))
    }
}
