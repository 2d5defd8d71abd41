//! The network with real namespaces, plugins, iptables and nftables (root only), and the checks of
//! `Network::new`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::mount::MntFlags;
use tokio::io::AsyncWriteExt as _;

use super::*;

mod lifecycle;
mod rules;

#[test]
fn a_missing_cni_bin_dir_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NetworkConfig::new(dir.path().join("state"));
    config.cni_bin_dir = dir.path().join("no-such-dir");
    let error = Network::new(config).unwrap_err();
    assert!(
        matches!(error, NetworkError::PluginMissing { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("\"loopback\""), "{message}");
    assert!(message.contains("no-such-dir"), "{message}");
    assert!(!dir.path().join("state").exists());

    let relative = NetworkConfig::new("relative/state");
    assert!(matches!(
        Network::new(relative),
        Err(NetworkError::RelativeStateDir { .. })
    ));
}

// ---- real namespaces and plugins (root only) ----

/// These tests need root (namespaces, mounts, bridges, iptables); without it they say so and pass.
fn privileged() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root for network namespaces, bridges and iptables");
    }
    root
}

/// A network of its own for one test: bridge `bt<pid><n>`, subnet `10.<200+n>.<pid%250>.0/24`,
/// state in a tempdir. Purged (sandboxes, bridge, mount) when dropped, also when the test fails.
struct TestNet {
    network: Arc<Network>,
    prefix: String,
    _dir: tempfile::TempDir,
}

impl TestNet {
    fn config(n: u32, dir: &Path) -> NetworkConfig {
        let pid = std::process::id();
        NetworkConfig {
            cni_bin_dir: default_cni_bin_dir(),
            state_dir: dir.join("state"),
            bridge: format!("bt{}{n}", pid % 10000),
            subnet: format!("10.{}.{}.0/24", 200 + n, pid % 250),
            publish_ports: false,
        }
    }

    fn new(n: u32, adjust: impl FnOnce(&mut NetworkConfig, &Path)) -> TestNet {
        let dir = tempfile::tempdir().unwrap();
        let mut config = TestNet::config(n, dir.path());
        adjust(&mut config, dir.path());
        let prefix = config.subnet.trim_end_matches("0/24").to_string();
        TestNet {
            network: Arc::new(Network::new(config).unwrap()),
            prefix,
            _dir: dir,
        }
    }

    fn bridge(&self) -> &str {
        &self.network.config.bridge
    }

    /// The host-side interfaces attached to the bridge.
    fn bridge_ports(&self) -> Vec<String> {
        let output = run("ip", &["-o", "link", "show", "master", self.bridge()]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect()
    }

    /// The addresses `host-local` has leased.
    fn leases(&self) -> BTreeSet<String> {
        let dir = self.network.cni_dir().join("ipam").join(&self.network.name);
        list_dir(&dir)
            .into_iter()
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// iptables NAT rules that mention this test's subnet.
    fn nat_rules(&self) -> Vec<String> {
        let output = run("iptables", &["-w", "-t", "nat", "-S"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains(&self.prefix))
            .map(str::to_string)
            .collect()
    }

    /// Deletes this test's NAT rules and their chains, as a reboot would.
    fn forget_nat_rules(&self) {
        for rule in self.nat_rules() {
            // The jumps into each sandbox's chain; the chain itself goes after its jump.
            let Some(rule) = rule
                .strip_prefix("-A ")
                .filter(|r| r.starts_with("POSTROUTING"))
            else {
                continue;
            };
            // `iptables -S` quotes like a shell, so a shell splits it back.
            let delete = format!("iptables -w -t nat -D {rule}");
            assert!(run("sh", &["-c", &delete]).status.success(), "{delete}");
            if let Some((_, chain)) = rule.rsplit_once(" -j ")
                && chain.starts_with("CNI-")
            {
                run("iptables", &["-w", "-t", "nat", "-F", chain]);
                run("iptables", &["-w", "-t", "nat", "-X", chain]);
            }
        }
        assert!(self.nat_rules().is_empty(), "{:?}", self.nat_rules());
    }

    /// `iptables`, or `ip6tables` for an IPv6 subnet.
    fn iptables(&self) -> &'static str {
        if self.network.config.subnet.contains(':') {
            "ip6tables"
        } else {
            "iptables"
        }
    }

    /// The filter-table rules of this network's isolation (`iptables -S`): every rule of, or
    /// jumping to, the node's chains or the chains of groups `ids`, and those chains themselves.
    fn isolation_rules(&self, ids: &[&str]) -> Vec<String> {
        let mut chains = vec![
            isolation::forward_chain(self.bridge()),
            isolation::input_chain(self.bridge()),
        ];
        chains.extend(
            ids.iter()
                .map(|id| isolation::group_chain(self.bridge(), id)),
        );
        let output = run(self.iptables(), &["-w", "-S"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.split(' ').any(|word| chains.iter().any(|c| c == word)))
            .map(str::to_string)
            .collect()
    }

    /// The rules that name group `id`'s chain or `ip`.
    fn group_rules(&self, id: &str, ip: IpAddr) -> Vec<String> {
        let chain = isolation::group_chain(self.bridge(), id);
        let address = format!(" {ip}/");
        let output = run(self.iptables(), &["-w", "-S"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.split(' ').any(|word| word == chain) || line.contains(&address))
            .map(str::to_string)
            .collect()
    }

    /// This network's anti-spoofing table, in an order of its own: the map's elements as
    /// `<port> -> <chain>` (sorted), then each chain's rules as `<chain>: <rule>` (no counters).
    /// Empty if there is no table.
    fn spoofing_rules(&self) -> Vec<String> {
        let table = spoofing::table(self.bridge());
        let output = run(
            spoofing::PROGRAM,
            &["-j", "list", "table", "bridge", &table],
        );
        if !output.status.success() {
            return Vec::new();
        }
        let state = spoofing::TableState::parse(&output.stdout).unwrap();
        let mut rules: Vec<String> = state
            .elements
            .iter()
            .map(|(port, chain)| format!("{port} -> {chain}"))
            .collect();
        rules.sort();
        for chain in &state.chains {
            rules.extend(
                nft_chain(&table, chain)
                    .into_iter()
                    .map(|rule| format!("{chain}: {rule}")),
            );
        }
        rules
    }

    /// The rules of group `id`'s anti-spoofing chain (none if it does not exist).
    fn spoofing_chain(&self, id: &str) -> Vec<String> {
        let chain = spoofing::group_chain(self.bridge(), id);
        nft_chain(&spoofing::table(self.bridge()), &chain)
    }

    /// The host-side veth of a sandbox, from its saved result.
    fn host_veth(&self, id: &str) -> String {
        let record = self.network.load_record(id).unwrap();
        record.result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|interface| {
                interface.get("sandbox").is_none() && interface["name"] != self.bridge()
            })
            .and_then(|interface| interface["name"].as_str())
            .unwrap()
            .to_string()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let network = Arc::clone(&self.network);
        let purged = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(network.purge())
        })
        .join();
        if let Ok(Err(error)) = purged {
            eprintln!("test cleanup: {error}");
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

/// The rules of `chain` in the bridge `table`, as `nft -s` (no counters) lists them.
fn nft_chain(table: &str, chain: &str) -> Vec<String> {
    let output = run(
        spoofing::PROGRAM,
        &["-s", "list", "chain", "bridge", table, chain],
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.ends_with('{') && *line != "}")
        .map(str::to_string)
        .collect()
}

/// The MAC of `eth0` in `netns`, as `ip` shows it.
fn sandbox_mac(netns: &Path) -> String {
    let net = format!("--net={}", netns.display());
    let output = run("nsenter", &[&net, "ip", "-o", "link", "show", "eth0"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {text:?}"))
        .to_string()
}

/// Runs `scripts/lib/send-frames.pl` with `args` in `netns` with no capability but
/// CAP_NET_RAW: what any container may do.
fn send_frames(netns: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/send-frames.pl");
    let output = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["setpriv", "--bounding-set", "-all,+net_raw", "perl"])
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "send-frames {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The link-layer address the node's neighbour table has for `ip`, if any.
fn neighbour(bridge: &str, ip: IpAddr) -> Option<String> {
    let ip = ip.to_string();
    let output = run("ip", &["neigh", "show", "dev", bridge, &ip]);
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .skip_while(|word| *word != "lladdr")
        .nth(1)
        .map(str::to_string)
}

/// The bridge port the bridge forwards frames for `mac` to.
fn fdb_port(bridge: &str, mac: &str) -> Option<String> {
    let output = run("bridge", &["fdb", "show", "br", bridge]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.starts_with(&format!("{mac} dev ")))
        .and_then(|line| line.split_whitespace().nth(2))
        .map(str::to_string)
}

fn ping_from(netns: &Path, ip: &str) -> bool {
    let net = format!("--net={}", netns.display());
    let output = run("nsenter", &[&net, "busybox", "ping", "-c1", "-W2", ip]);
    output.status.success()
}

/// Ping from the host itself, whose own traffic to the sandboxes is not filtered.
fn ping_from_host(ip: IpAddr) -> bool {
    let ip = ip.to_string();
    run("busybox", &["ping", "-c1", "-W2", &ip])
        .status
        .success()
}

/// What each sandbox's web servers serve.
const PAGE: &str = "berth-sandbox-page";

/// A busybox `httpd` serving [`PAGE`] on `port` inside `netns`; killed when dropped.
fn serve(netns: &Path, port: u16, root: &Path) -> tokio::process::Child {
    fs::write(root.join("index.html"), format!("{PAGE}\n")).unwrap();
    tokio::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "httpd", "-f", "-p", &port.to_string(), "-h"])
        .arg(root)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Whether `GET http://ip:port/` from inside `netns` (or from the host) returns [`PAGE`].
fn fetch(netns: Option<&Path>, ip: IpAddr, port: u16) -> bool {
    let url = format!("http://{}/", std::net::SocketAddr::from((ip, port)));
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", netns.display()))
                .arg("busybox");
            command
        }
        None => Command::new("busybox"),
    };
    let output = command
        .args(["timeout", "3", "busybox", "wget", "-q", "-O", "-", &url])
        .output()
        .unwrap();
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains(PAGE)
}

/// Waits until the host is served on `ip:port`: the server is up, so a refusal elsewhere is
/// the rules, not a server still starting.
async fn wait_served(ip: IpAddr, port: u16) {
    for _ in 0..100 {
        if fetch(None, ip, port) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{ip}:{port} never served the host");
}

fn all_links() -> String {
    String::from_utf8_lossy(&run("ip", &["-o", "link"]).stdout).into_owned()
}
