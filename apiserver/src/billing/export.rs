//! Usage exports for operators and tenants: FOCUS-style columns, CSV or JSON lines, raw ledger rows or
//! hourly, daily or monthly rollups, streamed in constant memory.
//!
//! Rows arrive from the store in order of start and never cross a UTC day, so a rollup period can be
//! written as soon as a row starts at or after its end: memory holds only the periods still open (at
//! most a day of them), whatever the size of the export. Every row is clipped to the export's window and
//! cut at period boundaries exactly: quantities are integers, so pieces always sum to the whole.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use super::prices::{COST_SCALE, Price, PriceSheet};
use super::{Period, quantity_decimal, unit_of, write_decimal, write_timestamp};
use crate::store::{Result, StoreError, UsageFilter, UsageGroup, UsageReader, UsageRow};

/// How rows are rolled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One row per ledger row (and per day of an open run).
    Raw,
    Hourly,
    Daily,
    Monthly,
}

impl Granularity {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "raw" => Self::Raw,
            "hourly" => Self::Hourly,
            "daily" => Self::Daily,
            "monthly" => Self::Monthly,
            _ => return None,
        })
    }

    fn period(self) -> Option<Period> {
        match self {
            Self::Raw => None,
            Self::Hourly => Some(Period::Hour),
            Self::Daily => Some(Period::Day),
            Self::Monthly => Some(Period::Month),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "csv" => Self::Csv,
            "jsonl" | "ndjson" => Self::Jsonl,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/x-ndjson",
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub granularity: Granularity,
    pub format: Format,
    /// A tenant's export: only this subscription.
    pub subscription: Option<String>,
}

/// The columns, in order: the CSV header and the JSON keys. Those that change from row to row come
/// first; the rest depend only on who, where and which meter, and are written once per (subject, meter)
/// and copied after that.
pub const COLUMNS: [&str; 31] = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeClass",
    "ConsumedQuantity",
    "PricingQuantity",
    "ListCost",
    "BilledCost",
    "EffectiveCost",
    "x_Accrued",
    "x_LedgerId",
    "ChargeCategory",
    "ChargeDescription",
    "ConsumedUnit",
    "PricingUnit",
    "ListUnitPrice",
    "BillingCurrency",
    "SkuId",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "RegionId",
    "SubAccountId",
    "ServiceCategory",
    "ServiceName",
    "Tags",
    "x_ResourceGroup",
    "x_GroupId",
    "x_NodeId",
    "x_OsType",
];

/// The first of the columns that depend only on the meter, rendered once per meter.
const METER_FROM: usize = 12;
/// The first of the columns that depend only on the subject, rendered once per subject.
const SUBJECT_FROM: usize = 19;

/// Bytes gathered before they are handed to the writer.
const CHUNK: usize = 64 * 1024;

/// Writes the export to `out` and returns how many rows it wrote.
pub fn write_export(
    reader: &mut dyn UsageReader,
    query: &ExportQuery,
    sheet: &PriceSheet,
    now_ms: i64,
    out: &mut dyn Write,
) -> Result<u64> {
    let filter = UsageFilter {
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        subscription: query.subscription.clone(),
    };
    let mut rows = Rows::new(query.format, sheet, out);
    rows.header().map_err(StoreError::Sink)?;
    match query.granularity.period() {
        None => {
            reader.read(&filter, now_ms, &mut |row| {
                let Some((start, end, quantity)) = clip(row, query.from_ms, query.to_ms) else {
                    return Ok(());
                };
                rows.write(&Line {
                    key: row.subject,
                    start,
                    end,
                    meter: row.meter,
                    quantity: i128::from(quantity),
                    accrued: row.accrued,
                    ledger_id: (!row.accrued).then_some(row.ledger_id),
                    group: row.group,
                })
            })?;
        }
        Some(period) => {
            let mut rollup = Rollup::new(period);
            reader.read(&filter, now_ms, &mut |row| {
                let Some((start, end, quantity)) = clip(row, query.from_ms, query.to_ms) else {
                    return Ok(());
                };
                rollup.flush_before(start, &mut rows)?;
                rollup.add(row, start, end, quantity);
                Ok(())
            })?;
            rollup
                .flush_before(i64::MAX, &mut rows)
                .map_err(StoreError::Sink)?;
        }
    }
    rows.finish().map_err(StoreError::Sink)
}

/// The part of `row` inside `[from, to)`: `(start, end, quantity)`, the quantity in proportion (rows
/// are uniform: quantity = rate × duration, so the proportion is exact).
fn clip(row: &UsageRow<'_>, from: i64, to: i64) -> Option<(i64, i64, i64)> {
    let (start, end) = (row.start_ms.max(from), row.end_ms.min(to));
    if start >= end {
        return None;
    }
    let duration = row.end_ms - row.start_ms;
    if start == row.start_ms && end == row.end_ms {
        return Some((start, end, row.quantity));
    }
    let rate = row.quantity / duration;
    Some((start, end, rate * (end - start)))
}

/// One output row.
struct Line<'a> {
    /// Rows with the same key have the same fixed columns for the same meter: the ledger's subject,
    /// or for rollups `-(group index + 1)`.
    key: i64,
    start: i64,
    end: i64,
    meter: &'a str,
    quantity: i128,
    accrued: bool,
    ledger_id: Option<i64>,
    group: UsageGroup<'a>,
}

/// A group as rollups keep it (owned; the node is left out: a period may span two).
#[derive(Debug)]
struct Group {
    id: String,
    subscription: String,
    resource_group: String,
    name: String,
    location: String,
    tags: String,
    os_type: String,
}

impl Group {
    fn view(&self) -> UsageGroup<'_> {
        UsageGroup {
            id: &self.id,
            subscription: &self.subscription,
            resource_group: &self.resource_group,
            name: &self.name,
            location: &self.location,
            tags: &self.tags,
            os_type: &self.os_type,
            node_id: "",
        }
    }
}

#[derive(Debug, Default)]
struct Sum {
    quantity: i128,
    accrued: bool,
}

/// Open rollup periods: `(period start, group, meter)` → sum, groups and meters interned.
struct Rollup {
    period: Period,
    sums: BTreeMap<(i64, u32, u32), Sum>,
    group_index: HashMap<String, u32>,
    groups: Vec<Group>,
    meter_index: HashMap<String, u32>,
    meters: Vec<String>,
}

impl Rollup {
    fn new(period: Period) -> Self {
        Self {
            period,
            sums: BTreeMap::new(),
            group_index: HashMap::new(),
            groups: Vec::new(),
            meter_index: HashMap::new(),
            meters: Vec::new(),
        }
    }

    fn add(&mut self, row: &UsageRow<'_>, start: i64, end: i64, quantity: i64) {
        let group = match self.group_index.get(row.group.id) {
            Some(i) => *i,
            None => {
                let g = row.group;
                self.groups.push(Group {
                    id: g.id.to_owned(),
                    subscription: g.subscription.to_owned(),
                    resource_group: g.resource_group.to_owned(),
                    name: g.name.to_owned(),
                    location: g.location.to_owned(),
                    tags: g.tags.to_owned(),
                    os_type: g.os_type.to_owned(),
                });
                let i = (self.groups.len() - 1) as u32;
                self.group_index.insert(g.id.to_owned(), i);
                i
            }
        };
        let meter = match self.meter_index.get(row.meter) {
            Some(i) => *i,
            None => {
                self.meters.push(row.meter.to_owned());
                let i = (self.meters.len() - 1) as u32;
                self.meter_index.insert(row.meter.to_owned(), i);
                i
            }
        };
        let duration = i128::from(end - start);
        for (a, b) in super::split(start, end, self.period) {
            // Exact: the clipped row is uniform and its pieces' durations sum to its duration.
            let piece = i128::from(quantity) * i128::from(b - a) / duration;
            let sum = self
                .sums
                .entry((self.period.floor(a), group, meter))
                .or_default();
            sum.quantity += piece;
            sum.accrued |= row.accrued;
        }
    }

    /// Writes every period that ends at or before `at` (no later row can reach it).
    fn flush_before(&mut self, at: i64, rows: &mut Rows<'_>) -> std::io::Result<()> {
        while let Some(entry) = self.sums.first_entry() {
            let (period_start, group, meter) = *entry.key();
            let period_end = self.period.next_boundary(period_start);
            if period_end > at {
                break;
            }
            let sum = entry.remove();
            rows.write(&Line {
                key: -i64::from(group) - 1,
                start: period_start,
                end: period_end,
                meter: &self.meters[meter as usize],
                quantity: sum.quantity,
                accrued: sum.accrued,
                ledger_id: None,
                group: self.groups[group as usize].view(),
            })?;
        }
        if self.sums.is_empty() && self.groups.len() > 100_000 {
            // Keep the interned groups bounded on exports over very many groups.
            self.groups.clear();
            self.group_index.clear();
        }
        Ok(())
    }
}

/// What a meter needs for every row: its unit, price and the exact fraction its cost is.
struct MeterCost {
    meter: String,
    unit: super::Unit,
    price: Option<Price>,
    /// Its columns, rendered (from the separator before the first).
    rendered: Vec<u8>,
    /// cost in 10^-COST_SCALE = quantity × `.0` / `.1`, the fraction reduced once.
    fraction: (i128, i128),
}

impl MeterCost {
    fn new(meter: &str, sheet: &PriceSheet, format: Format) -> Self {
        let unit = unit_of(meter);
        let price = sheet.prices.get(meter).cloned();
        if price.is_none() {
            tracing::warn!(meter, "no price for this meter: its cost is 0");
        }
        let fraction = price.as_ref().map_or((0, 1), |p| p.cost_fraction(unit));
        let mut rendered = Vec::new();
        let mut f = Fields::at(format, &mut rendered, METER_FROM);
        f.str("Usage");
        f.str(description(meter));
        f.str(unit.name);
        f.str(unit.name);
        match &price {
            Some(p) => f.decimal(p.mantissa, p.scale),
            None => f.decimal(0, 0),
        }
        f.str(&sheet.currency);
        f.str(meter);
        Self {
            meter: meter.to_owned(),
            unit,
            price,
            rendered,
            fraction,
        }
    }

    /// `quantity × price` in 10^-COST_SCALE, rounded half away from zero; 64-bit when it fits.
    fn cost(&self, quantity: i128) -> i128 {
        let (mul, div) = self.fraction;
        if let (Ok(q), Ok(m), Ok(d)) = (
            i64::try_from(quantity),
            i64::try_from(mul),
            i64::try_from(div),
        ) && let Some(n) = q.checked_mul(m)
        {
            let (quotient, rest) = (n / d, n % d);
            let round = if rest.unsigned_abs() * 2 >= d.unsigned_abs() {
                n.signum()
            } else {
                0
            };
            return i128::from(quotient + round);
        }
        match self.price.as_ref() {
            Some(price) => price.cost(quantity, self.unit),
            None => 0,
        }
    }
}

/// Formats rows into a buffer and hands it to the writer in chunks.
struct Rows<'a> {
    format: Format,
    sheet: &'a PriceSheet,
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    count: u64,
    meters: Vec<MeterCost>,
    /// Subject key → its columns, rendered (from the separator before the first).
    subjects: HashMap<i64, Vec<u8>>,
    /// The month of the last row: its start, end and the two billing-period columns rendered.
    month: (i64, i64, Vec<u8>),
}

/// Subject renderings kept at once (a few hundred bytes each); more than the subjects an export sees
/// at a time, so starting over when full is rare.
const SUBJECTS_RENDERED: usize = 15_000;

impl<'a> Rows<'a> {
    fn new(format: Format, sheet: &'a PriceSheet, out: &'a mut dyn Write) -> Self {
        Self {
            format,
            sheet,
            out,
            buf: Vec::with_capacity(CHUNK + 4096),
            count: 0,
            meters: Vec::new(),
            subjects: HashMap::new(),
            month: (0, 0, Vec::new()),
        }
    }

    fn header(&mut self) -> std::io::Result<()> {
        if self.format == Format::Csv {
            self.buf.extend_from_slice(COLUMNS.join(",").as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<u64> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.count)
    }

    fn meter(&mut self, meter: &str) -> usize {
        match self.meters.iter().position(|m| m.meter == meter) {
            Some(i) => i,
            None => {
                self.meters
                    .push(MeterCost::new(meter, self.sheet, self.format));
                self.meters.len() - 1
            }
        }
    }

    fn write(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        let m = self.meter(line.meter);
        if !(self.month.0..self.month.1).contains(&line.start) {
            let start = Period::Month.floor(line.start);
            let end = Period::Month.next_boundary(start);
            let mut rendered = Vec::new();
            let mut f = Fields::at(self.format, &mut rendered, 0);
            f.time(start);
            f.time(end);
            self.month = (start, end, rendered);
        }
        let meter = &self.meters[m];
        let cost = meter.cost(line.quantity);
        let (q_value, q_scale) = quantity_decimal(line.quantity, meter.unit);

        if self.format == Format::Jsonl {
            self.buf.push(b'{');
        }
        self.buf.extend_from_slice(&self.month.2);
        let mut f = Fields::at(self.format, &mut self.buf, 2);
        f.time(line.start);
        f.time(line.end);
        f.str(if line.quantity < 0 { "Correction" } else { "" });
        f.decimal(q_value, q_scale);
        f.decimal(q_value, q_scale);
        f.decimal(cost, COST_SCALE);
        f.decimal(cost, COST_SCALE);
        f.decimal(cost, COST_SCALE);
        f.bool(line.accrued);
        match line.ledger_id {
            Some(id) => f.int(id),
            None => f.null(),
        }
        self.buf.extend_from_slice(&meter.rendered);
        if !self.subjects.contains_key(&line.key) {
            if self.subjects.len() >= SUBJECTS_RENDERED {
                self.subjects.clear();
            }
            self.subjects
                .insert(line.key, render_subject(self.format, line.group));
        }
        self.buf.extend_from_slice(&self.subjects[&line.key]);
        self.buf.extend_from_slice(match self.format {
            Format::Csv => b"\r\n",
            Format::Jsonl => b"}\n",
        });
        self.count += 1;
        if self.buf.len() >= CHUNK {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// The columns from [`SUBJECT_FROM`] on, with the separator before the first.
fn render_subject(format: Format, g: UsageGroup<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut f = Fields::at(format, &mut out, SUBJECT_FROM);
    f.str(&format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups/{}",
        g.subscription, g.resource_group, g.name
    ));
    f.str(g.name);
    f.str("Microsoft.ContainerInstance/containerGroups");
    f.str(g.location);
    f.str(g.subscription);
    f.str("Compute");
    f.str("Container Instances");
    f.json(g.tags);
    f.str(g.resource_group);
    f.str(g.id);
    f.str(g.node_id);
    f.str(g.os_type);
    out
}

fn description(meter: &str) -> &'static str {
    match meter {
        "linux/vcpu_seconds" => "Linux vCPU duration",
        "linux/memory_gib_seconds" => "Linux memory duration",
        "windows/vcpu_seconds" => "Windows vCPU duration",
        "windows/memory_gib_seconds" => "Windows memory duration",
        _ => "GPU duration",
    }
}

/// Writes one row's fields in order, as CSV or as a JSON object keyed by [`COLUMNS`].
struct Fields<'b> {
    format: Format,
    out: &'b mut Vec<u8>,
    index: usize,
}

impl<'b> Fields<'b> {
    /// Fields from column `index` on (a separator goes before each but the very first column).
    fn at(format: Format, out: &'b mut Vec<u8>, index: usize) -> Self {
        Self { format, out, index }
    }

    fn next(&mut self) {
        match self.format {
            Format::Csv => {
                if self.index > 0 {
                    self.out.push(b',');
                }
            }
            Format::Jsonl => {
                if self.index > 0 {
                    self.out.push(b',');
                }
                self.out.push(b'"');
                self.out.extend_from_slice(COLUMNS[self.index].as_bytes());
                self.out.extend_from_slice(b"\":");
            }
        }
        self.index += 1;
    }

    fn time(&mut self, ms: i64) {
        self.next();
        let quote = self.format == Format::Jsonl;
        if quote {
            self.out.push(b'"');
        }
        write_timestamp(self.out, ms);
        if quote {
            self.out.push(b'"');
        }
    }

    fn decimal(&mut self, value: i128, scale: u32) {
        self.next();
        write_decimal(self.out, value, scale);
    }

    fn int(&mut self, value: i64) {
        self.next();
        write_decimal(self.out, i128::from(value), 0);
    }

    fn bool(&mut self, value: bool) {
        self.next();
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn null(&mut self) {
        self.next();
        if self.format == Format::Jsonl {
            self.out.extend_from_slice(b"null");
        }
    }

    fn str(&mut self, text: &str) {
        self.next();
        match self.format {
            Format::Csv => csv_text(self.out, text.as_bytes()),
            Format::Jsonl => json_text(self.out, text),
        }
    }

    /// A value that is already JSON (tags): as is in JSON lines, as quoted text in CSV.
    fn json(&mut self, json: &str) {
        self.next();
        match self.format {
            Format::Csv => csv_text(self.out, json.as_bytes()),
            Format::Jsonl => self.out.extend_from_slice(json.as_bytes()),
        }
    }
}

fn needs_quotes(text: &[u8]) -> bool {
    text.iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// RFC 4180: quoted (quotes doubled) when it holds a comma, quote or line break.
fn csv_text(out: &mut Vec<u8>, text: &[u8]) {
    if !needs_quotes(text) {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for &b in text {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn json_text(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over rows held in memory, in the order the store would give them.
    pub(crate) struct MemoryReader(pub Vec<(i64, String, i64, i64, i64, bool)>);

    impl UsageReader for MemoryReader {
        fn estimate(&mut self, _: &UsageFilter) -> Result<u64> {
            Ok(self.0.len() as u64)
        }

        fn read(
            &mut self,
            filter: &UsageFilter,
            _now_ms: i64,
            each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
        ) -> Result<()> {
            let from = Period::Day.floor(filter.from_ms);
            for (id, meter, start, end, quantity, accrued) in &self.0 {
                if *start < from || *start >= filter.to_ms {
                    continue;
                }
                each(&UsageRow {
                    ledger_id: *id,
                    subject: 1,
                    meter,
                    start_ms: *start,
                    end_ms: *end,
                    quantity: *quantity,
                    accrued: *accrued,
                    group: UsageGroup {
                        id: "g-1",
                        subscription: "sub",
                        resource_group: "RG",
                        name: "web",
                        location: "local",
                        tags: r#"{"team":"a,b"}"#,
                        os_type: "Linux",
                        node_id: "n-1",
                    },
                })
                .map_err(StoreError::Sink)?;
            }
            Ok(())
        }
    }

    const H: i64 = 3_600_000;
    // 2026-11-22T00:00:00Z
    const DAY: i64 = 1_795_305_600_000;

    fn export(rows: Vec<(i64, String, i64, i64, i64, bool)>, q: ExportQuery) -> String {
        let mut out = Vec::new();
        write_export(
            &mut MemoryReader(rows),
            &q,
            &PriceSheet::builtin(),
            DAY + 24 * H,
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn query(granularity: Granularity, format: Format) -> ExportQuery {
        ExportQuery {
            from_ms: DAY,
            to_ms: DAY + 24 * H,
            granularity,
            format,
            subscription: None,
        }
    }

    fn column(line: &serde_json::Value, name: &str) -> String {
        match &line[name] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    #[test]
    fn rollups_sum_to_the_raw_total_and_split_at_boundaries() {
        // 1.5 vCPU from 00:30 to 02:15, and a correction of 10 minutes of it.
        let rows = vec![
            (
                1,
                "linux/vcpu_seconds".to_owned(),
                DAY + H / 2,
                DAY + 2 * H + H / 4,
                1500 * (7 * H / 4),
                false,
            ),
            (
                2,
                "linux/vcpu_seconds".to_owned(),
                DAY + 2 * H,
                DAY + 2 * H + H / 6,
                -1500 * (H / 6),
                false,
            ),
        ];
        let raw = export(rows.clone(), query(Granularity::Raw, Format::Jsonl));
        let hourly = export(rows.clone(), query(Granularity::Hourly, Format::Jsonl));
        let daily = export(rows, query(Granularity::Daily, Format::Jsonl));
        let parse = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let total = |lines: &[serde_json::Value]| -> f64 {
            lines
                .iter()
                .map(|l| l["ConsumedQuantity"].as_f64().unwrap())
                .sum()
        };
        let (raw, hourly, daily) = (parse(&raw), parse(&hourly), parse(&daily));
        assert_eq!(raw.len(), 2);
        assert_eq!(column(&raw[1], "ChargeClass"), "Correction");
        // 1.75 h × 1.5 vCPU = 9450 vCPU-s, minus 10 min × 1.5 = 900.
        assert_eq!(total(&raw), 8550.0);
        assert_eq!(total(&hourly), 8550.0);
        assert_eq!(total(&daily), 8550.0);
        let hours: Vec<(String, String)> = hourly
            .iter()
            .map(|l| {
                (
                    column(l, "ChargePeriodStart"),
                    column(l, "ConsumedQuantity"),
                )
            })
            .collect();
        assert_eq!(
            hours,
            [
                ("2026-11-22T00:00:00.000Z".to_owned(), "2700".to_owned()),
                ("2026-11-22T01:00:00.000Z".to_owned(), "5400".to_owned()),
                ("2026-11-22T02:00:00.000Z".to_owned(), "450".to_owned()),
            ]
        );
        assert_eq!(daily.len(), 1);
        assert_eq!(
            column(&daily[0], "BillingPeriodStart"),
            "2026-11-01T00:00:00.000Z"
        );
        assert_eq!(
            column(&daily[0], "BillingPeriodEnd"),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            column(&raw[0], "ResourceId"),
            "/subscriptions/sub/resourceGroups/RG/providers/Microsoft.ContainerInstance/containerGroups/web"
        );
        // 9450 vCPU-s × $0.0000113 = $0.106785.
        assert_eq!(column(&raw[0], "BilledCost"), "0.106785");
        assert_eq!(raw[0]["Tags"]["team"], "a,b");
    }

    #[test]
    fn the_window_clips_rows_exactly() {
        let rows = vec![(
            1,
            "linux/memory_gib_seconds".to_owned(),
            DAY,
            DAY + 4 * H,
            1024 * 4 * H,
            false,
        )];
        let mut q = query(Granularity::Raw, Format::Jsonl);
        q.from_ms = DAY + H;
        q.to_ms = DAY + 2 * H;
        let text = export(rows, q);
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(column(&line, "ConsumedQuantity"), "3600");
        assert_eq!(
            column(&line, "ChargePeriodStart"),
            "2026-11-22T01:00:00.000Z"
        );
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        let rows = vec![(
            7,
            "linux/vcpu_seconds".to_owned(),
            DAY,
            DAY + 1000,
            1000 * 1000,
            false,
        )];
        let text = export(rows, query(Granularity::Raw, Format::Csv));
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        let row = lines.next().unwrap();
        assert!(row.contains(r#""{""team"":""a,b""}""#), "{row}");
        assert!(row.contains(",false,7,Usage,"), "{row}");
        assert!(
            row.contains(",linux/vcpu_seconds,/subscriptions/sub/"),
            "{row}"
        );
        assert_eq!(lines.next(), Some(""));
    }
}
