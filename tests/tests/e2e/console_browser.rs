//! The web console in a real browser: an apiserver, a real node (containerd) and the groups a user
//! would look at, made through the API; then `tests/browser` (pytest + Selenium driving Debian's
//! headless Chromium) signs in and drives every page as a user does. A failing browser test leaves
//! its screenshot and page log under `target/artifacts/console/`; a passing run leaves
//! `group-overview.png` there (the README's picture).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Api, Cluster, OTHER_SUB, SUB};
use crate::real::{RealNode, RealOptions, SLOW, python, real_group, state_of, wait_group};

const RG: &str = "console-rg";
/// Prints `line 1`, `line 2`, … one a second, under a DNS name label.
const TICKER: &str = "ticker";
const TICKER_LABEL: &str = "ticker-console";
/// A tag value, a command and a log line that are markup.
const TAGGED: &str = "tagged";
const HOSTILE: &str = "<img src=x onerror=window.__xss=1>";
/// Stopped and started again from the page.
const STOPPABLE: &str = "stoppable";
const NODE: &str = "console-node";
/// The browser tests `tests/browser/test_console.py` holds (its parametrized cases counted).
const BROWSER_TESTS: usize = 21;

async fn put_running(api: &Api, node: &RealNode, name: &str, body: &Value) -> Value {
    let (status, _, answer) = api.put_group(SUB, RG, name, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    wait_group(api, node, RG, name, |b| {
        state_of(b, "app") == "Running"
            && (name != TICKER || b["properties"]["ipAddress"]["fqdn"].is_string())
    })
    .await
}

fn ticker(image: &str) -> Value {
    let mut body = real_group(
        image,
        "Always",
        &[(
            "app",
            &[
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo \"line $i\"; sleep 1; done",
            ],
        )],
    );
    body["properties"]["ipAddress"] =
        json!({"type": "Public", "ports": [{"port": 80}], "dnsNameLabel": TICKER_LABEL});
    body["properties"]["containers"][0]["properties"]["ports"] = json!([{"port": 80}]);
    body
}

fn tagged(image: &str) -> Value {
    let print = format!("echo '{HOSTILE}'; exec sleep 3600");
    let mut body = real_group(image, "Always", &[("app", &["sh", "-c", &print])]);
    body["tags"] = json!({"note": HOSTILE});
    body
}

/// With `BERTH_CONSOLE_HOLD` set, the stack stays up for a person (or a page's author) to run
/// `tests/browser` or a browser against it: the variables are written to `<artifacts>/env.sh`, and
/// the test goes on once that file is removed.
async fn hold(artifacts: &Path, env: &[(&str, String)]) {
    std::fs::create_dir_all(artifacts).expect("artifacts dir");
    let file = artifacts.join("env.sh");
    let script: String = env
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    std::fs::write(&file, script).expect("env.sh");
    eprintln!("holding the stack: . {0}; rm {0} to go on", file.display());
    while file.exists() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last line of pytest's summary says `N passed` and nothing failed or was skipped.
fn passed(stdout: &str) -> Option<usize> {
    let summary = stdout.lines().rev().find(|l| l.contains(" in "))?;
    if ["failed", "error", "skipped"]
        .iter()
        .any(|word| summary.contains(word))
    {
        return None;
    }
    let (count, rest) = summary.trim_matches(['=', ' ']).split_once(' ')?;
    rest.starts_with("passed").then(|| count.parse().ok())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_drives_a_real_stack_in_headless_chromium() {
    let cluster = Cluster::start().await;
    let options = RealOptions {
        capacity: Some((4.0, 8.0)),
        ..RealOptions::default()
    };
    let node = RealNode::start(&cluster, NODE, options).await;
    let tenant = cluster.tenant(&[SUB]).await;
    let other = cluster.tenant(&[OTHER_SUB]).await;
    let image = node.image.clone();
    let ticking = put_running(&tenant, &node, TICKER, &ticker(&image)).await;
    let fqdn = ticking["properties"]["ipAddress"]["fqdn"]
        .as_str()
        .unwrap_or_default();
    assert!(fqdn.starts_with(&format!("{TICKER_LABEL}.")), "{ticking}");
    put_running(&tenant, &node, TAGGED, &tagged(&image)).await;
    let sleeper = real_group(&image, "Always", &[("app", &["sleep", "3600"])]);
    put_running(&tenant, &node, STOPPABLE, &sleeper).await;

    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), &cluster.ca_pem).expect("CA file");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let artifacts = root.join("target/artifacts/console");
    let overview = artifacts.join("group-overview.png");
    let _ = std::fs::remove_file(&overview);
    let env = [
        ("BERTH_CONSOLE_ENDPOINT", cluster.base.clone()),
        ("BERTH_CONSOLE_CA", ca.path().display().to_string()),
        ("BERTH_CONSOLE_TOKEN", tenant.token().to_owned()),
        ("BERTH_CONSOLE_OTHER_TOKEN", other.token().to_owned()),
        ("BERTH_CONSOLE_OPERATOR_TOKEN", cluster.operator.clone()),
        ("BERTH_CONSOLE_SUBSCRIPTION", SUB.to_owned()),
        ("BERTH_CONSOLE_RESOURCE_GROUP", RG.to_owned()),
        ("BERTH_CONSOLE_TICKER", TICKER.to_owned()),
        ("BERTH_CONSOLE_TAGGED", TAGGED.to_owned()),
        ("BERTH_CONSOLE_STOPPABLE", STOPPABLE.to_owned()),
        ("BERTH_CONSOLE_IMAGE", image.clone()),
        ("BERTH_CONSOLE_HOSTILE", HOSTILE.to_owned()),
        ("BERTH_CONSOLE_NODE", NODE.to_owned()),
        ("BERTH_CONSOLE_ARTIFACTS", artifacts.display().to_string()),
    ];
    if std::env::var_os("BERTH_CONSOLE_HOLD").is_some() {
        hold(&artifacts, &env).await;
    }
    let run = tokio::process::Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(root.join("tests/browser"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(SLOW * 10), run)
        .await
        .expect("the browser tests end")
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && passed(&stdout) == Some(BROWSER_TESTS),
        "expected {BROWSER_TESTS} passed (screenshots in {})\n{stdout}\n{}\n--- agent log ---\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&output.stderr),
        node.agent_log()
    );
    assert!(overview.exists(), "no {}", overview.display());
}

#[test]
fn pytests_summary_is_read_strictly() {
    assert_eq!(passed("....\n18 passed in 61.20s\n"), Some(18));
    assert_eq!(passed("18 passed, 1 warning in 3.00s"), Some(18));
    assert_eq!(passed("17 passed, 1 failed in 3.00s"), None);
    assert_eq!(passed("17 passed, 1 skipped in 3.00s"), None);
    assert_eq!(passed("no tests ran in 0.01s"), None);
    assert_eq!(passed("===== 2 passed in 0.50s ====="), Some(2));
}
