//! ACI's error shape on every answer a client can cause, over HTTP/1.1 and HTTP/2 where both apply:
//! oversized bodies, URIs and headers; malformed heads; media types; auth and routing errors;
//! malformed subscription ids. Each asserts the status, `{"error":{"code","message","target"}}`,
//! the code and the target.

mod api;
mod transport;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{SUB, Shared, group_path};
use crate::wire::{self, Proto};

pub(super) const RG: &str = "rg-errors";

/// Asserts ACI's error shape with `code` and `target`.
pub fn assert_error(status: u16, body: &Value, want: u16, code: &str, target: &str, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{what}: {body}");
    assert_eq!(error["target"], target, "{what}: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
}

pub(super) fn shared() -> std::sync::Arc<crate::harness::Shared> {
    crate::harness::SHARED.clone()
}

pub(super) fn url(path: &str) -> String {
    format!("{}{path}", shared().base)
}

/// Sends one request over `proto` with the tenant's token; the status and the body as JSON.
pub(super) async fn send(
    proto: Proto,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let s = shared();
    let mut req = wire::client(&s.ca_pem, proto)
        .request(method, url(path))
        .bearer_auth(&s.tenant);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.expect("an answer, not a reset");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("a whole body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        Value::String(format!("not JSON: {:?}", String::from_utf8_lossy(&bytes)))
    });
    (status, value)
}

pub(super) fn ca_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), shared().ca_pem.as_bytes()).expect("write CA");
    file
}

pub(super) fn group(name: &str) -> String {
    group_path(SUB, RG, name)
}

pub(super) async fn assert_absent(name: &str) {
    let (status, body) = Shared::tenant_api().get_group(SUB, RG, name).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{name} was written: {body}");
}
