//! The console's files, embedded at build time with rust-embed: `console/src` as they are (plain ES
//! modules, no bundler) and the three xterm.js files `npm ci` put under `console/node_modules`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
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
pub(super) async fn index() -> Response {
    file::<App>("index.html")
}

/// `GET /console/{path}`: a file of `console/src`.
pub(super) async fn app(Path(path): Path<String>) -> Response {
    file::<App>(&path)
}

/// `GET /console/vendor/{file}`: xterm.js, its stylesheet and the fit addon.
pub(super) async fn vendor(Path(file): Path<String>) -> Response {
    let path = match file.as_str() {
        "xterm.js" => "xterm/lib/xterm.js",
        "xterm.css" => "xterm/css/xterm.css",
        "addon-fit.js" => "addon-fit/lib/addon-fit.js",
        _ => return not_found(&file),
    };
    self::file::<Vendor>(path)
}

fn file<E: Embed>(path: &str) -> Response {
    let Some(content) = E::get(path) else {
        return not_found(path);
    };
    let mime = content.metadata.mimetype();
    let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    ([(header::CONTENT_TYPE, mime)], content.data.into_owned()).into_response()
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
