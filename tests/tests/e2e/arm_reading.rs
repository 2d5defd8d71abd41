//! Bodies read the way ARM reads them, over real HTTPS: every published api-version with its own
//! schema, current `az`'s defaults, and the lenient rules (names without case, numbers in strings,
//! scalars as text, unknown keys ignored with a `Warning`) next to the refusals that stay.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, SUB, Shared, group_body};

const BAD: StatusCode = StatusCode::BAD_REQUEST;

fn path(rg: &str, name: &str, version: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}?api-version={version}"
    )
}

async fn put(api: &Api, name: &str, version: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let body = serde_json::to_vec(body).expect("json");
    api.raw(Method::PUT, &path("rg-arm", name, version), Some(body))
        .await
}

async fn get(api: &Api, name: &str, version: &str) -> Value {
    let (status, body) = api
        .call(Method::GET, &path("rg-arm", name, version), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn warning(headers: &HeaderMap) -> String {
    headers
        .get("warning")
        .map(|w| w.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

fn small(mut body: Value) -> Value {
    body["properties"]["containers"][0]["properties"]["resources"] =
        json!({"requests": {"cpu": 0.1, "memoryInGB": 0.1}});
    body
}

async fn cluster() -> (Cluster, crate::harness::Node, Api) {
    let cluster = Cluster::start().await;
    let node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    (cluster, node, api)
}

#[tokio::test]
async fn every_api_version_creates_and_reads_its_own_schema() {
    let (_cluster, _node, api) = cluster().await;
    let has = berth_proto::arm::versions::has;
    use berth_proto::arm::versions::Feature;
    for (i, version) in berth_proto::arm::API_VERSIONS.iter().enumerate() {
        let name = format!("v{i}");
        let mut body = small(group_body());
        let container = &mut body["properties"]["containers"][0]["properties"];
        container["securityContext"] = json!({"capabilities": {"drop": ["NET_RAW"]}});
        container["configMap"] = json!({"keyValuePairs": {}});
        let (status, headers, created) = put(&api, &name, version, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{version}: {created}");
        let got = get(&api, &name, version).await;
        let props = &got["properties"]["containers"][0]["properties"];
        assert_eq!(got["properties"]["osType"], "Linux", "{version}: {got}");
        assert_eq!(
            props["resources"]["requests"]["cpu"],
            json!(0.1),
            "{version}"
        );
        assert_eq!(props["image"], "registry.local/busybox:1", "{version}");
        // A property is honoured and echoed where the version has it, ignored (and said so) where not.
        let warned = warning(&headers);
        let security = has(version, Feature::SecurityContext);
        assert_eq!(
            props.get("securityContext").is_some(),
            security,
            "{version}: {got}"
        );
        assert_eq!(
            warned.contains(".securityContext"),
            !security,
            "{version}: {warned}"
        );
        let profiles = has(version, Feature::Profiles);
        assert_eq!(
            warned.contains(".configMap"),
            !profiles,
            "{version}: {warned}"
        );
        assert!(props.get("configMap").is_none(), "{version}: {got}");
        // The operations route and the async-operation monitor take every version too.
        let (status, ops) = api
            .call(
                Method::GET,
                &format!("/providers/Microsoft.ContainerInstance/operations?api-version={version}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{version}: {ops}");
        let monitor = headers["azure-asyncoperation"].to_str().expect("ascii");
        let monitor = monitor.replace("api-version=2018-06-01", &format!("api-version={version}"));
        let (status, op) = api.call(Method::GET, &monitor, None).await;
        assert_eq!(status, StatusCode::OK, "{version}: {op}");
        // The containers/* routes too.
        let logs = path("rg-arm", &name, version)
            .replace("?api-version", "/containers/web/logs?api-version");
        let (status, answer) = api.call(Method::GET, &logs, None).await;
        assert_ne!(status, BAD, "{version}: {answer}");
    }
}

#[tokio::test]
async fn current_az_defaults_the_os_and_sizes_as_aci_does() {
    let (_cluster, _node, api) = cluster().await;
    // What `az container create -g rg -n web --image …` (2.67+) sends: no osType, no resources.
    let body = json!({
        "location": "local",
        "properties": {
            "containers": [{"name": "web", "properties": {
                "image": "registry.local/busybox:1",
                "ports": [{"port": 80, "protocol": "TCP"}],
                "environmentVariables": [],
                "configMap": {"keyValuePairs": {}}
            }}],
            "restartPolicy": "Always",
            "ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}
        }
    });
    let (status, headers, created) = put(&api, "web", "2024-05-01-preview", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(warning(&headers), "", "nothing ignored");
    let got = get(&api, "web", "2024-05-01-preview").await;
    assert_eq!(got["properties"]["osType"], "Linux", "{got}");
    let requests = &got["properties"]["containers"][0]["properties"]["resources"]["requests"];
    assert_eq!(requests["cpu"], json!(1.0), "{got}");
    assert_eq!(requests["memoryInGB"], json!(1.5), "{got}");
    // 2023-05-01's schema requires both.
    let (status, _, answer) = put(&api, "old", "2023-05-01", &body).await;
    assert_eq!(status, BAD, "{answer}");
    assert_eq!(answer["error"]["target"], "properties.osType", "{answer}");
}

#[tokio::test]
async fn property_names_match_without_regard_to_case() {
    let (_cluster, _node, api) = cluster().await;
    let body = json!({
        "Location": "local",
        "properties": {
            "OSType": "Linux",
            "containers": [{"name": "web", "properties": {
                "image": "registry.local/busybox:1",
                "resources": {"requests": {"cpu": 0.5, "memoryInGb": 0.5}},
                "volumemounts": [{"name": "cache", "mountpath": "/cache", "ReadOnly": false}]
            }}],
            "volumes": [{"name": "cache", "emptydir": {}}]
        }
    });
    let (status, headers, created) = put(&api, "web", "2023-05-01", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(warning(&headers), "");
    let got = get(&api, "web", "2023-05-01").await;
    let props = &got["properties"]["containers"][0]["properties"];
    assert_eq!(
        props["resources"]["requests"]["memoryInGB"],
        json!(0.5),
        "{got}"
    );
    assert_eq!(props["volumeMounts"][0]["mountPath"], "/cache", "{got}");
}

#[tokio::test]
async fn numbers_given_as_strings_are_numbers() {
    let (_cluster, _node, api) = cluster().await;
    let mut body = small(group_body());
    body["properties"]["containers"][0]["properties"]["ports"] = json!([{"port": "80"}]);
    body["properties"]["ipAddress"]["ports"] = json!([{"port": "80", "protocol": "TCP"}]);
    body["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"] =
        json!("0.5");
    let (status, _, created) = put(&api, "web", "2023-05-01", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let got = get(&api, "web", "2023-05-01").await;
    let props = &got["properties"]["containers"][0]["properties"];
    assert_eq!(props["ports"][0]["port"], json!(80), "{got}");
    assert_eq!(props["resources"]["requests"]["cpu"], json!(0.5), "{got}");
    assert_eq!(
        got["properties"]["ipAddress"]["ports"][0]["port"],
        json!(80),
        "{got}"
    );
}

#[tokio::test]
async fn scalars_given_where_strings_go_are_their_text() {
    let (_cluster, _node, api) = cluster().await;
    let mut body = small(group_body());
    body["properties"]["containers"][0]["properties"]["environmentVariables"] =
        json!([{"name": "PORT", "value": 5000}, {"name": "DEBUG", "value": true}]);
    body["tags"] = json!({"tier": 2});
    let (status, _, created) = put(&api, "web", "2023-05-01", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let got = get(&api, "web", "2023-05-01").await;
    let env = &got["properties"]["containers"][0]["properties"]["environmentVariables"];
    assert_eq!(
        env,
        &json!([{"name": "PORT", "value": "5000"}, {"name": "DEBUG", "value": "true"}])
    );
    assert_eq!(got["tags"], json!({"tier": "2"}), "{got}");
}

#[tokio::test]
async fn keys_outside_the_schema_are_ignored_with_a_warning() {
    let (_cluster, _node, api) = cluster().await;
    let mut body = small(group_body());
    body["api-version"] = json!("2019-12-01");
    body["properties"]["containers"][0]["properties"]["additional_properties"] = json!({});
    body["properties"]["containers"][0]["properties"]["imagePullPolicy"] = json!("Always");
    body["properties"]["initContainers"] = json!([{"name": "init", "properties": {
        "image": "registry.local/busybox:1", "resources": {"requests": {"cpu": 1}}}}]);
    let (status, headers, created) = put(&api, "web", "2023-05-01", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let warned = warning(&headers);
    assert!(warned.starts_with("299 - \""), "{warned}");
    for ignored in [
        "api-version",
        "properties.containers[0].properties.additional_properties",
        "properties.containers[0].properties.imagePullPolicy",
        "properties.initContainers[0].properties.resources",
    ] {
        assert!(warned.contains(ignored), "{ignored} in {warned}");
    }
    let got = get(&api, "web", "2023-05-01").await;
    assert!(
        got["properties"]["containers"][0]["properties"]
            .get("additional_properties")
            .is_none()
    );
}

async fn refused(body: &Value, version: &str, code: &str, target: &str) {
    let api = Shared::tenant_api();
    let (status, _, answer) = put(&api, "refused", version, body).await;
    assert_eq!(status, BAD, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert_eq!(answer["error"]["target"], target, "{answer}");
    let (status, _) = api
        .call(Method::GET, &path("rg-arm", "refused", version), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn properties_berth_cannot_honour_stay_refused() {
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["configMap"] =
        json!({"keyValuePairs": {"app.conf": "debug=1"}});
    let target = "properties.containers[0].properties.configMap.keyValuePairs";
    refused(&body, "2024-05-01-preview", "UnsupportedProperty", target).await;
    let mut body = group_body();
    body["properties"]["subnetids"] = json!([{"id": "/subscriptions/x/subnets/y"}]);
    refused(
        &body,
        "2025-09-01",
        "UnsupportedProperty",
        "properties.subnetIds",
    )
    .await;
}

#[tokio::test]
async fn real_type_errors_name_their_path() {
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["resources"]["requests"]["memoryInGb"] =
        json!({"size": 1});
    body["properties"]["containers"][0]["properties"]["resources"]["requests"]
        .as_object_mut()
        .expect("object")
        .remove("memoryInGB");
    let target = "properties.containers[0].properties.resources.requests.memoryInGB";
    refused(&body, "2023-05-01", "InvalidRequestContent", target).await;
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["ports"] = json!([{"port": "eighty"}]);
    let target = "properties.containers[0].properties.ports[0].port";
    refused(&body, "2023-05-01", "InvalidRequestContent", target).await;
}

#[tokio::test]
async fn two_spellings_of_one_property_are_refused() {
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["IMAGE"] = json!("registry.local/other:1");
    let target = "properties.containers[0].properties.image";
    refused(&body, "2023-05-01", "InvalidRequestContent", target).await;
}

#[tokio::test]
async fn placeholder_storage_accounts_are_refused() {
    let mut body = group_body();
    body["properties"]["volumes"] = json!([{"name": "share", "azureFile": {
        "sharename": "acishare", "storageAccountName": "<Storage account name>",
        "storageAccountKey": "a2V5"}}]);
    let target = "properties.volumes[0].azureFile.storageAccountName";
    refused(&body, "2019-12-01", "InvalidResourceName", target).await;
    body["properties"]["volumes"][0]["azureFile"]["storageAccountName"] = json!("mystorage");
    body["properties"]["volumes"][0]["azureFile"]["storageAccountKey"] =
        json!("<Storage account key>");
    let target = "properties.volumes[0].azureFile.storageAccountKey";
    refused(&body, "2019-12-01", "InvalidPropertyValue", target).await;
}

/// The multi-container tutorial's YAML (learn.microsoft.com, "Deploy a multi-container group using a
/// YAML file") as `az container create --file` sends it, with a local image, a port given as a string
/// and a numeric environment value as other articles' files have.
#[tokio::test]
async fn the_multi_container_tutorial_file_works_unchanged() {
    let (_cluster, _node, api) = cluster().await;
    let body = json!({
        "apiVersion": "2019-12-01",
        "location": "local",
        "name": "myContainerGroup",
        "properties": {
            "containers": [
                {"name": "aci-tutorial-app", "properties": {
                    "image": "registry.local/aci-helloworld:latest",
                    "resources": {"requests": {"cpu": 1, "memoryInGb": 1.5}},
                    "ports": [{"port": "80"}, {"port": 8080}],
                    "environmentVariables": [{"name": "PORT", "value": 5000}]
                }},
                {"name": "aci-tutorial-sidecar", "properties": {
                    "image": "registry.local/aci-tutorial-sidecar",
                    "resources": {"requests": {"cpu": 1, "memoryInGb": 1.5}}
                }}
            ],
            "osType": "Linux",
            "ipAddress": {"type": "Public", "ports": [
                {"protocol": "tcp", "port": "80"}, {"protocol": "tcp", "port": 8080}
            ]}
        },
        "tags": {"exampleTag": "tutorial"},
        "type": "Microsoft.ContainerInstance/containerGroups"
    });
    let (status, headers, created) = put(&api, "mycontainergroup", "2019-12-01", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(warning(&headers), "");
    let got = get(&api, "mycontainergroup", "2019-12-01").await;
    let containers = got["properties"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 2, "{got}");
    assert_eq!(containers[0]["properties"]["ports"][0]["port"], json!(80));
    assert_eq!(
        containers[0]["properties"]["environmentVariables"][0]["value"],
        "5000"
    );
    assert_eq!(
        containers[1]["properties"]["resources"]["requests"]["memoryInGB"],
        json!(1.5)
    );
}
