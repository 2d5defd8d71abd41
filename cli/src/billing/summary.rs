//! `billing show`'s summary: usage rows summed per group and meter, exactly.

use std::collections::BTreeMap;

use super::UsageRow;
use super::decimal::{Decimal, DecimalError};

/// One line of the summary: what a group used of a meter, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    /// `x_ResourceGroup/ResourceName`, or whichever of them the rows have.
    pub group: String,
    /// The meter (`SkuId`), e.g. `linux/vcpu_seconds`.
    pub meter: String,
    /// `ConsumedQuantity`, summed.
    pub quantity: Decimal,
    /// `ConsumedUnit`, e.g. `vCPU-Seconds`.
    pub unit: String,
    /// `BilledCost`, summed.
    pub cost: Decimal,
    /// `BillingCurrency`.
    pub currency: String,
    /// Some row is still accruing (`x_Accrued`): the group runs and the line will grow.
    pub accruing: bool,
}

/// Rows summed per group and meter (and unit and currency, which one meter should not mix, so that a
/// server which does mix them gets separate lines instead of a meaningless sum).
#[derive(Debug, Clone, Default)]
pub struct UsageSummary {
    lines: BTreeMap<(String, String, String, String), UsageLine>,
    /// Cost per currency.
    totals: BTreeMap<String, Decimal>,
    rows: u64,
}

impl UsageSummary {
    /// Adds one row. A missing quantity or cost counts as zero.
    pub fn add(&mut self, row: &UsageRow) -> Result<(), DecimalError> {
        let group = group_label(row);
        let meter = row.sku_id.clone().unwrap_or_default();
        let unit = row.consumed_unit.clone().unwrap_or_default();
        let currency = row.billing_currency.clone().unwrap_or_default();
        let quantity = row.consumed_quantity.unwrap_or(Decimal::ZERO);
        let cost = row.billed_cost.unwrap_or(Decimal::ZERO);
        let total = self.totals.get(&currency).copied().unwrap_or_default();
        let total = total.try_add(cost)?;
        let key = (group, meter, unit, currency);
        let line = match self.lines.get(&key) {
            Some(line) => UsageLine {
                quantity: line.quantity.try_add(quantity)?,
                cost: line.cost.try_add(cost)?,
                accruing: line.accruing || row.accrued.unwrap_or(false),
                ..line.clone()
            },
            None => UsageLine {
                group: key.0.clone(),
                meter: key.1.clone(),
                quantity,
                unit: key.2.clone(),
                cost,
                currency: key.3.clone(),
                accruing: row.accrued.unwrap_or(false),
            },
        };
        // Only now that every sum fits does anything change.
        self.totals.insert(key.3.clone(), total);
        self.lines.insert(key, line);
        self.rows += 1;
        Ok(())
    }

    /// The lines, by group, then meter.
    pub fn lines(&self) -> impl Iterator<Item = &UsageLine> {
        self.lines.values()
    }

    /// The summed cost per currency, by currency.
    pub fn totals(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.totals.iter().map(|(c, d)| (c.as_str(), *d))
    }

    /// No row was added.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// `rg/name`, or whichever of the two the row has, or `-`.
fn group_label(row: &UsageRow) -> String {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    match (
        non_empty(&row.resource_group),
        non_empty(&row.resource_name),
    ) {
        (Some(rg), Some(name)) => format!("{rg}/{name}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "-".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(json: &str) -> UsageRow {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sums_per_group_and_meter() {
        let mut summary = UsageSummary::default();
        for json in [
            r#"{"x_ResourceGroup":"rg","ResourceName":"web","SkuId":"linux/vcpu_seconds","ConsumedQuantity":0.1,"ConsumedUnit":"vCPU-Seconds","BilledCost":0.0000113,"BillingCurrency":"USD","x_Accrued":false}"#,
            r#"{"x_ResourceGroup":"rg","ResourceName":"web","SkuId":"linux/vcpu_seconds","ConsumedQuantity":0.2,"ConsumedUnit":"vCPU-Seconds","BilledCost":0.0000226,"BillingCurrency":"USD","x_Accrued":true}"#,
            r#"{"x_ResourceGroup":"rg","ResourceName":"web","SkuId":"linux/memory_gib_seconds","ConsumedQuantity":7200,"ConsumedUnit":"GiB-Seconds","BilledCost":0.01,"BillingCurrency":"USD","x_Accrued":false}"#,
            r#"{"ResourceName":"orphan","SkuId":"linux/vcpu_seconds","ConsumedQuantity":1,"ConsumedUnit":"vCPU-Seconds","BilledCost":"0.5","BillingCurrency":"USD"}"#,
            r#"{"SkuId":"gpu/v100/gpu_seconds","ConsumedQuantity":null,"ConsumedUnit":"GPU-Seconds","BillingCurrency":"EUR"}"#,
        ] {
            summary.add(&row(json)).unwrap();
        }
        let lines: Vec<(String, String, String, String, bool)> = summary
            .lines()
            .map(|l| {
                (
                    l.group.clone(),
                    l.meter.clone(),
                    format!("{} {}", l.quantity, l.unit),
                    format!("{} {}", l.cost, l.currency),
                    l.accruing,
                )
            })
            .collect();
        let line = |g: &str, m: &str, q: &str, c: &str, a: bool| {
            (g.to_owned(), m.to_owned(), q.to_owned(), c.to_owned(), a)
        };
        assert_eq!(
            lines,
            [
                line("-", "gpu/v100/gpu_seconds", "0 GPU-Seconds", "0 EUR", false),
                line(
                    "orphan",
                    "linux/vcpu_seconds",
                    "1 vCPU-Seconds",
                    "0.5 USD",
                    false
                ),
                line(
                    "rg/web",
                    "linux/memory_gib_seconds",
                    "7200 GiB-Seconds",
                    "0.01 USD",
                    false
                ),
                // 0.1 + 0.2 is 0.3 here.
                line(
                    "rg/web",
                    "linux/vcpu_seconds",
                    "0.3 vCPU-Seconds",
                    "0.0000339 USD",
                    true
                ),
            ]
        );
        let totals: Vec<(&str, String)> =
            summary.totals().map(|(c, d)| (c, d.to_string())).collect();
        assert_eq!(
            totals,
            [("EUR", "0".to_owned()), ("USD", "0.5100339".to_owned())]
        );
        assert!(!summary.is_empty());
        assert!(UsageSummary::default().is_empty());
    }

    #[test]
    fn an_overflowing_row_changes_nothing() {
        let mut summary = UsageSummary::default();
        let max = i128::MAX.to_string();
        summary
            .add(&row(&format!(
                r#"{{"SkuId":"m","BilledCost":{max},"BillingCurrency":"USD"}}"#
            )))
            .unwrap();
        let err = summary
            .add(&row(
                r#"{"SkuId":"other","BilledCost":1,"BillingCurrency":"USD"}"#,
            ))
            .unwrap_err();
        assert_eq!(err, DecimalError::Overflow);
        assert_eq!(summary.lines().count(), 1);
        assert_eq!(summary.totals().next().unwrap().1.to_string(), max);
    }
}
