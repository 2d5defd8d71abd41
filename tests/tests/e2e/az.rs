//! The Azure CLI, unchanged, against a real Berth with a real node: `az` from PyPI, installed by
//! `scripts/setup` into `target/az` (the current release) and `target/az-2.66` (the oldest that sends
//! api-version 2023-05-01), each run with a config dir of its own and the cluster's CA.

pub(crate) mod session;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Cluster, SUB};
use crate::real::{RealNode, RealOptions, bin_dir};
use session::Az;

/// The venvs `scripts/setup` installs `az` into, by the directory under `target/`.
pub(crate) const CURRENT: &str = "az";
const OLDEST: &str = "az-2.66";

/// `target/<venv>/bin/az`, which `scripts/setup` installs.
pub(crate) fn az_binary(venv: &str) -> PathBuf {
    let target = bin_dir()
        .parent()
        .expect("target dir above the profile dir")
        .to_path_buf();
    let az = target.join(venv).join("bin").join("az");
    assert!(
        az.exists(),
        "{} is missing: run scripts/setup, which installs the Azure CLI from PyPI",
        az.display()
    );
    az
}

#[tokio::test]
async fn the_current_az_drives_berth_unchanged() {
    drive(&az_binary(CURRENT)).await;
}

#[tokio::test]
async fn the_oldest_az_that_sends_2023_05_01_drives_berth_unchanged() {
    drive(&az_binary(OLDEST)).await;
}

/// `berth az-setup` prints what a user pastes into a shell; after it, `az` works with Berth. An
/// operator's token makes a new credential for the subscription.
#[tokio::test]
async fn the_lines_berth_az_setup_prints_sign_az_in() {
    let cluster = Cluster::start().await;
    az_setup_signs_in(&cluster, &cluster.operator).await;
}

/// A tenant's token (what `scripts/up` logs the CLI in with) cannot make tokens: az signs in with
/// that token itself.
#[tokio::test]
async fn berth_az_setup_with_a_tenants_token_signs_az_in_with_it() {
    let cluster = Cluster::start().await;
    let tenant = cluster.tenant(&[SUB]).await;
    az_setup_signs_in(&cluster, tenant.token()).await;
}

async fn az_setup_signs_in(cluster: &Cluster, token: &str) {
    let _node = cluster.add_node("node-a", 2.0, 4.0).await;
    let az = Az::new(cluster, &az_binary(CURRENT));
    let berth = bin_dir().join("berth");
    // The in-process apiserver answers on this test's runtime: the CLI runs beside it, not blocking it.
    let printed = tokio::process::Command::new(&berth)
        .args(["--endpoint", &cluster.base, "--token", token, "--ca-file"])
        .arg(az.ca())
        .args(["--subscription", SUB, "--config"])
        .arg(az.ca().with_file_name("berth.toml"))
        .arg("az-setup")
        .output()
        .await
        .expect("berth runs");
    let lines = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert!(lines.contains("az login --service-principal"), "{lines}");
    let operator = token == cluster.operator;
    assert_eq!(
        lines.contains(token),
        !operator,
        "a new credential, or the tenant's own token: {lines}"
    );
    let shown = az
        .shell(&format!(
            "{{\n{lines}\n}} >/dev/null\naz account show\naz container list -g demo\naz group create -n demo -l local"
        ))
        .await;
    // `az account show` (the subscription signed in to), then an empty list, then the new group.
    let mut documents = serde_json::Deserializer::from_str(&shown).into_iter::<Value>();
    let account = documents.next().expect("az account show").expect("JSON");
    assert_eq!(account["id"], SUB, "{shown}");
    assert_eq!(account["user"]["type"], "servicePrincipal", "{shown}");
    let list = documents.next().expect("az container list").expect("JSON");
    assert_eq!(list, Value::Array(vec![]), "{shown}");
    let group = documents.next().expect("az group create").expect("JSON");
    assert_eq!(group["name"], "demo", "{shown}");
}

/// Every `az container` step a user takes, from registering the cloud to deleting the resource
/// group, each checked by what `az` printed.
async fn drive(binary: &Path) {
    let cluster = Cluster::start().await;
    let node = RealNode::start(&cluster, "az-node", RealOptions::default()).await;
    let az = Az::sign_in(&cluster, binary, SUB).await;
    let image = node.image.as_str();

    let group = az
        .json(&["group", "create", "-n", "demo", "-l", "local"])
        .await;
    assert_eq!(group["properties"]["provisioningState"], "Succeeded");
    assert_eq!(group["location"], "local");

    // `--image`, without `-l` (the resource group's location) and with it. The node has 2 CPUs: each
    // group asks a quarter (az's default is a whole one).
    let shell = "while true; do echo tick; sleep 1; done";
    let created = az
        .json(&[
            "container",
            "create",
            "-g",
            "demo",
            "-n",
            "web",
            "--image",
            image,
            "--cpu",
            "0.25",
            "--memory",
            "0.5",
            "--command-line",
            &format!("sh -c '{shell}'"),
        ])
        .await;
    assert_eq!(created["provisioningState"], "Succeeded", "{created}");
    assert_eq!(created["location"], "local");

    // `--file`: a YAML file as ACI's docs write them, without a location: the resource group's,
    // or `-l`'s; and one that names its own.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, location, flags) in [
        ("from-file", "", &[][..]),
        ("from-file-l", "", &["-l", "local"][..]),
        ("from-file-own", "location: local\n", &[][..]),
    ] {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml_group(name, location, image)).expect("YAML written");
        let file = file.to_string_lossy();
        let mut args = vec!["container", "create", "-g", "demo", "--file", &file];
        args.extend_from_slice(flags);
        let made = az.json(&args).await;
        // A generic resource, as ARM's resources API answers: the group's properties nested.
        let properties = &made["properties"];
        assert_eq!(properties["provisioningState"], "Succeeded", "{made}");
        assert_eq!(made["location"], "local", "{made}");
        assert_eq!(
            properties["containers"][0]["properties"]["resources"]["requests"]["memoryInGB"], 0.5,
            "{made}"
        );
    }

    let shown = az
        .json(&["container", "show", "-g", "demo", "-n", "web"])
        .await;
    assert_eq!(shown["containers"][0]["image"], image, "{shown}");
    assert_eq!(shown["osType"], "Linux", "{shown}");
    let in_group = names(&az.json(&["container", "list", "-g", "demo"]).await);
    assert_eq!(
        in_group,
        ["from-file", "from-file-l", "from-file-own", "web"]
    );
    let everywhere = names(&az.json(&["container", "list"]).await);
    assert_eq!(everywhere, in_group);

    az.until_running("web").await;
    let logs = az
        .eventually(&["container", "logs", "-g", "demo", "-n", "web"], |out| {
            out.contains("tick")
        })
        .await;
    assert!(logs.contains("tick\n"), "{logs}");
    let counted = "for i in $(seq 1 15); do echo line-$i; sleep 1; done";
    let counter = az
        .json(&[
            "container",
            "create",
            "-g",
            "demo",
            "-n",
            "counter",
            "-l",
            "local",
            "--image",
            image,
            "--cpu",
            "0.25",
            "--memory",
            "0.5",
            "--restart-policy",
            "Never",
            "--command-line",
            &format!("sh -c '{counted}'"),
        ])
        .await;
    assert_eq!(counter["provisioningState"], "Succeeded", "{counter}");
    // `attach` and `logs --follow` stream until the container ends: `counter` does after its last
    // line. `attach` streams only from a running container, so it goes first.
    let attached = az
        .text(&["container", "attach", "-g", "demo", "-n", "counter"])
        .await;
    assert!(attached.contains("Start streaming logs"), "{attached}");
    assert!(attached.contains("line-15"), "{attached}");
    let followed = az
        .text(&[
            "container",
            "logs",
            "-g",
            "demo",
            "-n",
            "counter",
            "--follow",
        ])
        .await;
    assert!(followed.contains("line-1\n"), "{followed}");
    assert!(followed.contains("line-15\n"), "{followed}");

    // Exec under a pseudo-terminal of size 0×0, as `script` (and CI) give one.
    let screen = az
        .on_terminal(
            &[
                "container",
                "exec",
                "-g",
                "demo",
                "-n",
                "web",
                "--exec-command",
                "/bin/sh",
            ],
            "stty size; echo marker-$((6 * 7)); exit\n",
        )
        .await;
    assert!(screen.contains("24 80"), "{screen}");
    assert!(screen.contains("marker-42"), "{screen}");

    az.text(&["container", "stop", "-g", "demo", "-n", "web"])
        .await;
    let stopped = az
        .json(&["container", "show", "-g", "demo", "-n", "web"])
        .await;
    assert_eq!(stopped["instanceView"]["state"], "Stopped", "{stopped}");
    az.text(&["container", "start", "-g", "demo", "-n", "web"])
        .await;
    az.until_running("web").await;
    az.text(&["container", "restart", "-g", "demo", "-n", "web"])
        .await;
    az.until_running("web").await;

    // Export, then create again from the exported file: it is a file `az` itself reads back.
    let exported = dir.path().join("web.yaml");
    az.text(&[
        "container",
        "export",
        "-g",
        "demo",
        "-n",
        "web",
        "-f",
        &exported.to_string_lossy(),
    ])
    .await;
    let yaml = std::fs::read_to_string(&exported).expect("exported file");
    assert!(yaml.contains("apiVersion:"), "{yaml}");
    assert!(yaml.contains(image), "{yaml}");
    let again = yaml.replace("name: web\n", "name: web-again\n");
    std::fs::write(&exported, again).expect("file rewritten");
    let recreated = az
        .json(&[
            "container",
            "create",
            "-g",
            "demo",
            "--file",
            &exported.to_string_lossy(),
        ])
        .await;
    assert_eq!(recreated["name"], "web-again", "{recreated}");
    assert_eq!(
        recreated["properties"]["provisioningState"], "Succeeded",
        "{recreated}"
    );

    az.text(&["container", "delete", "-g", "demo", "-n", "web", "--yes"])
        .await;
    let left = names(&az.json(&["container", "list", "-g", "demo"]).await);
    assert!(!left.contains(&"web".to_owned()), "{left:?}");
    az.text(&["group", "delete", "-n", "demo", "--yes"]).await;
    assert_eq!(az.json(&["container", "list"]).await, Value::Array(vec![]));
    let exists = az.text(&["group", "exists", "-n", "demo"]).await;
    assert_eq!(exists.trim(), "false");
    // Nothing of the resource group runs on the node any more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !node.tasks().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            node.tasks().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A container group in ACI's YAML, with the property-name spellings ACI's own docs use.
fn yaml_group(name: &str, location: &str, image: &str) -> String {
    format!(
        "apiVersion: 2019-12-01\n\
         {location}\
         name: {name}\n\
         properties:\n\
         \x20 containers:\n\
         \x20 - name: app\n\
         \x20   properties:\n\
         \x20     image: {image}\n\
         \x20     command: [sleep, '3600']\n\
         \x20     resources:\n\
         \x20       requests:\n\
         \x20         cpu: 0.25\n\
         \x20         memoryInGb: 0.5\n\
         \x20 osType: Linux\n\
         \x20 restartPolicy: Always\n\
         type: Microsoft.ContainerInstance/containerGroups\n"
    )
}

/// The sorted names of a list `az` printed.
fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|g| g["name"].as_str().expect("a name").to_owned())
        .collect();
    names.sort();
    names
}
