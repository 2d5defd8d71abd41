//! The life of a group through the REST API, with a hollow node running it.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Cluster, SUB, group_body, group_path, running};

#[tokio::test]
async fn create_get_list_delete() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;

    let mut body = group_body();
    body["properties"]["ipAddress"]["dnsNameLabel"] = json!("myweb1");
    let (status, headers, created) = api.put_group(SUB, "rg1", "web", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let op_url = headers["azure-asyncoperation"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        op_url.contains("/providers/Microsoft.ContainerInstance/locations/local/operations/"),
        "{op_url}"
    );
    assert!(op_url.ends_with("api-version=2018-06-01"), "{op_url}");
    assert!(headers.contains_key("retry-after"));
    let props = &created["properties"];
    assert!(
        matches!(
            props["provisioningState"].as_str(),
            Some("Pending" | "Creating")
        ),
        "{created}"
    );
    assert_eq!(
        created["type"],
        "Microsoft.ContainerInstance/containerGroups"
    );
    assert_eq!(
        created["id"],
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/web"
    );
    assert_eq!(props["osType"], "Linux");
    assert_eq!(props["restartPolicy"], "Always");
    assert_eq!(props["sku"], "Standard");
    assert_eq!(props["initContainers"], json!([]));
    assert_eq!(
        props["containers"][0]["properties"]["environmentVariables"],
        json!([])
    );
    assert_eq!(
        props["containers"][0]["properties"]["resources"]["requests"],
        json!({"cpu": 1.0, "memoryInGB": 1.5})
    );
    assert_eq!(props["ipAddress"]["fqdn"], "myweb1.local.berth.internal");
    assert!(props["instanceView"].is_object());

    let op = api.wait_operation(&op_url, 20).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    let (status, got) = api.get_group(SUB, "rg1", "web").await;
    assert_eq!(status, StatusCode::OK);
    assert!(running(&got), "{got}");
    let view = &got["properties"]["containers"][0]["properties"]["instanceView"];
    assert_eq!(view["currentState"]["state"], "Running", "{got}");
    assert!(
        got["properties"]["ipAddress"]["ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.")),
        "{got}"
    );
    let events: Vec<_> = view["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(events.contains(&"Started".to_owned()), "{events:?}");

    // Resource-group names compare without case; LIST leaves instanceView out.
    let (status, list) = api.call(Method::GET, "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/RG1/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"].as_array().expect("value").len(), 1);
    assert!(
        list["value"][0]["properties"].get("instanceView").is_none(),
        "{list}"
    );
    assert!(
        list["value"][0]["properties"]["containers"][0]["properties"]
            .get("instanceView")
            .is_none()
    );

    let (status, deleted) = api
        .call(Method::DELETE, &group_path(SUB, "rg1", "web"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["name"], "web");
    let (status, _) = api.get_group(SUB, "rg1", "web").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(Method::DELETE, &group_path(SUB, "rg1", "web"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "deleting what is gone is 204"
    );
    // The capacity came back.
    let node = cluster.node_info("node-a").await;
    assert_eq!(node["allocated"]["cpu"], 0.0, "{node}");
}

#[tokio::test]
async fn secrets_are_never_returned_and_encrypted_at_rest() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let mut body = group_body();
    let c = &mut body["properties"]["containers"][0]["properties"];
    c["environmentVariables"] = json!([{"name": "PLAIN", "value": "visible"}, {"name": "TOKEN", "secureValue": "s3cr3t-env-value"}]);
    c["volumeMounts"] = json!([{"name": "creds", "mountPath": "/creds"}]);
    body["properties"]["volumes"] =
        json!([{"name": "creds", "secret": {"key.pem": "c2VjcmV0LXZvbHVtZS1ieXRlcw=="}}]);
    body["properties"]["imageRegistryCredentials"] =
        json!([{"server": "registry.local", "username": "bob", "password": "hunter2-registry-pw"}]);

    let secrets = [
        "s3cr3t-env-value",
        "hunter2-registry-pw",
        "c2VjcmV0LXZvbHVtZS1ieXRlcw==",
        "secret-volume-bytes",
    ];
    let (status, _, created) = api.put_group(SUB, "rg1", "vault", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let got = api.wait_group(SUB, "rg1", "vault", 20, running).await;
    let (_, list) = api.call(Method::GET, "/subscriptions/00000000-0000-0000-0000-00000000000a/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", None).await;
    let (again, _, put_again) = api.put_group(SUB, "rg1", "vault", &body).await;
    assert_eq!(again, StatusCode::OK);
    for answer in [&created, &got, &list, &put_again] {
        let text = answer.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "'{secret}' leaked in {text}");
        }
    }
    let env = &got["properties"]["containers"][0]["properties"]["environmentVariables"];
    assert_eq!(env[0], json!({"name": "PLAIN", "value": "visible"}));
    assert_eq!(
        env[1],
        json!({"name": "TOKEN"}),
        "a secure variable comes back with its name only"
    );
    assert_eq!(
        got["properties"]["imageRegistryCredentials"][0],
        json!({"server": "registry.local", "username": "bob"})
    );

    // At rest: not in the database files in clear.
    for entry in std::fs::read_dir(cluster.dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("berth.db"))
        {
            let bytes = std::fs::read(&path).expect("db file");
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "'{secret}' in clear in {}",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn put_is_idempotent_and_updates_follow_aci_rules() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let body = group_body();
    let (status, _, _) = api.put_group(SUB, "rg1", "app", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let first = api.wait_group(SUB, "rg1", "app", 20, running).await;
    let started = first["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["startTime"].clone();

    // The same body again: 200, nothing restarts, the operation is already done.
    let (status, headers, same) = api.put_group(SUB, "rg1", "app", &body).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    let op = api
        .wait_operation(headers["azure-asyncoperation"].to_str().expect("ascii"), 5)
        .await;
    assert_eq!(op["status"], "Succeeded");
    let (_, after) = api.get_group(SUB, "rg1", "app").await;
    assert_eq!(
        after["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["startTime"],
        started,
        "an identical PUT must not restart"
    );

    // An image change is allowed and applied in place.
    let mut changed = body.clone();
    changed["properties"]["containers"][0]["properties"]["image"] =
        json!("registry.local/busybox:2");
    let (status, headers, _) = api.put_group(SUB, "rg1", "app", &changed).await;
    assert_eq!(status, StatusCode::OK);
    let op = api
        .wait_operation(headers["azure-asyncoperation"].to_str().expect("ascii"), 20)
        .await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    let (_, after) = api.get_group(SUB, "rg1", "app").await;
    assert_eq!(
        after["properties"]["containers"][0]["properties"]["image"],
        "registry.local/busybox:2"
    );

    // CPU, memory, OS, restart policy and network changes need delete and re-create.
    type Mutation = (&'static str, fn(&mut serde_json::Value));
    let mutations: [Mutation; 4] = [
        ("cpu", |b| {
            b["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"] =
                json!(2.0)
        }),
        ("memory", |b| {
            b["properties"]["containers"][0]["properties"]["resources"]["requests"]["memoryInGB"] =
                json!(3.0)
        }),
        ("restart policy", |b| {
            b["properties"]["restartPolicy"] = json!("Never")
        }),
        ("ports", |b| {
            b["properties"]["containers"][0]["properties"]["ports"] = json!([{"port": 81}]);
            b["properties"]["ipAddress"]["ports"] = json!([{"port": 81}]);
        }),
    ];
    for (what, mutate) in mutations {
        let mut b = changed.clone();
        mutate(&mut b);
        let (status, _, answer) = api.put_group(SUB, "rg1", "app", &b).await;
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {answer}");
        assert_eq!(
            answer["error"]["code"], "ContainerGroupUpdateRequiresRecreate",
            "{what}"
        );
    }
    let (_, still) = api.get_group(SUB, "rg1", "app").await;
    assert_eq!(
        still["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"],
        1.0
    );
}

#[tokio::test]
async fn list_pages_follow_next_link() {
    let cluster = Cluster::start_with(|c| c.page_size = 3).await;
    let _node = cluster.add_node("node-a", 64.0, 128.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["resources"]["requests"] =
        json!({"cpu": 0.1, "memoryInGB": 0.1});
    for i in 0..7 {
        let (status, _, _) = api
            .put_group(
                SUB,
                if i % 2 == 0 { "even" } else { "odd" },
                &format!("g{i}"),
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut names = Vec::new();
    let mut url = "/subscriptions/00000000-0000-0000-0000-00000000000a/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = api.call(Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let value = page["value"].as_array().expect("value");
        assert!(value.len() <= 3);
        names.extend(
            value
                .iter()
                .map(|g| g["name"].as_str().expect("name").to_owned()),
        );
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("g{i}")).collect::<Vec<_>>());
    let (_, odd) = api.call(Method::GET, "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/odd/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", None).await;
    assert_eq!(odd["value"].as_array().expect("value").len(), 3);
}

#[tokio::test]
async fn stop_start_restart_and_patch() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let (status, _, _) = api.put_group(SUB, "rg1", "svc", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    api.wait_group(SUB, "rg1", "svc", 20, running).await;
    let base = group_path(SUB, "rg1", "svc");
    let verb = |v: &str| base.replace("?api-version", &format!("/{v}?api-version"));

    let (status, _) = api.call(Method::POST, &verb("stop"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, stopped) = api.get_group(SUB, "rg1", "svc").await;
    assert_eq!(
        stopped["properties"]["instanceView"]["state"], "Stopped",
        "{stopped}"
    );
    assert_eq!(
        stopped["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["state"],
        "Terminated"
    );
    assert_eq!(
        cluster.node_info("node-a").await["allocated"]["cpu"],
        0.0,
        "stop releases capacity"
    );

    let (status, _, _) = api.raw(Method::POST, &verb("restart"), None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a stopped group cannot restart"
    );

    let (status, headers, _) = api.raw(Method::POST, &verb("start"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let op = api
        .wait_operation(headers["azure-asyncoperation"].to_str().expect("ascii"), 20)
        .await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    api.wait_group(SUB, "rg1", "svc", 20, running).await;
    let (status, _, _) = api.raw(Method::POST, &verb("start"), None).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "starting a running group is a no-op"
    );

    let (status, headers, _) = api.raw(Method::POST, &verb("restart"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let op = api
        .wait_operation(headers["azure-asyncoperation"].to_str().expect("ascii"), 20)
        .await;
    assert_eq!(op["status"], "Succeeded", "{op}");

    let (status, patched) = api
        .call(
            Method::PATCH,
            &base,
            Some(json!({"tags": {"team": "infra"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["tags"], json!({"team": "infra"}));
    let (status, bad) = api
        .call(
            Method::PATCH,
            &base,
            Some(json!({"tags": {"team": "infra"}, "properties": {}})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "PATCH takes tags only: {bad}"
    );
}

#[tokio::test]
async fn operation_status_endpoint() {
    let cluster = Cluster::start().await;
    let api = cluster.tenant(&[SUB]).await;
    let unknown = "/subscriptions/00000000-0000-0000-0000-00000000000a/providers/Microsoft.ContainerInstance/locations/local/operations/00000000-1111-2222-3333-444444444444?api-version=2018-06-01";
    let (status, body) = api.call(Method::GET, unknown, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "OperationNotFound");

    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let (_, headers, _) = api.put_group(SUB, "rg1", "op", &group_body()).await;
    let url = headers["azure-asyncoperation"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let (status, first) = api.call(Method::GET, &url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        first["id"]
            .as_str()
            .expect("id")
            .ends_with("/containerGroups/op"),
        "{first}"
    );
    assert!(matches!(
        first["status"].as_str(),
        Some("Pending" | "Succeeded")
    ));
    assert!(first["startTime"].is_string());
    let done = api.wait_operation(&url, 20).await;
    assert_eq!(done["status"], "Succeeded");
    assert!(done["endTime"].is_string());
    let (_, headers, _) = api.raw(Method::GET, &url, None).await;
    assert!(!headers.contains_key("retry-after"), "{headers:?}");

    // A group waiting for room on the full node stays Pending: each poll says when to ask again (a
    // second), or ARM's pollers wait their own default (azure-core's: 30 s).
    let (status, headers, _) = api.put_group(SUB, "rg1", "second", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    let url = headers["azure-asyncoperation"].to_str().expect("ascii");
    assert_eq!(api.wait_operation(url, 20).await["status"], "Succeeded");
    let (status, headers, _) = api.put_group(SUB, "rg1", "waits", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    let url = headers["azure-asyncoperation"].to_str().expect("ascii");
    let (status, headers, pending) = api.raw(Method::GET, url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["status"], "Pending", "{pending}");
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test]
async fn hollow_failure_fails_the_operation() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let mut body = group_body();
    body["properties"]["containers"][0]["properties"]["image"] =
        json!("registry.local/hollow/fail:1");
    body["properties"]["restartPolicy"] = json!("Never");
    let (status, headers, _) = api.put_group(SUB, "rg1", "broken", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let op = api
        .wait_operation(headers["azure-asyncoperation"].to_str().expect("ascii"), 20)
        .await;
    let got = api
        .wait_group(SUB, "rg1", "broken", 20, |g| {
            g["properties"]["instanceView"]["state"] == "Failed"
        })
        .await;
    let exit = &got["properties"]["containers"][0]["properties"]["instanceView"]["currentState"];
    assert_eq!(exit["state"], "Terminated", "{got}");
    assert_ne!(exit["exitCode"], 0, "{got}");
    assert!(
        matches!(op["status"].as_str(), Some("Failed" | "Succeeded")),
        "{op}"
    );
}

#[tokio::test]
async fn dns_labels_are_unique_and_reuse_scopes_bind_them_to_owners() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 8.0, 16.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let mut body = group_body();
    body["properties"]["ipAddress"]["dnsNameLabel"] = json!("shared-name");
    let (status, _, _) = api.put_group(SUB, "rg1", "first", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, answer) = api.put_group(SUB, "rg2", "second", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "DnsNameLabelNotAvailable");
    assert_eq!(
        answer["error"]["target"],
        "properties.ipAddress.dnsNameLabel"
    );
    let (status, _) = api.get_group(SUB, "rg2", "second").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing persisted");

    // With a reuse scope the name carries a hash of its owner: two resource groups, two names; the
    // same owner again gets the same name back.
    body["properties"]["ipAddress"]["autoGeneratedDomainNameLabelScope"] =
        json!("ResourceGroupReuse");
    let (_, _, a) = api.put_group(SUB, "rg1", "scoped", &body).await;
    let (_, _, b) = api.put_group(SUB, "rg2", "scoped", &body).await;
    let fqdn_a = a["properties"]["ipAddress"]["fqdn"]
        .as_str()
        .expect("fqdn")
        .to_owned();
    let fqdn_b = b["properties"]["ipAddress"]["fqdn"]
        .as_str()
        .expect("fqdn")
        .to_owned();
    assert!(
        fqdn_a.starts_with("shared-name-") && fqdn_a.ends_with(".local.berth.internal"),
        "{fqdn_a}"
    );
    assert_ne!(fqdn_a, fqdn_b);
    let (_, _) = api
        .call(Method::DELETE, &group_path(SUB, "rg1", "scoped"), None)
        .await;
    let (_, _, again) = api.put_group(SUB, "rg1", "scoped", &body).await;
    assert_eq!(again["properties"]["ipAddress"]["fqdn"], fqdn_a.as_str());
}

#[tokio::test]
async fn quotas_hold_under_concurrent_creates() {
    let cluster = Cluster::start_with(|c| c.quota_groups = 3).await;
    let _node = cluster.add_node("node-a", 64.0, 128.0).await;
    let api = cluster.tenant(&[SUB]).await;
    let creates = (0..10).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.put_group(SUB, "quota", &format!("q{i}"), &group_body())
                .await
        })
    });
    let mut created = 0;
    for create in creates {
        let (status, _, body) = create.await.expect("task");
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "QuotaExceeded", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 3, "exactly the quota");
    let (_, usage) = api
        .call(Method::GET, &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/locations/local/usages?api-version=2023-05-01"), None)
        .await;
    let groups = usage["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|u| u["name"]["value"] == "ContainerGroups")
        .cloned()
        .expect("row");
    assert_eq!(groups["currentValue"], 3, "{usage}");
    assert_eq!(groups["limit"], 3);
    // Deleting one frees a slot.
    let (_, list) = api.call(Method::GET, &format!("/subscriptions/{SUB}/resourceGroups/quota/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"), None).await;
    let victim = list["value"][0]["name"].as_str().expect("name").to_owned();
    let (status, _) = api
        .call(Method::DELETE, &group_path(SUB, "quota", &victim), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = api.put_group(SUB, "quota", "after", &group_body()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
