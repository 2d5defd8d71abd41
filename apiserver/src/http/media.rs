//! ARM's media-type rule for request bodies: a body is JSON (`application/json`, a `charset` other
//! than UTF-8 refused, other parameters ignored) and is not content-encoded; anything else is 415
//! `UnsupportedMediaType`. A request without a body needs no `Content-Type` (ACI's `stop`,
//! `restart` and `start` are POSTs with none).

use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};

use crate::error::ApiError;

/// Whether `value` is a Content-Type for a JSON body this server reads.
pub(crate) fn is_json(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| {
        let Some((name, value)) = param.split_once('=') else {
            // A bare token where a parameter belongs: malformed.
            return param.trim().is_empty();
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
    })
}

/// Whether a `Content-Encoding` value leaves the body as sent (absent or `identity`).
fn is_identity(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| {
        v.split(',')
            .all(|coding| coding.trim().eq_ignore_ascii_case("identity"))
    })
}

/// Checks the media headers of a request that has a body (`has_body`: known to be non-empty).
/// Without `has_body`, a missing Content-Type is left for the body to decide (see `missing_type`).
pub(crate) fn check(headers: &HeaderMap, has_body: bool) -> Result<(), ApiError> {
    if let Some(encoding) = headers.get(CONTENT_ENCODING)
        && !is_identity(encoding.as_bytes())
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "The content encoding '{}' is not supported; send the body uncompressed.",
                String::from_utf8_lossy(encoding.as_bytes())
            ),
        )
        .with_target("Content-Encoding"));
    }
    match headers.get(CONTENT_TYPE) {
        Some(value) if is_json(value.as_bytes()) => Ok(()),
        Some(value) => Err(unsupported(&String::from_utf8_lossy(value.as_bytes()))),
        None if has_body => Err(missing_type()),
        None => Ok(()),
    }
}

/// A body without any Content-Type.
pub(crate) fn missing_type() -> ApiError {
    unsupported("")
}

fn unsupported(media_type: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!(
            "The content media type '{media_type}' is not supported. Only 'application/json' is supported."
        ),
    )
    .with_target("Content-Type")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn json_with_or_without_a_utf8_charset() {
        for ok in [
            "application/json",
            "Application/JSON",
            " application/json ",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json; odata=verbose",
            "application/json;",
        ] {
            assert!(is_json(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/xml",
            "application/jsonx",
            "application/json-patch+json",
            "text/json",
            "application/json; charset=latin1",
            "application/json; charset=utf-16",
            "application/json; garbage",
            "",
            "application",
        ] {
            assert!(!is_json(bad.as_bytes()), "{bad}");
        }
        assert!(!is_json(b"application/json\xff"));
    }

    #[test]
    fn bodies_need_json_and_no_encoding() {
        let mut headers = HeaderMap::new();
        assert_eq!(check(&headers, false), Ok(()));
        let err = check(&headers, true).unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code),
            (415, "UnsupportedMediaType")
        );
        assert_eq!(err.target.as_deref(), Some("Content-Type"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(
            check(&headers, false).is_err(),
            "a declared type is checked even before the body"
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(check(&headers, true), Ok(()));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert_eq!(check(&headers, true), Ok(()));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let err = check(&headers, true).unwrap_err();
        assert_eq!(err.target.as_deref(), Some("Content-Encoding"));
    }
}
