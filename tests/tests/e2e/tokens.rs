//! API tokens over real HTTPS: listed without their secrets, revoked (the very next request is 401,
//! and within a second on another replica of the same store), expiring, and operator-only.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, SUB};

const GROUPS: &str = "/subscriptions/00000000-0000-0000-0000-00000000000a/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01";

/// Creates a token with `body`; returns the answer.
async fn create(cluster: &Cluster, body: Value) -> Value {
    let (status, answer) = cluster
        .operator_api()
        .call(Method::POST, "/admin/v1/tokens", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

async fn list(api: &Api) -> (StatusCode, Value) {
    api.call(Method::GET, "/admin/v1/tokens", None).await
}

async fn revoke(api: &Api, id: &str) -> (StatusCode, Value) {
    api.call(Method::DELETE, &format!("/admin/v1/tokens/{id}"), None)
        .await
}

/// The entry of the token list with `id`.
async fn listed(cluster: &Cluster, id: &str) -> Value {
    let (status, body) = list(&cluster.operator_api()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("token {id} is not listed: {body}"))
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_the_very_next_request() {
    let cluster = Cluster::start().await;
    let created = create(&cluster, json!({"subscriptions": [SUB]})).await;
    let token = created["token"].as_str().expect("token");
    let id = created["id"].as_str().expect("id");
    assert!(
        token.starts_with(&format!("berth_{id}_")),
        "{token} vs {id}"
    );
    let tenant = cluster.api(token);
    // Used (and so cached) right before it is revoked.
    for _ in 0..3 {
        let (status, body) = tenant.call(Method::GET, GROUPS, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, revoked) = revoke(&cluster.operator_api(), id).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["id"], id);
    assert!(revoked["revokedAt"].is_string(), "{revoked}");
    let (status, body) = tenant.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["error"]["code"], "InvalidAuthenticationToken",
        "{body}"
    );

    // Revoking again changes nothing; an unknown id is 404 in ACI's shape.
    let (status, again) = revoke(&cluster.operator_api(), id).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["revokedAt"], revoked["revokedAt"]);
    let (status, body) = revoke(&cluster.operator_api(), "nosuchtoken1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert_eq!(
        listed(&cluster, id).await["revokedAt"],
        revoked["revokedAt"]
    );
}

#[tokio::test]
async fn a_revocation_reaches_another_replica_within_a_second() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica().await;
    let created = create(&cluster, json!({"subscriptions": [SUB]})).await;
    let token = created["token"].as_str().expect("token");
    let id = created["id"].as_str().expect("id");
    let on_replica = replica.api(token);
    let (status, body) = on_replica.call(Method::GET, GROUPS, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the replica knows the token: {body}"
    );

    let (status, body) = revoke(&cluster.operator_api(), id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revoked = Instant::now();
    loop {
        let (status, body) = on_replica.call(Method::GET, GROUPS, None).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                body["error"]["code"], "InvalidAuthenticationToken",
                "{body}"
            );
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            revoked.elapsed() < Duration::from_millis(1500),
            "the replica still takes the revoked token after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tokens_expire() {
    let cluster = Cluster::start().await;
    let before = time::OffsetDateTime::now_utc();
    let created = create(
        &cluster,
        json!({"subscriptions": [SUB], "expiresInSeconds": 2}),
    )
    .await;
    let expires = time::OffsetDateTime::parse(
        created["expiresAt"].as_str().expect("expiresAt"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let lifetime = expires - before;
    assert!(
        lifetime > time::Duration::milliseconds(1500) && lifetime < time::Duration::seconds(4),
        "{created}"
    );
    let tenant = cluster.api(created["token"].as_str().expect("token"));
    let (status, body) = tenant.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let (status, body) = tenant.call(Method::GET, GROUPS, None).await;
        if status == StatusCode::UNAUTHORIZED {
            break body;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        time::OffsetDateTime::now_utc() >= expires,
        "refused before it expired"
    );
    assert_eq!(
        refused["error"]["code"], "ExpiredAuthenticationToken",
        "{refused}"
    );
    let id = created["id"].as_str().expect("id");
    assert_eq!(
        listed(&cluster, id).await["expiresAt"],
        created["expiresAt"]
    );

    // A lifetime out of range names the property.
    for bad in [json!(0), json!(-5), json!(10 * 366 * 86_400), json!(1.5)] {
        let (status, body) = cluster
            .operator_api()
            .call(
                Method::POST,
                "/admin/v1/tokens",
                Some(json!({"subscriptions": [SUB], "expiresInSeconds": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"]["target"]
                .as_str()
                .is_some_and(|t| t.contains("expiresInSeconds")),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn the_token_list_shows_ids_and_prefixes_never_secrets() {
    let cluster = Cluster::start().await;
    let tenant = create(&cluster, json!({"subscriptions": [SUB]})).await;
    let operator = create(
        &cluster,
        json!({"operator": true, "expiresInSeconds": 3600}),
    )
    .await;
    let used = cluster.api(tenant["token"].as_str().expect("token"));
    let (status, _) = used.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = list(&cluster.operator_api()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    let tokens = [
        tenant["token"].as_str().expect("token"),
        operator["token"].as_str().expect("token"),
        cluster.operator.as_str(),
    ];
    for token in tokens {
        let secret = token.rsplit('_').next().expect("secret");
        assert!(secret.len() >= 32, "{token}");
        // The prefix may show a few characters of the secret, never enough of it to matter.
        assert!(
            !text.contains(&secret[4..]),
            "the list holds a secret: {text}"
        );
    }
    assert!(!text.contains("hash"), "{text}");
    let entries = body["value"].as_array().expect("value");
    assert_eq!(entries.len(), 3, "the initial operator token too: {body}");
    for entry in entries {
        let id = entry["id"].as_str().expect("id");
        let prefix = entry["prefix"].as_str().expect("prefix");
        assert!(prefix.starts_with(&format!("berth_{id}_")), "{entry}");
        assert!(entry["createdAt"].is_string(), "{entry}");
    }

    let tenant_entry = listed(&cluster, tenant["id"].as_str().expect("id")).await;
    assert_eq!(tenant_entry["subscriptions"], json!([SUB]));
    assert_eq!(tenant_entry["operator"], false);
    assert_eq!(tenant_entry["expiresAt"], Value::Null);
    assert_eq!(tenant_entry["revokedAt"], Value::Null);
    assert!(
        tenant_entry["lastUsedAt"].is_string(),
        "used just now: {tenant_entry}"
    );
    assert!(
        tenant["token"]
            .as_str()
            .expect("token")
            .starts_with(tenant_entry["prefix"].as_str().expect("prefix")),
        "the prefix is the token's"
    );
    let operator_entry = listed(&cluster, operator["id"].as_str().expect("id")).await;
    assert_eq!(operator_entry["operator"], true);
    assert_eq!(operator_entry["expiresAt"], operator["expiresAt"]);
    assert_eq!(operator_entry["lastUsedAt"], Value::Null, "never used");
}

#[tokio::test]
async fn only_operators_list_or_revoke_and_the_last_operator_token_stays() {
    let cluster = Cluster::start().await;
    let created = create(&cluster, json!({"subscriptions": [SUB]})).await;
    let tenant = cluster.api(created["token"].as_str().expect("token"));
    let id = created["id"].as_str().expect("id");
    let (status, body) = list(&tenant).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    let (status, body) = revoke(&tenant, id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = tenant.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK, "a refused revoke revokes nothing");

    // Revoking the only operator token would lock every operator out.
    let initial = listed_operator_ids(&cluster).await;
    assert_eq!(initial.len(), 1);
    let (status, body) = revoke(&cluster.operator_api(), &initial[0]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = list(&cluster.operator_api()).await;
    assert_eq!(status, StatusCode::OK);

    // With a second one it can go; the revoked operator token is then refused everywhere.
    let second = create(&cluster, json!({"operator": true})).await;
    let second = cluster.api(second["token"].as_str().expect("token"));
    let (status, body) = revoke(&second, &initial[0]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = list(&cluster.operator_api()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = list(&second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn listed_operator_ids(cluster: &Cluster) -> Vec<String> {
    let (_, body) = list(&cluster.operator_api()).await;
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["operator"] == true && t["revokedAt"].is_null())
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect()
}
