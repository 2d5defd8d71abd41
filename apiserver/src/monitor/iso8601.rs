//! ISO 8601 as Azure Monitor's query speaks it: instants (`2026-12-02T15:40:17Z`, with or without an
//! offset or fraction, or a bare date; no offset means UTC, as az sends them) and durations
//! (`PT1M`, `P1D`, `P1DT12H`; no years or months, whose length varies).

use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};

const MS_PER_SECOND: i64 = 1000;

/// An instant as Unix milliseconds; `None` if it is not one.
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|t| t.assume_utc()))
        .or_else(|_| time::Date::parse(text, &Iso8601::DEFAULT).map(|d| d.midnight().assume_utc()))
        .ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// An instant as Azure Monitor writes one: `2026-12-02T15:40:00Z` (whole seconds, UTC).
pub fn format_instant(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(MS_PER_SECOND);
    match OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        Err(_) => String::from("1970-01-01T00:00:00Z"),
    }
}

/// A duration (`P[nD][T[nH][nM][nS]]`, case-insensitive, whole or fractional seconds) in ms; `None`
/// if it is not one, is empty (`P`, `PT`) or is not positive.
pub fn parse_duration(text: &str) -> Option<i64> {
    let upper = text.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix('P')?;
    let (days, clock) = match rest.split_once('T') {
        Some((days, clock)) => (days, Some(clock)),
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut any = false;
    if !days.is_empty() {
        let (count, per) = match (days.strip_suffix('D'), days.strip_suffix('W')) {
            (Some(count), _) => (count, 86_400_000),
            (_, Some(count)) => (count, 7 * 86_400_000),
            _ => return None,
        };
        total = total.checked_add(count.parse::<i64>().ok()?.checked_mul(per)?)?;
        any = true;
    }
    if let Some(clock) = clock {
        if clock.is_empty() {
            return None;
        }
        let mut number = String::new();
        let mut last_unit = 0;
        for c in clock.chars() {
            let (rank, per) = match c {
                'H' => (1, 3_600_000.0),
                'M' => (2, 60_000.0),
                'S' => (3, 1000.0),
                '0'..='9' | '.' => {
                    number.push(c);
                    continue;
                }
                _ => return None,
            };
            if rank <= last_unit || number.is_empty() {
                return None;
            }
            last_unit = rank;
            let value: f64 = number.parse().ok()?;
            number.clear();
            let ms = value * per;
            if !ms.is_finite() || ms > i64::MAX as f64 / 2.0 {
                return None;
            }
            total = total.checked_add(ms.round() as i64)?;
            any = true;
        }
        if !number.is_empty() {
            return None;
        }
    }
    (any && total > 0).then_some(total)
}

/// A duration in ms as ISO 8601, the largest units first (`PT1M`, `PT1H30M`, `P1D`, `PT0.5S`).
pub fn format_duration(ms: i64) -> String {
    let days = ms / 86_400_000;
    let mut rest = ms % 86_400_000;
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if rest > 0 || days == 0 {
        out.push('T');
        for (unit, per) in [('H', 3_600_000), ('M', 60_000)] {
            if rest >= per {
                out.push_str(&format!("{}{unit}", rest / per));
                rest %= per;
            }
        }
        if rest > 0 || out.ends_with('T') {
            if rest % 1000 == 0 {
                out.push_str(&format!("{}S", rest / 1000));
            } else {
                out.push_str(&format!("{}S", rest as f64 / 1000.0));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOON: i64 = 1_764_676_800_000; // 2025-12-02T12:00:00Z

    #[test]
    fn instants_in_the_forms_clients_send() {
        assert_eq!(parse_instant("2025-12-02T12:00:00Z"), Some(NOON));
        assert_eq!(parse_instant("2025-12-02T13:00:00+01:00"), Some(NOON));
        assert_eq!(parse_instant("2025-12-02T12:00:00.250Z"), Some(NOON + 250));
        // az: `datetime.utcnow().isoformat()`, no offset.
        assert_eq!(
            parse_instant("2025-12-02T12:00:00.123456"),
            Some(NOON + 123)
        );
        assert_eq!(parse_instant("2025-12-02T12:00"), Some(NOON));
        assert_eq!(parse_instant("2025-12-02"), Some(NOON - 12 * 3_600_000));
        for bad in [
            "",
            "yesterday",
            "2025-13-02T00:00:00Z",
            "2025-12-02T25:00:00Z",
            "PT1H",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_are_written_in_whole_seconds_utc() {
        assert_eq!(format_instant(NOON + 999), "2025-12-02T12:00:00Z");
        assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn durations_of_days_hours_minutes_seconds() {
        assert_eq!(parse_duration("PT1M"), Some(60_000));
        assert_eq!(parse_duration("pt5m"), Some(300_000));
        assert_eq!(parse_duration("PT1H30M"), Some(5_400_000));
        assert_eq!(parse_duration("P1D"), Some(86_400_000));
        assert_eq!(parse_duration("P1DT12H"), Some(129_600_000));
        assert_eq!(parse_duration("PT0.5S"), Some(500));
        assert_eq!(parse_duration("P1W"), Some(604_800_000));
        for bad in [
            "", "P", "PT", "PT0M", "1M", "PT1X", "PT1M1H", "PTM", "P1Y", "PT1", "P-1D", "PT1.2.3S",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("P99999999999999999999D"), None);
    }

    #[test]
    fn durations_are_written_largest_units_first() {
        assert_eq!(format_duration(60_000), "PT1M");
        assert_eq!(format_duration(5_400_000), "PT1H30M");
        assert_eq!(format_duration(86_400_000), "P1D");
        assert_eq!(format_duration(129_600_000), "P1DT12H");
        assert_eq!(format_duration(500), "PT0.5S");
        assert_eq!(format_duration(0), "PT0S");
    }

    proptest! {
        /// Whatever the duration, writing it and reading it back gives it again.
        #[test]
        fn written_durations_read_back(ms in 1i64..10_000 * 86_400_000) {
            prop_assert_eq!(parse_duration(&format_duration(ms)), Some(ms));
        }

        /// Whatever the instant (to the second), writing it and reading it back gives it again.
        #[test]
        fn written_instants_read_back(seconds in 0i64..4_102_444_800) {
            prop_assert_eq!(parse_instant(&format_instant(seconds * 1000)), Some(seconds * 1000));
        }

        /// Nothing a client sends makes either parser panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in ".{0,40}") {
            let _ = parse_instant(&text);
            let _ = parse_duration(&text);
        }
    }
}
