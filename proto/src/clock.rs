//! The wall clock as Berth's records and messages carry it: Unix milliseconds.

/// Milliseconds since the Unix epoch: 0 for a clock set before it, `i64::MAX` past year 292 million.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_this_code_was_written_and_moves_forward() {
        let before = super::now_ms();
        // 2026-01-01T00:00:00Z.
        assert!(before > 1_767_225_600_000, "{before}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(super::now_ms() >= before + 5);
    }
}
