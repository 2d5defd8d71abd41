//! The `berth` binary against a real apiserver and hollow node, as a user types it.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::harness::{Cluster, SUB, group_body, running};

pub fn berth_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = dir.join("berth");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

pub struct Cli {
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cli {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        Self {
            config: dir.path().join("config.toml"),
            _dir: dir,
        }
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(berth_binary())
            .args(args)
            .env("BERTH_CONFIG", &self.config)
            .env_remove("BERTH_ENDPOINT")
            .env_remove("BERTH_ENDPOINTS")
            .env_remove("BERTH_TOKEN")
            .env_remove("BERTH_SUBSCRIPTION")
            .env_remove("BERTH_CA_FILE")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("berth runs")
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).expect("JSON output")
    }
}

#[tokio::test]
async fn the_cli_drives_a_group_through_its_life() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let tenant = cluster.tenant(&[SUB]).await;
    let ca = cluster.dir().join("ca.crt");
    let cli = Cli::new();
    cli.ok(&[
        "login",
        "--endpoint",
        &cluster.base,
        "--token",
        tenant.token(),
        "--ca-file",
        ca.to_str().expect("utf-8"),
    ])
    .await;

    let created = cli
        .json(&[
            "container",
            "create",
            "-g",
            "cli",
            "-n",
            "web",
            "--image",
            "registry.local/busybox:1",
            "--cpu",
            "0.5",
            "--memory",
            "1",
            "--ports",
            "80",
            "--dns-name-label",
            "cliweb1",
            "-e",
            "MODE=test",
            "--secure-environment-variables",
            "PASSWORD=cli-secret-pw",
        ])
        .await;
    assert_eq!(
        created["properties"]["provisioningState"], "Succeeded",
        "{created}"
    );
    assert_eq!(created["properties"]["instanceView"]["state"], "Running");
    assert_eq!(
        created["properties"]["ipAddress"]["fqdn"],
        "cliweb1.local.berth.internal"
    );
    assert!(!created.to_string().contains("cli-secret-pw"));

    let shown = cli
        .json(&["container", "show", "-g", "cli", "-n", "web"])
        .await;
    assert_eq!(
        shown["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"],
        0.5
    );
    let table = cli.ok(&["container", "list"]).await;
    assert!(table.contains("web") && table.contains("cli"), "{table}");

    cli.ok(&["container", "stop", "-g", "cli", "-n", "web"])
        .await;
    assert_eq!(
        cli.json(&["container", "show", "-g", "cli", "-n", "web"])
            .await["properties"]["instanceView"]["state"],
        "Stopped"
    );
    cli.ok(&["container", "start", "-g", "cli", "-n", "web"])
        .await;
    cli.ok(&["container", "restart", "-g", "cli", "-n", "web"])
        .await;
    assert_eq!(
        cli.json(&["container", "show", "-g", "cli", "-n", "web"])
            .await["properties"]["instanceView"]["state"],
        "Running"
    );

    cli.ok(&["container", "delete", "-g", "cli", "-n", "web", "--yes"])
        .await;
    let missing = cli
        .run(&["container", "show", "-g", "cli", "-n", "web"])
        .await;
    assert_eq!(missing.status.code(), Some(3), "not found exits 3");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ResourceNotFound"));

    // A bad request: the server's code and target reach the user.
    let bad = cli
        .run(&[
            "container",
            "create",
            "-g",
            "cli",
            "-n",
            "bad",
            "--image",
            "x",
            "--cpu",
            "9",
        ])
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("ContainerGroupResourcesExceedLimit"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test]
async fn the_cli_creates_from_an_aci_yaml_file_and_administers() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("node-a", 4.0, 8.0).await;
    let ca = cluster.dir().join("ca.crt");
    let ca = ca.to_str().expect("utf-8");
    let cli = Cli::new();
    let op = &cluster.operator;
    let token = cli
        .ok(&[
            "--endpoint",
            &cluster.base,
            "--ca-file",
            ca,
            "--token",
            op,
            "admin",
            "token",
            "create",
            "--subscription",
            SUB,
        ])
        .await;
    let token = token.trim();
    assert!(token.starts_with("berth_"), "{token}");
    let nodes = cli
        .json(&[
            "--endpoint",
            &cluster.base,
            "--ca-file",
            ca,
            "--token",
            op,
            "admin",
            "node",
            "list",
        ])
        .await;
    assert_eq!(nodes[0]["name"], "node-a", "{nodes}");

    // The YAML shape of ACI's docs, with an old apiVersion and a secure value.
    let yaml = "apiVersion: 2018-06-01\nlocation: local\nname: securetest\nproperties:\n  containers:\n  - name: mycontainer\n    properties:\n      environmentVariables:\n      - name: SECRET\n        secureValue: yaml-secret\n      image: registry.local/busybox:1\n      ports: []\n      resources:\n        requests:\n          cpu: 1.0\n          memoryInGB: 1.5\n  osType: Linux\n  restartPolicy: Always\ntags: null\ntype: Microsoft.ContainerInstance/containerGroups\n";
    let file = cluster.dir().join("group.yaml");
    std::fs::write(&file, yaml).expect("write yaml");
    cli.ok(&[
        "login",
        "--endpoint",
        &cluster.base,
        "--token",
        token,
        "--ca-file",
        ca,
    ])
    .await;
    let created = cli
        .json(&[
            "container",
            "create",
            "-g",
            "yaml",
            "--file",
            file.to_str().expect("utf-8"),
        ])
        .await;
    assert_eq!(created["name"], "securetest");
    assert_eq!(
        created["properties"]["instanceView"]["state"], "Running",
        "{created}"
    );
    assert!(!created.to_string().contains("yaml-secret"));
}

#[tokio::test]
async fn the_cli_lists_and_revokes_tokens() {
    let cluster = Cluster::start().await;
    let ca = cluster.dir().join("ca.crt");
    let cli = Cli::new();
    cli.ok(&[
        "login",
        "--endpoint",
        &cluster.base,
        "--token",
        &cluster.operator,
        "--ca-file",
        ca.to_str().expect("utf-8"),
    ])
    .await;
    let created = cli
        .json(&[
            "admin",
            "token",
            "create",
            "--subscription",
            SUB,
            "--expires-in",
            "30d",
        ])
        .await;
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    let expires = time::OffsetDateTime::parse(
        created["expiresAt"].as_str().expect("expiresAt"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let days = (expires - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((30 * 24 - 1..=30 * 24).contains(&days), "{created}");
    let tenant = cluster.api(&token);
    let groups = format!(
        "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
    );
    let (status, body) = tenant.call(reqwest::Method::GET, &groups, None).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");

    let table = cli.ok(&["admin", "token", "list"]).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "PREFIX",
            "SUBSCRIPTIONS",
            "OPERATOR",
            "CREATED",
            "EXPIRES",
            "REVOKED"
        ],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} is not in\n{table}"));
    assert!(
        row.contains(SUB) && row.contains(&format!("berth_{id}_")),
        "{row}"
    );
    let secret = token.rsplit('_').next().expect("secret");
    for shown in [
        table.clone(),
        cli.ok(&["admin", "token", "list", "-o", "json"]).await,
    ] {
        assert!(!shown.contains(&secret[4..]), "a secret is shown:\n{shown}");
    }
    let listed = cli.json(&["admin", "token", "list"]).await;
    let entry = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(entry["expiresAt"], created["expiresAt"]);

    cli.ok(&["admin", "token", "revoke", &id]).await;
    let (status, body) = tenant.call(reqwest::Method::GET, &groups, None).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{body}");
    let table = cli.ok(&["admin", "token", "list"]).await;
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("still listed");
    assert!(
        row.split_whitespace()
            .last()
            .is_some_and(|r| r.ends_with('Z')),
        "REVOKED shows when: {row}"
    );
    let unknown = cli.run(&["admin", "token", "revoke", "nosuchtoken1"]).await;
    assert_eq!(unknown.status.code(), Some(3), "not found exits 3");
    let bad = cli
        .run(&[
            "admin",
            "token",
            "create",
            "--operator",
            "--expires-in",
            "30x",
        ])
        .await;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a malformed duration is a usage error"
    );
}

#[tokio::test]
async fn the_cli_tries_the_next_endpoint_when_one_cannot_be_reached() {
    let cluster = Cluster::start().await;
    let tenant = cluster.tenant(&[SUB]).await;
    let ca = cluster.dir().join("ca.crt");
    // A port nothing listens on: the first "replica" is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down = format!("https://localhost:{down}");
    let cli = Cli::new();
    let args = |endpoints: &[&str]| {
        let mut args = vec!["container", "list", "--subscription", SUB, "-o", "json"];
        for endpoint in endpoints {
            args.extend(["--endpoint", endpoint]);
        }
        args.extend([
            "--token",
            tenant.token(),
            "--ca-file",
            ca.to_str().expect("utf-8"),
        ]);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let alone = args(&[&down]);
    let alone: Vec<&str> = alone.iter().map(String::as_str).collect();
    assert!(
        !cli.run(&alone).await.status.success(),
        "nothing answers there"
    );
    let listed = format!("{down},{}", cluster.base);
    for endpoints in [
        vec![down.as_str(), cluster.base.as_str()],
        vec![listed.as_str()],
    ] {
        let both = args(&endpoints);
        let both: Vec<&str> = both.iter().map(String::as_str).collect();
        let groups: Value = serde_json::from_str(&cli.ok(&both).await).expect("JSON output");
        assert!(groups.is_array(), "{endpoints:?}: {groups}");
    }
}

/// `berth admin node cordon|uncordon|drain|delete` against the real apiserver and two hollow nodes:
/// cordon keeps new groups off a node, drain moves them and waits until they run on the other one,
/// delete refuses a node with groups and removes an empty one.
#[tokio::test]
async fn the_cli_cordons_drains_and_deletes_nodes() {
    let cluster = Cluster::start().await;
    let _a = cluster.add_node("node-a", 4.0, 8.0).await;
    let _b = cluster.add_node("node-b", 4.0, 8.0).await;
    let tenant = cluster.tenant(&[SUB]).await;
    let ca = cluster.dir().join("ca.crt");
    let ca = ca.to_str().expect("utf-8");
    let cli = Cli::new();
    let op = cluster.operator.clone();
    let admin = |args: &[&str]| -> Vec<String> {
        [
            "--endpoint",
            &cluster.base,
            "--ca-file",
            ca,
            "--token",
            &op,
            "admin",
            "node",
        ]
        .iter()
        .chain(args)
        .map(|a| (*a).to_owned())
        .collect()
    };
    let run = |args: Vec<String>| {
        let cli = &cli;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = cli.run(&args).await;
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    // NAME STATUS SCHEDULING … GROUPS: (status, scheduling, groups) of `name`.
    let row = |table: &str, name: &str| -> Option<(String, String, String)> {
        let line = table.lines().find(|l| l.starts_with(&format!("{name} ")))?;
        let cells: Vec<&str> = line.split_whitespace().collect();
        Some((
            cells[1].to_owned(),
            cells[2].to_owned(),
            cells[6].to_owned(),
        ))
    };

    // Cordoned, node-b takes no group: both go to node-a.
    let (code, out, err) = run(admin(&["cordon", "node-b"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        row(&out, "node-b").map(|r| r.1),
        Some("Cordoned".to_owned()),
        "{out}"
    );
    for name in ["g1", "g2"] {
        let (status, _, body) = tenant.put_group(SUB, "rg", name, &group_body()).await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        tenant.wait_group(SUB, "rg", name, 20, running).await;
    }
    let (_, out, _) = run(admin(&["list"])).await;
    assert_eq!(
        row(&out, "node-a"),
        Some(("Ready".into(), "-".into(), "2".into())),
        "{out}"
    );
    assert_eq!(
        row(&out, "node-b"),
        Some(("Ready".into(), "Cordoned".into(), "0".into())),
        "{out}"
    );

    // Drained, node-a's groups run on node-b (uncordoned) and the command says so as they do.
    let (code, _, err) = run(admin(&["uncordon", "node-b"])).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(admin(&["drain", "node-a", "--timeout", "60"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("Draining node node-a: 2 groups to place on other nodes."),
        "{out}"
    );
    for name in ["g1", "g2"] {
        assert!(
            out.contains(&format!("rg/{name}: Running on node node-b (")),
            "{out}"
        );
    }
    assert!(out.contains("Node node-a drained: 2 of 2 moved."), "{out}");
    for name in ["g1", "g2"] {
        tenant.wait_group(SUB, "rg", name, 20, running).await;
    }
    let (_, out, _) = run(admin(&["list"])).await;
    assert_eq!(
        row(&out, "node-a"),
        Some(("Ready".into(), "Draining".into(), "0".into())),
        "{out}"
    );
    assert_eq!(
        row(&out, "node-b").map(|r| r.2),
        Some("2".to_owned()),
        "{out}"
    );

    // Delete: refused with groups on the node, done when it is empty.
    let (code, _, err) = run(admin(&["delete", "node-b"])).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("NodeNotEmpty"), "{err}");
    let (code, _, err) = run(admin(&["delete", "node-a"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err.trim(), "Deleted node node-a.");
    let (_, out, _) = run(admin(&["list"])).await;
    assert_eq!(row(&out, "node-a"), None, "{out}");

    // No node left to take them: the drain gives up after its timeout, naming both.
    let (code, out, err) = run(admin(&["drain", "node-b", "--timeout", "3"])).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("gave up after 3 s: 0 of 2 groups moved off node node-b; still waiting: rg/g"),
        "{err}"
    );
    assert!(err.contains("rg/g1") && err.contains("rg/g2"), "{err}");
    let (code, _, err) = run(admin(&["delete", "nosuchnode"])).await;
    assert_eq!(code, Some(3), "an unknown node exits as not found: {err}");
}
