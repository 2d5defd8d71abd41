//! Every validation rule, one test each: the answer's status, ACI error code and target (the field at
//! fault), and that nothing of a rejected request was persisted.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{SUB, Shared, group_body, group_path};

const BAD: StatusCode = StatusCode::BAD_REQUEST;

async fn expect_rejected(name: &str, body: &Value, status: StatusCode, code: &str, target: &str) {
    let api = Shared::tenant_api();
    let group = name.replace('_', "-");
    let (got, _, answer) = api.put_group(SUB, "rg-validation", &group, body).await;
    assert_eq!(got, status, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert_eq!(answer["error"]["target"], target, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    let (after, _) = api.get_group(SUB, "rg-validation", &group).await;
    assert_eq!(
        after,
        StatusCode::NOT_FOUND,
        "a rejected PUT must persist nothing"
    );
}

fn container(body: &mut Value) -> &mut Value {
    &mut body["properties"]["containers"][0]["properties"]
}

fn second_container(body: &mut Value) {
    let mut other = body["properties"]["containers"][0].clone();
    other["name"] = json!("sidecar");
    other["properties"]["ports"] = json!([]);
    body["properties"]["containers"]
        .as_array_mut()
        .expect("array")
        .push(other);
}

macro_rules! rejects {
    ($name:ident, $status:expr, $code:literal, $target:literal, |$b:ident| $mutate:block) => {
        #[tokio::test]
        async fn $name() {
            let mut body = group_body();
            {
                let $b = &mut body;
                $mutate
            }
            expect_rejected(stringify!($name), &body, $status, $code, $target).await;
        }
    };
}

rejects!(
    location_is_required,
    BAD,
    "MissingRequiredProperty",
    "location",
    |b| {
        b.as_object_mut().expect("object").remove("location");
    }
);
rejects!(
    location_must_be_served,
    BAD,
    "LocationNotAvailableForResourceType",
    "location",
    |b| {
        b["location"] = json!("westus");
    }
);
rejects!(
    properties_are_required,
    BAD,
    "MissingRequiredProperty",
    "properties",
    |b| {
        b.as_object_mut().expect("object").remove("properties");
    }
);
rejects!(
    os_type_is_required,
    BAD,
    "MissingRequiredProperty",
    "properties.osType",
    |b| {
        b["properties"]
            .as_object_mut()
            .expect("object")
            .remove("osType");
    }
);
rejects!(
    os_type_must_be_known,
    BAD,
    "InvalidPropertyValue",
    "properties.osType",
    |b| {
        b["properties"]["osType"] = json!("Plan9");
    }
);
rejects!(
    containers_are_required,
    BAD,
    "MissingRequiredProperty",
    "properties.containers",
    |b| {
        b["properties"]["containers"] = json!([]);
    }
);
rejects!(
    at_most_sixty_containers,
    BAD,
    "LimitExceeded",
    "properties.containers",
    |b| {
        let template = b["properties"]["containers"][0].clone();
        let many: Vec<Value> = (0..61)
            .map(|i| {
                let mut c = template.clone();
                c["name"] = json!(format!("c{i}"));
                c["properties"]["ports"] = json!([]);
                c["properties"]["resources"]["requests"] = json!({"cpu": 0.01, "memoryInGB": 0.1});
                c
            })
            .collect();
        b["properties"]["containers"] = json!(many);
        b["properties"]
            .as_object_mut()
            .expect("object")
            .remove("ipAddress");
    }
);
rejects!(
    container_name_must_be_a_label,
    BAD,
    "InvalidResourceName",
    "properties.containers[0].name",
    |b| {
        b["properties"]["containers"][0]["name"] = json!("Web_Server");
    }
);
rejects!(
    container_names_are_unique,
    BAD,
    "DuplicateName",
    "properties.containers[1].name",
    |b| {
        second_container(b);
        b["properties"]["containers"][1]["name"] = json!("web");
    }
);
rejects!(
    init_container_names_differ_from_containers,
    BAD,
    "DuplicateName",
    "properties.initContainers[0].name",
    |b| {
        b["properties"]["initContainers"] =
            json!([{"name": "web", "properties": {"image": "registry.local/busybox:1"}}]);
    }
);
rejects!(
    image_is_required,
    BAD,
    "MissingRequiredProperty",
    "properties.containers[0].properties.image",
    |b| {
        container(b)
            .as_object_mut()
            .expect("object")
            .remove("image");
    }
);
rejects!(
    image_has_no_spaces,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.image",
    |b| {
        container(b)["image"] = json!("busy box");
    }
);
rejects!(
    resources_are_required,
    BAD,
    "MissingRequiredProperty",
    "properties.containers[0].properties.resources",
    |b| {
        container(b)
            .as_object_mut()
            .expect("object")
            .remove("resources");
    }
);
rejects!(
    cpu_request_is_required,
    BAD,
    "MissingRequiredProperty",
    "properties.containers[0].properties.resources.requests.cpu",
    |b| {
        container(b)["resources"]["requests"] = json!({"memoryInGB": 1.0});
    }
);
rejects!(
    memory_request_is_required,
    BAD,
    "MissingRequiredProperty",
    "properties.containers[0].properties.resources.requests.memoryInGB",
    |b| {
        container(b)["resources"]["requests"] = json!({"cpu": 1.0});
    }
);
rejects!(
    cpu_request_is_positive,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.resources.requests.cpu",
    |b| {
        container(b)["resources"]["requests"]["cpu"] = json!(0);
    }
);
rejects!(
    memory_request_is_positive,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.resources.requests.memoryInGB",
    |b| {
        container(b)["resources"]["requests"]["memoryInGB"] = json!(-1.5);
    }
);
rejects!(
    limit_not_above_group_total,
    BAD,
    "ContainerLimitGreaterThanContainerGroupTotalRequest",
    "properties.containers[0].properties.resources.limits.cpu",
    |b| {
        container(b)["resources"]["limits"] = json!({"cpu": 2.0});
    }
);
rejects!(
    limit_not_below_request,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.resources.limits.memoryInGB",
    |b| {
        container(b)["resources"]["limits"] = json!({"memoryInGB": 1.0});
    }
);
rejects!(
    group_within_the_per_group_maximum,
    BAD,
    "ContainerGroupResourcesExceedLimit",
    "properties.containers",
    |b| {
        container(b)["resources"]["requests"]["cpu"] = json!(5.0);
    }
);
rejects!(
    gpu_sku_must_be_known,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.resources.requests.gpu.sku",
    |b| {
        container(b)["resources"]["requests"]["gpu"] = json!({"count": 1, "sku": "H100"});
    }
);
rejects!(
    gpu_count_is_positive,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.resources.requests.gpu.count",
    |b| {
        container(b)["resources"]["requests"]["gpu"] = json!({"count": 0, "sku": "V100"});
    }
);
rejects!(
    container_port_in_range,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.ports[0].port",
    |b| {
        container(b)["ports"] = json!([{"port": 70000}]);
    }
);
rejects!(
    container_port_protocol_known,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.ports[0].protocol",
    |b| {
        container(b)["ports"] = json!([{"port": 80, "protocol": "SCTP"}]);
    }
);
rejects!(
    a_port_is_opened_by_one_container,
    BAD,
    "DuplicatePort",
    "properties.containers[1].properties.ports[0].port",
    |b| {
        second_container(b);
        b["properties"]["containers"][1]["properties"]["ports"] = json!([{"port": 80}]);
    }
);
rejects!(
    ip_address_type_is_required,
    BAD,
    "MissingRequiredProperty",
    "properties.ipAddress.type",
    |b| {
        b["properties"]["ipAddress"]
            .as_object_mut()
            .expect("object")
            .remove("type");
    }
);
rejects!(
    ip_address_type_is_known,
    BAD,
    "InvalidPropertyValue",
    "properties.ipAddress.type",
    |b| {
        b["properties"]["ipAddress"]["type"] = json!("Elastic");
    }
);
rejects!(
    ip_address_needs_ports,
    BAD,
    "MissingRequiredProperty",
    "properties.ipAddress.ports",
    |b| {
        b["properties"]["ipAddress"]["ports"] = json!([]);
    }
);
rejects!(
    group_ports_are_container_ports,
    BAD,
    "PortNotExposedByContainer",
    "properties.ipAddress.ports[0].port",
    |b| {
        b["properties"]["ipAddress"]["ports"] = json!([{"port": 8080}]);
    }
);
rejects!(
    at_most_five_ports_per_ip,
    BAD,
    "LimitExceeded",
    "properties.ipAddress.ports",
    |b| {
        let ports: Vec<Value> = (1..=6).map(|p| json!({"port": 8000 + p})).collect();
        container(b)["ports"] = json!(ports.clone());
        b["properties"]["ipAddress"]["ports"] = json!(ports);
    }
);
rejects!(
    dns_label_shape,
    BAD,
    "InvalidDnsNameLabel",
    "properties.ipAddress.dnsNameLabel",
    |b| {
        b["properties"]["ipAddress"]["dnsNameLabel"] = json!("abc");
    }
);
rejects!(
    dns_label_starts_with_a_letter,
    BAD,
    "InvalidDnsNameLabel",
    "properties.ipAddress.dnsNameLabel",
    |b| {
        b["properties"]["ipAddress"]["dnsNameLabel"] = json!("1abcdef");
    }
);
rejects!(
    dns_label_needs_a_public_ip,
    BAD,
    "InvalidPropertyValue",
    "properties.ipAddress.dnsNameLabel",
    |b| {
        b["properties"]["ipAddress"]["type"] = json!("Private");
        b["properties"]["ipAddress"]["dnsNameLabel"] = json!("myapp1");
    }
);
rejects!(
    dns_label_scope_is_known,
    BAD,
    "InvalidPropertyValue",
    "properties.ipAddress.autoGeneratedDomainNameLabelScope",
    |b| {
        b["properties"]["ipAddress"]["autoGeneratedDomainNameLabelScope"] = json!("Everyone");
    }
);
rejects!(
    env_var_name_shape,
    BAD,
    "InvalidResourceName",
    "properties.containers[0].properties.environmentVariables[0].name",
    |b| {
        container(b)["environmentVariables"] = json!([{"name": "_BAD", "value": "x"}]);
    }
);
rejects!(
    env_var_names_are_unique,
    BAD,
    "DuplicateName",
    "properties.containers[0].properties.environmentVariables[1].name",
    |b| {
        container(b)["environmentVariables"] =
            json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]);
    }
);
rejects!(
    env_var_value_or_secure_value,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.environmentVariables[0].secureValue",
    |b| {
        container(b)["environmentVariables"] =
            json!([{"name": "A", "value": "1", "secureValue": "2"}]);
    }
);
rejects!(
    volume_name_shape,
    BAD,
    "InvalidResourceName",
    "properties.volumes[0].name",
    |b| {
        b["properties"]["volumes"] = json!([{"name": "vol", "emptyDir": {}}]);
    }
);
rejects!(
    volume_names_are_unique,
    BAD,
    "DuplicateName",
    "properties.volumes[1].name",
    |b| {
        b["properties"]["volumes"] =
            json!([{"name": "cache", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]);
    }
);
rejects!(
    at_most_twenty_volumes,
    BAD,
    "LimitExceeded",
    "properties.volumes",
    |b| {
        let vols: Vec<Value> = (0..21)
            .map(|i| json!({"name": format!("vol-{i:02}"), "emptyDir": {}}))
            .collect();
        b["properties"]["volumes"] = json!(vols);
    }
);
rejects!(
    volume_has_exactly_one_source,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0]",
    |b| {
        b["properties"]["volumes"] =
            json!([{"name": "cache", "emptyDir": {}, "gitRepo": {"repository": "https://x"}}]);
    }
);
rejects!(
    azure_file_needs_a_share,
    BAD,
    "MissingRequiredProperty",
    "properties.volumes[0].azureFile.shareName",
    |b| {
        b["properties"]["volumes"] =
            json!([{"name": "share", "azureFile": {"storageAccountName": "acct"}}]);
    }
);
rejects!(
    git_repo_directory_stays_inside,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].gitRepo.directory",
    |b| {
        b["properties"]["volumes"] = json!([{"name": "source", "gitRepo": {"repository": "https://example.invalid/r.git", "directory": "../etc"}}]);
    }
);
rejects!(
    secret_volume_is_base64,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].secret.key",
    |b| {
        b["properties"]["volumes"] = json!([{"name": "secrets", "secret": {"key": "not base64!"}}]);
    }
);
rejects!(
    mounts_name_a_defined_volume,
    BAD,
    "VolumeNotFound",
    "properties.containers[0].properties.volumeMounts[0].name",
    |b| {
        container(b)["volumeMounts"] = json!([{"name": "ghost", "mountPath": "/data"}]);
    }
);
rejects!(
    mount_path_has_no_colon,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[0].mountPath",
    |b| {
        b["properties"]["volumes"] = json!([{"name": "cache", "emptyDir": {}}]);
        container(b)["volumeMounts"] = json!([{"name": "cache", "mountPath": "C:/data"}]);
    }
);
rejects!(
    mount_path_is_absolute,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[0].mountPath",
    |b| {
        b["properties"]["volumes"] = json!([{"name": "cache", "emptyDir": {}}]);
        container(b)["volumeMounts"] = json!([{"name": "cache", "mountPath": "data"}]);
    }
);
rejects!(
    mount_paths_are_unique_per_container,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[1].mountPath",
    |b| {
        b["properties"]["volumes"] =
            json!([{"name": "cache", "emptyDir": {}}, {"name": "cache2", "emptyDir": {}}]);
        container(b)["volumeMounts"] = json!([{"name": "cache", "mountPath": "/data"}, {"name": "cache2", "mountPath": "/data"}]);
    }
);
rejects!(
    restart_policy_is_known,
    BAD,
    "InvalidPropertyValue",
    "properties.restartPolicy",
    |b| {
        b["properties"]["restartPolicy"] = json!("Sometimes");
    }
);
rejects!(
    confidential_sku_is_refused,
    BAD,
    "UnsupportedProperty",
    "properties.sku",
    |b| {
        b["properties"]["sku"] = json!("Confidential");
    }
);
rejects!(
    subnets_are_refused,
    BAD,
    "UnsupportedProperty",
    "properties.subnetIds",
    |b| {
        b["properties"]["subnetIds"] = json!([{"id": "/subscriptions/x/subnets/y"}]);
    }
);
rejects!(
    confidential_compute_is_refused,
    BAD,
    "UnsupportedProperty",
    "properties.confidentialComputeProperties",
    |b| {
        b["properties"]["confidentialComputeProperties"] = json!({"ccePolicy": "x"});
    }
);
rejects!(
    extensions_are_refused,
    BAD,
    "UnsupportedProperty",
    "properties.extensions",
    |b| {
        b["properties"]["extensions"] = json!([{"name": "kube-proxy"}]);
    }
);
rejects!(
    diagnostics_are_refused,
    BAD,
    "UnsupportedProperty",
    "properties.diagnostics",
    |b| {
        b["properties"]["diagnostics"] =
            json!({"logAnalytics": {"workspaceId": "w", "workspaceKey": "k"}});
    }
);
rejects!(
    managed_identity_is_refused,
    BAD,
    "UnsupportedProperty",
    "identity",
    |b| {
        b["identity"] = json!({"type": "SystemAssigned"});
    }
);
rejects!(
    zones_are_refused,
    BAD,
    "UnsupportedProperty",
    "zones",
    |b| {
        b["zones"] = json!(["1"]);
    }
);
rejects!(
    spot_priority_is_refused,
    BAD,
    "UnsupportedProperty",
    "properties.priority",
    |b| {
        b["properties"]["priority"] = json!("Spot");
    }
);
rejects!(
    windows_groups_have_one_container,
    BAD,
    "WindowsMultiContainerNotSupported",
    "properties.containers",
    |b| {
        second_container(b);
        b["properties"]["osType"] = json!("Windows");
    }
);
// An init container's `resources` is no property of its schema: ignored with a `Warning`, as ARM does
// (see `arm_reading::keys_outside_the_schema_…`).
rejects!(
    registry_credentials_need_a_password,
    BAD,
    "MissingRequiredProperty",
    "properties.imageRegistryCredentials[0].password",
    |b| {
        b["properties"]["imageRegistryCredentials"] =
            json!([{"server": "registry.local", "username": "u"}]);
    }
);
rejects!(
    registry_servers_are_unique,
    BAD,
    "DuplicateName",
    "properties.imageRegistryCredentials[1].server",
    |b| {
        b["properties"]["imageRegistryCredentials"] = json!([
            {"server": "registry.local", "username": "u", "password": "p"},
            {"server": "REGISTRY.local", "username": "v", "password": "q"}
        ]);
    }
);
rejects!(
    probe_has_one_action,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.livenessProbe",
    |b| {
        container(b)["livenessProbe"] =
            json!({"exec": {"command": ["true"]}, "httpGet": {"port": 80}});
    }
);
rejects!(
    probe_port_in_range,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.readinessProbe.httpGet.port",
    |b| {
        container(b)["readinessProbe"] = json!({"httpGet": {"port": 0}});
    }
);
rejects!(
    probe_period_is_positive,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.livenessProbe.periodSeconds",
    |b| {
        container(b)["livenessProbe"] = json!({"exec": {"command": ["true"]}, "periodSeconds": 0});
    }
);
rejects!(
    privileged_needs_operator_consent,
    BAD,
    "PrivilegedContainerNotAllowed",
    "properties.containers[0].properties.securityContext.privileged",
    |b| {
        container(b)["securityContext"] = json!({"privileged": true});
    }
);
rejects!(
    capabilities_are_names,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.securityContext.capabilities.add[0]",
    |b| {
        container(b)["securityContext"] = json!({"capabilities": {"add": ["net_admin"]}});
    }
);
rejects!(
    dns_config_name_servers_are_ips,
    BAD,
    "InvalidPropertyValue",
    "properties.dnsConfig.nameServers[0]",
    |b| {
        b["properties"]["dnsConfig"] = json!({"nameServers": ["dns.example"]});
    }
);
rejects!(at_most_fifty_tags, BAD, "LimitExceeded", "tags", |b| {
    let tags: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
    b["tags"] = Value::Object(tags);
});
rejects!(
    wrong_types_name_the_field,
    BAD,
    "InvalidRequestContent",
    "properties.containers[0].properties.resources.requests.cpu",
    |b| {
        container(b)["resources"]["requests"]["cpu"] = json!("one");
    }
);
// Unknown fields are ignored with a `Warning` as ARM does: see `arm_reading::keys_outside_the_schema_…`.

async fn put_raw(body: Vec<u8>, query: &str) -> (StatusCode, Value) {
    let api = Shared::tenant_api();
    let path = group_path(SUB, "rg-validation", "raw").replace("?api-version=2023-05-01", query);
    let (status, _, body) = api.raw(Method::PUT, &path, Some(body)).await;
    (status, body)
}

#[tokio::test]
async fn malformed_json_is_a_400_in_aci_shape() {
    let (status, body) = put_raw(b"{\"location\": ".to_vec(), "?api-version=2023-05-01").await;
    assert_eq!(status, BAD);
    assert_eq!(body["error"]["code"], "InvalidRequestContent", "{body}");
}

#[tokio::test]
async fn empty_body_is_refused() {
    let (status, body) = put_raw(Vec::new(), "?api-version=2023-05-01").await;
    assert_eq!(status, BAD);
    assert_eq!(body["error"]["target"], "body", "{body}");
}

#[tokio::test]
async fn oversized_body_is_a_413_in_aci_shape() {
    let mut body = group_body();
    body["tags"] = json!({"big": "x".repeat(2 << 20)});
    let (status, answer) = put_raw(
        serde_json::to_vec(&body).expect("json"),
        "?api-version=2023-05-01",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["code"], "RequestEntityTooLarge", "{answer}");
}

#[tokio::test]
async fn api_version_is_required() {
    let (status, body) = put_raw(serde_json::to_vec(&group_body()).expect("json"), "").await;
    assert_eq!(status, BAD);
    assert_eq!(
        body["error"]["code"], "MissingApiVersionParameter",
        "{body}"
    );
}

#[tokio::test]
async fn unknown_api_versions_are_refused() {
    let (status, body) = put_raw(
        serde_json::to_vec(&group_body()).expect("json"),
        "?api-version=2099-01-01",
    )
    .await;
    assert_eq!(status, BAD);
    assert_eq!(body["error"]["code"], "NoRegisteredProviderFound", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("2023-05-01")
    );
}

#[tokio::test]
async fn group_name_must_be_a_label() {
    let api = Shared::tenant_api();
    for name in ["Web", "web--1", "-web", &"a".repeat(64)] {
        let (status, _, body) = api
            .put_group(SUB, "rg-validation", name, &group_body())
            .await;
        assert_eq!(status, BAD, "{name}: {body}");
        assert_eq!(body["error"]["code"], "InvalidResourceName");
        assert_eq!(body["error"]["target"], "containerGroupName");
    }
}

#[tokio::test]
async fn resource_group_name_shape() {
    let api = Shared::tenant_api();
    let (status, _, body) = api.put_group(SUB, "bad%20rg.", "web", &group_body()).await;
    assert_eq!(status, BAD, "{body}");
    assert_eq!(body["error"]["code"], "InvalidResourceGroupName");
    assert_eq!(body["error"]["target"], "resourceGroupName");
}

#[tokio::test]
async fn token_subscriptions_must_be_guids() {
    let api = Shared::operator_api();
    let (status, body) = api
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"subscriptions": ["not-a-guid"]})),
        )
        .await;
    assert_eq!(status, BAD);
    assert_eq!(body["error"]["code"], "InvalidSubscriptionId");
    assert_eq!(body["error"]["target"], "subscriptions[0]");
}

// Specs the node used to refuse after a 201 (issue: "201, then a Failed group"): each is a 400 now.

fn share_volume(share: &str, account: &str) -> Value {
    json!([{"name": "share", "azureFile": {"shareName": share, "storageAccountName": account, "storageAccountKey": "a2V5"}}])
}

fn git_volume(git: Value) -> Value {
    json!([{"name": "source", "gitRepo": git}])
}

fn mounted(b: &mut Value, paths: &[&str]) {
    b["properties"]["volumes"] = json!([{"name": "cache", "emptyDir": {}}]);
    container(b)["volumeMounts"] = json!(
        paths
            .iter()
            .map(|p| json!({"name": "cache", "mountPath": p}))
            .collect::<Vec<_>>()
    );
}

rejects!(
    share_name_cannot_climb,
    BAD,
    "InvalidResourceName",
    "properties.volumes[0].azureFile.shareName",
    |b| {
        b["properties"]["volumes"] = share_volume("../../..", "acct");
    }
);
rejects!(
    share_name_is_one_component,
    BAD,
    "InvalidResourceName",
    "properties.volumes[0].azureFile.shareName",
    |b| {
        b["properties"]["volumes"] = share_volume("a/b", "acct");
    }
);
rejects!(
    storage_account_cannot_climb,
    BAD,
    "InvalidResourceName",
    "properties.volumes[0].azureFile.storageAccountName",
    |b| {
        b["properties"]["volumes"] = share_volume("keep", "../../..");
    }
);
rejects!(
    storage_account_is_one_component,
    BAD,
    "InvalidResourceName",
    "properties.volumes[0].azureFile.storageAccountName",
    |b| {
        b["properties"]["volumes"] = share_volume("keep", "a/b");
    }
);
rejects!(
    git_repo_directory_is_relative,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].gitRepo.directory",
    |b| {
        b["properties"]["volumes"] =
            git_volume(json!({"repository": "https://example.invalid/r.git", "directory": "/etc"}));
    }
);
rejects!(
    git_repo_is_not_an_option,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].gitRepo.repository",
    |b| {
        b["properties"]["volumes"] =
            git_volume(json!({"repository": "--upload-pack=touch /tmp/pwned"}));
    }
);
rejects!(
    git_repo_is_not_a_host_file_url,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].gitRepo.repository",
    |b| {
        b["properties"]["volumes"] = git_volume(json!({"repository": "file:///etc/berth/repo"}));
    }
);
rejects!(
    git_repo_is_not_a_host_path,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].gitRepo.repository",
    |b| {
        b["properties"]["volumes"] = git_volume(json!({"repository": "/srv/secret-repo"}));
    }
);
rejects!(
    git_revision_is_not_an_option,
    BAD,
    "InvalidPropertyValue",
    "properties.volumes[0].gitRepo.revision",
    |b| {
        b["properties"]["volumes"] = git_volume(
            json!({"repository": "https://example.invalid/r.git", "revision": "--output=/etc/x"}),
        );
    }
);
rejects!(
    mount_path_is_not_the_root,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[0].mountPath",
    |b| {
        mounted(b, &["/"]);
    }
);
rejects!(
    mount_path_has_no_nul,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[0].mountPath",
    |b| {
        mounted(b, &["/data\u{0}x"]);
    }
);
rejects!(
    mount_path_is_not_too_long,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[0].mountPath",
    |b| {
        mounted(b, &[&format!("/{}", "a".repeat(4999))]);
    }
);
rejects!(
    mount_paths_are_unique_once_normalised,
    BAD,
    "InvalidPropertyValue",
    "properties.containers[0].properties.volumeMounts[1].mountPath",
    |b| {
        mounted(b, &["/d", "/d/"]);
    }
);
rejects!(
    env_name_starts_with_a_letter,
    BAD,
    "InvalidResourceName",
    "properties.containers[0].properties.environmentVariables[0].name",
    |b| {
        container(b)["environmentVariables"] = json!([{"name": "1abc", "value": "x"}]);
    }
);
rejects!(
    capabilities_beyond_the_baseline_need_the_operator,
    BAD,
    "PrivilegedContainerNotAllowed",
    "properties.containers[0].properties.securityContext.capabilities.add[0]",
    |b| {
        container(b)["securityContext"] = json!({"capabilities": {"add": ["SYS_ADMIN"]}});
    }
);
rejects!(
    dns_search_domains_are_one_line,
    BAD,
    "InvalidPropertyValue",
    "properties.dnsConfig.searchDomains",
    |b| {
        b["properties"]["dnsConfig"] =
            json!({"nameServers": ["10.0.0.10"], "searchDomains": "a.local\nnameserver 1.2.3.4"});
    }
);
