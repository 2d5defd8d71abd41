//! Durations on the command line (`--expires-in 30d`): whole numbers with a unit each, `w`, `d`, `h`,
//! `m` or `s`, largest first and each unit at most once (`30d`, `12h`, `90m`, `3600s`, `1d12h`).

/// A duration that does not parse; the message says what would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a duration such as 30d, 12h, 90m, 3600s or 1d12h (units w, d, h, m, s; a number before each)"
)]
pub struct DurationError;

/// Seconds in `text`; zero is refused (a token that expires at once is a mistake).
pub fn parse_seconds(text: &str) -> Result<u64, DurationError> {
    const UNITS: [(char, u64); 5] = [
        ('w', 7 * 86_400),
        ('d', 86_400),
        ('h', 3_600),
        ('m', 60),
        ('s', 1),
    ];
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError);
    }
    let mut total: u64 = 0;
    // Units must come largest first: this is the index of the next one allowed.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| DurationError)?;
        let unit = after.chars().next().ok_or(DurationError)?;
        let position = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or(DurationError)?;
        let (_, seconds) = UNITS[next_unit + position];
        next_unit += position + 1;
        total = number
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or(DurationError)?;
        rest = &after[unit.len_utf8()..];
    }
    if total == 0 {
        return Err(DurationError);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        assert_eq!(parse_seconds("30d"), Ok(30 * 86_400));
        assert_eq!(parse_seconds("12h"), Ok(12 * 3_600));
        assert_eq!(parse_seconds("90m"), Ok(5_400));
        assert_eq!(parse_seconds("3600s"), Ok(3_600));
        assert_eq!(parse_seconds("2w"), Ok(14 * 86_400));
        assert_eq!(parse_seconds("1d12h"), Ok(36 * 3_600));
        assert_eq!(parse_seconds(" 1h30m15s "), Ok(5_415));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "",
            "30",
            "d",
            "30x",
            "1.5h",
            "-1d",
            "30 d",
            "1h1d",
            "1h1h",
            "0s",
            "0d0h",
            "h30",
            "99999999999999999999d",
            "18446744073709551615w",
        ] {
            assert_eq!(parse_seconds(bad), Err(DurationError), "{bad:?}");
        }
    }
}
