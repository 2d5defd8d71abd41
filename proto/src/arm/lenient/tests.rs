use proptest::prelude::*;
use serde_json::json;

use super::schema::CONTAINER_GROUP;
use super::*;
use crate::arm::{self, versions::API_VERSIONS};

const V: &str = "2024-05-01-preview";

fn read_group(value: Value) -> Reading {
    read(value, &CONTAINER_GROUP, V).unwrap()
}

fn container(props: Value) -> Value {
    json!({"location": "local", "properties": {"containers": [{"name": "web", "properties": props}]}})
}

#[test]
fn names_match_without_regard_to_case() {
    let r = read_group(json!({
        "LOCATION": "local",
        "Properties": {"containers": [{"name": "web", "properties": {
            "resources": {"requests": {"memoryInGb": 1.5, "CPU": 1}}}}],
        "volumes": [{"name": "v", "azurefile": {"sharename": "s", "storageAccountName": "a"}}]}
    }));
    assert!(r.ignored.is_empty(), "{:?}", r.ignored);
    assert_eq!(r.value["location"], "local");
    let requests = &r.value["properties"]["containers"][0]["properties"]["resources"]["requests"];
    assert_eq!(requests, &json!({"memoryInGB": 1.5, "cpu": 1}));
    assert_eq!(
        r.value["properties"]["volumes"][0]["azureFile"]["shareName"],
        "s"
    );
}

#[test]
fn strings_holding_numbers_become_numbers() {
    let r = read_group(container(json!({
        "ports": [{"port": "80"}],
        "resources": {"requests": {"cpu": " 0.5", "memoryInGB": "1.5"}},
        "livenessProbe": {"periodSeconds": 10.0, "exec": {"command": ["true"]}}
    })));
    let p = &r.value["properties"]["containers"][0]["properties"];
    assert_eq!(p["ports"][0]["port"], json!(80));
    assert_eq!(
        p["resources"]["requests"],
        json!({"cpu": 0.5, "memoryInGB": 1.5})
    );
    assert_eq!(p["livenessProbe"]["periodSeconds"], json!(10));
    // Not numbers: left for serde to refuse with the path.
    for bad in ["eighty", "NaN", "inf", "1e999", "80.5"] {
        let r = read_group(container(json!({"ports": [{"port": bad}]})));
        assert_eq!(
            r.value["properties"]["containers"][0]["properties"]["ports"][0]["port"],
            json!(bad)
        );
    }
    let r = read_group(container(json!({"ports": [{"port": 80.5}]})));
    assert_eq!(
        r.value["properties"]["containers"][0]["properties"]["ports"][0]["port"],
        json!(80.5)
    );
}

#[test]
fn scalars_where_strings_go_become_their_text() {
    let r = read_group(json!({
        "location": "local",
        "tags": {"n": 5, "b": true},
        "properties": {"containers": [{"name": "web", "properties": {
            "environmentVariables": [{"name": "PORT", "value": 5000}, {"name": "ON", "value": false},
                                     {"name": "PI", "value": 3.5}],
            "volumeMounts": [{"name": "v", "mountPath": "/m", "readOnly": "TRUE"}]}}]}
    }));
    let p = &r.value["properties"]["containers"][0]["properties"];
    assert_eq!(p["environmentVariables"][0]["value"], "5000");
    assert_eq!(p["environmentVariables"][1]["value"], "false");
    assert_eq!(p["environmentVariables"][2]["value"], "3.5");
    assert_eq!(p["volumeMounts"][0]["readOnly"], json!(true));
    assert_eq!(r.value["tags"], json!({"n": "5", "b": "true"}));
}

#[test]
fn keys_outside_the_schema_are_dropped_and_named() {
    let r = read_group(json!({
        "location": "local",
        "api-version": "2019-12-01",
        "apiVersion": "2019-12-01",
        "name": "web",
        "properties": {"containers": [{"name": "web", "properties": {
            "image": "busybox", "additional_properties": {}, "instanceView": {"state": "x"}}}],
            "provisioningState": "Succeeded"}
    }));
    assert_eq!(
        r.ignored,
        [
            "api-version",
            "properties.containers[0].properties.additional_properties"
        ]
    );
    assert_eq!(
        r.value,
        container(json!({"image": "busybox"})),
        "read-only properties dropped silently"
    );
}

#[test]
fn properties_of_other_api_versions_are_ignored_like_unknown_keys() {
    let body = container(json!({"image": "busybox", "configMap": {"keyValuePairs": {"a": "b"}}}));
    let old = read(body.clone(), &CONTAINER_GROUP, "2023-05-01").unwrap();
    assert_eq!(
        old.ignored,
        ["properties.containers[0].properties.configMap"]
    );
    assert_eq!(old.value, container(json!({"image": "busybox"})));
    let new = read(body.clone(), &CONTAINER_GROUP, "2024-05-01-preview").unwrap();
    assert!(new.ignored.is_empty());
    assert_eq!(new.value, body);
}

#[test]
fn two_spellings_of_one_property_are_refused() {
    let err = read(
        container(json!({"image": "a", "IMAGE": "b"})),
        &CONTAINER_GROUP,
        V,
    )
    .unwrap_err();
    assert_eq!(err.path(), "properties.containers[0].properties.image");
}

#[test]
fn type_errors_are_left_for_serde_to_name() {
    let body = container(json!({"resources": {"requests": {"cpu": {"cores": 1}}}}));
    let r = read_group(body.clone());
    assert_eq!(r.value, body);
    assert!(serde_json::from_value::<arm::ContainerGroup>(r.value).is_err());
}

#[test]
fn answers_lose_what_their_version_lacks() {
    let mut answer = json!({"properties": {"containers": [{"name": "web", "properties": {
        "securityContext": {"privileged": false}, "instanceView": {}}}], "priority": "Regular"}});
    prune(&mut answer, &CONTAINER_GROUP, "2021-10-01");
    assert_eq!(
        answer,
        json!({"properties": {"containers": [{"name": "web", "properties": {"instanceView": {}}}]}})
    );
}

/// A body with every property `version` has, each with a value of its shape.
fn full(shape: &Shape, version: &str) -> Value {
    match shape {
        Shape::Text => json!("x"),
        Shape::Number => json!(1.5),
        Shape::Integer => json!(1),
        Shape::Boolean => json!(true),
        Shape::TextMap => json!({"k": "v"}),
        Shape::Opaque => json!({}),
        Shape::List(item) => json!([full(item, version)]),
        Shape::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|f| f.access != Access::ReadOnly && available(f, version))
                .map(|f| (f.name.to_owned(), full(&f.shape, version)))
                .collect(),
        ),
    }
}

#[test]
fn the_schema_describes_the_serde_types() {
    for version in API_VERSIONS {
        let body = full(&CONTAINER_GROUP, version);
        let read = read(body.clone(), &CONTAINER_GROUP, version).unwrap();
        assert!(read.ignored.is_empty(), "{version}: {:?}", read.ignored);
        assert_eq!(read.value, body, "{version}");
        let typed: arm::ContainerGroup =
            serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(serde_json::to_value(typed).unwrap(), body, "{version}");
    }
}

fn scramble_case(value: &Value, flips: &mut impl Iterator<Item = bool>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key: String = k
                        .chars()
                        .map(|c| {
                            if flips.next().unwrap_or(false) {
                                c.to_ascii_uppercase()
                            } else {
                                c.to_ascii_lowercase()
                            }
                        })
                        .collect();
                    // TextMap keys are the user's: tags, secret files, key-value pairs.
                    let keep = k == "k";
                    (if keep { k.clone() } else { key }, scramble_case(v, flips))
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| scramble_case(v, flips)).collect())
        }
        other => other.clone(),
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9 .-]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("properties".to_owned()),
                    Just("containers".to_owned()),
                    Just("PORT".to_owned()),
                    Just("cpu".to_owned()),
                    "[a-zA-Z]{1,12}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn case_never_changes_what_is_read(
        version in prop::sample::select(API_VERSIONS),
        flips in prop::collection::vec(any::<bool>(), 1..400),
    ) {
        let body = full(&CONTAINER_GROUP, version);
        let mut flips = flips.into_iter().cycle();
        let scrambled = scramble_case(&body, &mut flips);
        let read = read(scrambled, &CONTAINER_GROUP, version).unwrap();
        prop_assert!(read.ignored.is_empty(), "{:?}", read.ignored);
        prop_assert_eq!(read.value, body);
    }

    #[test]
    fn reading_is_total_and_idempotent(value in arb_json(), version in prop::sample::select(API_VERSIONS)) {
        if let Ok(once) = read(value, &CONTAINER_GROUP, version) {
            let twice = read(once.value.clone(), &CONTAINER_GROUP, version).unwrap();
            prop_assert!(twice.ignored.is_empty());
            prop_assert_eq!(twice.value, once.value);
        }
    }
}
