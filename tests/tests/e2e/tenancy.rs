//! A tenant never sees another tenant's groups: every route answers 404, LIST never includes them.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Cluster, OTHER_SUB, SUB, group_body, group_path, running};

#[tokio::test]
async fn other_tenants_get_404_on_every_route() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let owner = cluster.tenant(&[SUB]).await;
    let stranger = cluster.tenant(&[OTHER_SUB]).await;
    let (status, headers, _) = owner.put_group(SUB, "rg1", "private", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    let op_url = headers["azure-asyncoperation"]
        .to_str()
        .expect("ascii")
        .to_owned();
    owner.wait_group(SUB, "rg1", "private", 20, running).await;

    let base = group_path(SUB, "rg1", "private");
    let verb = |v: &str| base.replace("?api-version", &format!("/{v}?api-version"));
    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::PUT, base.clone(), Some(group_body())),
        (
            Method::PATCH,
            base.clone(),
            Some(json!({"tags": {"a": "b"}})),
        ),
        (Method::DELETE, base.clone(), None),
        (Method::POST, verb("restart"), None),
        (Method::POST, verb("stop"), None),
        (Method::POST, verb("start"), None),
        (
            Method::GET,
            verb("outboundNetworkDependenciesEndpoints"),
            None,
        ),
        (Method::GET, verb("containers/web/logs"), None),
        (
            Method::POST,
            verb("containers/web/exec"),
            Some(json!({"command": "/bin/sh"})),
        ),
        (Method::POST, verb("containers/web/attach"), None),
        (
            Method::GET,
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
            ),
            None,
        ),
        (
            Method::GET,
            format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
            ),
            None,
        ),
        (Method::GET, op_url.clone(), None),
        (
            Method::GET,
            format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/locations/local/usages?api-version=2023-05-01"
            ),
            None,
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = stranger.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(
            answer["error"]["code"].is_string(),
            "{method} {path}: {answer}"
        );
    }
    // Nothing the stranger did touched the group.
    let (_, still) = owner.get_group(SUB, "rg1", "private").await;
    assert!(running(&still), "{still}");
    assert_eq!(still["tags"], json!({}));

    // The stranger's own list never includes it.
    let (status, list) = stranger.call(Method::GET, &format!("/subscriptions/{OTHER_SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"], json!([]));

    // Without a token, or with a made-up one: 401.
    let anonymous = cluster.api("berth_nope_nope");
    let (status, answer) = anonymous.call(Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    // A tenant token cannot administer.
    let (status, answer) = owner.call(Method::GET, "/admin/v1/nodes", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = owner
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"subscriptions": [OTHER_SUB]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
}
