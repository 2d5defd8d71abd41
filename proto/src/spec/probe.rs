//! Liveness and readiness probes: exactly one action, an `exec` command the kernel can pass, an
//! `httpGet` whose path and headers go into a request line and a request head unchanged (so nothing in
//! them may end a line or split a field), and timings within an hour.
//!
//! Zero on the node means "absent" (Kubernetes' default is used); the apiserver sends its defaults
//! filled in.

use super::process;

/// The most arguments, and bytes in all, of an `exec` probe's command.
pub const MAX_COMMAND_ARGS: usize = 256;
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// The longest `httpGet` path.
pub const MAX_PATH: usize = 2048;
/// The most headers an `httpGet` probe sends, the longest name and the longest value.
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_NAME: usize = 256;
pub const MAX_HEADER_VALUE: usize = 4096;
/// The longest initial delay, period and timeout, in seconds.
pub const MAX_SECONDS: u32 = 3600;
/// The highest failure or success threshold.
pub const MAX_THRESHOLD: u32 = 1000;

/// Why a probe field is refused; the text completes "The value of '<field>' is invalid: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("a probe has exactly one of 'exec' or 'httpGet'")]
    Action,
    #[error(
        "an exec probe's command has at most {MAX_COMMAND_ARGS} arguments and {MAX_COMMAND_BYTES} bytes"
    )]
    CommandTooLong,
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error("{0} is not a port between 1 and 65535")]
    Port(i64),
    #[error("'{0}' is not a scheme: expected 'http' or 'https'")]
    Scheme(String),
    #[error(
        "a probe path starts with '/' and has only visible ASCII characters (no spaces or control \
         characters; percent-encode others), at most {MAX_PATH} bytes"
    )]
    Path,
    #[error("a probe sends at most {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error(
        "'{0}' is not an HTTP header name (1 to {MAX_HEADER_NAME} letters, digits or any of \
         !#$%&'*+-.^_`|~)"
    )]
    HeaderName(String),
    #[error(
        "the value of header '{0}' has no CR, LF or other control character but tab, at most \
         {MAX_HEADER_VALUE} bytes"
    )]
    HeaderValue(String),
    #[error("{value} is not between {min} and {max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("a liveness probe's successThreshold is 1")]
    LivenessSuccess,
}

/// An `exec` probe's command: at least one argument (none is no action), none with a NUL, bounded.
pub fn command(args: &[String]) -> Result<(), ProbeError> {
    if args.is_empty() {
        return Err(ProbeError::Action);
    }
    let bytes: usize = args.iter().map(String::len).sum();
    if args.len() > MAX_COMMAND_ARGS || bytes > MAX_COMMAND_BYTES {
        return Err(ProbeError::CommandTooLong);
    }
    for arg in args {
        process::text(arg)?;
    }
    Ok(())
}

/// An `httpGet` port.
pub fn port(port: i64) -> Result<u16, ProbeError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or(ProbeError::Port(port))
}

/// An `httpGet` scheme, in any case (empty: http).
pub fn scheme(scheme: &str) -> Result<(), ProbeError> {
    if scheme.is_empty()
        || scheme.eq_ignore_ascii_case("http")
        || scheme.eq_ignore_ascii_case("https")
    {
        Ok(())
    } else {
        Err(ProbeError::Scheme(scheme.to_string()))
    }
}

/// An `httpGet` path (empty: `/`), which becomes the request line's target as it is.
pub fn path(path: &str) -> Result<(), ProbeError> {
    let visible = |b: &u8| (0x21..=0x7e).contains(b);
    if path.is_empty()
        || (path.starts_with('/') && path.len() <= MAX_PATH && path.bytes().all(|b| visible(&b)))
    {
        Ok(())
    } else {
        Err(ProbeError::Path)
    }
}

/// An HTTP header name: an RFC 9110 token.
pub fn header_name(name: &str) -> Result<(), ProbeError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.is_empty() && name.len() <= MAX_HEADER_NAME && name.bytes().all(token) {
        Ok(())
    } else {
        Err(ProbeError::HeaderName(name.to_string()))
    }
}

/// The value of header `name`: no control characters but tab (so no CR or LF to end the line).
pub fn header_value(name: &str, value: &str) -> Result<(), ProbeError> {
    if value.len() <= MAX_HEADER_VALUE && !value.chars().any(|c| c.is_control() && c != '\t') {
        Ok(())
    } else {
        Err(ProbeError::HeaderValue(name.to_string()))
    }
}

/// The number of headers.
pub fn header_count(count: usize) -> Result<(), ProbeError> {
    if count <= MAX_HEADERS {
        Ok(())
    } else {
        Err(ProbeError::TooManyHeaders)
    }
}

/// Seconds (initial delay, period, timeout) from `min` to [`MAX_SECONDS`].
pub fn seconds(value: i64, min: u32) -> Result<u32, ProbeError> {
    within(value, min, MAX_SECONDS)
}

/// A failure or success threshold from `min` to [`MAX_THRESHOLD`].
pub fn threshold(value: i64, min: u32) -> Result<u32, ProbeError> {
    within(value, min, MAX_THRESHOLD)
}

/// A liveness probe's success threshold: 1 (0, absent, on the node).
pub fn liveness_success(value: i64, min: u32) -> Result<(), ProbeError> {
    if (i64::from(min)..=1).contains(&value) {
        Ok(())
    } else {
        Err(ProbeError::LivenessSuccess)
    }
}

fn within(value: i64, min: u32, max: u32) -> Result<u32, ProbeError> {
    u32::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or(ProbeError::OutOfRange {
            value,
            min: i64::from(min),
            max: i64::from(max),
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commands_are_non_empty_bounded_and_nul_free() {
        assert!(command(&["cat".into(), "/tmp/healthy".into()]).is_ok());
        assert_eq!(command(&[]), Err(ProbeError::Action));
        assert_eq!(
            command(&vec!["x".into(); MAX_COMMAND_ARGS + 1]),
            Err(ProbeError::CommandTooLong)
        );
        assert_eq!(
            command(&["a".repeat(MAX_COMMAND_BYTES + 1)]),
            Err(ProbeError::CommandTooLong)
        );
        assert!(matches!(
            command(&["a\0b".into()]),
            Err(ProbeError::Process(_))
        ));
    }

    #[test]
    fn ports_schemes_and_paths() {
        assert_eq!(port(1), Ok(1));
        assert_eq!(port(65535), Ok(65535));
        for bad in [0, -1, 65536, i64::MAX] {
            assert_eq!(port(bad), Err(ProbeError::Port(bad)));
        }
        for ok in ["", "http", "HTTPS", "Http"] {
            assert!(scheme(ok).is_ok(), "{ok}");
        }
        assert!(scheme("ftp").is_err() && scheme("http ").is_err());
        for ok in ["", "/", "/healthz?verbose=1&x=%20", "/a/b#c"] {
            assert!(path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "healthz",
            "/a b",
            "/a\r\nX-Injected: 1",
            "/\t",
            "/é",
            &format!("/{}", "a".repeat(MAX_PATH)),
        ] {
            assert_eq!(path(bad), Err(ProbeError::Path), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_tokens_and_values_stay_on_their_line() {
        assert!(header_name("X-Probe").is_ok() && header_name("Host").is_ok());
        for bad in ["", "X Probe", "X:Probe", "X\r\n", "Ünï"] {
            assert!(header_name(bad).is_err(), "{bad:?}");
        }
        assert!(header_value("A", "value with\ttab and spaces").is_ok());
        assert!(header_value("A", "").is_ok());
        for bad in ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                header_value("A", bad),
                Err(ProbeError::HeaderValue("A".into())),
                "{bad:?}"
            );
        }
        assert!(header_value("A", &"a".repeat(MAX_HEADER_VALUE + 1)).is_err());
        assert!(header_count(MAX_HEADERS).is_ok() && header_count(MAX_HEADERS + 1).is_err());
    }

    #[test]
    fn timings_and_thresholds_are_bounded() {
        assert_eq!(seconds(0, 0), Ok(0));
        assert!(seconds(0, 1).is_err());
        assert_eq!(seconds(3600, 1), Ok(3600));
        assert!(seconds(3601, 0).is_err() && seconds(-1, 0).is_err());
        assert_eq!(threshold(1000, 1), Ok(1000));
        assert!(threshold(1001, 1).is_err() && threshold(0, 1).is_err());
        assert!(liveness_success(1, 1).is_ok() && liveness_success(0, 0).is_ok());
        assert_eq!(liveness_success(2, 0), Err(ProbeError::LivenessSuccess));
        assert_eq!(liveness_success(0, 1), Err(ProbeError::LivenessSuccess));
    }

    proptest! {
        #[test]
        fn an_admitted_path_or_header_cannot_break_a_request_head(
            text in "[ -~\\r\\n\\t\\x00é]{0,40}",
        ) {
            if path(&text).is_ok() {
                prop_assert!(!text.contains([' ', '\r', '\n', '\t']));
            }
            if header_value("A", &text).is_ok() {
                prop_assert!(!text.contains(['\r', '\n', '\0']));
            }
            if header_name(&text).is_ok() {
                prop_assert!(!text.contains([' ', ':', '\r', '\n']));
            }
        }
    }
}
