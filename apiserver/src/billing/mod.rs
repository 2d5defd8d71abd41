//! Per-second billing: what a run of a group costs, in exact integers.
//!
//! - This module: the meters and their units, and [`RunFacts`], the pure rule that says where a run's
//!   billing ends given everything known about it.
//! - `store/sqlite/billing.rs`: the `UsageLedger` in the store — runs, caps, node losses and the
//!   append-only ledger, written in the transactions of the state changes they come from.
//! - [`prices`]: the price sheet (file, reloadable).
//! - [`export`]: FOCUS-style CSV and JSON lines, raw or rolled up, streamed.
//!
//! A *run* is one start of a group on one node: it begins when the node starts pulling images
//! (`run_started_unix_ms`, node clock) and is identified by (group, node, that time). Its billing ends
//! at the earliest of what is known:
//! - the node's word that the whole group stopped (`run_finished_unix_ms`);
//! - the API stopping or deleting the group (apiserver clock), for runs of that generation or older;
//! - the start of a later run of the same group on the same node (a restart or an update);
//! - the node's last heartbeat, if the node went silent and has said nothing about the run since.
//!
//! Each fact only ever moves the end one way or is final, and the end is a function of the *set* of
//! facts, so reports replayed or delivered out of order give the same ledger. Whenever the end moves,
//! the ledger gets a row for the difference: a positive row when it grows, a correction (negative
//! quantity) when a late fact shortens what was already written. A run whose end is not known yet is
//! open: exports show it accrued to the moment of the export.

pub mod export;
pub mod meter;
pub mod prices;

use crate::model::OsType;

/// One millisecond-unit of each meter: quantities are exact integers of these.
/// vCPU: millicores × ms (10^6 per vCPU-second); memory: MiB × ms (1 024 000 per GiB-second);
/// GPU: GPUs × ms (1 000 per GPU-second).
pub const VCPU_UNITS_PER_SECOND: i128 = 1_000_000;
pub const GIB_UNITS_PER_SECOND: i128 = 1_024_000;
pub const GPU_UNITS_PER_SECOND: i128 = 1_000;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// What a run uses per millisecond, per meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    pub os_type: OsType,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub gpu: i64,
    /// Lower case (`k80`, `p100`, `v100`); only with `gpu > 0`.
    pub gpu_sku: Option<String>,
}

impl Rates {
    /// `(meter id, units per millisecond)` for each meter this run uses.
    pub fn meters(&self) -> Vec<(String, i64)> {
        let os = match self.os_type {
            OsType::Linux => "linux",
            OsType::Windows => "windows",
        };
        let mut meters = vec![
            (format!("{os}/vcpu_seconds"), self.cpu_millis),
            (format!("{os}/memory_gib_seconds"), self.memory_mib),
        ];
        if self.gpu > 0 {
            let sku = self.gpu_sku.as_deref().unwrap_or("unknown");
            meters.push((
                format!("gpu/{}/gpu_seconds", sku.to_ascii_lowercase()),
                self.gpu,
            ));
        }
        meters
    }
}

/// How a meter's integer quantity reads at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// FOCUS `ConsumedUnit` / `PricingUnit`.
    pub name: &'static str,
    /// Integer units in one of `name`.
    pub per_unit: i128,
}

/// The unit of a meter id (`linux/vcpu_seconds`, `gpu/v100/gpu_seconds`, …).
pub fn unit_of(meter: &str) -> Unit {
    if meter.ends_with("/vcpu_seconds") {
        Unit {
            name: "vCPU-Seconds",
            per_unit: VCPU_UNITS_PER_SECOND,
        }
    } else if meter.ends_with("/memory_gib_seconds") {
        Unit {
            name: "GiB-Seconds",
            per_unit: GIB_UNITS_PER_SECOND,
        }
    } else {
        Unit {
            name: "GPU-Seconds",
            per_unit: GPU_UNITS_PER_SECOND,
        }
    }
}

/// Everything known about one run, from which its billed end follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// Node clock: the first image pull of the run.
    pub started_ms: i64,
    /// Node clock: the whole group stopped (from any report that says so).
    pub finished_ms: Option<i64>,
    /// Node clock: the latest time a report about this run was observed.
    pub alive_ms: i64,
    /// Apiserver clock: the earliest stop or delete through the API that covers this run.
    pub cap_ms: Option<i64>,
    /// Node clock: the earliest later run of the group on the same node.
    pub superseded_ms: Option<i64>,
    /// Node clock: the earliest time the node was declared lost at or after `alive_ms` (its last
    /// heartbeat then). A report observed after it means the node came back and the run still ran.
    pub lost_ms: Option<i64>,
}

impl RunFacts {
    /// Where billing of the run ends as far as is known; `None` while it is running (it accrues).
    pub fn end(&self) -> Option<i64> {
        let evidence = self.finished_ms.or(self.lost_ms);
        let limit = min_some(self.cap_ms, self.superseded_ms);
        min_some(evidence, limit).map(|end| end.max(self.started_ms))
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A stretch of time cut so that no piece crosses a boundary of `period` milliseconds (UTC-aligned).
pub fn split(start_ms: i64, end_ms: i64, period: Period) -> impl Iterator<Item = (i64, i64)> {
    let mut at = start_ms;
    std::iter::from_fn(move || {
        if at >= end_ms {
            return None;
        }
        let next = period.next_boundary(at).min(end_ms);
        let piece = (at, next);
        at = next;
        Some(piece)
    })
}

/// A period a stretch of time is cut at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Month,
}

impl Period {
    /// The start of the period holding `ms`.
    pub fn floor(self, ms: i64) -> i64 {
        match self {
            Period::Hour => ms.div_euclid(HOUR_MS) * HOUR_MS,
            Period::Day => ms.div_euclid(DAY_MS) * DAY_MS,
            Period::Month => {
                let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }

    /// The first boundary strictly after `ms`.
    pub fn next_boundary(self, ms: i64) -> i64 {
        match self {
            Period::Hour => self.floor(ms) + HOUR_MS,
            Period::Day => self.floor(ms) + DAY_MS,
            Period::Month => next_month(self.floor(ms)),
        }
    }
}

/// The start of the month after the month starting at `month_start_ms`.
pub fn next_month(month_start_ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(month_start_ms.div_euclid(DAY_MS));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * DAY_MS
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-22T19:00:00.000Z`, appended to `out`.
pub fn write_timestamp(out: &mut Vec<u8>, ms: i64) {
    let (y, mo, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    let (h, mi, s, milli) = (
        in_day / HOUR_MS,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let digits = |out: &mut Vec<u8>, value: i64, width: usize| {
        let mut buf = [b'0'; 4];
        let mut v = value;
        for i in (0..width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    digits(out, y, 4);
    out.push(b'-');
    digits(out, i64::from(mo), 2);
    out.push(b'-');
    digits(out, i64::from(d), 2);
    out.push(b'T');
    digits(out, h, 2);
    out.push(b':');
    digits(out, mi, 2);
    out.push(b':');
    digits(out, s, 2);
    out.push(b'.');
    digits(out, milli, 3);
    out.push(b'Z');
}

/// `value / 10^scale` as an exact decimal without trailing zeros, appended to `out`. No allocation;
/// 64-bit arithmetic whenever the value fits (it does for any real quantity or cost).
pub fn write_decimal(out: &mut Vec<u8>, value: i128, scale: u32) {
    if value < 0 {
        out.push(b'-');
    }
    let magnitude = value.unsigned_abs();
    let (whole, mut frac) = match u64::try_from(magnitude) {
        Ok(m) if scale <= 19 => {
            let pow = 10u64.pow(scale);
            (u128::from(m / pow), u128::from(m % pow))
        }
        _ => {
            let pow = 10u128.pow(scale);
            (magnitude / pow, magnitude % pow)
        }
    };
    write_unsigned(out, whole);
    if frac == 0 {
        return;
    }
    let mut width = scale as usize;
    if let Ok(mut small) = u64::try_from(frac) {
        while small % 10 == 0 {
            small /= 10;
            width -= 1;
        }
        frac = u128::from(small);
    } else {
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
    }
    out.push(b'.');
    let mut digits = [b'0'; 40];
    let n = digits_of(frac, &mut digits);
    out.extend(std::iter::repeat_n(b'0', width - n));
    out.extend_from_slice(&digits[digits.len() - n..]);
}

fn write_unsigned(out: &mut Vec<u8>, value: u128) {
    let mut digits = [b'0'; 40];
    let n = digits_of(value, &mut digits);
    out.extend_from_slice(&digits[digits.len() - n..]);
}

/// Writes `value`'s digits at the end of `buf`; returns how many (at least one).
fn digits_of(value: u128, buf: &mut [u8; 40]) -> usize {
    let mut at = buf.len();
    match u64::try_from(value) {
        Ok(mut v) => loop {
            at -= 1;
            buf[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        },
        Err(_) => {
            let mut v = value;
            loop {
                at -= 1;
                buf[at] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
        }
    }
    buf.len() - at
}

/// An integer quantity of a meter as an exact decimal of its unit: `(value, scale)` with
/// `quantity / per_unit = value / 10^scale`.
pub fn quantity_decimal(quantity: i128, unit: Unit) -> (i128, u32) {
    match unit.per_unit {
        VCPU_UNITS_PER_SECOND => (quantity, 6),
        // 1 / 1 024 000 = 9 765 625 / 10^13 exactly.
        GIB_UNITS_PER_SECOND => (quantity * 9_765_625, 13),
        _ => (quantity, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_run_ends_at_the_earliest_known_fact() {
        let open = RunFacts {
            started_ms: 1000,
            alive_ms: 1500,
            ..Default::default()
        };
        assert_eq!(open.end(), None);
        let finished = RunFacts {
            finished_ms: Some(5000),
            ..open.clone()
        };
        assert_eq!(finished.end(), Some(5000));
        let capped = RunFacts {
            cap_ms: Some(4000),
            ..finished.clone()
        };
        assert_eq!(capped.end(), Some(4000));
        let lost = RunFacts {
            lost_ms: Some(3000),
            cap_ms: Some(4000),
            ..open.clone()
        };
        assert_eq!(lost.end(), Some(3000));
        // A node lost and back: its report that the run finished later wins over the loss.
        let back = RunFacts {
            lost_ms: Some(3000),
            finished_ms: Some(3500),
            ..open.clone()
        };
        assert_eq!(back.end(), Some(3500));
        // Never before the start, whatever the clocks say.
        let early_cap = RunFacts {
            cap_ms: Some(10),
            ..open
        };
        assert_eq!(early_cap.end(), Some(1000));
    }

    #[test]
    fn splits_lose_nothing_and_cross_no_boundary() {
        let start = 1_700_000_000_123;
        let end = start + 3 * DAY_MS + 5 * HOUR_MS + 7;
        for period in [Period::Hour, Period::Day, Period::Month] {
            let pieces: Vec<_> = split(start, end, period).collect();
            assert_eq!(pieces.first().unwrap().0, start);
            assert_eq!(pieces.last().unwrap().1, end);
            for w in pieces.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            for (a, b) in &pieces {
                assert_eq!(period.floor(*a), period.floor(b - 1), "{period:?} {a} {b}");
            }
        }
        assert_eq!(split(5, 5, Period::Hour).count(), 0);
    }

    #[test]
    fn months_and_timestamps_follow_the_calendar() {
        // 2024-02-29T23:59:59.999Z
        let leap = 1_709_251_199_999;
        assert_eq!(
            text(|o| write_timestamp(o, leap)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            text(|o| write_timestamp(o, Period::Month.floor(leap))),
            "2024-02-01T00:00:00.000Z"
        );
        assert_eq!(
            text(|o| write_timestamp(o, Period::Month.next_boundary(leap))),
            "2024-03-01T00:00:00.000Z"
        );
        assert_eq!(
            text(|o| write_timestamp(o, next_month(1_733_011_200_000))),
            "2025-01-01T00:00:00.000Z"
        );
        for days in [-1000, 0, 19_000, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn quantities_render_exactly() {
        let vcpu = unit_of("linux/vcpu_seconds");
        let (v, s) = quantity_decimal(1_500 * 2_000, vcpu);
        assert_eq!(text(|o| write_decimal(o, v, s)), "3");
        let memory = unit_of("windows/memory_gib_seconds");
        // 1.5 GiB for 1 ms = 1536 MiB·ms = 0.0015 GiB-seconds.
        let (v, s) = quantity_decimal(1536, memory);
        assert_eq!(text(|o| write_decimal(o, v, s)), "0.0015");
        let (v, s) = quantity_decimal(1, memory);
        assert_eq!(text(|o| write_decimal(o, v, s)), "0.0000009765625");
        assert_eq!(text(|o| write_decimal(o, -1_000_005, 6)), "-1.000005");
        assert_eq!(text(|o| write_decimal(o, 0, 6)), "0");
        assert_eq!(text(|o| write_decimal(o, 7, 3)), "0.007");
    }
}
