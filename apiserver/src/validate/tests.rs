use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn body() -> Value {
    json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "OnFailure",
            "containers": [{"name": "web", "properties": {
                "image": "busybox",
                "command": ["httpd", "-f", "-p", "80"],
                "ports": [{"port": 80}],
                "environmentVariables": [{"name": "MODE", "value": "x"}, {"name": "KEY", "secureValue": "s"}],
                "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}},
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "source", "mountPath": "/src"}]
            }}],
            "initContainers": [{"name": "init", "properties": {"image": "busybox", "command": ["true"]}}],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "source", "gitRepo": {"repository": "https://example.com/site.git"}},
                {"name": "certs", "secret": {"tls.key": "a2V5"}},
                {"name": "share", "azureFile": {"shareName": "keep", "storageAccountName": "acct"}}
            ],
            "ipAddress": {"type": "Public", "ports": [{"port": 80}], "dnsNameLabel": "hello-web"},
            "dnsConfig": {"nameServers": ["10.0.0.10"], "searchDomains": "svc.local", "options": "ndots:2"}
        }
    })
}

fn validate(body: &Value) -> Result<ValidGroup, ApiError> {
    let group: arm::ContainerGroup = serde_json::from_value(body.clone()).unwrap();
    container_group(&group, "web", "local", "2023-05-01", &Limits::default())
}

#[test]
fn a_group_using_every_kind_of_field_is_valid() {
    let valid = validate(&body()).unwrap();
    assert_eq!(valid.spec.containers[0].requests.cpu_millis, 1000);
    assert_eq!(valid.spec.init_containers.len(), 1);
    assert_eq!(valid.spec.volumes.len(), 4);
}

#[test]
fn older_api_versions_may_leave_the_os_out() {
    let mut b = body();
    b["properties"].as_object_mut().unwrap().remove("osType");
    let group: arm::ContainerGroup = serde_json::from_value(b).unwrap();
    let old = container_group(&group, "web", "local", "2018-10-01", &Limits::default());
    assert_eq!(old.unwrap().spec.os_type, OsType::Linux);
    let new = container_group(&group, "web", "local", "2023-05-01", &Limits::default());
    assert_eq!(
        new.unwrap_err().target.as_deref(),
        Some("properties.osType")
    );
}

fn validate_as(body: &Value, version: &str) -> Result<ValidGroup, ApiError> {
    let group: arm::ContainerGroup = serde_json::from_value(body.clone()).unwrap();
    container_group(&group, "web", "local", version, &Limits::default())
}

#[test]
fn profile_api_versions_default_the_os_and_sizes_as_aci_does() {
    let mut b = body();
    b["properties"].as_object_mut().unwrap().remove("osType");
    let container = &mut b["properties"]["containers"][0]["properties"];
    container.as_object_mut().unwrap().remove("resources");
    for version in [
        "2024-05-01-preview",
        "2024-11-01-preview",
        "2025-09-01",
        "2026-06-01-preview",
    ] {
        let valid = validate_as(&b, version).unwrap();
        assert_eq!(valid.spec.os_type, OsType::Linux, "{version}");
        let requests = &valid.spec.containers[0].requests;
        assert_eq!(
            (requests.cpu_millis, requests.memory_mib),
            (1000, 1536),
            "{version}"
        );
    }
    // Versions whose schema requires them still do.
    for (version, target) in [
        ("2023-05-01", "properties.osType"),
        ("2024-10-01-preview", "properties.osType"),
        (
            "2018-10-01",
            "properties.containers[0].properties.resources",
        ),
    ] {
        let err = validate_as(&b, version).unwrap_err();
        assert_eq!(err.target.as_deref(), Some(target), "{version}");
    }
}

#[test]
fn an_empty_config_map_means_nothing_and_a_full_one_is_refused() {
    let mut b = body();
    for empty in [
        json!({}),
        json!({"keyValuePairs": {}}),
        json!({"keyValuePairs": null}),
    ] {
        b["properties"]["containers"][0]["properties"]["configMap"] = empty;
        assert!(validate_as(&b, "2024-05-01-preview").is_ok());
    }
    b["properties"]["containers"][0]["properties"]["configMap"] =
        json!({"keyValuePairs": {"app.conf": "x"}});
    let err = validate_as(&b, "2024-05-01-preview").unwrap_err();
    assert_eq!(err.code, code::UNSUPPORTED);
    assert_eq!(
        err.target.as_deref(),
        Some("properties.containers[0].properties.configMap.keyValuePairs")
    );
}

#[test]
fn storage_account_keys_are_base64() {
    let mut b = body();
    for bad in ["<Storage account key>", "", "a2V"] {
        b["properties"]["volumes"][3]["azureFile"]["storageAccountKey"] = json!(bad);
        let err = validate(&b).unwrap_err();
        assert_eq!(
            err.target.as_deref(),
            Some("properties.volumes[3].azureFile.storageAccountKey"),
            "{bad}"
        );
    }
    b["properties"]["volumes"][3]["azureFile"]["storageAccountKey"] = json!("a2V5");
    assert!(validate(&b).is_ok());
}

#[test]
fn updates_that_need_a_recreate_are_refused() {
    let existing = validate(&body()).unwrap().spec;
    let mut changed = body();
    changed["properties"]["restartPolicy"] = json!("Never");
    let new = validate(&changed).unwrap().spec;
    assert_eq!(
        update(&existing, &new, "web").unwrap_err().code,
        "ContainerGroupUpdateRequiresRecreate"
    );
    let mut env_only = body();
    env_only["properties"]["containers"][0]["properties"]["environmentVariables"][0]["value"] =
        json!("y");
    assert!(update(&existing, &validate(&env_only).unwrap().spec, "web").is_ok());
    // A new DNS name label or reuse scope is a new name, given in place.
    let mut relabelled = body();
    relabelled["properties"]["ipAddress"]["dnsNameLabel"] = json!("other-web");
    relabelled["properties"]["ipAddress"]["autoGeneratedDomainNameLabelScope"] =
        json!("TenantReuse");
    assert!(update(&existing, &validate(&relabelled).unwrap().spec, "web").is_ok());
    let mut ports = body();
    ports["properties"]["ipAddress"]["ports"] = json!([{"port": 80}, {"port": 81}]);
    ports["properties"]["containers"][0]["properties"]["ports"] =
        json!([{"port": 80}, {"port": 81}]);
    assert!(update(&existing, &validate(&ports).unwrap().spec, "web").is_err());
}

/// Replaces the value at `path` (a list of keys and indexes) in `value`, if it exists.
fn set(value: &mut Value, path: &[Value], new: Value) {
    let mut at = value;
    for key in path {
        at = match key {
            Value::String(k) => match at.get_mut(k.as_str()) {
                Some(next) => next,
                None => return,
            },
            Value::Number(i) => match at.get_mut(i.as_u64().unwrap_or(0) as usize) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    *at = new;
}

/// Every leaf path of `value`.
fn leaves(value: &Value, prefix: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let mut p = prefix.clone();
                p.push(json!(k));
                leaves(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(json!(i));
                leaves(v, p, out);
            }
        }
        _ => out.push(prefix),
    }
}

fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!("/")),
        Just(json!("..")),
        Just(json!("../../etc")),
        Just(json!("/d/")),
        Just(json!("a\u{0}b")),
        Just(json!("x\ny")),
        Just(json!("file:///etc")),
        Just(json!("--upload-pack=x")),
        Just(json!("1abc")),
        Just(json!("SYS_ADMIN")),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
        "\\PC{0,12}".prop_map(Value::String),
        (0u32..100_000).prop_map(|n| json!(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever one or two hostile values do to a valid body, validation answers a 400-class error
    /// naming a field, or accepts a spec the node admits.
    #[test]
    fn mutated_bodies_are_refused_with_a_target_or_admitted(picks in prop::collection::vec((any::<prop::sample::Index>(), hostile()), 1..3)) {
        let mut b = body();
        let mut paths = Vec::new();
        leaves(&b, Vec::new(), &mut paths);
        for (index, value) in picks {
            let path = index.get(&paths).clone();
            set(&mut b, &path, value);
        }
        let Ok(group) = serde_json::from_value::<arm::ContainerGroup>(b) else {
            return Ok(());
        };
        match container_group(&group, "web", "local", "2023-05-01", &Limits::default()) {
            Ok(valid) => {
                prop_assert!(berth_proto::spec::admit(&valid.spec.to_proto("web", "", "", None), false).is_ok());
            }
            Err(error) => {
                prop_assert!(error.status.is_client_error());
                prop_assert!(!error.message.is_empty());
                prop_assert!(error.target.as_deref().is_some_and(|t| !t.is_empty()), "{error:?}");
            }
        }
    }
}
