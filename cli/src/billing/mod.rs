//! The usage API's wire: its two routes (the operator's export of every subscription, a tenant's own
//! usage), their query, the times `--from`/`--to` take, and the columns of a usage row that
//! `billing show` reads. Rows follow FOCUS: the CSV header names are the JSON keys.
//!
//! # Layout
//! - [`decimal`]: exact decimal numbers, for summing quantities and costs.
//! - [`summary`]: rows summed per group and meter (`billing show`).
//! - [`row_counter`]: the data rows of a streamed CSV or JSON-lines body (`billing export`'s
//!   progress).
//! - [`lines`]: the lines of a streamed body.

pub mod decimal;
pub mod lines;
pub mod row_counter;
pub mod summary;

use clap::ValueEnum;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time, UtcOffset};

use crate::UsageError;
use crate::client::segment;
use decimal::Decimal;

/// Every subscription's usage (operator tokens only).
pub use berth_proto::admin::USAGE_PATH as ADMIN_USAGE_PATH;

/// The answer's estimate of its number of data rows, for a progress bar; the rows may differ.
pub use berth_proto::admin::ROW_ESTIMATE_HEADER;

/// One subscription's usage.
pub fn tenant_usage_path(subscription: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.ContainerInstance/usage",
        segment(subscription)
    )
}

/// How finely usage is cut into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Granularity {
    /// The intervals as metered
    Raw,
    /// Per hour: intervals split at hour boundaries
    Hourly,
    /// Per day: intervals split at midnight UTC
    Daily,
    /// Per month: intervals split at the first of the month, UTC
    Monthly,
}

impl Granularity {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }
}

/// The body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageFormat {
    /// CSV with a header line
    Csv,
    /// One JSON object per line
    Jsonl,
}

impl UsageFormat {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }

    /// The media type the server answers with.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Jsonl => "application/x-ndjson",
        }
    }

    /// The format a `Content-Type` (without parameters, lower-case) names, if it names one.
    pub fn from_content_type(essence: &str) -> Option<Self> {
        match essence {
            "text/csv" => Some(Self::Csv),
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
                Some(Self::Jsonl)
            }
            _ => None,
        }
    }
}

/// A `--from` or `--to` that is neither RFC 3339 nor a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected an RFC 3339 time (2026-11-01T00:00:00Z, 2026-11-01T09:30:00+01:00) or a date (2026-11-01, midnight UTC)"
)]
pub struct TimeError;

/// `--from`/`--to`: an RFC 3339 time, or a bare date (`2026-11-01`, which is 00:00:00Z that day);
/// in UTC.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, TimeError> {
    let text = text.trim();
    let time = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(time) => time.to_offset(UtcOffset::UTC),
        Err(_) => Date::parse(text, format_description!("[year]-[month]-[day]"))
            .map_err(|_| TimeError)?
            .with_time(Time::MIDNIGHT)
            .assume_utc(),
    };
    // The server reads RFC 3339, whose years have four digits: `0000-01-01T00:00:00+01:00` is not
    // one in UTC.
    time.format(&Rfc3339).map_err(|_| TimeError)?;
    Ok(time)
}

/// `time` in RFC 3339 (UTC, so `Z`).
pub fn format_time(time: OffsetDateTime) -> String {
    time.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        // parse_time and start_of_month only make times of years 0000 to 9999.
        .unwrap_or_else(|_| time.to_string())
}

/// Midnight UTC on the first day of the month of `now` (in UTC): where month-to-date starts.
pub fn start_of_month(now: OffsetDateTime) -> OffsetDateTime {
    let date = now.to_offset(UtcOffset::UTC).date();
    Date::from_calendar_date(date.year(), date.month(), 1)
        .expect("every month has a first day")
        .with_time(Time::MIDNIGHT)
        .assume_utc()
}

/// The query of a usage request; what is `None` is left to the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    granularity: Option<Granularity>,
    format: Option<UsageFormat>,
}

impl UsageQuery {
    /// A query. The period must not be empty, counting the server's defaults for what is not given
    /// (`from`: the start of the month of `now`; `to`: `now`), so that a mistake is told as one of
    /// the flags rather than as the server's complaint about a parameter.
    pub fn new(
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        granularity: Option<Granularity>,
        format: Option<UsageFormat>,
        now: OffsetDateTime,
    ) -> Result<Self, UsageError> {
        let start = from.unwrap_or_else(|| start_of_month(now));
        let end = to.unwrap_or(now);
        if start >= end {
            let start = match from {
                Some(from) => format!("--from ({})", format_time(from)),
                None => format!("the start of this month ({})", format_time(start)),
            };
            let end = match to {
                Some(to) => format!("--to ({})", format_time(to)),
                None => format!("now ({})", format_time(end)),
            };
            return Err(UsageError(format!("{start} must be before {end}")));
        }
        Ok(Self {
            from,
            to,
            granularity,
            format,
        })
    }

    /// `path?from=…&to=…&granularity=…&format=…`, with only what was given.
    pub fn target(&self, path: &str) -> String {
        let mut pairs = Vec::new();
        if let Some(from) = self.from {
            pairs.push(format!("from={}", segment(&format_time(from))));
        }
        if let Some(to) = self.to {
            pairs.push(format!("to={}", segment(&format_time(to))));
        }
        if let Some(granularity) = self.granularity {
            pairs.push(format!("granularity={}", granularity.as_str()));
        }
        if let Some(format) = self.format {
            pairs.push(format!("format={}", format.as_str()));
        }
        if pairs.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", pairs.join("&"))
        }
    }
}

/// The columns of a usage row that `billing show` sums; the others are ignored. Numbers are read
/// from their text, exactly (a server that quotes them is understood too); `null` is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UsageRow {
    #[serde(rename = "x_ResourceGroup", default)]
    pub resource_group: Option<String>,
    #[serde(rename = "ResourceName", default)]
    pub resource_name: Option<String>,
    /// The meter, e.g. `linux/vcpu_seconds`.
    #[serde(rename = "SkuId", default)]
    pub sku_id: Option<String>,
    #[serde(rename = "ConsumedQuantity", default, deserialize_with = "exact")]
    pub consumed_quantity: Option<Decimal>,
    #[serde(rename = "ConsumedUnit", default)]
    pub consumed_unit: Option<String>,
    #[serde(rename = "BilledCost", default, deserialize_with = "exact")]
    pub billed_cost: Option<Decimal>,
    #[serde(rename = "BillingCurrency", default)]
    pub billing_currency: Option<String>,
    /// Still accruing: the interval is open.
    #[serde(rename = "x_Accrued", default)]
    pub accrued: Option<bool>,
}

/// A JSON number (or a string holding one, or `null`) as a [`Decimal`], from its text. Only
/// serde_json can hand out the text ([`RawValue`]), so rows are read with `serde_json::from_str`.
fn exact<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
    use serde::de::Error as _;
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    let number = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(D::Error::custom)?
    } else {
        text.to_owned()
    };
    number.parse().map(Some).map_err(D::Error::custom)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(
            parse_time("2026-11-01").unwrap(),
            datetime!(2026-11-01 00:00:00 UTC)
        );
        assert_eq!(
            parse_time("2026-11-22T19:00:00.000Z").unwrap(),
            datetime!(2026-11-22 19:00:00 UTC)
        );
        // Offsets become UTC; the day may change.
        let t = parse_time("2026-11-01T00:30:00+01:00").unwrap();
        assert_eq!(t, datetime!(2026-10-31 23:30:00 UTC));
        assert_eq!(t.offset(), UtcOffset::UTC);
        assert_eq!(format_time(t), "2026-10-31T23:30:00Z");
        assert_eq!(
            format_time(parse_time("2026-02-28T23:59:59.25Z").unwrap()),
            "2026-02-28T23:59:59.25Z"
        );
        // RFC 3339 lets a space stand for the T.
        assert_eq!(
            parse_time("2026-11-01 10:00:00Z").unwrap(),
            datetime!(2026-11-01 10:00:00 UTC)
        );
        assert_eq!(
            parse_time(" 2026-11-01 ").unwrap(),
            datetime!(2026-11-01 00:00:00 UTC)
        );
        for bad in [
            "",
            "yesterday",
            "2026-11",
            "2026-13-01",
            "2026-02-30",
            "2026-11-01T10:00:00",
            "11/01/2026",
            "1730419200",
            "0000-01-01T00:00:00+01:00",
        ] {
            assert_eq!(parse_time(bad), Err(TimeError), "{bad:?}");
        }
    }

    #[test]
    fn month_to_date_starts_at_midnight_utc_on_the_first() {
        assert_eq!(
            start_of_month(datetime!(2026-11-22 19:04:05.5 UTC)),
            datetime!(2026-11-01 00:00:00 UTC)
        );
        // Still October in UTC.
        assert_eq!(
            start_of_month(datetime!(2026-11-01 00:30:00 +01:00)),
            datetime!(2026-10-01 00:00:00 UTC)
        );
        assert_eq!(
            start_of_month(datetime!(2026-12-01 00:00:00 UTC)),
            datetime!(2026-12-01 00:00:00 UTC)
        );
    }

    const NOW: OffsetDateTime = datetime!(2026-11-22 19:04:05 UTC);

    #[test]
    fn queries_carry_what_was_given() {
        let from = parse_time("2026-11-01").unwrap();
        let to = parse_time("2026-11-02T12:00:00+02:00").unwrap();
        let query = UsageQuery::new(
            Some(from),
            Some(to),
            Some(Granularity::Hourly),
            Some(UsageFormat::Jsonl),
            NOW,
        )
        .unwrap();
        assert_eq!(
            query.target(ADMIN_USAGE_PATH),
            "/admin/billing/usage?from=2026-11-01T00%3A00%3A00Z&to=2026-11-02T10%3A00%3A00Z&granularity=hourly&format=jsonl"
        );
        let none = UsageQuery::new(None, None, None, None, NOW).unwrap();
        assert_eq!(none.target(ADMIN_USAGE_PATH), "/admin/billing/usage");
        assert_eq!(
            UsageQuery::new(None, None, Some(Granularity::Monthly), None, NOW)
                .unwrap()
                .target(&tenant_usage_path("my sub")),
            "/subscriptions/my%20sub/providers/Microsoft.ContainerInstance/usage?granularity=monthly"
        );
    }

    #[test]
    fn the_period_must_not_be_empty() {
        let query = |from: Option<&str>, to: Option<&str>| {
            let time = |t: Option<&str>| t.map(|t| parse_time(t).unwrap());
            UsageQuery::new(time(from), time(to), None, None, NOW).map_err(|e| e.to_string())
        };
        assert_eq!(
            query(Some("2026-11-01"), Some("2026-11-01")).unwrap_err(),
            "--from (2026-11-01T00:00:00Z) must be before --to (2026-11-01T00:00:00Z)"
        );
        assert!(query(Some("2026-11-02"), Some("2026-11-01")).is_err());
        assert!(query(Some("2026-10-31"), Some("2026-11-01")).is_ok());
        // Against the server's defaults: the start of the month, now.
        assert_eq!(
            query(Some("2026-11-23"), None).unwrap_err(),
            "--from (2026-11-23T00:00:00Z) must be before now (2026-11-22T19:04:05Z)"
        );
        assert!(query(Some("2026-11-22"), None).is_ok());
        assert_eq!(
            query(None, Some("2026-10-31")).unwrap_err(),
            "the start of this month (2026-11-01T00:00:00Z) must be before --to (2026-10-31T00:00:00Z)"
        );
        assert!(query(None, Some("2026-11-01T00:00:01Z")).is_ok());
        assert!(query(None, None).is_ok());
        // The first instant of a month: the default period is empty, so there is nothing to ask.
        let first = datetime!(2026-12-01 00:00:00 UTC);
        assert!(UsageQuery::new(None, None, None, None, first).is_err());
    }

    #[test]
    fn content_types_name_formats() {
        assert_eq!(
            UsageFormat::from_content_type("text/csv"),
            Some(UsageFormat::Csv)
        );
        assert_eq!(
            UsageFormat::from_content_type("application/x-ndjson"),
            Some(UsageFormat::Jsonl)
        );
        assert_eq!(UsageFormat::from_content_type("application/json"), None);
    }

    #[test]
    fn rows_keep_their_decimals() {
        let row: UsageRow = serde_json::from_str(
            r#"{"BillingPeriodStart":"2026-11-01T00:00:00.000Z","ConsumedQuantity":12.5,
                "ConsumedUnit":"vCPU-Seconds","PricingQuantity":12.5,"ListUnitPrice":0.0000113,
                "BilledCost":0.00014125,"BillingCurrency":"USD","ResourceName":"web",
                "SkuId":"linux/vcpu_seconds","Tags":{"env":"prod"},"x_ResourceGroup":"rg",
                "x_Accrued":true}"#,
        )
        .unwrap();
        assert_eq!(row.consumed_quantity.unwrap().to_string(), "12.5");
        assert_eq!(row.billed_cost.unwrap().to_string(), "0.00014125");
        assert_eq!(row.accrued, Some(true));
        assert_eq!(row.sku_id.as_deref(), Some("linux/vcpu_seconds"));
        let sparse: UsageRow =
            serde_json::from_str(r#"{"ConsumedQuantity":null,"BilledCost":"0.10"}"#).unwrap();
        assert_eq!(sparse.consumed_quantity, None);
        assert_eq!(sparse.billed_cost.unwrap().to_string(), "0.1");
        let err = serde_json::from_str::<UsageRow>(r#"{"BilledCost":"ten"}"#).unwrap_err();
        assert!(err.to_string().contains("not a decimal"), "{err}");
        assert!(serde_json::from_str::<UsageRow>(r#"{"BilledCost":true}"#).is_err());
    }
}
