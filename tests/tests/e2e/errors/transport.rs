//! What the transport and the body reader answer: oversized bodies (413 over both protocols, at once
//! for `Expect: 100-continue`), URIs (414) and headers (431), bytes that are not UTF-8 in a path,
//! malformed HTTP/1.1 heads, and a bad head after pipelined good ones.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{RG, assert_absent, assert_error, ca_file, group, send, shared, url};
use crate::harness::{SUB, group_body, group_path};
use crate::wire::{self, BOTH, RawConn};

#[tokio::test]
async fn oversized_bodies_are_413_over_both_protocols() {
    for proto in BOTH {
        for size in [2_000_000, 10_000_000] {
            let what = format!("{proto:?} {size} bytes with Content-Length");
            let (status, body) = send(
                proto,
                Method::PUT,
                &group("big"),
                &[("content-type", "application/json")],
                Some(vec![b' '; size]),
            )
            .await;
            assert_error(status, &body, 413, "RequestEntityTooLarge", "body", &what);

            // Without a declared length (chunked over HTTP/1.1, bare DATA over HTTP/2): read up to
            // the limit, then refused.
            let what = format!("{proto:?} {size} bytes streamed");
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..size / 100_000)
                .map(|_| Ok(vec![b' '; 100_000]))
                .collect();
            let s = shared();
            let resp = wire::client(&s.ca_pem, proto)
                .put(url(&group("big")))
                .bearer_auth(&s.tenant)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: an answer, not a reset: {e:?}"));
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("JSON");
            assert_error(status, &body, 413, "RequestEntityTooLarge", "body", &what);
        }
    }
    assert_absent("big").await;
}

#[tokio::test]
async fn curl_uploads_of_2_and_10_mb_are_answered_413() {
    let ca = ca_file();
    let dir = tempfile::tempdir().expect("temp dir");
    for size in [2_000_000, 10_000_000] {
        let file = dir.path().join(format!("body-{size}"));
        std::fs::write(&file, vec![b'a'; size]).expect("write body");
        for proto in ["--http2", "--http1.1"] {
            let auth = format!("Authorization: Bearer {}", shared().tenant);
            let data = format!("@{}", file.display());
            let (status, body) = wire::curl(
                ca.path(),
                &[
                    proto,
                    "-X",
                    "PUT",
                    "-H",
                    &auth,
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &data,
                    &url(&group("curl-big")),
                ],
            );
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_error(
                status,
                &body,
                413,
                "RequestEntityTooLarge",
                "body",
                &format!("curl {proto} {size} bytes"),
            );
        }
    }
    assert_absent("curl-big").await;
}

#[tokio::test]
async fn expect_100_continue_with_an_oversized_length_is_answered_at_once() {
    let s = shared();
    let mut conn = RawConn::open(&s.base, &s.ca_pem).await;
    let path = group("expect-big");
    conn.send(
        format!(
            "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n",
            s.tenant
        )
        .as_bytes(),
    )
    .await;
    let started = std::time::Instant::now();
    let resp = conn.response().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert_error(
        resp.status,
        &resp.json(),
        413,
        "RequestEntityTooLarge",
        "body",
        "Expect: 100-continue with 10 MB",
    );
    assert_absent("expect-big").await;
}

#[tokio::test]
async fn invalid_utf8_in_a_path_segment_answers_for_that_segment() {
    let cases = [
        (
            format!(
                "/subscriptions/%FF%FE/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups/web?api-version=2023-05-01"
            ),
            "InvalidSubscriptionId",
            "subscriptionId",
        ),
        (
            group_path(SUB, "rg%C3%28", "web"),
            "InvalidResourceGroupName",
            "resourceGroupName",
        ),
        (group(r"w%FFb"), "InvalidResourceName", "containerGroupName"),
    ];
    for proto in BOTH {
        for (path, code, target) in &cases {
            let (status, body) = send(
                proto,
                Method::PUT,
                path,
                &[("content-type", "application/json")],
                Some(serde_json::to_vec(&group_body()).expect("json")),
            )
            .await;
            assert_error(
                status,
                &body,
                400,
                code,
                target,
                &format!("{proto:?} {path}"),
            );
        }
    }
    // Bytes that are not even ASCII, unescaped in the request line.
    let s = shared();
    let mut request =
        b"GET /subscriptions/\xff\xfe/providers HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    request.extend_from_slice(format!("Authorization: Bearer {}\r\n\r\n", s.tenant).as_bytes());
    let resp = wire::raw(&s.base, &s.ca_pem, &request).await;
    assert_error(
        resp.status,
        &resp.json(),
        400,
        "BadRequest",
        "uri",
        "raw 0xFF in the path",
    );
}

#[tokio::test]
async fn long_uris_are_414() {
    let long = format!(
        "/subscriptions/{SUB}/{}?api-version=2023-05-01",
        "a".repeat(10_000)
    );
    for proto in BOTH {
        let (status, body) = send(proto, Method::GET, &long, &[], None).await;
        assert_error(
            status,
            &body,
            414,
            "RequestUriTooLong",
            "uri",
            &format!("{proto:?} 10 KB"),
        );
    }
    // Past what HTTP/1.1's parser holds for a head at all.
    let s = shared();
    let request = format!(
        "GET /subscriptions/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(100_000)
    );
    let resp = wire::raw(&s.base, &s.ca_pem, request.as_bytes()).await;
    assert_error(
        resp.status,
        &resp.json(),
        414,
        "RequestUriTooLong",
        "uri",
        "raw 100 KB URI",
    );
}

#[tokio::test]
async fn large_headers_are_431() {
    let big = "x".repeat(40_000);
    for proto in BOTH {
        let (status, body) = send(
            proto,
            Method::GET,
            "/subscriptions?api-version=2022-12-01",
            &[("x-big", &big)],
            None,
        )
        .await;
        assert_error(
            status,
            &body,
            431,
            "RequestHeaderFieldsTooLarge",
            "headers",
            &format!("{proto:?} 40 KB header"),
        );
    }
    let s = shared();
    let huge = format!(
        "GET /subscriptions?api-version=2022-12-01 HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "x".repeat(200_000)
    );
    let resp = wire::raw(&s.base, &s.ca_pem, huge.as_bytes()).await;
    assert_error(
        resp.status,
        &resp.json(),
        431,
        "RequestHeaderFieldsTooLarge",
        "headers",
        "raw 200 KB header",
    );
    let mut many =
        "GET /subscriptions?api-version=2022-12-01 HTTP/1.1\r\nHost: localhost\r\n".to_owned();
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = wire::raw(&s.base, &s.ca_pem, many.as_bytes()).await;
    assert_error(
        resp.status,
        &resp.json(),
        431,
        "RequestHeaderFieldsTooLarge",
        "headers",
        "raw 150 headers",
    );
}

#[tokio::test]
async fn malformed_framing_headers_are_400() {
    let s = shared();
    let path = group("framing");
    for (headers, code, target) in [
        (
            "Content-Length: abc\r\n",
            "InvalidContentLength",
            "Content-Length",
        ),
        (
            "Content-Length: -1\r\n",
            "InvalidContentLength",
            "Content-Length",
        ),
        (
            "Content-Length: 1, 2\r\n",
            "InvalidContentLength",
            "Content-Length",
        ),
        (
            "Content-Length: 2\r\nContent-Length: 3\r\n",
            "InvalidContentLength",
            "Content-Length",
        ),
        (
            "Transfer-Encoding: gzip\r\n",
            "InvalidTransferEncoding",
            "Transfer-Encoding",
        ),
    ] {
        let request = format!(
            "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\n{headers}\r\n{{}}",
            s.tenant
        );
        let resp = wire::raw(&s.base, &s.ca_pem, request.as_bytes()).await;
        assert_error(resp.status, &resp.json(), 400, code, target, headers);
        assert!(
            resp.header("x-ms-request-id").is_some(),
            "{headers}: {:?}",
            resp.headers
        );
    }
    let resp = wire::raw(&s.base, &s.ca_pem, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert_error(
        resp.status,
        &resp.json(),
        400,
        "BadRequest",
        "headers",
        "header without colon",
    );
    let resp = wire::raw(&s.base, &s.ca_pem, b"GET / HTTP/9.9\r\n\r\n").await;
    assert_error(
        resp.status,
        &resp.json(),
        400,
        "BadRequest",
        "uri",
        "unknown version",
    );
    assert_absent("framing").await;
}

#[tokio::test]
async fn a_bad_head_after_good_requests_is_answered_in_order() {
    let s = shared();
    let mut conn = RawConn::open(&s.base, &s.ca_pem).await;
    let good = format!(
        "GET /subscriptions?api-version=2022-12-01 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        s.tenant
    );
    // Pipelined: a request with a body the server reads, another good one, then a malformed head.
    let with_body = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}{good}\
         PUT / HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n",
        group("pipelined"),
        s.tenant
    );
    conn.send(good.as_bytes()).await;
    conn.send(with_body.as_bytes()).await;
    let first = conn.response().await;
    assert_eq!(first.status, 200, "{:?}", first.json());
    let second = conn.response().await;
    assert_error(
        second.status,
        &second.json(),
        400,
        "MissingRequiredProperty",
        "location",
        "pipelined PUT",
    );
    let third = conn.response().await;
    assert_eq!(third.status, 200, "{:?}", third.json());
    let fourth = conn.response().await;
    assert_error(
        fourth.status,
        &fourth.json(),
        400,
        "InvalidContentLength",
        "Content-Length",
        "pipelined bad head",
    );
    assert_eq!(fourth.header("connection"), Some("close"));
}

#[tokio::test]
async fn an_answer_to_an_unread_body_closes_the_connection() {
    let s = shared();
    let path = group("unread");
    // Refused before the body is read: the answer says the connection closes, and the client still
    // reads it whole while it sends the body nobody wants.
    let mut conn = RawConn::open(&s.base, &s.ca_pem).await;
    conn.send(
        format!(
            "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain\r\nContent-Length: 300000\r\n\r\n",
            s.tenant
        )
        .as_bytes(),
    )
    .await;
    conn.send_lossy(&vec![b'x'; 100_000]).await;
    let resp = conn.response().await;
    assert_error(
        resp.status,
        &resp.json(),
        415,
        "UnsupportedMediaType",
        "Content-Type",
        "text/plain",
    );
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "{:?}",
        resp.headers
    );
    conn.send_lossy(&vec![b'x'; 200_000]).await;

    // A body that was read: the connection stays open for the next request.
    let mut conn = RawConn::open(&s.base, &s.ca_pem).await;
    let put = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        s.tenant
    );
    for _ in 0..2 {
        conn.send(put.as_bytes()).await;
        let resp = conn.response().await;
        assert_eq!(resp.status, 400, "{:?}", resp.json());
        assert_eq!(resp.header("connection"), None, "{:?}", resp.headers);
    }
    assert_absent("unread").await;
}
