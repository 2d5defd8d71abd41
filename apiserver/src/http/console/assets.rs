//! The console's files, embedded at build time with rust-embed: `console/src` as they are (plain ES
//! modules, no bundler) and the three xterm.js files `npm ci` put under `console/node_modules`.
//! Each carries an `ETag` (its SHA-256), so a browser revalidating it (`Cache-Control: no-cache`,
//! see `headers`) gets a 304 rather than the file again. `HEAD` answers as `GET` without the body.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::error::ApiError;

#[derive(Embed)]
#[folder = "../console/src"]
struct App;

#[derive(Embed)]
#[folder = "../console/node_modules/@xterm"]
#[include = "xterm/lib/xterm.js"]
#[include = "xterm/css/xterm.css"]
#[include = "addon-fit/lib/addon-fit.js"]
struct Vendor;

/// `GET /`: the console's one page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    file::<App>("index.html", &headers)
}

/// `GET /console/{path}`: a file of `console/src`.
pub(super) async fn app(Path(path): Path<String>, headers: HeaderMap) -> Response {
    file::<App>(&path, &headers)
}

/// `GET /console/vendor/{file}`: xterm.js, its stylesheet and the fit addon.
pub(super) async fn vendor(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let path = match file.as_str() {
        "xterm.js" => "xterm/lib/xterm.js",
        "xterm.css" => "xterm/css/xterm.css",
        "addon-fit.js" => "addon-fit/lib/addon-fit.js",
        _ => return not_found(&file),
    };
    self::file::<Vendor>(path, &headers)
}

fn file<E: Embed>(path: &str, request: &HeaderMap) -> Response {
    let Some(content) = E::get(path) else {
        return not_found(path);
    };
    let etag = format!("\"{}\"", hex::encode(&content.metadata.sha256_hash()[..16]));
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if fresh(request, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mime = content.metadata.mimetype();
    let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::ETAG, etag.to_str().unwrap_or_default().to_owned()),
        ],
        content.data.into_owned(),
    )
        .into_response()
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn fresh(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(wanted) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    wanted
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn not_found(path: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested path does not exist.",
    )
    .with_target(path)
    .into_response()
}
