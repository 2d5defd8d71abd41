//! Exact decimal numbers: the quantities and costs of usage rows are summed from their decimal text,
//! never through `f64` (where 0.1 + 0.2 is 0.30000000000000004 and a month of 0.0000113 prices
//! drifts).

use std::fmt;
use std::str::FromStr;

/// The most digits after the point a [`Decimal`] keeps. An `i128` holds 38 digits, so sums of
/// values up to 10^8 with this many decimals still fit, with room for many rows.
pub const MAX_SCALE: u32 = 30;

/// A decimal number, `units` × 10^-`scale`, exactly. Equality ignores trailing zeros (1.50 == 1.5).
#[derive(Debug, Clone, Copy, Default)]
pub struct Decimal {
    units: i128,
    scale: u32,
}

/// Why a text is not a [`Decimal`], or a sum cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not a decimal number: `-12.5`, `0.0000113`, `1e-5` are; `12,5`, `NaN`, `` are not.
    #[error("{0:?} is not a decimal number")]
    Malformed(String),
    /// More digits than an `i128` holds, or more than [`MAX_SCALE`] after the point.
    #[error("{0:?} has more digits than can be summed exactly")]
    TooPrecise(String),
    /// A sum outside what an `i128` of units holds at the larger of the two scales.
    #[error("a sum is too large to be kept exactly")]
    Overflow,
}

impl Decimal {
    pub const ZERO: Self = Self { units: 0, scale: 0 };

    /// `self + other`, exactly.
    pub fn try_add(self, other: Self) -> Result<Self, DecimalError> {
        let scale = self.scale.max(other.scale);
        self.rescaled(scale)
            .zip(other.rescaled(scale))
            .and_then(|(a, b)| a.checked_add(b))
            .map(|units| Self { units, scale })
            .ok_or(DecimalError::Overflow)
    }

    /// The units of `self` at a scale no smaller than its own.
    fn rescaled(self, scale: u32) -> Option<i128> {
        self.units
            .checked_mul(10_i128.checked_pow(scale - self.scale)?)
    }

    /// The same number without trailing zeros after the point.
    fn normalized(self) -> Self {
        let Self {
            mut units,
            mut scale,
        } = self;
        while scale > 0 && units % 10 == 0 {
            units /= 10;
            scale -= 1;
        }
        Self { units, scale }
    }

    /// The number with at least `min_scale` digits after the point (more if it needs them), as
    /// money is written: `12.50`, `0.00`, `0.0000113`.
    pub fn to_string_with_min_scale(self, min_scale: u32) -> String {
        let n = self.normalized();
        let shown = if n.scale >= min_scale {
            n
        } else {
            match n.rescaled(min_scale) {
                Some(units) => Self {
                    units,
                    scale: min_scale,
                },
                // Too many digits to pad: shown without the padding, still exact.
                None => n,
            }
        };
        shown.to_string_as_is()
    }

    /// The digits of `units` with the point `scale` digits from the right.
    fn to_string_as_is(self) -> String {
        let digits = self.units.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let sign = if self.units < 0 { "-" } else { "" };
        if scale == 0 {
            return format!("{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{sign}{int}.{frac}")
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.units == b.units && a.scale == b.scale
    }
}

impl Eq for Decimal {}

/// Without trailing zeros: `12.5`, `3600`, `0.0000113`, `-2`.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.normalized().to_string_as_is())
    }
}

/// JSON's number grammar, a little wider: an optional sign (`+` too), digits with an optional point
/// (`.5` and `5.` too), an optional exponent.
impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || DecimalError::Malformed(text.to_owned());
        let too_precise = || DecimalError::TooPrecise(text.to_owned());
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => {
                let exponent = &rest[at + 1..];
                let digits = exponent.trim_start_matches(['+', '-']);
                if digits.is_empty()
                    || exponent.len() - digits.len() > 1
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed());
                }
                // Larger exponents cannot give a number of at most 38 digits anyway.
                let exponent: i64 = exponent.parse().map_err(|_| too_precise())?;
                (&rest[..at], exponent)
            }
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(malformed());
        }
        let mut units: i128 = 0;
        for digit in int.bytes().chain(frac.bytes()) {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(i128::from(digit - b'0')))
                .ok_or_else(too_precise)?;
        }
        let mut scale = i64::try_from(frac.len()).map_err(|_| too_precise())? - exponent;
        if scale < 0 {
            let factor = u32::try_from(-scale)
                .ok()
                .and_then(|e| 10_i128.checked_pow(e))
                .ok_or_else(too_precise)?;
            units = units.checked_mul(factor).ok_or_else(too_precise)?;
            scale = 0;
        }
        // Trailing zeros beyond the limit are no loss.
        while scale > i64::from(MAX_SCALE) && units % 10 == 0 {
            units /= 10;
            scale -= 1;
        }
        let scale = u32::try_from(scale)
            .ok()
            .filter(|s| *s <= MAX_SCALE)
            .ok_or_else(too_precise)?;
        Ok(Self {
            units: if negative { -units } else { units },
            scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
    }

    #[test]
    fn parses_the_numbers_usage_rows_carry() {
        assert_eq!(d("12.5").to_string(), "12.5");
        assert_eq!(d("0.0000113").to_string(), "0.0000113");
        assert_eq!(d("3600").to_string(), "3600");
        assert_eq!(d("3600.000").to_string(), "3600");
        assert_eq!(d("-2.50").to_string(), "-2.5");
        assert_eq!(d("+7").to_string(), "7");
        assert_eq!(d("0").to_string(), "0");
        assert_eq!(d("-0.0").to_string(), "0");
        assert_eq!(d(".5").to_string(), "0.5");
        assert_eq!(d("5.").to_string(), "5");
        // A server that writes floats the short way.
        assert_eq!(d("1.13e-5").to_string(), "0.0000113");
        assert_eq!(d("1.13E-5"), d("0.0000113"));
        assert_eq!(d("2.5e3").to_string(), "2500");
        assert_eq!(d("25e+2").to_string(), "2500");
        assert_eq!(d("1e-30").to_string(), format!("0.{}1", "0".repeat(29)));
        assert_eq!(d("1.000e-28").to_string(), format!("0.{}1", "0".repeat(27)));
    }

    #[test]
    fn refuses_what_is_not_a_decimal() {
        for bad in [
            "", "-", ".", "1,5", "NaN", "inf", "1e", "1e+", "e5", "1e5.5", "1.2.3", " 1", "1 ",
            "--1", "1e--5", "0x10",
        ] {
            assert_eq!(
                bad.parse::<Decimal>(),
                Err(DecimalError::Malformed(bad.to_owned())),
                "{bad:?}"
            );
        }
        for big in [
            "9".repeat(39).as_str(),
            "1e39",
            "1e-31",
            "1e99999999999999999999",
        ] {
            assert_eq!(
                big.parse::<Decimal>(),
                Err(DecimalError::TooPrecise(big.to_owned())),
                "{big:?}"
            );
        }
    }

    #[test]
    fn sums_are_exact_where_f64_is_not() {
        let sum = d("0.1").try_add(d("0.2")).unwrap();
        assert_eq!(sum, d("0.3"));
        assert_ne!(0.1_f64 + 0.2, 0.3, "the reason this type exists");
        // A month of per-second rows at a tiny price: f64 drifts, this does not.
        let mut total = Decimal::ZERO;
        let mut float = 0.0_f64;
        for _ in 0..2_592_000 {
            total = total.try_add(d("0.0000113")).unwrap();
            float += 0.0000113;
        }
        assert_eq!(total.to_string(), "29.2896");
        assert_ne!(format!("{float}"), "29.2896");
        // Different scales, signs.
        assert_eq!(
            d("12.5").try_add(d("-0.0000113")).unwrap().to_string(),
            "12.4999887"
        );
        assert_eq!(d("-1").try_add(d("1.000")).unwrap().to_string(), "0");
    }

    #[test]
    fn overflow_is_an_error_not_a_wrong_sum() {
        let big = d(&i128::MAX.to_string());
        assert_eq!(big.try_add(d("1")), Err(DecimalError::Overflow));
        assert_eq!(
            big.try_add(d("-1")).unwrap(),
            d(&(i128::MAX - 1).to_string())
        );
        // Fits at scale 0, not at the other's scale.
        let wide = d(&"9".repeat(30));
        assert_eq!(wide.try_add(d("0.000000001")), Err(DecimalError::Overflow));
    }

    #[test]
    fn money_has_at_least_two_decimals() {
        assert_eq!(d("12.5").to_string_with_min_scale(2), "12.50");
        assert_eq!(d("0").to_string_with_min_scale(2), "0.00");
        assert_eq!(d("-3").to_string_with_min_scale(2), "-3.00");
        assert_eq!(d("0.0000113").to_string_with_min_scale(2), "0.0000113");
        assert_eq!(d("7.12300").to_string_with_min_scale(2), "7.123");
        let huge = d(&"9".repeat(38));
        assert_eq!(huge.to_string_with_min_scale(2), "9".repeat(38));
    }

    #[test]
    fn equality_ignores_trailing_zeros() {
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(d("100"), d("1e2"));
        assert_ne!(d("1.5"), d("1.05"));
    }
}
