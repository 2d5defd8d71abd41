//! The price sheet: a list price per unit of each meter, in one currency.
//!
//! A TOML file (`--price-sheet`), loaded at start (a bad sheet stops the start) and again on SIGHUP (a
//! bad sheet then keeps the previous one and says why in the log). Prices are decimal *strings*, so
//! they stay exact. Costs are worked out at export time, so re-pricing never re-meters anything.
//!
//! ```toml
//! currency = "USD"
//! [prices]
//! "linux/vcpu_seconds" = "0.0000113"
//! "linux/memory_gib_seconds" = "0.0000012"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::{Unit, write_decimal};

/// Decimal places of every cost Berth prints.
pub const COST_SCALE: u32 = 10;

/// The sheet Berth uses without a file: Azure Container Instances' pay-as-you-go list prices
/// (East US, per second). Operators are expected to bring their own.
pub const DEFAULT_SHEET: &str = r#"
currency = "USD"
[prices]
"linux/vcpu_seconds" = "0.0000113"
"linux/memory_gib_seconds" = "0.0000012"
"windows/vcpu_seconds" = "0.0000213"
"windows/memory_gib_seconds" = "0.0000012"
"gpu/k80/gpu_seconds" = "0.0002500"
"gpu/p100/gpu_seconds" = "0.0004722"
"gpu/v100/gpu_seconds" = "0.0008500"
"#;

/// Why a price sheet was refused.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read the price sheet {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the price sheet is not valid TOML: {0}")]
    Parse(#[source] toml::de::Error),
    #[error(
        "price of '{meter}': '{text}' is not a non-negative decimal (write it as a string, e.g. \"0.0000113\")"
    )]
    Price { meter: String, text: String },
    #[error("currency '{0}' is not an ISO 4217 code (three capital letters)")]
    Currency(String),
}

/// An exact decimal price: `mantissa / 10^scale` per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub mantissa: i128,
    pub scale: u32,
}

impl Price {
    pub fn parse(text: &str) -> Option<Self> {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(frac)
            || frac.len() > 18
            || whole.len() > 18
        {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        let mantissa: i128 = format!("{whole}{frac}").parse().ok()?;
        Some(Self {
            mantissa,
            scale: frac.len() as u32,
        })
    }

    /// Appends the price as an exact decimal.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_decimal(out, self.mantissa, self.scale);
    }

    /// `(mul, div)`, reduced: the cost in 10^-[`COST_SCALE`] of a quantity of integer units of a
    /// meter in `unit` is `quantity × mul / div` (before rounding).
    pub fn cost_fraction(&self, unit: Unit) -> (i128, i128) {
        let mul = self.mantissa * 10i128.pow(COST_SCALE);
        let div = unit.per_unit * 10i128.pow(self.scale);
        let gcd = gcd(mul, div).max(1);
        (mul / gcd, div / gcd)
    }

    /// The cost of `quantity` integer units of a meter in `unit`, in units of 10^-[`COST_SCALE`],
    /// rounded half away from zero.
    pub fn cost(&self, quantity: i128, unit: Unit) -> i128 {
        let numerator = quantity
            .checked_mul(self.mantissa)
            .and_then(|n| n.checked_mul(10i128.pow(COST_SCALE)));
        let denominator = unit.per_unit * 10i128.pow(self.scale);
        match numerator {
            Some(n) => {
                let (q, r) = (n / denominator, n % denominator);
                if 2 * r.abs() >= denominator {
                    q + n.signum()
                } else {
                    q
                }
            }
            // Too large for 128 bits with all the digits: divide first (loses digits past COST_SCALE
            // only for quantities beyond any real bill).
            None => {
                quantity / unit.per_unit * self.mantissa * 10i128.pow(COST_SCALE)
                    / 10i128.pow(self.scale)
            }
        }
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SheetFile {
    currency: String,
    #[serde(default)]
    prices: BTreeMap<String, String>,
}

/// A loaded price sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSheet {
    pub currency: String,
    pub prices: BTreeMap<String, Price>,
    /// The file it came from; `None`: the built-in sheet.
    pub source: Option<PathBuf>,
}

impl PriceSheet {
    pub fn parse(text: &str, source: Option<PathBuf>) -> Result<Self, PriceError> {
        let file: SheetFile = toml::from_str(text).map_err(PriceError::Parse)?;
        if file.currency.len() != 3 || !file.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(PriceError::Currency(file.currency));
        }
        let mut prices = BTreeMap::new();
        for (meter, text) in file.prices {
            let price = Price::parse(&text).ok_or_else(|| PriceError::Price {
                meter: meter.clone(),
                text: text.clone(),
            })?;
            prices.insert(meter.to_ascii_lowercase(), price);
        }
        Ok(Self {
            currency: file.currency,
            prices,
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Self, PriceError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path.to_owned()))
    }

    pub fn builtin() -> Self {
        Self::parse(DEFAULT_SHEET, None).expect("the built-in price sheet parses")
    }
}

/// The price sheet in use, swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Prices {
    path: Option<PathBuf>,
    current: Arc<RwLock<Arc<PriceSheet>>>,
}

impl Prices {
    /// Loads `path`, or the built-in sheet without one.
    pub fn load(path: Option<&Path>) -> Result<Self, PriceError> {
        let sheet = match path {
            Some(path) => PriceSheet::load(path)?,
            None => PriceSheet::builtin(),
        };
        Ok(Self {
            path: path.map(Path::to_owned),
            current: Arc::new(RwLock::new(Arc::new(sheet))),
        })
    }

    pub fn current(&self) -> Arc<PriceSheet> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the file again; on error the sheet in use stays.
    pub fn reload(&self) -> Result<Arc<PriceSheet>, PriceError> {
        let Some(path) = &self.path else {
            return Ok(self.current());
        };
        let sheet = Arc::new(PriceSheet::load(path)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&sheet);
        Ok(sheet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::unit_of;

    #[test]
    fn prices_are_exact_decimals() {
        assert_eq!(
            Price::parse("0.0000113"),
            Some(Price {
                mantissa: 113,
                scale: 7
            })
        );
        assert_eq!(
            Price::parse("2.50"),
            Some(Price {
                mantissa: 25,
                scale: 1
            })
        );
        for bad in ["", "-1", "1e-5", ".5", "1.2.3", "abc", "0x10"] {
            assert_eq!(Price::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn costs_round_half_away_from_zero_at_ten_places() {
        let price = Price::parse("0.0000113").unwrap();
        let vcpu = unit_of("linux/vcpu_seconds");
        // 1 vCPU for 1 hour = 3600 vCPU-s = $0.04068.
        assert_eq!(
            price.cost(1000 * 3_600_000, vcpu),
            406_800_000,
            "0.0406800000"
        );
        // 1 millicore for 1 ms = 1e-6 vCPU-s = 1.13e-11 → rounds to 0; 5 of them 5.65e-11 → 1e-10.
        assert_eq!(price.cost(1, vcpu), 0);
        assert_eq!(price.cost(5, vcpu), 1);
        assert_eq!(price.cost(-5, vcpu), -1);
        let memory = unit_of("linux/memory_gib_seconds");
        let gib = Price::parse("0.0000012").unwrap();
        // 1.5 GiB for 10 s = 15 GiB-s = $0.000018.
        assert_eq!(gib.cost(1536 * 10_000, memory), 180_000);
        // The reduced fraction the exports use: $0.0000113 per vCPU-s = 113 / 1000 per unit.
        assert_eq!(price.cost_fraction(vcpu), (113, 1000));
        assert_eq!(gib.cost_fraction(memory), (3, 256));
    }

    #[test]
    fn sheets_are_checked_and_reloaded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(
            &path,
            "currency = \"EUR\"\n[prices]\n\"linux/vcpu_seconds\" = \"0.00001\"\n",
        )
        .unwrap();
        let prices = Prices::load(Some(&path)).unwrap();
        assert_eq!(prices.current().currency, "EUR");
        std::fs::write(
            &path,
            "currency = \"EUR\"\n[prices]\n\"linux/vcpu_seconds\" = 0.5\n",
        )
        .unwrap();
        assert!(prices.reload().is_err());
        assert_eq!(prices.current().prices["linux/vcpu_seconds"].mantissa, 1);
        std::fs::write(
            &path,
            "currency = \"EUR\"\n[prices]\n\"linux/vcpu_seconds\" = \"0.00002\"\n",
        )
        .unwrap();
        prices.reload().unwrap();
        assert_eq!(prices.current().prices["linux/vcpu_seconds"].mantissa, 2);
        assert!(matches!(
            PriceSheet::parse("currency = \"usd\"", None),
            Err(PriceError::Currency(_))
        ));
        assert_eq!(PriceSheet::builtin().currency, "USD");
    }
}
