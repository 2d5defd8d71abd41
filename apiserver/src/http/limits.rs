//! Limits on a request's head, the same over HTTP/1.1 and HTTP/2, answered in ACI's shape before
//! routing: a request target over 8 KiB is 414, more than 100 header fields or over 32 KiB of them
//! is 431. (Past what the transport holds at all, see `serve`.)

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::error::ApiError;

/// The longest request target (path and query) taken.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header fields taken (hyper's HTTP/1.1 default).
pub(crate) const MAX_FIELDS: usize = 100;
/// The most bytes of header names and values taken, summed.
pub(crate) const MAX_FIELD_BYTES: usize = 32 * 1024;

/// Checks a request head against the limits.
pub(crate) fn check(request: &Request) -> Result<(), ApiError> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "RequestUriTooLong",
            format!("The request URI is {target} bytes long; the limit is {MAX_URI_BYTES}."),
        )
        .with_target("uri"));
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_FIELDS || bytes > MAX_FIELD_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            format!(
                "The request has {} header fields of {bytes} bytes; the limits are {MAX_FIELDS} fields and \
                 {MAX_FIELD_BYTES} bytes.",
                headers.len()
            ),
        )
        .with_target("headers"));
    }
    Ok(())
}

pub(super) async fn enforce(request: Request, next: Next) -> Response {
    match check(&request) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(uri: &str, headers: &[(String, String)]) -> Request {
        let mut builder = Request::builder().uri(uri);
        for (n, v) in headers {
            builder = builder.header(n, v);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn uri_and_header_limits() {
        let at_limit = format!("/{}", "a".repeat(MAX_URI_BYTES - 1));
        assert_eq!(check(&request(&at_limit, &[])), Ok(()));
        let over = format!("{at_limit}a");
        let err = check(&request(&over, &[])).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (414, "RequestUriTooLong"));
        // The query counts.
        let err = check(&request(&format!("/?q={}", "a".repeat(MAX_URI_BYTES)), &[])).unwrap_err();
        assert_eq!(err.target.as_deref(), Some("uri"));

        let fields: Vec<_> = (0..MAX_FIELDS)
            .map(|i| (format!("x-{i}"), "v".to_owned()))
            .collect();
        assert_eq!(check(&request("/", &fields)), Ok(()));
        let mut more = fields.clone();
        more.push(("x-last".to_owned(), "v".to_owned()));
        let err = check(&request("/", &more)).unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code),
            (431, "RequestHeaderFieldsTooLarge")
        );
        let big = vec![("x-big".to_owned(), "v".repeat(MAX_FIELD_BYTES))];
        assert_eq!(
            check(&request("/", &big)).unwrap_err().target.as_deref(),
            Some("headers")
        );
        let fits = vec![("x-big".to_owned(), "v".repeat(MAX_FIELD_BYTES - 5))];
        assert_eq!(check(&request("/", &fits)), Ok(()));
    }
}
