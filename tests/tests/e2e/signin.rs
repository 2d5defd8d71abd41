//! Cloud metadata and the sign-in authority over real HTTPS: what `az cloud register` and MSAL
//! fetch, the client-credentials grant with a Berth token, and its access tokens as bearer tokens
//! (the credential's rights; refused once it is revoked, and once they expire).

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Cluster, OTHER_SUB, SUB};

const GROUPS: &str = "/subscriptions/00000000-0000-0000-0000-00000000000a/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01";

/// A client that trusts the cluster CA and sends no credentials of its own.
fn client(cluster: &Cluster) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).expect("as a client expects"),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .expect("as a client expects")
}

async fn get(cluster: &Cluster, path: &str) -> (StatusCode, Value) {
    let resp = client(cluster)
        .get(format!("{}{path}", cluster.base))
        .send()
        .await
        .expect("as a client expects");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POSTs a form as MSAL does; returns status, headers and the JSON answer.
async fn post_form(
    url: &str,
    cluster: &Cluster,
    form: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = client(cluster)
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("as a client expects");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The form MSAL posts for `az login --service-principal -u <id> -p <token>`.
fn msal_form(cluster: &Cluster, id: &str, secret: &str) -> String {
    format!(
        "client_id={}&client_secret={}&grant_type=client_credentials&scope={}&client_info=1",
        encode(id),
        encode(secret),
        encode(&format!("{}//.default", cluster.base))
    )
}

/// A tenant credential for `subs`: (id, token).
async fn credential(cluster: &Cluster, subs: &[&str], expires_in: Option<i64>) -> (String, String) {
    let mut body = json!({ "subscriptions": subs });
    if let Some(seconds) = expires_in {
        body["expiresInSeconds"] = json!(seconds);
    }
    let (status, answer) = cluster
        .operator_api()
        .call(Method::POST, "/admin/v1/tokens", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["id"]
            .as_str()
            .expect("as a client expects")
            .to_owned(),
        answer["token"]
            .as_str()
            .expect("as a client expects")
            .to_owned(),
    )
}

/// Signs in at the token endpoint the ADFS discovery document names; returns the access token.
async fn sign_in(cluster: &Cluster, id: &str, secret: &str) -> String {
    let (status, discovery) = get(cluster, "/adfs/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::OK, "{discovery}");
    let endpoint = discovery["token_endpoint"]
        .as_str()
        .expect("as a client expects");
    let (status, headers, answer) =
        post_form(endpoint, cluster, &msal_form(cluster, id, secret)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(
        answer["expires_in"],
        cluster.config.access_token_lifetime_secs
    );
    answer["access_token"]
        .as_str()
        .expect("as a client expects")
        .to_owned()
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("as a client expects"),
    )
    .expect("as a client expects")
}

#[tokio::test]
async fn metadata_answers_both_shapes_unauthenticated_also_with_a_doubled_slash() {
    let cluster = Cluster::start().await;
    let base = &cluster.base;
    for path in [
        "/metadata/endpoints?api-version=2022-09-01",
        "//metadata/endpoints?api-version=2022-09-01",
    ] {
        let (status, doc) = get(&cluster, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {doc}");
        assert_eq!(doc["resourceManager"], format!("{base}/"), "{doc}");
        assert_eq!(doc["name"], "Berth");
        assert!(
            doc["portal"].is_string() && doc["suffixes"].is_object(),
            "{doc}"
        );
        let auth = &doc["authentication"];
        assert_eq!(auth["loginEndpoint"], format!("{base}/adfs"));
        assert_eq!(auth["audiences"], json!([format!("{base}/")]));
        assert_eq!(auth["tenant"], "adfs");
        assert_eq!(auth["identityProvider"], "ADFS");
    }
    for path in [
        "/metadata/endpoints?api-version=2015-01-01",
        "//metadata/endpoints?api-version=2015-01-01",
    ] {
        let (status, doc) = get(&cluster, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {doc}");
        assert_eq!(
            doc["authentication"]["loginEndpoint"],
            format!("{base}/adfs")
        );
        assert_eq!(doc["authentication"]["audiences"][0], format!("{base}/"));
        assert_eq!(doc["portalEndpoint"], format!("{base}/"));
        assert!(doc.get("resourceManager").is_none(), "{doc}");
    }
}

#[tokio::test]
async fn discovery_documents_name_the_token_endpoints() {
    let cluster = Cluster::start().await;
    let base = &cluster.base;
    let tenant = berth_apiserver::auth::tenant_id(cluster.state());
    let (status, doc) = get(&cluster, "/adfs/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["issuer"], format!("{base}/adfs"));
    assert_eq!(doc["token_endpoint"], format!("{base}/adfs/oauth2/token"));
    assert!(doc["authorization_endpoint"].is_string());
    let (status, keys) = get(&cluster, "/adfs/discovery/keys").await;
    assert_eq!((status, keys), (StatusCode::OK, json!({"keys": []})));

    let (status, doc) = get(
        &cluster,
        &format!("/adfs/{tenant}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/adfs/{tenant}/oauth2/v2.0/token")
    );

    let (status, doc) = get(
        &cluster,
        "/adfs/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0/.well-known/openid-configuration",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"], "invalid_tenant");
}

#[tokio::test]
async fn client_credentials_give_a_bearer_token_with_the_credentials_rights() {
    let cluster = Cluster::start().await;
    let tenant = berth_apiserver::auth::tenant_id(cluster.state());
    let (id, token) = credential(&cluster, &[SUB], None).await;
    let jwt = sign_in(&cluster, &id, &token).await;
    let claims = payload(&jwt);
    assert_eq!(claims["tid"], tenant);
    assert_eq!(claims["appid"], id);
    assert_eq!(claims["aud"], format!("{}/", cluster.base));
    assert_eq!(claims["iss"], format!("{}/adfs", cluster.base));
    assert!(claims["oid"].is_string());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);

    let api = cluster.api(&jwt);
    let (status, body) = api.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{OTHER_SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api.call(Method::GET, "/admin/v1/tokens", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The per-tenant endpoint, and the token's secret part alone as the client secret.
    let secret = token.rsplit('_').next().unwrap();
    let (status, _, answer) = post_form(
        &format!("{}/adfs/{tenant}/oauth2/v2.0/token", cluster.base),
        &cluster,
        &msal_form(&cluster, &id, secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, body) = cluster
        .api(answer["access_token"].as_str().unwrap())
        .call(Method::GET, GROUPS, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A token whose payload was changed is not ours.
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims = payload(&jwt);
    claims["appid"] = json!("operator");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let (status, body) = cluster.api(&forged).call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn wrong_clients_secrets_grants_and_resources_are_oauth_errors() {
    let cluster = Cluster::start().await;
    let (id, token) = credential(&cluster, &[SUB], None).await;
    let (other_id, _) = credential(&cluster, &[SUB], None).await;
    let endpoint = format!("{}/adfs/oauth2/token", cluster.base);
    let wrong_secret = format!("{}x", token);
    for (form, status, error) in [
        (
            msal_form(&cluster, &id, &wrong_secret),
            401,
            "invalid_client",
        ),
        (
            msal_form(&cluster, &other_id, &token),
            401,
            "invalid_client",
        ),
        (
            msal_form(&cluster, &id, "berth_nope_nope"),
            401,
            "invalid_client",
        ),
        (
            format!(
                "grant_type=password&username={id}&password={}",
                encode(&token)
            ),
            400,
            "unsupported_grant_type",
        ),
        (
            format!(
                "grant_type=client_credentials&client_id={id}&client_secret={}&scope={}",
                encode(&token),
                encode("https://management.azure.com//.default")
            ),
            400,
            "invalid_scope",
        ),
        (format!("client_id={id}"), 400, "invalid_request"),
    ] {
        let (got, headers, answer) = post_form(&endpoint, &cluster, &form).await;
        assert_eq!(
            (got.as_u16(), answer["error"].as_str()),
            (status, Some(error)),
            "{form}: {answer}"
        );
        assert!(answer["error_description"].is_string(), "{answer}");
        assert_eq!(headers["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn revoking_the_credential_refuses_its_access_tokens() {
    let cluster = Cluster::start().await;
    let (id, token) = credential(&cluster, &[SUB], None).await;
    let jwt = sign_in(&cluster, &id, &token).await;
    let api = cluster.api(&jwt);
    let (status, body) = api.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = cluster
        .operator_api()
        .call(Method::DELETE, &format!("/admin/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The very next request.
    let (status, body) = api.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["error"]["message"],
        "The access token has been revoked."
    );
    let (status, _, answer) = post_form(
        &format!("{}/adfs/oauth2/token", cluster.base),
        &cluster,
        &msal_form(&cluster, &id, &token),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );
}

#[tokio::test]
async fn access_tokens_expire() {
    let cluster = Cluster::start_with(|config| config.access_token_lifetime_secs = 1).await;
    let (id, token) = credential(&cluster, &[SUB], None).await;
    let jwt = sign_in(&cluster, &id, &token).await;
    let exp = payload(&jwt)["exp"].as_i64().unwrap();
    let api = cluster.api(&jwt);
    let (status, body) = api.call(Method::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = api.call(Method::GET, GROUPS, None).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                body["error"]["code"], "ExpiredAuthenticationToken",
                "{body}"
            );
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(now <= exp, "still accepted after exp {exp}");
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The credential itself still signs in.
    sign_in(&cluster, &id, &token).await;
}
