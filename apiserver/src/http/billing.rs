//! Usage exports: `GET /admin/billing/usage` (operators, every subscription) and Berth's tenant route
//! `GET /subscriptions/{sub}/providers/Microsoft.ContainerInstance/usage` (that subscription only),
//! plus `GET /admin/billing/prices` (the price sheet in use).
//!
//! Query: `from`, `to` (RFC 3339 or `YYYY-MM-DD`; default the start of the current UTC month and
//! now), `granularity` (`raw`, `hourly`, `daily`, `monthly`; default `raw`), `format` (`csv`,
//! `jsonl`; default `csv`). The body is streamed as it is read from the ledger, in constant memory;
//! `x-berth-row-estimate` says how many ledger rows the window holds.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_proto::admin::ROW_ESTIMATE_HEADER;
use bytes::Bytes;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{Operator, Principal};
use crate::billing::Period;
use crate::billing::export::{ExportQuery, Format, Granularity, write_export};
use crate::error::ApiError;
use crate::store::{StoreError, UsageFilter};
use crate::{AppState, now_ms};

type Q = Query<HashMap<String, String>>;

pub(super) async fn admin_usage(
    State(state): State<AppState>,
    _operator: Operator,
    Query(query): Q,
) -> Result<Response, ApiError> {
    let export = export_query(&query, None, now_ms())?;
    stream(state, export).await
}

pub(super) async fn tenant_usage(
    State(state): State<AppState>,
    principal: Principal,
    Path(sub): Path<String>,
    Query(query): Q,
) -> Result<Response, ApiError> {
    principal.admit(&sub)?;
    let export = export_query(&query, Some(sub), now_ms())?;
    stream(state, export).await
}

pub(super) async fn prices(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let sheet = state.prices.current();
    let prices: serde_json::Map<String, serde_json::Value> = sheet
        .prices
        .iter()
        .map(|(meter, price)| {
            let mut text = Vec::new();
            price.write(&mut text);
            (
                meter.clone(),
                String::from_utf8_lossy(&text).into_owned().into(),
            )
        })
        .collect();
    Ok(Json(json!({
        "currency": sheet.currency,
        "source": sheet.source.as_ref().map(|p| p.display().to_string()),
        "prices": prices,
    }))
    .into_response())
}

fn invalid(name: &str, message: String) -> ApiError {
    ApiError::bad_request("InvalidParameter", name, message)
}

/// An RFC 3339 time or a `YYYY-MM-DD` date (midnight UTC), in Unix milliseconds.
fn parse_time(value: &str) -> Option<i64> {
    let value = value.trim();
    let time = OffsetDateTime::parse(value, &Rfc3339).ok().or_else(|| {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(value, format)
            .ok()
            .map(|date| date.midnight().assume_utc())
    })?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

fn export_query(
    query: &HashMap<String, String>,
    subscription: Option<String>,
    now: i64,
) -> Result<ExportQuery, ApiError> {
    let time = |name: &str, default: i64| -> Result<i64, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(value) => parse_time(value).ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "The value '{value}' of parameter '{name}' is not an RFC 3339 time or a date (YYYY-MM-DD)."
                    ),
                )
            }),
        }
    };
    let from_ms = time("from", Period::Month.floor(now))?;
    let to_ms = time("to", now)?;
    if to_ms <= from_ms {
        return Err(invalid(
            "to",
            "The parameter 'to' must be later than 'from'.".to_owned(),
        ));
    }
    let granularity = match query.get("granularity") {
        None => Granularity::Raw,
        Some(value) => Granularity::parse(value).ok_or_else(|| {
            invalid(
                "granularity",
                format!(
                    "The value '{value}' of parameter 'granularity' is not one of 'raw', 'hourly', 'daily', 'monthly'."
                ),
            )
        })?,
    };
    let format = match query.get("format") {
        None => Format::Csv,
        Some(value) => Format::parse(value).ok_or_else(|| {
            invalid(
                "format",
                format!("The value '{value}' of parameter 'format' is not one of 'csv', 'jsonl'."),
            )
        })?,
    };
    Ok(ExportQuery {
        from_ms,
        to_ms,
        granularity,
        format,
        subscription,
    })
}

/// Hands each chunk of the export to the response body; a client that goes away ends the export.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn stream(state: AppState, export: ExportQuery) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let filter = UsageFilter {
        from_ms: export.from_ms,
        to_ms: export.to_ms,
        subscription: export.subscription.clone(),
    };
    let (mut reader, estimate) = tokio::task::spawn_blocking(move || {
        let mut reader = store.usage_reader()?;
        let estimate = reader.estimate(&filter)?;
        Ok::<_, StoreError>((reader, estimate))
    })
    .await
    .map_err(|_| ApiError::internal())??;

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let sheet = state.prices.current();
    let format = export.format;
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx: tx.clone() };
        match write_export(reader.as_mut(), &export, &sheet, now_ms(), &mut out) {
            Ok(rows) => tracing::debug!(rows, "usage exported"),
            Err(StoreError::Sink(_)) => tracing::debug!("usage export: the client went away"),
            Err(err) => {
                tracing::error!(error = %err, "usage export failed");
                // The body ends in an error, so the client sees a broken transfer, not a short file.
                let _ = tx.blocking_send(Err(std::io::Error::other("the export failed")));
            }
        }
    });

    let mut response = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(ROW_ESTIMATE_HEADER, HeaderValue::from(estimate));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_defaulted() {
        let now = 1_795_350_000_000; // 2026-11-22T12:20:00Z
        let q = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            export_query(&map, None, now)
        };
        let defaults = q(&[]).unwrap();
        assert_eq!(defaults.from_ms, 1_793_491_200_000, "2026-11-01T00:00:00Z");
        assert_eq!(defaults.to_ms, now);
        assert_eq!(defaults.granularity, Granularity::Raw);
        assert_eq!(defaults.format, Format::Csv);
        let explicit = q(&[
            ("from", "2026-11-02"),
            ("to", "2026-11-03T00:00:00Z"),
            ("granularity", "Hourly"),
            ("format", "jsonl"),
        ])
        .unwrap();
        assert_eq!(explicit.to_ms - explicit.from_ms, 86_400_000);
        assert_eq!(explicit.granularity, Granularity::Hourly);
        for (name, value) in [
            ("from", "yesterday"),
            ("to", "2026-13-01"),
            ("granularity", "weekly"),
            ("format", "xml"),
        ] {
            let err = q(&[(name, value)]).unwrap_err();
            assert_eq!(err.body().error.target.as_deref(), Some(name));
        }
        let err = q(&[("from", "2026-11-03"), ("to", "2026-11-02")]).unwrap_err();
        assert_eq!(err.body().error.target.as_deref(), Some("to"));
    }
}
