//! Real containers through the public API: containerd, runc, CNI and an OCI registry are real
//! processes (see `real.rs`). Each test has its own cluster and node.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use berth_node_agent::testing::outside::{OutsideHost, bare_repository};

use crate::harness::{Api, Cluster, SUB, group_path};
use crate::real::{RealNode, RealOptions, SLOW, exit_code_of, real_group, state_of, view};

const RG: &str = "rg";

async fn setup(name: &str) -> (Cluster, Api, RealNode) {
    let cluster = Cluster::start().await;
    let api = cluster.tenant(&[SUB]).await;
    let node = RealNode::start(&cluster, name, RealOptions::default()).await;
    (cluster, api, node)
}

async fn create(api: &Api, name: &str, body: &Value) {
    let (status, _, answer) = api.put_group(SUB, RG, name, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

async fn wait(api: &Api, node: &RealNode, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    crate::real::wait_group(api, node, RG, name, check).await
}

fn terminated_with(body: &Value, name: &str, code: i64) -> bool {
    state_of(body, name) == "Terminated" && exit_code_of(body, name) == Some(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_talk_over_localhost() {
    let (_cluster, api, node) = setup("real-localhost").await;
    let body = real_group(
        &node.image,
        "Never",
        &[
            (
                "server",
                &[
                    "sh",
                    "-c",
                    "while true; do echo hello | nc -l -p 8080; done",
                ],
            ),
            (
                "client",
                &[
                    "sh",
                    "-c",
                    "for i in $(seq 100); do out=$(nc 127.0.0.1 8080 </dev/null) && [ \"$out\" = hello ] && exit 0; sleep 0.2; done; exit 1",
                ],
            ),
        ],
    );
    create(&api, "talk", &body).await;
    let body = wait(&api, &node, "talk", |b| terminated_with(b, "client", 0)).await;
    assert_eq!(state_of(&body, "server"), "Running", "{body}");
    let ip = body["properties"]["ipAddress"]["ip"]
        .as_str()
        .unwrap_or_default();
    let _ = ip; // The group's IP is in the node's subnet once reported (checked in the delete test).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_container_prepares_an_empty_dir_for_the_app() {
    let (_cluster, api, node) = setup("real-init").await;
    let mut body = real_group(
        &node.image,
        "Never",
        &[(
            "app",
            &["sh", "-c", "test \"$(cat /work/msg)\" = from-init"],
        )],
    );
    body["properties"]["initContainers"] = json!([{
        "name": "prepare",
        "properties": {
            "image": node.image,
            "command": ["sh", "-c", "echo from-init > /work/msg"],
            "volumeMounts": [{"name": "workdir", "mountPath": "/work"}]
        }
    }]);
    body["properties"]["volumes"] = json!([{"name": "workdir", "emptyDir": {}}]);
    body["properties"]["containers"][0]["properties"]["volumeMounts"] =
        json!([{"name": "workdir", "mountPath": "/work"}]);
    create(&api, "init", &body).await;
    let body = wait(&api, &node, "init", |b| terminated_with(b, "app", 0)).await;
    let init = body["properties"]["initContainers"][0]["properties"]["instanceView"].clone();
    assert_eq!(init["currentState"]["state"], "Terminated", "{body}");
    assert_eq!(init["currentState"]["exitCode"], 0, "{body}");
    assert_eq!(
        body["properties"]["instanceView"]["state"], "Succeeded",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_volume_has_its_contents_mode_and_owner() {
    let (_cluster, api, node) = setup("real-secret").await;
    let mut body = real_group(
        &node.image,
        "Never",
        &[(
            "app",
            &[
                "sh",
                "-c",
                "test \"$(cat /s/token)\" = s3cret && test \"$(stat -c %a /s/token)\" = 400 && test \"$(stat -c %u /s/token)\" = 1000 && test \"$(id -u)\" = 1000",
            ],
        )],
    );
    body["properties"]["volumes"] = json!([{"name": "secret", "secret": {"token": "czNjcmV0"}}]);
    let app = &mut body["properties"]["containers"][0]["properties"];
    app["volumeMounts"] = json!([{"name": "secret", "mountPath": "/s", "readOnly": true}]);
    app["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 1000});
    create(&api, "secret", &body).await;
    let body = wait(&api, &node, "secret", |b| {
        state_of(b, "app") == "Terminated"
    })
    .await;
    assert_eq!(exit_code_of(&body, "app"), Some(0), "{body}");
}

/// A group whose app container runs `command` with gitRepo volume `source` (`repository` at
/// `revision`, in directory `code`) mounted at `/src`.
fn git_group(image: &str, command: &str, repository: &str, revision: &str) -> Value {
    let mut body = real_group(image, "Never", &[("app", &["sh", "-c", command])]);
    body["properties"]["volumes"] = json!([{
        "name": "source",
        "gitRepo": {"repository": repository, "directory": "code", "revision": revision}
    }]);
    body["properties"]["containers"][0]["properties"]["volumeMounts"] =
        json!([{"name": "source", "mountPath": "/src"}]);
    body
}

/// A machine outside the node serving `app.git` (two commits of `version.txt`: `one`, `two`) over
/// git://; returns it and the first commit.
fn outside_repository(dir: &std::path::Path) -> (OutsideHost, String) {
    let base = dir.join("served");
    std::fs::create_dir_all(&base).expect("served dir");
    let commits = bare_repository(
        &base,
        "app.git",
        &[("version.txt", b"one\n"), ("version.txt", b"two\n")],
    )
    .expect("repository made");
    let mut outside = OutsideHost::start().expect("outside host");
    outside
        .serve_git(&base, &dir.join("git-daemon.log"))
        .expect("git daemon serves");
    (outside, commits[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_repo_volume_is_cloned_at_its_revision() {
    let (_cluster, api, node) = setup("real-git").await;
    let (outside, first) = outside_repository(node.dir());
    let body = git_group(
        &node.image,
        "test \"$(cat /src/code/version.txt)\" = one",
        &outside.git_url("app.git"),
        &first,
    );
    create(&api, "git", &body).await;
    let body = wait(&api, &node, "git", |b| state_of(b, "app") == "Terminated").await;
    assert_eq!(exit_code_of(&body, "app"), Some(0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_clone_ignores_the_nodes_git_config_and_hooks() {
    let cluster = Cluster::start().await;
    let api = cluster.tenant(&[SUB]).await;
    // Whatever git config the agent's environment points at (global, system, a HOME's), with a
    // hook that would run as the agent (root) after every checkout.
    let evil = tempfile::Builder::new()
        .prefix("bevil")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let marker = evil.path().join("pwned");
    let hooks = evil.path().join("hooks");
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let hook = hooks.join("post-checkout");
    std::fs::write(&hook, format!("#!/bin/sh\nid -u > {}\n", marker.display())).expect("hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("hook mode");
    let config = evil.path().join("gitconfig");
    std::fs::write(
        &config,
        format!(
            "[core]\n\thooksPath = {}\n\tfsmonitor = {}\n",
            hooks.display(),
            hook.display()
        ),
    )
    .expect("config");
    std::fs::copy(&config, evil.path().join(".gitconfig")).expect("home config");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let options = RealOptions {
        agent_env: vec![
            ("GIT_CONFIG_GLOBAL".into(), path(&config)),
            ("GIT_CONFIG_SYSTEM".into(), path(&config)),
            ("HOME".into(), path(evil.path())),
            ("XDG_CONFIG_HOME".into(), path(evil.path())),
        ],
        ..RealOptions::default()
    };
    let node = RealNode::start(&cluster, "real-git-config", options).await;
    let (outside, first) = outside_repository(node.dir());
    let body = git_group(
        &node.image,
        "test \"$(cat /src/code/version.txt)\" = one",
        &outside.git_url("app.git"),
        &first,
    );
    create(&api, "gitcfg", &body).await;
    let body = wait(&api, &node, "gitcfg", |b| {
        state_of(b, "app") == "Terminated"
    })
    .await;
    assert_eq!(exit_code_of(&body, "app"), Some(0), "{body}");
    assert!(
        !marker.exists(),
        "the node's git config ran a hook as uid {}",
        std::fs::read_to_string(&marker).unwrap_or_default().trim()
    );
}

fn share_group(image: &str, command: &str) -> Value {
    let mut body = real_group(image, "Never", &[("app", &["sh", "-c", command])]);
    body["properties"]["volumes"] = json!([{
        "name": "shared",
        "azureFile": {"shareName": "keep", "storageAccountName": "acct", "storageAccountKey": "a2V5"}
    }]);
    body["properties"]["containers"][0]["properties"]["volumeMounts"] =
        json!([{"name": "shared", "mountPath": "/data"}]);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_keeps_its_data_across_delete_and_recreate() {
    let (_cluster, api, node) = setup("real-share").await;
    create(
        &api,
        "share",
        &share_group(&node.image, "echo kept > /data/file"),
    )
    .await;
    let body = wait(&api, &node, "share", |b| state_of(b, "app") == "Terminated").await;
    assert_eq!(exit_code_of(&body, "app"), Some(0), "{body}");
    let (status, _) = api
        .call(Method::DELETE, &group_path(SUB, RG, "share"), None)
        .await;
    assert!(status.is_success(), "{status}");
    wait_gone(&api, "share").await;

    create(
        &api,
        "share",
        &share_group(&node.image, "test \"$(cat /data/file)\" = kept"),
    )
    .await;
    let body = wait(&api, &node, "share", |b| state_of(b, "app") == "Terminated").await;
    assert_eq!(exit_code_of(&body, "app"), Some(0), "{body}");
    assert_eq!(
        std::fs::read_to_string(node.share_root.join("acct/keep/file")).expect("share file"),
        "kept\n"
    );
}

async fn wait_gone(api: &Api, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let (status, _) = api.get_group(SUB, RG, name).await;
        if status == StatusCode::NOT_FOUND {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_memory_limits_are_in_the_cgroup_files() {
    let (_cluster, api, node) = setup("real-cgroup").await;
    let mut body = real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]);
    body["properties"]["containers"][0]["properties"]["resources"] =
        json!({"requests": {"cpu": 0.5, "memoryInGB": 0.75}});
    create(&api, "limits", &body).await;
    wait(&api, &node, "limits", |b| state_of(b, "app") == "Running").await;
    let groups = node.group_ids();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let read = |controller: &str, file: &str| {
        let path = node.cgroup_dir(controller, &groups[0], "app").join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    };
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (768u64 * 1024 * 1024).to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_with_back_off_and_never_keeps_the_exit_code() {
    let (_cluster, api, node) = setup("real-restart").await;
    let failing: &[&str] = &["sh", "-c", "echo boom; exit 3"];
    create(
        &api,
        "onfail",
        &real_group(&node.image, "OnFailure", &[("app", failing)]),
    )
    .await;
    create(
        &api,
        "never",
        &real_group(&node.image, "Never", &[("app", failing)]),
    )
    .await;

    let body = wait(&api, &node, "onfail", |b| {
        view(b, "app")["restartCount"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    let events = view(&body, "app")["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(events.iter().any(|e| e["name"] == "BackOff"), "{body}");
    assert_eq!(view(&body, "app")["previousState"]["exitCode"], 3, "{body}");

    let body = wait(&api, &node, "never", |b| terminated_with(b, "app", 3)).await;
    assert_eq!(view(&body, "app")["restartCount"], 0, "{body}");
    assert_eq!(
        body["properties"]["instanceView"]["state"], "Failed",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start() {
    let (_cluster, api, node) = setup("real-stop").await;
    create(
        &api,
        "svc",
        &real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]),
    )
    .await;
    wait(&api, &node, "svc", |b| state_of(b, "app") == "Running").await;
    assert_eq!(node.tasks().await.len(), 1);

    let stop = group_path(SUB, RG, "svc").replace("?api-version", "/stop?api-version");
    let (status, answer) = api.call(Method::POST, &stop, None).await;
    assert!(status.is_success(), "{status} {answer}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !node.tasks().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks still run after stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait(&api, &node, "svc", |b| {
        b["properties"]["instanceView"]["state"] == "Stopped"
    })
    .await;

    let start = group_path(SUB, RG, "svc").replace("?api-version", "/start?api-version");
    let (status, answer) = api.call(Method::POST, &start, None).await;
    assert!(status.is_success(), "{status} {answer}");
    wait(&api, &node, "svc", |b| state_of(b, "app") == "Running").await;
    assert_eq!(node.tasks().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_adopts_running_containers() {
    let (cluster, api, mut node) = setup("real-adopt").await;
    create(
        &api,
        "long",
        &real_group(
            &node.image,
            "Always",
            &[("a", &["sleep", "3600"]), ("b", &["sleep", "3600"])],
        ),
    )
    .await;
    wait(&api, &node, "long", |b| {
        state_of(b, "a") == "Running" && state_of(b, "b") == "Running"
    })
    .await;
    let mut before = node.tasks().await;
    before.sort();
    assert_eq!(before.len(), 2);

    node.kill_agent().await;
    node.start_agent();
    // The new agent has read the group back and looked at its tasks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !node.agent_log().contains("adopting a group") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never adopted: {}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_node(&node.name, "Ready").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut after = node.tasks().await;
    after.sort();
    assert_eq!(before, after, "the same tasks with the same pids");
    let body = wait(&api, &node, "long", |b| state_of(b, "a") == "Running").await;
    assert_eq!(view(&body, "a")["restartCount"], 0, "{body}");
    assert_eq!(node.containers().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_nothing_behind() {
    let (_cluster, api, node) = setup("real-delete").await;
    let mut body = real_group(
        &node.image,
        "Always",
        &[("app", &["sleep", "3600"]), ("side", &["sleep", "3600"])],
    );
    body["properties"]["volumes"] = json!([
        {"name": "secret", "secret": {"k": "dg=="}},
        {"name": "scratch", "emptyDir": {}}
    ]);
    body["properties"]["containers"][0]["properties"]["volumeMounts"] =
        json!([{"name": "secret", "mountPath": "/s"}, {"name": "scratch", "mountPath": "/t"}]);
    create(&api, "gone", &body).await;
    let body = wait(&api, &node, "gone", |b| {
        state_of(b, "app") == "Running" && state_of(b, "side") == "Running"
    })
    .await;
    let ip = body["properties"]["ipAddress"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let groups = node.group_ids();
    assert_eq!(groups.len(), 1);
    let gid = groups[0].clone();
    let images_only = {
        // Snapshots that are not the group's (the image's layers stay cached).
        node.snapshots()
            .await
            .into_iter()
            .filter(|s| !s.starts_with(&gid))
            .count()
    };
    assert!(node.cgroup_dir("memory", &gid, "app").exists());

    let (status, _) = api
        .call(Method::DELETE, &group_path(SUB, RG, "gone"), None)
        .await;
    assert!(status.is_success(), "{status}");
    wait_gone(&api, "gone").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    while !node.containers().await.is_empty() || !node.group_ids().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group is still on the node\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.tasks().await.is_empty(), "no tasks");
    assert_eq!(
        node.snapshots().await.len(),
        images_only,
        "no container snapshots"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&gid),
        "no mounts of the group:\n{mountinfo}"
    );
    let netns_files: Vec<_> = walk(&node.state_dir.join("runtime/network"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&gid))
        .collect();
    assert!(
        netns_files.is_empty(),
        "no netns or saved CNI result: {netns_files:?}"
    );
    let leases: Vec<_> = walk(&node.state_dir.join("runtime/network"))
        .into_iter()
        .filter(|p| !ip.is_empty() && p.file_name().is_some_and(|n| n.to_string_lossy() == ip))
        .collect();
    assert!(leases.is_empty(), "no IPAM lease for {ip}: {leases:?}");
    for controller in ["memory", "cpu", "pids"] {
        let dir = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&node.cgroup_parent)
            .join(&gid);
        assert!(!dir.exists(), "{} remains", dir.display());
    }
    assert!(
        !node.state_dir.join("runtime/logs").join(&gid).exists(),
        "no logs"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_registry_password_is_an_inaccessible_image_naming_auth() {
    let cluster = Cluster::start().await;
    let api = cluster.tenant(&[SUB]).await;
    let node = RealNode::start(
        &cluster,
        "real-auth",
        RealOptions {
            registry_auth: Some(("berth".into(), "right-password".into())),
            ..RealOptions::default()
        },
    )
    .await;
    let mut body = real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]);
    body["properties"]["imageRegistryCredentials"] = json!([{
        "server": node.registry.addr.to_string(),
        "username": "berth",
        "password": "wrong-password"
    }]);
    let (status, headers, answer) = api.put_group(SUB, RG, "private", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let operation = headers["azure-asyncoperation"]
        .to_str()
        .expect("header")
        .to_owned();
    let result = api.wait_operation(&operation, SLOW).await;
    assert_eq!(result["status"], "Failed", "{result}");
    assert_eq!(result["error"]["code"], "InaccessibleImage", "{result}");
    let message = result["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        message.contains("credential") || message.contains("auth"),
        "{result}"
    );
    assert!(
        !message.contains("wrong-password"),
        "the password never shows: {result}"
    );

    // The right password pulls and runs.
    body["properties"]["imageRegistryCredentials"][0]["password"] = json!("right-password");
    create(&api, "private2", &body).await;
    wait(&api, &node, "private2", |b| state_of(b, "app") == "Running").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_with_tail_and_timestamps() {
    let (_cluster, api, node) = setup("real-logs").await;
    let body = real_group(
        &node.image,
        "Always",
        &[(
            "app",
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5; do echo line$i; done; sleep 1; echo oops >&2; sleep 3600",
            ],
        )],
    );
    create(&api, "logs", &body).await;
    wait(&api, &node, "logs", |b| state_of(b, "app") == "Running").await;
    let logs =
        group_path(SUB, RG, "logs").replace("?api-version", "/containers/app/logs?api-version");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    let all = loop {
        let (status, body) = api.call(Method::GET, &logs, None).await;
        if status == StatusCode::OK && body["content"].as_str().is_some_and(|c| c.contains("oops"))
        {
            break body["content"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{status} {body}\n{}",
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(all, "line1\nline2\nline3\nline4\nline5\noops\n");

    let (status, body) = api.call(Method::GET, &format!("{logs}&tail=2"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["content"], "line5\noops\n");

    let (status, body) = api
        .call(Method::GET, &format!("{logs}&tail=1&timestamps=true"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let line = body["content"].as_str().unwrap_or_default();
    let (stamp, text) = line
        .trim_end()
        .split_once(' ')
        .expect("timestamp then text");
    assert_eq!(text, "oops");
    assert!(time_ok(stamp), "an RFC 3339 timestamp: {stamp}");
}

fn time_ok(stamp: &str) -> bool {
    stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T') && stamp.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_restarting_under_the_agent_is_survived() {
    let (_cluster, api, mut node) = setup("real-cdrestart").await;
    create(
        &api,
        "before",
        &real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]),
    )
    .await;
    wait(&api, &node, "before", |b| state_of(b, "app") == "Running").await;
    let before = node.tasks().await;

    node.containerd
        .restart()
        .await
        .expect("containerd restarts");
    // Running containers are untouched, and the agent keeps working against the new daemon.
    assert_eq!(node.tasks().await, before);
    create(
        &api,
        "after",
        &real_group(&node.image, "Always", &[("app", &["sleep", "3600"])]),
    )
    .await;
    wait(&api, &node, "after", |b| state_of(b, "app") == "Running").await;
    let body = wait(&api, &node, "before", |b| state_of(b, "app") == "Running").await;
    assert_eq!(view(&body, "app")["restartCount"], 0, "{body}");
    assert_eq!(node.tasks().await.len(), 2);

    // Exits are still seen: killing the first group's process restarts it (policy Always).
    let (id, pid) = before[0].clone();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    let body = wait(&api, &node, "before", |b| {
        view(b, "app")["restartCount"].as_i64().unwrap_or(0) >= 1 && state_of(b, "app") == "Running"
    })
    .await;
    assert_eq!(
        view(&body, "app")["previousState"]["exitCode"],
        137,
        "{body}"
    );
    assert_ne!(node.task_pid(&id).await, Some(pid));
}
