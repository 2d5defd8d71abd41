//! ARM's calls around the containers, as `az` and Terraform make them: resource groups, the tenant,
//! a subscription, the providers, and the generic-resource route with its empty segment.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, OTHER_SUB, SUB, Shared, group_body, group_path, running};

fn rg_path(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourcegroups/{rg}?api-version=2024-11-01")
}

async fn usages(api: &Api) -> Value {
    let (status, body) = api
        .call(
            Method::GET,
            &format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/locations/local/usages?api-version=2023-05-01"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn resource_groups_are_created_read_listed_and_deleted_with_their_container_groups() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;

    // `az group create -n Scripts -l Local` (ARM compares locations without case or spaces).
    let (status, created) = api
        .call(
            Method::PUT,
            &rg_path(SUB, "Scripts"),
            Some(json!({"location": "Local"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created,
        json!({
            "id": format!("/subscriptions/{SUB}/resourceGroups/Scripts"),
            "name": "Scripts",
            "type": "Microsoft.Resources/resourceGroups",
            "location": "local",
            "properties": {"provisioningState": "Succeeded"}
        })
    );
    // Again, with tags: 200, the name as first written, the tags replaced.
    let (status, updated) = api
        .call(
            Method::PUT,
            &rg_path(SUB, "SCRIPTS"),
            Some(json!({"location": "local", "tags": {"team": "ops"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Scripts");
    assert_eq!(updated["tags"], json!({"team": "ops"}));
    let (status, got) = api.call(Method::GET, &rg_path(SUB, "scripts"), None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got, updated);
    let (status, _, body) = api.raw(Method::HEAD, &rg_path(SUB, "scripts"), None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, _, _) = api.raw(Method::HEAD, &rg_path(SUB, "nothere"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, missing) = api.call(Method::GET, &rg_path(SUB, "nothere"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["error"]["code"], "ResourceGroupNotFound");

    // Two container groups in it, running, holding the node's capacity.
    for name in ["one", "two"] {
        let (status, _, body) = api.put_group(SUB, "scripts", name, &group_body()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for name in ["one", "two"] {
        api.wait_group(SUB, "Scripts", name, 20, running).await;
    }
    let (status, resources) = api
        .call(
            Method::GET,
            &format!(
                "/subscriptions/{SUB}/resourceGroups/scripts/resources?api-version=2024-11-01"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resources}");
    let names: Vec<&str> = resources["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["one", "two"], "{resources}");
    assert_eq!(cluster.node_info("node-a").await["allocated"]["cpu"], 2.0);

    // `az group delete`: 202 with a Location that answers 200; then everything in it is gone.
    let (status, headers, body) = api
        .raw(Method::DELETE, &rg_path(SUB, "scripts"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(headers.contains_key("retry-after"));
    let location = headers["location"].to_str().expect("ascii").to_owned();
    assert!(
        location.starts_with(&format!(
            "{}/subscriptions/{SUB}/operationresults/",
            cluster.base
        )),
        "{location}"
    );
    let (status, body) = api.call(Method::GET, &location, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.call(Method::GET, &rg_path(SUB, "Scripts"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for name in ["one", "two"] {
        let (status, _) = api.get_group(SUB, "scripts", name).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
    }
    // As a container-group DELETE does: capacity released, the groups no longer counted.
    assert_eq!(cluster.node_info("node-a").await["allocated"]["cpu"], 0.0);
    let usage = usages(&api).await;
    assert_eq!(usage["value"][0]["currentValue"], 0, "{usage}");
    let (status, list) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups?api-version=2024-11-01"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["value"], json!([]));
    // Deleting it again: ARM's 404.
    let (status, again) = api
        .call(Method::DELETE, &rg_path(SUB, "scripts"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{again}");
    assert_eq!(again["error"]["code"], "ResourceGroupNotFound");
}

#[tokio::test]
async fn a_container_group_put_creates_its_resource_group_with_its_location() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, body) = api.put_group(SUB, "Implicit", "web", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, list) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups?api-version=2024-11-01"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["value"],
        json!([{
            "id": format!("/subscriptions/{SUB}/resourceGroups/Implicit"),
            "name": "Implicit",
            "type": "Microsoft.Resources/resourceGroups",
            "location": "local",
            "properties": {"provisioningState": "Succeeded"}
        }])
    );
    // `az container create` without `-l` reads it: the group's location.
    let (status, rg) = api.call(Method::GET, &rg_path(SUB, "implicit"), None).await;
    assert_eq!(status, StatusCode::OK, "{rg}");
    assert_eq!(rg["location"], "local");
    // A second container group into it (in another case) changes nothing.
    let (status, _, body) = api.put_group(SUB, "IMPLICIT", "api", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, list) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups?api-version=2024-11-01"),
            None,
        )
        .await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["value"][0]["name"], "Implicit");
}

#[tokio::test]
async fn resource_group_puts_are_checked() {
    let api = Shared::tenant_api();
    let cases = [
        (json!({}), StatusCode::BAD_REQUEST, "LocationRequired"),
        (
            json!({"location": "westeurope"}),
            StatusCode::BAD_REQUEST,
            "LocationNotAvailableForResourceGroup",
        ),
        (
            json!({"location": "local", "tags": {"a": 1}}),
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = api
            .call(Method::PUT, &rg_path(SUB, "checked"), Some(body.clone()))
            .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api
        .call(
            Method::PUT,
            &rg_path(SUB, "ends."),
            Some(json!({"location": "local"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "InvalidResourceGroupName");
    let long = "a".repeat(91);
    let (status, answer) = api.call(Method::GET, &rg_path(SUB, &long), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "InvalidResourceGroupName");
    // Microsoft.Resources api-versions: any of ARM's form; one is required.
    let base = format!("/subscriptions/{SUB}/resourcegroups");
    for (query, status, code) in [
        (
            "",
            StatusCode::BAD_REQUEST,
            Some("MissingApiVersionParameter"),
        ),
        (
            "?api-version=latest",
            StatusCode::BAD_REQUEST,
            Some("InvalidApiVersionParameter"),
        ),
        ("?api-version=2021-04-01", StatusCode::OK, None),
        ("?api-version=2025-03-01-preview", StatusCode::OK, None),
    ] {
        let (got, answer) = api.call(Method::GET, &format!("{base}{query}"), None).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, code),
            "{query}: {answer}"
        );
    }
}

#[tokio::test]
async fn another_tenants_subscription_is_refused() {
    let cluster = Cluster::start().await;
    let owner = cluster.tenant(&[SUB]).await;
    let stranger = cluster.tenant(&[OTHER_SUB]).await;
    let (status, body) = owner
        .call(
            Method::PUT,
            &rg_path(SUB, "private"),
            Some(json!({"location": "local"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = "api-version=2024-11-01";
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, rg_path(SUB, "private"), None),
        (
            Method::PUT,
            rg_path(SUB, "private"),
            Some(json!({"location": "local", "tags": {"x": "y"}})),
        ),
        (
            Method::PATCH,
            rg_path(SUB, "private"),
            Some(json!({"tags": {"x": "y"}})),
        ),
        (Method::DELETE, rg_path(SUB, "private"), None),
        (
            Method::GET,
            format!("/subscriptions/{SUB}/resourcegroups?{v}"),
            None,
        ),
        (
            Method::GET,
            format!("/subscriptions/{SUB}/resourcegroups/private/resources?{v}"),
            None,
        ),
        (Method::GET, format!("/subscriptions/{SUB}?{v}"), None),
        (
            Method::GET,
            format!("/subscriptions/{SUB}/providers?{v}"),
            None,
        ),
        (
            Method::GET,
            format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance?{v}"),
            None,
        ),
        (
            Method::POST,
            format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/register?{v}"),
            None,
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = stranger.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(
            answer["error"]["code"], "SubscriptionNotFound",
            "{method} {path}"
        );
    }
    let (status, _, _) = stranger
        .raw(Method::HEAD, &rg_path(SUB, "private"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A subscription id that is not a GUID is 400 for everyone.
    let (status, answer) = stranger
        .call(Method::GET, &rg_path("not-a-guid", "private"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "InvalidSubscriptionId");
    // Nothing the stranger did touched it; its own subscription has no resource groups.
    let (status, still) = owner
        .call(Method::GET, &rg_path(SUB, "private"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{still}");
    assert!(still.get("tags").is_none(), "{still}");
    let (_, list) = stranger
        .call(
            Method::GET,
            &format!("/subscriptions/{OTHER_SUB}/resourcegroups?{v}"),
            None,
        )
        .await;
    assert_eq!(list["value"], json!([]));
}

#[tokio::test]
async fn the_tenant_and_the_subscriptions_have_arms_shape() {
    let api = Shared::tenant_api();
    let (status, tenants) = api
        .call(Method::GET, "/tenants?api-version=2022-12-01", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{tenants}");
    let tenants = tenants["value"].as_array().expect("value").clone();
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    let tenant = tenants[0]["tenantId"]
        .as_str()
        .expect("tenantId")
        .to_owned();
    let guid = tenant.len() == 36
        && tenant.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    assert!(guid, "{tenant}");
    assert_eq!(tenants[0]["id"], format!("/tenants/{tenant}"));

    let (status, sub) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}?api-version=2022-12-01"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    assert_eq!(sub["id"], format!("/subscriptions/{SUB}"));
    assert_eq!(sub["subscriptionId"], SUB);
    assert_eq!(sub["tenantId"], tenant.as_str());
    assert_eq!(sub["displayName"], SUB);
    assert_eq!(sub["state"], "Enabled");
    let (status, list) = api
        .call(Method::GET, "/subscriptions?api-version=2022-12-01", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["value"], json!([sub]));
}

#[tokio::test]
async fn the_container_instance_provider_is_listed_and_registered() {
    let api = Shared::tenant_api();
    let v = "api-version=2021-04-01";
    let (status, list) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/providers?{v}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let providers = list["value"].as_array().expect("value");
    assert_eq!(providers.len(), 1, "{list}");
    let provider = &providers[0];
    assert_eq!(provider["namespace"], "Microsoft.ContainerInstance");
    assert_eq!(provider["registrationState"], "Registered");
    let groups = provider["resourceTypes"]
        .as_array()
        .expect("resourceTypes")
        .iter()
        .find(|t| t["resourceType"] == "containerGroups")
        .expect("containerGroups");
    assert_eq!(groups["locations"], json!(["local"]));
    let versions: Vec<&str> = groups["apiVersions"]
        .as_array()
        .expect("apiVersions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut served: Vec<&str> = berth_proto::arm::API_VERSIONS.to_vec();
    served.reverse();
    assert_eq!(versions, served);

    let (status, one) = api
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/providers/microsoft.containerinstance?{v}"),
            None,
        )
        .await;
    assert_eq!((status, &one), (StatusCode::OK, provider));
    let (status, registered) = api
        .call(
            Method::POST,
            &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/register?{v}"),
            None,
        )
        .await;
    assert_eq!((status, &registered), (StatusCode::OK, provider));
    let (status, other) = api
        .call(
            Method::POST,
            &format!("/subscriptions/{SUB}/providers/Microsoft.Compute/register?{v}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{other}");
    assert_eq!(other["error"]["code"], "InvalidResourceNamespace");
}

#[tokio::test]
async fn the_generic_resource_route_with_its_empty_segment_creates_and_gets() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    // What `az container create --file` sends: the YAML's own apiVersion, an empty parent path.
    let generic = format!(
        "/subscriptions/{SUB}/resourcegroups/rg1/providers/Microsoft.ContainerInstance//containerGroups/fromfile?api-version=2021-10-01"
    );
    let (status, headers, created) = api
        .raw(
            Method::PUT,
            &generic,
            Some(serde_json::to_vec(&group_body()).expect("json")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(headers.contains_key("azure-asyncoperation"));
    assert_eq!(
        created["id"],
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/fromfile"
        )
    );
    // `az container export`: GET on the same route.
    let (status, got) = api.call(Method::GET, &generic, None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["name"], "fromfile");
    assert_eq!(got["properties"]["containers"][0]["name"], "web");
    // From an endpoint with a trailing slash: `//subscriptions/…`.
    let doubled = format!("/{}", group_path(SUB, "rg1", "fromfile"));
    let (status, got) = api.call(Method::GET, &doubled, None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["name"], "fromfile");
    let (status, rg) = api
        .call(
            Method::GET,
            &format!("//subscriptions/{SUB}/resourcegroups/rg1/?api-version=2024-11-01"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rg}");
    assert_eq!(rg["name"], "rg1");
}
