//! `berth-node-agent`: flags in, [`berth_node_agent::run`] out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use berth_node_agent::runtime::containerd::volumes::git::GitConfig;
use berth_node_agent::runtime::containerd::{ContainerdConfig, confine};
use berth_node_agent::{AgentConfig, HollowConfig, RuntimeKind};
use berth_proto::node::{OsType, Resources};
use clap::{Parser, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc: thousands of hollow nodes in one process allocate from every thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Joins a Berth cluster and runs the container groups the apiserver assigns to this node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The apiserver's node gateway (gRPC + mTLS). Repeat it (or separate with commas) for several
    /// apiserver replicas: the agent joins through and streams to one at a time, moving to the next
    /// when one fails; a DNS name resolving to several addresses counts as one server per address.
    #[arg(
        long = "server",
        env = "BERTH_SERVER",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:8444"
    )]
    servers: Vec<String>,

    /// Join token `<id>.<secret>.<ca-sha256>`; only needed until the node has joined.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,

    /// Where the node's key, certificate, CA and node.json are kept.
    #[arg(long, env = "BERTH_STATE_DIR")]
    state_dir: PathBuf,

    /// The node's name, unique in the cluster (default: the host name).
    #[arg(long)]
    name: Option<String>,

    /// The node's operating system.
    #[arg(long, value_enum, default_value_t = OsArg::Linux)]
    os_type: OsArg,

    /// CPU cores offered, decimal (default: the machine's).
    #[arg(long)]
    cpu: Option<f64>,

    /// Memory offered in GiB, decimal (default: the machine's).
    #[arg(long)]
    memory: Option<f64>,

    /// GPUs offered.
    #[arg(long, default_value_t = 0)]
    gpu: u32,

    /// A node label `key=value`; repeat for more.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,

    /// The container runtime.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Containerd)]
    runtime: RuntimeArg,

    /// CPU kept back for the node itself, in cores (subtracted from the machine's).
    #[arg(long, default_value_t = 0.1)]
    reserve_cpu: f64,

    /// Memory kept back for the node itself, in GiB (subtracted from the machine's).
    #[arg(long, default_value_t = 0.25)]
    reserve_memory: f64,

    /// containerd's gRPC socket.
    #[arg(
        long,
        env = "BERTH_CONTAINERD",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd: PathBuf,

    /// The containerd namespace of Berth's containers and images.
    #[arg(long, default_value = "berth")]
    containerd_namespace: String,

    /// The snapshotter images are unpacked with.
    #[arg(long, default_value = "overlayfs")]
    snapshotter: String,

    /// Where the CNI plugins are (default: /usr/lib/cni, else /opt/cni/bin).
    #[arg(long)]
    cni_bin_dir: Option<PathBuf>,

    /// The groups' Linux bridge.
    #[arg(long, default_value = "berth0")]
    bridge: String,

    /// The groups' subnet (CIDR).
    #[arg(long, default_value = "10.88.0.0/16")]
    subnet: String,

    /// Publish the groups' ports on the node's addresses (hostPort = port).
    #[arg(long)]
    publish_ports: bool,

    /// The nameserver put first in each new group's resolv.conf (before the node's own
    /// resolvers), so other groups' names resolve from inside; it must be reachable from the
    /// groups' network on port 53. A group's dnsConfig replaces both [default: the one the
    /// apiserver advertises (its --dns-advertise), if any].
    #[arg(long, env = "BERTH_GROUP_DNS_SERVER", value_name = "IP")]
    dns_server: Option<std::net::IpAddr>,

    /// The directory under which azureFile volumes live (`<root>/<account>/<share>`).
    #[arg(long)]
    share_root: Option<PathBuf>,

    /// The log driver containerd's shim runs per task (default: berth-logger beside this binary).
    #[arg(long)]
    logger: Option<PathBuf>,

    /// Size at which a container's log file is rotated, in bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    log_max_bytes: u64,

    /// Let groups run privileged containers.
    #[arg(long)]
    allow_privileged: bool,

    /// Seconds between SIGTERM and SIGKILL when stopping a container.
    #[arg(long, default_value_t = 10)]
    stop_grace_secs: u64,

    /// The first crash back-off in milliseconds (doubles per restart, up to 5 minutes).
    #[arg(long, default_value_t = 10_000)]
    restart_backoff_ms: u64,

    /// The cgroup every group's cgroup is made under (`/<parent>/<group>/<container>`).
    #[arg(long, default_value = "berth")]
    cgroup_parent: String,

    /// A registry spoken to over plain HTTP (loopback registries always are); repeat for more.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,

    /// The user git runs as to clone gitRepo volumes, `<uid>:<gid>` (never 0).
    #[arg(long, default_value = "65534:65534", value_parser = parse_git_user)]
    git_user: (u32, u32),

    /// The largest a gitRepo clone may grow, in bytes (objects and checkout together).
    #[arg(long, default_value_t = 1 << 30)]
    git_max_bytes: u64,

    /// Seconds a gitRepo clone and checkout may take.
    #[arg(long, default_value_t = 120)]
    git_timeout_secs: u64,

    /// Where the node serves logs to the apiserver (gRPC, mutual TLS, the apiserver's certificate
    /// only), or `none` [default: 0.0.0.0:8445 with the containerd runtime, none with hollow].
    #[arg(long, value_parser = parse_agent_listen)]
    agent_listen: Option<AgentListen>,

    /// The URL the apiserver dials for the node's logs [default: https://<the local address that
    /// reaches the first --server>:<the --agent-listen port>].
    #[arg(long)]
    agent_advertise: Option<String>,

    /// Seconds without a word from any apiserver after which the node stops all its groups (they may
    /// be running elsewhere by then); keep it below the apiserver's --node-lost-after. 0: never.
    #[arg(long, env = "BERTH_FENCE_AFTER", default_value_t = 20)]
    fence_after: u64,

    /// Seconds between two samples of the running containers' CPU, memory and network, sent to the
    /// apiserver (ACI's metrics) and shown by the agent's /metrics. 0: never sample.
    #[arg(long, env = "BERTH_METRICS_INTERVAL", default_value_t = 10)]
    metrics_interval: u64,
    /// Serve the agent's Prometheus `/metrics` here, over plain HTTP and without auth (it shows the
    /// names of the node's groups: bind it where only scrapers reach) [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// Hollow only: how many independent nodes this process runs (named `<name>-<i>`).
    #[arg(long, default_value_t = 1)]
    hollow_nodes: u32,

    /// Hollow only: milliseconds from accepting a group to its containers running.
    #[arg(long, default_value_t = 100)]
    hollow_start_delay_ms: u64,

    /// Hollow only: milliseconds a stop or removal takes.
    #[arg(long, default_value_t = 10)]
    hollow_stop_delay_ms: u64,

    /// Hollow only: containers whose image contains this string fail.
    #[arg(long, default_value = "hollow/fail")]
    hollow_fail_image: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OsArg {
    Linux,
    Windows,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RuntimeArg {
    /// Real containers on containerd.
    Containerd,
    /// Runs nothing and reports plausible statuses (for tests and scale benchmarks).
    Hollow,
}

/// `--agent-listen`: an address, or `none`.
#[derive(Debug, Clone, Copy)]
struct AgentListen(Option<SocketAddr>);

fn parse_agent_listen(s: &str) -> Result<AgentListen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(AgentListen(None));
    }
    s.parse()
        .map(|addr| AgentListen(Some(addr)))
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:8445, nor none"))
}

fn parse_git_user(s: &str) -> Result<(u32, u32), String> {
    match confine::parse_user(s) {
        Some((uid, gid)) if uid != 0 && gid != 0 => Ok((uid, gid)),
        Some(_) => Err("git must not run as root: pick a uid and gid other than 0".into()),
        None => Err(format!("{s:?} is not <uid>:<gid>, both numbers")),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// Decimal cores to millicores.
fn cpu_millis(cores: f64) -> anyhow::Result<u64> {
    if !cores.is_finite() || cores <= 0.0 || cores > 1e6 {
        bail!("--cpu must be a positive number of cores, not {cores}");
    }
    Ok((cores * 1000.0).round() as u64)
}

/// Decimal GiB to MiB.
fn memory_mib(gib: f64) -> anyhow::Result<u64> {
    if !gib.is_finite() || gib <= 0.0 || gib > 1e9 {
        bail!("--memory must be a positive number of GiB, not {gib}");
    }
    Ok((gib * 1024.0).round() as u64)
}

fn machine_cpu_millis() -> anyhow::Result<u64> {
    let cores = std::thread::available_parallelism().context("cannot count CPUs; pass --cpu")?;
    Ok(u64::try_from(cores.get()).unwrap_or(u64::MAX) * 1000)
}

/// `MemTotal` of `/proc/meminfo`, in MiB.
fn machine_memory_mib() -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .context("cannot read /proc/meminfo; pass --memory")?;
    parse_meminfo(&meminfo).context("no MemTotal in /proc/meminfo; pass --memory")
}

fn parse_meminfo(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The host name's first label, lower-cased (a DNS-1123 label, as node names must be).
fn host_name() -> anyhow::Result<String> {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .context("cannot find the host name; pass --name")?;
    let name = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    if name.is_empty() {
        bail!("the host name is empty; pass --name");
    }
    Ok(name)
}

impl Args {
    fn into_config(self) -> anyhow::Result<AgentConfig> {
        if !(self.reserve_cpu >= 0.0 && self.reserve_memory >= 0.0) {
            bail!("--reserve-cpu and --reserve-memory must be zero or more");
        }
        let cpu_millis = match self.cpu {
            Some(cores) => cpu_millis(cores)?,
            None => {
                machine_cpu_millis()?.saturating_sub((self.reserve_cpu * 1000.0).round() as u64)
            }
        };
        let memory_mib = match self.memory {
            Some(gib) => memory_mib(gib)?,
            None => {
                machine_memory_mib()?.saturating_sub((self.reserve_memory * 1024.0).round() as u64)
            }
        };
        if cpu_millis == 0 || memory_mib == 0 {
            bail!(
                "nothing is left to offer once the reserve is taken; lower --reserve-cpu/--reserve-memory"
            );
        }
        let node_name = match self.name {
            Some(name) => name,
            None => host_name()?,
        };
        let agent_listen = match (self.agent_listen, self.runtime) {
            (Some(AgentListen(listen)), _) => listen,
            (None, RuntimeArg::Containerd) => Some(SocketAddr::from((
                std::net::Ipv4Addr::UNSPECIFIED,
                berth_node_agent::agent_service::DEFAULT_PORT,
            ))),
            (None, RuntimeArg::Hollow) => None,
        };
        let runtime = match self.runtime {
            RuntimeArg::Hollow => RuntimeKind::Hollow(HollowConfig {
                start_delay: Duration::from_millis(self.hollow_start_delay_ms),
                fail_image: self.hollow_fail_image,
                stop_delay: Duration::from_millis(self.hollow_stop_delay_ms),
            }),
            RuntimeArg::Containerd => {
                let defaults = ContainerdConfig::default();
                RuntimeKind::Containerd(Box::new(ContainerdConfig {
                    socket: self.containerd,
                    namespace: self.containerd_namespace,
                    snapshotter: self.snapshotter,
                    cni_bin_dir: self.cni_bin_dir.unwrap_or(defaults.cni_bin_dir.clone()),
                    bridge: self.bridge,
                    subnet: self.subnet,
                    publish_ports: self.publish_ports,
                    dns_server: self.dns_server,
                    share_root: self.share_root,
                    logger: self.logger.unwrap_or(defaults.logger.clone()),
                    log_max_bytes: self.log_max_bytes,
                    allow_privileged: self.allow_privileged,
                    stop_grace: Duration::from_secs(self.stop_grace_secs),
                    restart_backoff: Duration::from_millis(self.restart_backoff_ms.max(1)),
                    insecure_registries: self.insecure_registries,
                    cgroup_parent: self.cgroup_parent,
                    git: GitConfig {
                        uid: self.git_user.0,
                        gid: self.git_user.1,
                        max_bytes: self.git_max_bytes,
                        timeout: Duration::from_secs(self.git_timeout_secs.max(1)),
                        ..defaults.git.clone()
                    },
                    ..defaults
                }))
            }
        };
        Ok(AgentConfig {
            servers: self.servers,
            join_token: self.join_token,
            state_dir: self.state_dir,
            node_name,
            os_type: match self.os_type {
                OsArg::Linux => OsType::Linux,
                OsArg::Windows => OsType::Windows,
            },
            capacity: Resources {
                cpu_millis,
                memory_mib,
                gpu: self.gpu,
                gpu_sku: String::new(),
            },
            labels: self.labels.into_iter().collect::<BTreeMap<_, _>>(),
            runtime,
            hollow_nodes: self.hollow_nodes,
            agent_listen,
            agent_advertise: self.agent_advertise,
            fence_after: (self.fence_after > 0).then(|| Duration::from_secs(self.fence_after)),
            metrics_interval: (self.metrics_interval > 0)
                .then(|| Duration::from_secs(self.metrics_interval)),
            metrics_listen: self.metrics_listen,
        })
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn signalled() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Whether the flags ask for the hollow runtime (looked at before they are parsed).
fn hollow_mode() -> bool {
    std::env::args().any(|a| a == "hollow" || a == "--runtime=hollow")
}

/// mimalloc keeps freed pages for a while before giving them back; an agent that idles most of its life
/// should give them back at once (a few MB of RSS with 20 groups). mimalloc reads its options once, as
/// the process starts, so the agent sets the option for itself by re-executing once. Hollow nodes,
/// which allocate all the time, keep the default.
fn return_memory_promptly() {
    const OPTION: &str = "MIMALLOC_PURGE_DELAY";
    if hollow_mode() || std::env::var_os(OPTION).is_some() {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        use std::os::unix::process::CommandExt as _;
        let error = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(OPTION, "0")
            .exec();
        eprintln!("warning: cannot re-execute with {OPTION}=0: {error}");
    }
}

fn main() -> ExitCode {
    // The agent runs git confined by running itself in this hidden mode (before anything else: it
    // must stay single-threaded until it execs git).
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|first| first == confine::SUBCOMMAND)
    {
        return confine::main(args);
    }
    return_memory_promptly();
    // A real node's agent mostly waits on sockets: one worker thread is plenty and costs less memory.
    // Hollow mode runs thousands of nodes and gets a worker per core.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if !hollow_mode() {
        builder.worker_threads(1);
    }
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(run_agent()),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_agent() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = match Args::parse().into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        signalled().await;
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    match berth_node_agent::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_integers_once() {
        assert_eq!(cpu_millis(1.5).unwrap(), 1500);
        assert_eq!(cpu_millis(0.1).unwrap(), 100);
        assert_eq!(memory_mib(1.5).unwrap(), 1536);
        assert_eq!(memory_mib(0.5).unwrap(), 512);
        assert!(cpu_millis(0.0).is_err());
        assert!(memory_mib(f64::NAN).is_err());
    }

    #[test]
    fn labels_are_key_equals_value() {
        assert_eq!(parse_label("zone=a").unwrap(), ("zone".into(), "a".into()));
        assert_eq!(parse_label("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=v").is_err());
    }

    #[test]
    fn capacity_is_the_machine_minus_the_reserve() {
        let args = Args::try_parse_from([
            "berth-node-agent",
            "--state-dir",
            "/tmp/x",
            "--name",
            "n1",
            "--reserve-cpu",
            "0.5",
            "--reserve-memory",
            "1",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(
            config.capacity.cpu_millis,
            machine_cpu_millis().unwrap() - 500
        );
        assert_eq!(
            config.capacity.memory_mib,
            machine_memory_mib().unwrap() - 1024
        );
        assert!(matches!(config.runtime, RuntimeKind::Containerd(_)));
    }

    #[test]
    fn meminfo_total_is_read_in_mib() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(15935));
    }

    #[test]
    fn flags_build_a_config() {
        let args = Args::try_parse_from([
            "berth-node-agent",
            "--state-dir",
            "/tmp/x",
            "--name",
            "n1",
            "--cpu",
            "2.5",
            "--memory",
            "4",
            "--label",
            "zone=a",
            "--hollow-nodes",
            "3",
            "--os-type",
            "windows",
            "--runtime",
            "hollow",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.capacity.cpu_millis, 2500);
        assert_eq!(config.capacity.memory_mib, 4096);
        assert_eq!(config.os_type, OsType::Windows);
        assert_eq!(config.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(config.hollow_nodes, 3);
        assert_eq!(
            config.agent_listen, None,
            "hollow nodes serve no logs by default"
        );
    }

    #[test]
    fn fencing_is_after_20_seconds_unless_told_and_0_turns_it_off() {
        let base = ["berth-node-agent", "--state-dir", "/tmp/x", "--name", "n1"];
        let sized = ["--cpu", "1", "--memory", "1"];
        let parse = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(&sized).chain(extra).copied().collect();
            Args::try_parse_from(args).unwrap().into_config().unwrap()
        };
        assert_eq!(parse(&[]).fence_after, Some(Duration::from_secs(20)));
        assert_eq!(
            parse(&["--fence-after", "3"]).fence_after,
            Some(Duration::from_secs(3))
        );
        assert_eq!(parse(&["--fence-after", "0"]).fence_after, None);
    }

    #[test]
    fn sampling_is_every_10_seconds_unless_told_and_0_turns_it_off() {
        let base = ["berth-node-agent", "--state-dir", "/tmp/x", "--name", "n1"];
        let sized = ["--cpu", "1", "--memory", "1"];
        let parse = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(&sized).chain(extra).copied().collect();
            Args::try_parse_from(args).unwrap().into_config().unwrap()
        };
        assert_eq!(parse(&[]).metrics_interval, Some(Duration::from_secs(10)));
        assert_eq!(
            parse(&["--metrics-interval", "2"]).metrics_interval,
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse(&["--metrics-interval", "0"]).metrics_interval, None);
    }

    #[test]
    fn containerd_nodes_serve_logs_on_8445_unless_told() {
        let base = ["berth-node-agent", "--state-dir", "/tmp/x", "--name", "n1"];
        let sized = ["--cpu", "1", "--memory", "1"];
        let parse = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(&sized).chain(extra).copied().collect();
            Args::try_parse_from(args).unwrap().into_config().unwrap()
        };
        assert_eq!(
            parse(&[]).agent_listen,
            Some("0.0.0.0:8445".parse().unwrap())
        );
        assert_eq!(parse(&["--agent-listen", "none"]).agent_listen, None);
        let config = parse(&[
            "--agent-listen",
            "10.0.0.5:9000",
            "--agent-advertise",
            "https://node1.example:9000",
        ]);
        assert_eq!(config.agent_listen, Some("10.0.0.5:9000".parse().unwrap()));
        assert_eq!(
            config.agent_advertise.as_deref(),
            Some("https://node1.example:9000")
        );
        assert!(Args::try_parse_from(base.iter().chain(&["--agent-listen", "8445"])).is_err());
    }

    #[test]
    fn servers_are_repeated_or_comma_separated() {
        let base = ["berth-node-agent", "--state-dir", "/tmp/x", "--name", "n1"];
        let servers = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            Args::try_parse_from(args).unwrap().servers
        };
        assert_eq!(servers(&[]), ["https://127.0.0.1:8444"]);
        let both = ["https://10.0.0.1:8444", "https://10.0.0.2:8544"];
        assert_eq!(servers(&["--server", both[0], "--server", both[1]]), both);
        assert_eq!(servers(&["--server", &both.join(",")]), both);
    }

    #[test]
    fn git_flags_set_the_clone_user_and_limits() {
        let base = ["berth-node-agent", "--state-dir", "/tmp/x", "--name", "n1"];
        let sized = ["--cpu", "1", "--memory", "1"];
        let parse = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(&sized).chain(extra).copied().collect();
            Args::try_parse_from(args).map(|a| a.into_config().unwrap())
        };
        let git = |config: AgentConfig| match config.runtime {
            RuntimeKind::Containerd(c) => c.git,
            RuntimeKind::Hollow(_) => panic!("containerd expected"),
        };
        let defaults = git(parse(&[]).unwrap());
        assert_eq!((defaults.uid, defaults.gid), (65534, 65534));
        assert_eq!(defaults.max_bytes, 1 << 30);
        assert_eq!(defaults.timeout, Duration::from_secs(120));
        let set = git(parse(&[
            "--git-user",
            "4000:4001",
            "--git-max-bytes",
            "1000",
            "--git-timeout-secs",
            "5",
        ])
        .unwrap());
        assert_eq!((set.uid, set.gid, set.max_bytes), (4000, 4001, 1000));
        assert_eq!(set.timeout, Duration::from_secs(5));
        assert!(parse(&["--git-user", "0:0"]).is_err(), "never root");
        assert!(parse(&["--git-user", "1000:0"]).is_err());
        assert!(parse(&["--git-user", "nobody"]).is_err());
    }
}
