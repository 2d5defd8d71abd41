//! What the API answers before any handler's own rules: auth and routing errors with their targets,
//! media types, bare POSTs, malformed subscription ids.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{RG, assert_absent, assert_error, group, send, shared, url};
use crate::harness::{Cluster, OTHER_SUB, SUB, Shared, group_body, group_path};
use crate::wire::{self, BOTH};

#[tokio::test]
async fn auth_and_routing_errors_name_their_target() {
    let s = shared();
    for proto in BOTH {
        let client = wire::client(&s.ca_pem, proto);
        let get = |path: &str, token: Option<&str>| {
            let mut req = client.get(url(path));
            if let Some(token) = token {
                req = req.header("authorization", token);
            }
            req.send()
        };
        let p = format!("{proto:?}");
        let resp = get("/subscriptions?api-version=2022-12-01", None)
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_error(
            status,
            &body,
            401,
            "AuthenticationFailed",
            "Authorization",
            &p,
        );
        let resp = get("/subscriptions?api-version=2022-12-01", Some("Basic abc"))
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_error(
            status,
            &body,
            401,
            "AuthenticationFailedInvalidHeader",
            "Authorization",
            &p,
        );
        let resp = get(
            "/subscriptions?api-version=2022-12-01",
            Some("Bearer berth_nope_nope"),
        )
        .await
        .expect("answer");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_error(
            status,
            &body,
            401,
            "InvalidAuthenticationToken",
            "Authorization",
            &p,
        );

        let (status, body) = send(proto, Method::GET, "/admin/v1/nodes", &[], None).await;
        assert_error(
            status,
            &body,
            403,
            "AuthorizationFailed",
            "GET /admin/v1/nodes",
            &p,
        );
        let (status, body) = send(
            proto,
            Method::POST,
            "/admin/v1/tokens",
            &[("content-type", "application/json")],
            Some(br#"{"subscriptions":[]}"#.to_vec()),
        )
        .await;
        assert_error(
            status,
            &body,
            403,
            "AuthorizationFailed",
            "POST /admin/v1/tokens",
            &p,
        );
        let (status, body) = send(proto, Method::GET, "/no/such/route?x=1", &[], None).await;
        assert_error(status, &body, 404, "NotFound", "/no/such/route", &p);
        let (status, body) = send(
            proto,
            Method::DELETE,
            "/subscriptions?api-version=2022-12-01",
            &[],
            None,
        )
        .await;
        assert_error(status, &body, 405, "MethodNotAllowed", "DELETE", &p);
    }
}

#[tokio::test]
async fn bodies_must_be_json() {
    let body = serde_json::to_vec(&group_body()).expect("json");
    for proto in BOTH {
        let p = format!("{proto:?}");
        for content_type in [
            Some("text/plain"),
            None,
            Some("application/xml"),
            Some("application/jsonx"),
        ] {
            let headers: Vec<(&str, &str)> = content_type
                .map(|c| ("content-type", c))
                .into_iter()
                .collect();
            let (status, answer) = send(
                proto,
                Method::PUT,
                &group("media"),
                &headers,
                Some(body.clone()),
            )
            .await;
            assert_error(
                status,
                &answer,
                415,
                "UnsupportedMediaType",
                "Content-Type",
                &format!("{p} {content_type:?}"),
            );
        }
        let (status, answer) = send(
            proto,
            Method::PUT,
            &group("media"),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            Some(body.clone()),
        )
        .await;
        assert_error(
            status,
            &answer,
            415,
            "UnsupportedMediaType",
            "Content-Encoding",
            &p,
        );
        // /admin takes JSON too.
        let resp = wire::client(&shared().ca_pem, proto)
            .post(url("/admin/v1/join-tokens"))
            .bearer_auth(&shared().operator)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.expect("json");
        assert_error(
            status,
            &answer,
            415,
            "UnsupportedMediaType",
            "Content-Type",
            &p,
        );
        // A charset parameter is fine: this one reaches validation (no node can hold it here).
        for content_type in [
            "application/json; charset=utf-8",
            "Application/JSON;charset=\"UTF-8\"",
        ] {
            let (status, answer) = send(
                proto,
                Method::PUT,
                &group("media"),
                &[("content-type", content_type)],
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, 409, "{p} {content_type}: {answer}");
            assert_eq!(answer["error"]["code"], "ServiceUnavailable", "{answer}");
        }
        let (status, answer) = send(
            proto,
            Method::PUT,
            &group("media"),
            &[("content-type", "application/json; charset=latin1")],
            Some(body.clone()),
        )
        .await;
        assert_error(
            status,
            &answer,
            415,
            "UnsupportedMediaType",
            "Content-Type",
            &p,
        );
    }
    assert_absent("media").await;
}

#[tokio::test]
async fn posts_without_a_body_need_no_content_type() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, body) = api.put_group(SUB, RG, "bare", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let base = group_path(SUB, RG, "bare");
    let verb = |v: &str| base.replace("?api-version", &format!("/{v}?api-version"));
    for proto in BOTH {
        let client = wire::client(&cluster.ca_pem, proto);
        for (v, want) in [("stop", 204), ("start", 202), ("restart", 204)] {
            // As the SDKs send it: no body, no Content-Type (and Content-Length: 0 over HTTP/1.1).
            let resp = client
                .post(format!("{}{}", cluster.base, verb(v)))
                .bearer_auth(api.token())
                .header("content-length", "0")
                .send()
                .await
                .expect("answer");
            assert_eq!(
                resp.status().as_u16(),
                want,
                "{proto:?} {v}: {:?}",
                resp.text().await
            );
        }
    }
}

#[tokio::test]
async fn malformed_subscription_ids_are_400_for_everyone() {
    let owner = Shared::tenant_api();
    let operator = Shared::operator_api();
    let bad = "not-a-guid";
    let group_in = |sub: &str| group_path(sub, RG, "web");
    let routes = |sub: &str| -> Vec<(Method, String, Option<Value>)> {
        vec![
            (Method::GET, group_in(sub), None),
            (Method::PUT, group_in(sub), Some(group_body())),
            (Method::PATCH, group_in(sub), Some(json!({"tags": {}}))),
            (Method::DELETE, group_in(sub), None),
            (
                Method::POST,
                group_in(sub).replace("?api", "/stop?api"),
                None,
            ),
            (
                Method::GET,
                group_in(sub).replace("?api", "/containers/web/logs?api"),
                None,
            ),
            (
                Method::GET,
                format!(
                    "/subscriptions/{sub}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
                ),
                None,
            ),
            (
                Method::GET,
                format!(
                    "/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
                ),
                None,
            ),
            (
                Method::GET,
                format!(
                    "/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/local/usages?api-version=2023-05-01"
                ),
                None,
            ),
            (
                Method::GET,
                format!(
                    "/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/local/operations/x?api-version=2023-05-01"
                ),
                None,
            ),
            (
                Method::GET,
                format!(
                    "/subscriptions/{sub}/providers/Microsoft.ContainerInstance/usage?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"
                ),
                None,
            ),
        ]
    };
    for api in [&owner, &operator] {
        for (method, path, body) in routes(bad) {
            let (status, answer) = api.call(method.clone(), &path, body).await;
            assert_error(
                status.as_u16(),
                &answer,
                400,
                "InvalidSubscriptionId",
                "subscriptionId",
                &format!("{method} {path}"),
            );
        }
    }
    // A well-formed subscription the caller may not see still answers as one that does not exist.
    for (method, path, body) in routes(OTHER_SUB) {
        let (status, answer) = owner.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
}
