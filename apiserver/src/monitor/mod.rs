//! Azure Monitor's metrics API for container groups (`{group id}/providers/Microsoft.Insights/metrics`),
//! as pure parts: the metrics ACI defines ([`catalogue`]), the query ([`query`], with ISO 8601 in
//! [`iso8601`]), samples into time series ([`aggregate`]) and the response ([`response`]); and
//! [`retention`], the loop that deletes old samples. The route is `http/monitor.rs`; the samples come
//! from the store (`store/metrics.rs`).

pub mod aggregate;
pub mod catalogue;
pub mod iso8601;
pub mod query;
pub mod response;
pub mod retention;
