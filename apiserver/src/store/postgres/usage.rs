//! Usage on PostgreSQL: a subscription's quota usage, and the reader exports use.
//!
//! LANE pg-billing: being written (issue 15).

#![allow(dead_code, unused_variables)]

use super::PgStore;
use crate::model::Size;
use crate::store::{Result, UsageReader, UsageStore};

#[async_trait::async_trait]
impl UsageStore for PgStore {
    async fn usage(&self, subscription: &str) -> Result<(i64, Size)> {
        todo!("lane pg-billing")
    }

    fn usage_reader(&self) -> Result<Box<dyn UsageReader>> {
        todo!("lane pg-billing")
    }
}
