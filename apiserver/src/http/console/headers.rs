//! The headers every console answer carries — its page, files, routes and their errors — whatever
//! handler (or fallback) made it: a strict Content-Security-Policy, no framing, no sniffing, no
//! referrer, and no stale copies.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Scripts, styles, fonts and connections only from the apiserver itself; no inline script, no
/// plugins, no forms posted anywhere, never inside a frame. `'unsafe-inline'` for styles only,
/// because xterm.js' DOM renderer puts its theme and cell sizes in a `<style>` element it creates
/// (ARCHITECTURE.md, "Console"); `data:` images for the page's empty favicon.
pub(crate) const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` (normalised) is the console's: `/` and everything under `/console`.
pub(crate) fn is_console(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// Middleware on the whole API router: adds the console's headers to answers to console paths.
pub(crate) async fn add(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if is_console(&path) {
        set(response.headers_mut(), &path);
    }
    response
}

fn set(headers: &mut HeaderMap, path: &str) {
    let fixed = [
        (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        (X_FRAME_OPTIONS, "DENY"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Files are revalidated (their ETag makes that cheap); what `/console/v1` answers is the
    // caller's and is never stored.
    let cache = if path.starts_with("/console/v1/") {
        "no-store"
    } else {
        "no-cache"
    };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_paths_are_the_root_and_console() {
        for path in ["/", "/console", "/console/app.js", "/console/v1/me"] {
            assert!(is_console(path), "{path}");
        }
        for path in [
            "/consoles",
            "/subscriptions",
            "/admin/v1/nodes",
            "/exec/x",
            "",
        ] {
            assert!(!is_console(path), "{path}");
        }
    }

    #[test]
    fn the_policy_allows_no_inline_script_and_no_framing() {
        let directives: Vec<&str> = CONTENT_SECURITY_POLICY_VALUE
            .split(';')
            .map(str::trim)
            .collect();
        assert!(directives.contains(&"script-src 'self'"), "{directives:?}");
        assert!(directives.contains(&"frame-ancestors 'none'"));
        assert!(directives.contains(&"default-src 'none'"));
        assert!(
            !directives
                .iter()
                .any(|d| d.starts_with("script-src") && d.contains("unsafe"))
        );
        let mut headers = HeaderMap::new();
        set(&mut headers, "/console/v1/me");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        set(&mut headers, "/");
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
    }
}
