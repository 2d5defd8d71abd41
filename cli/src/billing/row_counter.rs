//! Counts the data rows of a usage export as its body streams by, whatever the chunks' boundaries:
//! records end at a newline (`\r\n` too) outside a CSV quoted field; blank lines are no rows; the
//! first CSV record is the header; a last record without a newline still counts.

use super::UsageFormat;

/// The rows seen so far of one body, in constant memory.
#[derive(Debug, Clone)]
pub struct RowCounter {
    /// `None` until the first byte that is not white space says: `{` is JSON lines, else CSV.
    format: Option<UsageFormat>,
    /// Inside a quoted CSV field, where a newline is data (`""` toggles twice, so stays inside).
    in_quotes: bool,
    /// The current record has a byte other than `\r` or `\n`.
    in_record: bool,
    /// Records ended by a newline.
    records: u64,
}

impl RowCounter {
    /// A counter for a body in `format`, or in the format its first byte shows when `None`.
    pub fn new(format: Option<UsageFormat>) -> Self {
        Self {
            format,
            in_quotes: false,
            in_record: false,
            records: 0,
        }
    }

    /// Counts the records `chunk` ends.
    pub fn feed(&mut self, chunk: &[u8]) {
        for &byte in chunk {
            let format = match self.format {
                Some(format) => format,
                None if byte.is_ascii_whitespace() => continue,
                None => *self.format.insert(if byte == b'{' {
                    UsageFormat::Jsonl
                } else {
                    UsageFormat::Csv
                }),
            };
            match byte {
                b'"' if format == UsageFormat::Csv => {
                    self.in_quotes = !self.in_quotes;
                    self.in_record = true;
                }
                b'\n' if !self.in_quotes => {
                    if self.in_record {
                        self.records += 1;
                    }
                    self.in_record = false;
                }
                b'\r' if !self.in_quotes => {}
                _ => self.in_record = true,
            }
        }
    }

    /// The data rows so far, a record still open at the end of the body included.
    pub fn rows(&self) -> u64 {
        let records = self.records + u64::from(self.in_record);
        match self.format {
            Some(UsageFormat::Csv) => records.saturating_sub(1),
            Some(UsageFormat::Jsonl) | None => records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "BillingPeriodStart,ChargeDescription,ConsumedQuantity,Tags,x_Accrued\r\n\
        2026-11-01T00:00:00.000Z,\"vCPU, Linux\",3600,\"{\"\"env\"\":\"\"prod\"\"}\",false\r\n\
        2026-11-01T00:00:00.000Z,\"a description\nover two lines\",12.5,{},true\r\n\
        2026-11-01T00:00:00.000Z,\"\"\"quoted\"\"\",0.0000113,{},false";

    const JSONL: &str = "{\"ResourceName\":\"web\",\"Tags\":{\"note\":\"a \\\"quote\\\" and \\n\"},\"ConsumedQuantity\":1}\n\
        {\"ResourceName\":\"api\",\"Tags\":{},\"ConsumedQuantity\":2}\n\
        \n\
        {\"ResourceName\":\"db\",\"Tags\":{},\"ConsumedQuantity\":3}\n";

    fn count(format: Option<UsageFormat>, chunks: &[&[u8]]) -> u64 {
        let mut counter = RowCounter::new(format);
        for chunk in chunks {
            counter.feed(chunk);
        }
        counter.rows()
    }

    #[test]
    fn counts_rows_wherever_the_chunks_split() {
        for (body, format, rows) in [(CSV, UsageFormat::Csv, 3), (JSONL, UsageFormat::Jsonl, 3)] {
            let body = body.as_bytes();
            for declared in [Some(format), None] {
                assert_eq!(count(declared, &[body]), rows, "{declared:?} in one chunk");
                for at in 0..=body.len() {
                    let (a, b) = body.split_at(at);
                    assert_eq!(count(declared, &[a, b]), rows, "{declared:?} split at {at}");
                }
                let bytes: Vec<&[u8]> = body.chunks(1).collect();
                assert_eq!(count(declared, &bytes), rows, "{declared:?} byte by byte");
                for size in [2, 3, 7, 64] {
                    let chunks: Vec<&[u8]> = body.chunks(size).collect();
                    assert_eq!(count(declared, &chunks), rows, "{declared:?} by {size}");
                }
            }
        }
    }

    #[test]
    fn the_count_grows_as_rows_arrive() {
        let mut counter = RowCounter::new(Some(UsageFormat::Csv));
        counter.feed(b"A,B\n");
        assert_eq!(counter.rows(), 0, "the header alone");
        counter.feed(b"1,2");
        assert_eq!(counter.rows(), 1, "an unfinished row counts");
        counter.feed(b"\n3,");
        assert_eq!(counter.rows(), 2);
        counter.feed(b"4\n\n");
        assert_eq!(counter.rows(), 2, "a blank line is no row");
    }

    #[test]
    fn empty_bodies_have_no_rows() {
        assert_eq!(count(Some(UsageFormat::Csv), &[]), 0);
        assert_eq!(count(Some(UsageFormat::Csv), &[b"A,B\r\n"]), 0);
        assert_eq!(count(Some(UsageFormat::Jsonl), &[b""]), 0);
        assert_eq!(count(None, &[b"\n", b"\r\n"]), 0);
    }
}
