//! One user's `az`: its own config dir, Berth registered as a cloud and selected, signed in with a
//! service principal made of a Berth credential, and the cluster's CA in the variables `az` and its
//! websocket client read.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use crate::harness::Cluster;

/// How long one `az` command may take: they poll with ARM's intervals (`logs --follow` every 10 s).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

pub struct Az {
    binary: PathBuf,
    ca: PathBuf,
    // Last: removed after every command ended.
    dir: tempfile::TempDir,
}

impl Az {
    /// Registers the cluster as a cloud (from its metadata endpoint, with the trailing slash users
    /// copy), selects it and signs in with a new credential for `subscription`.
    pub async fn sign_in(cluster: &Cluster, binary: &Path, subscription: &str) -> Self {
        let az = Self::new(cluster, binary);
        let endpoint = format!("{}/", cluster.base);
        az.text(&[
            "cloud",
            "register",
            "-n",
            "berth",
            "--endpoint-resource-manager",
            &endpoint,
        ])
        .await;
        az.text(&["cloud", "set", "-n", "berth"]).await;

        let operator = cluster.operator_api();
        let (status, credential) = operator
            .call(
                Method::POST,
                "/admin/v1/tokens",
                Some(json!({"subscriptions": [subscription]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{credential}");
        let (status, tenants) = operator
            .call(Method::GET, "/tenants?api-version=2022-12-01", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{tenants}");
        let tenant = tenants["value"][0]["tenantId"]
            .as_str()
            .unwrap_or_else(|| panic!("a tenant id: {tenants}"))
            .to_owned();
        let id = credential["id"].as_str().expect("the credential's id");
        let secret = credential["token"]
            .as_str()
            .expect("the credential's secret");
        let accounts = az
            .json(&[
                "login",
                "--service-principal",
                "-u",
                id,
                "-p",
                secret,
                "--tenant",
                &tenant,
            ])
            .await;
        assert_eq!(accounts[0]["id"], subscription, "{accounts}");
        az
    }

    /// An `az` of its own that knows nothing yet, with the cluster's CA at [`Az::ca`].
    pub fn new(cluster: &Cluster, binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &cluster.ca_pem).expect("CA written");
        Self {
            binary: binary.to_path_buf(),
            ca,
            dir,
        }
    }

    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// Runs `script` in `sh -e` as a user's shell would, with this `az` first on `PATH` and its
    /// config dir, but none of the CA variables: the script sets those itself.
    pub async fn shell(&self, script: &str) -> String {
        let bin = self.binary.parent().expect("az's bin dir");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("sh");
        command.args(["-e", "-c", script]);
        self.environment(&mut command);
        command
            .env("PATH", path)
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("WEBSOCKET_CLIENT_CA_BUNDLE")
            .env_remove("SSL_CERT_FILE");
        let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
            .await
            .expect("the script ends")
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{script}\nfailed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args);
        self.environment(&mut command);
        command
    }

    /// What `az` needs to talk to this cluster and nothing of the machine's own settings.
    fn environment(&self, command: &mut Command) {
        let config = self.dir.path().join("config");
        command
            .env("AZURE_CONFIG_DIR", &config)
            .env("AZURE_EXTENSION_DIR", config.join("cliextensions"))
            .env("AZURE_CORE_OUTPUT", "json")
            .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
            .env("AZURE_CORE_NO_COLOR", "true")
            .env("AZURE_CORE_SURVEY_MESSAGE", "false")
            .env("AZURE_CORE_ONLY_SHOW_ERRORS", "true")
            // `requests` (ARM calls, sign-in) and `websocket-client` (exec) each read their own.
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .env("WEBSOCKET_CLIENT_CA_BUNDLE", &self.ca)
            .env("SSL_CERT_FILE", &self.ca)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
    }

    /// Runs `az args` to its end: its exit status, stdout and stderr.
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::time::timeout(COMMAND_TIMEOUT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("az {args:?} still runs after {COMMAND_TIMEOUT:?}"))
            .expect("az runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// What `az args` printed, which must succeed.
    pub async fn text(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "az {args:?} failed:\n{stderr}\n{stdout}");
        stdout
    }

    /// The JSON `az args` printed, which must succeed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let stdout = self.text(args).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("az {args:?} printed no JSON ({e}):\n{stdout}"))
    }

    /// What `az args` printed once it says what `done` looks for (each run must succeed).
    pub async fn eventually(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.text(args).await;
            if done(&out) {
                return out;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "az {args:?} never printed what was awaited:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `az container show` says the group `name` (resource group `demo`) runs.
    pub async fn until_running(&self, name: &str) {
        let args = ["container", "show", "-g", "demo", "-n", name];
        self.eventually(&args, |out| {
            serde_json::from_str::<Value>(out)
                .is_ok_and(|group| group["instanceView"]["state"] == "Running")
        })
        .await;
    }

    /// Runs `az args` on a pseudo-terminal of `script`'s own (size 0×0), types `input` once the
    /// remote shell's prompt shows, and returns all the terminal showed.
    pub async fn on_terminal(&self, args: &[&str], input: &str) -> String {
        let line = std::iter::once(self.binary.to_string_lossy().into_owned())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .map(|word| shell_quote(&word))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("script");
        command
            .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.environment(&mut command);
        let mut child = command.spawn().expect("script (util-linux) runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let session = async {
            let mut screen = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut typed = false;
            loop {
                let n = stdout.read(&mut chunk).await.expect("terminal readable");
                if n == 0 {
                    break;
                }
                screen.extend_from_slice(&chunk[..n]);
                // busybox sh on a terminal prompts with `# `: `az` is in raw mode by then.
                if !typed && String::from_utf8_lossy(&screen).contains("# ") {
                    stdin
                        .write_all(input.as_bytes())
                        .await
                        .expect("terminal writable");
                    typed = true;
                }
            }
            String::from_utf8_lossy(&screen).into_owned()
        };
        let screen = tokio::time::timeout(COMMAND_TIMEOUT, session)
            .await
            .unwrap_or_else(|_| panic!("az {args:?} on a terminal still runs"));
        let status = child.wait().await.expect("script ends");
        assert!(
            status.success(),
            "az {args:?} on a terminal: {status}\n{screen}"
        );
        screen
    }
}

/// `word` quoted for `sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
