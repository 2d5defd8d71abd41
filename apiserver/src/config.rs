//! Configuration: clap flags, an optional TOML file (`--config`), and the embedded defaults.
//! A flag beats the file; the file beats the default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::ports;
use clap::Parser;
use serde::Deserialize;

use crate::monitor::retention::MIN_RETENTION;
use crate::scheduler::Policy;

/// Flags of `berth-apiserver`. Every one may also be set in the `--config` file (same name, snake_case).
#[derive(Debug, Default, Parser)]
#[command(
    name = "berth-apiserver",
    version,
    about = "Berth's control plane: the ACI-compatible API, scheduler and node gateway"
)]
pub struct Flags {
    /// TOML file with any of the settings below.
    #[arg(long, env = "BERTH_APISERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the configuration (and the files it names) and exit.
    #[arg(long)]
    pub validate: bool,
    /// Directory for the CA, keys, the operator token and the SQLite database [default: .berth/apiserver].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTPS address of the REST API [default: 0.0.0.0:8443].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// gRPC + mTLS address for node agents [default: 0.0.0.0:8444].
    #[arg(long)]
    pub node_listen: Option<SocketAddr>,
    /// State store URL: sqlite://PATH (one apiserver) or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    /// (also postgresql://; several apiserver replicas may share one) [default:
    /// sqlite://<data-dir>/berth.db].
    #[arg(long)]
    pub store: Option<String>,
    /// The one region (ARM location) this cluster serves [default: local].
    #[arg(long)]
    pub region: Option<String>,
    /// DNS zone of group names: <label>.<region>.<zone> [default: berth.internal].
    #[arg(long)]
    pub dns_zone: Option<String>,
    /// Extra names or IPs for the server certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// PEM file of an operator-provided cluster CA certificate (with --ca-key).
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// PEM file of the operator-provided CA's private key.
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// PEM file of an operator-provided server certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the operator-provided server key.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds without a message from a node before it is NotReady [default: 15].
    #[arg(long)]
    pub node_timeout_secs: Option<u64>,
    /// Seconds without a message from a node before it is lost: its groups are placed on other
    /// nodes. Must be more than --node-timeout-secs, and more than the agents' --fence-after
    /// (file key: node_lost_after_secs) [default: 30].
    #[arg(long, value_name = "SECS")]
    pub node_lost_after: Option<u64>,
    /// Seconds a group may wait for a node before it fails, as ACI's provisioning limit (file key:
    /// pending_timeout_secs) [default: 1800].
    #[arg(long, value_name = "SECS")]
    pub pending_timeout: Option<u64>,
    /// How often nodes send heartbeats, in milliseconds [default: 5000].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u32>,
    /// How often the nodes' last heartbeats are written to the store, all in one statement, in
    /// milliseconds [default: 5000]. `GET /admin/v1/nodes` is exact either way; this is what a
    /// crash can lose.
    #[arg(long)]
    pub heartbeat_store_interval_ms: Option<u64>,
    /// Placement policy: pack (fewest nodes) or spread [default: pack].
    #[arg(long, value_enum)]
    pub placement: Option<Policy>,
    /// Groups per LIST page before a nextLink [default: 100].
    #[arg(long)]
    pub page_size: Option<usize>,
    /// Largest group request in cores [default: 4].
    #[arg(long)]
    pub max_group_cpu: Option<f64>,
    /// Largest group request in GB [default: 16].
    #[arg(long)]
    pub max_group_memory_gb: Option<f64>,
    /// Let groups ask for privileged containers.
    #[arg(long)]
    pub allow_privileged: bool,
    /// Base URL put in Azure-AsyncOperation and nextLink URLs [default: https://<Host header>].
    #[arg(long)]
    pub public_url: Option<String>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Container groups a subscription may have [default: 1000].
    #[arg(long)]
    pub quota_groups: Option<i64>,
    /// Cores a subscription's groups may request in all [default: 1000].
    #[arg(long)]
    pub quota_cores: Option<u64>,
    /// Seconds an exec or attach password stays valid if unused [default: 60].
    #[arg(long)]
    pub exec_ttl_secs: Option<u64>,
    /// Where the embedded DNS server answers, UDP and TCP [default: 0.0.0.0:5353].
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// Run no embedded DNS server (standalone `berth-dns` servers can still follow the zone).
    #[arg(long)]
    pub no_dns: bool,
    /// TTL of the A and AAAA records, in seconds [default: 60].
    #[arg(long)]
    pub dns_ttl: Option<u32>,
    /// UDP worker threads of the embedded DNS server [default: 1].
    #[arg(long)]
    pub dns_workers: Option<usize>,
    /// The nameserver (an IP address, port 53) agents put first in every group's resolv.conf, so
    /// groups resolve each other's names; it must be reachable from the groups' network (e.g. the
    /// embedded server listening on the nodes' bridge gateway, or a `berth-dns` there) [default:
    /// the --dns-listen address when its port is 53 and its IP neither unspecified nor loopback;
    /// else none, and groups use their node's resolvers only].
    #[arg(long, value_name = "IP")]
    pub dns_advertise: Option<IpAddr>,
    /// Seconds an access token of the sign-in authority (`/adfs`) is valid [default: 3600].
    #[arg(long)]
    pub access_token_lifetime_secs: Option<u64>,
    /// Price sheet (TOML: currency and a decimal-string price per meter), re-read on SIGHUP
    /// [default: the built-in ACI list prices].
    #[arg(long, value_name = "FILE")]
    pub price_sheet: Option<PathBuf>,
    /// How long containers' metric samples are kept, at least 24h: `36h`, `7d`, `90m`, `86400s`
    /// (file key: metrics_retention) [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub metrics_retention: Option<Duration>,
    /// Meter runs into the usage ledger: on, or off (no meter work; nothing is billed) [default: on].
    #[arg(long, value_enum)]
    pub billing: Option<Switch>,
    /// Also serve `GET /metrics` here, over plain HTTP and without auth, for Prometheus scrapers
    /// (it shows every group's names: bind it where only they reach) [default: off; the HTTPS
    /// listener's `/metrics` takes an operator token either way].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// A feature turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

/// The `--config` file: the same settings, all optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub node_listen: Option<SocketAddr>,
    pub store: Option<String>,
    pub region: Option<String>,
    pub dns_zone: Option<String>,
    #[serde(default)]
    pub tls_san: Vec<String>,
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub node_timeout_secs: Option<u64>,
    pub node_lost_after_secs: Option<u64>,
    pub pending_timeout_secs: Option<u64>,
    pub heartbeat_interval_ms: Option<u32>,
    pub heartbeat_store_interval_ms: Option<u64>,
    pub placement: Option<Policy>,
    pub page_size: Option<usize>,
    pub max_group_cpu: Option<f64>,
    pub max_group_memory_gb: Option<f64>,
    pub allow_privileged: Option<bool>,
    pub public_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub quota_groups: Option<i64>,
    pub quota_cores: Option<u64>,
    pub exec_ttl_secs: Option<u64>,
    pub dns_listen: Option<SocketAddr>,
    pub no_dns: Option<bool>,
    pub dns_ttl: Option<u32>,
    pub dns_workers: Option<usize>,
    pub dns_advertise: Option<IpAddr>,
    pub price_sheet: Option<PathBuf>,
    pub access_token_lifetime_secs: Option<u64>,
    pub billing: Option<Switch>,
    pub metrics_listen: Option<SocketAddr>,
    /// As the flag: `"36h"`.
    #[serde(default, deserialize_with = "retention_from_text")]
    pub metrics_retention: Option<Duration>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// A configuration that resolves but cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A node would be lost (its groups moved) before it is even NotReady.
    #[error(
        "--node-lost-after ({lost_after} s) must be more than --node-timeout-secs ({timeout} s): a node is \
         NotReady first, then lost"
    )]
    LostBeforeNotReady { lost_after: u64, timeout: u64 },
}

/// The resolved configuration the library runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub node_listen: SocketAddr,
    pub store: String,
    pub region: String,
    pub dns_zone: String,
    pub tls_san: Vec<String>,
    pub ca: Option<(PathBuf, PathBuf)>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub node_timeout_secs: u64,
    /// Silence after which a node is lost and its groups move (more than `node_timeout_secs`).
    pub node_lost_after_secs: u64,
    /// How long a group may wait for a node before it fails.
    pub pending_timeout_secs: u64,
    pub heartbeat_interval_ms: u32,
    pub heartbeat_store_interval_ms: u64,
    pub placement: Policy,
    pub page_size: usize,
    pub max_group_cpu_millis: u64,
    pub max_group_memory_mib: u64,
    pub allow_privileged: bool,
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    pub quota_groups: i64,
    pub quota_cpu_millis: u64,
    pub exec_ttl_secs: u64,
    /// `None`: no embedded DNS server.
    pub dns_listen: Option<SocketAddr>,
    pub dns_ttl: u32,
    pub dns_workers: usize,
    /// The nameserver sent to agents for groups' resolv.conf (`DesiredState.dns_server`); `None`:
    /// none.
    pub dns_advertise: Option<IpAddr>,
    /// `None`: the built-in price sheet.
    pub price_sheet: Option<PathBuf>,
    /// Lifetime of the sign-in authority's access tokens, in seconds (at least 1).
    pub access_token_lifetime_secs: u64,
    /// Whether runs are metered into the usage ledger.
    pub billing: bool,
    /// Where `/metrics` is also served over plain HTTP without auth; `None`: not.
    pub metrics_listen: Option<SocketAddr>,
    /// How long metric samples are kept (at least [`MIN_RETENTION`]).
    pub metrics_retention: Duration,
}

impl Config {
    /// Whether the settings make sense together (the library refuses to start otherwise).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.node_lost_after_secs <= self.node_timeout_secs {
            return Err(ConfigError::LostBeforeNotReady {
                lost_after: self.node_lost_after_secs,
                timeout: self.node_timeout_secs,
            });
        }
        Ok(())
    }

    /// Defaults for everything, with data under `data_dir`.
    pub fn with_data_dir(data_dir: &Path) -> Self {
        Self::resolve(
            Flags {
                data_dir: Some(data_dir.to_owned()),
                ..Flags::default()
            },
            FileConfig::default(),
        )
    }

    /// Flag beats file beats default.
    pub fn resolve(flags: Flags, file: FileConfig) -> Self {
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(".berth/apiserver"));
        let store = flags
            .store
            .or(file.store)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("berth.db").display()));
        let mut tls_san = file.tls_san;
        tls_san.extend(flags.tls_san);
        let dns_listen = if flags.no_dns || file.no_dns.unwrap_or(false) {
            None
        } else {
            Some(
                flags
                    .dns_listen
                    .or(file.dns_listen)
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], ports::DNS))),
            )
        };
        Self {
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], ports::HTTPS))),
            node_listen: flags
                .node_listen
                .or(file.node_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], ports::NODE))),
            store,
            region: crate::validate::normalize_location(
                &flags
                    .region
                    .or(file.region)
                    .unwrap_or_else(|| "local".to_owned()),
            ),
            dns_zone: flags
                .dns_zone
                .or(file.dns_zone)
                .unwrap_or_else(|| "berth.internal".to_owned()),
            tls_san,
            ca: flags
                .ca_cert
                .zip(flags.ca_key)
                .or(file.ca_cert.zip(file.ca_key)),
            tls: flags
                .tls_cert
                .zip(flags.tls_key)
                .or(file.tls_cert.zip(file.tls_key)),
            node_timeout_secs: flags
                .node_timeout_secs
                .or(file.node_timeout_secs)
                .unwrap_or(15),
            node_lost_after_secs: flags
                .node_lost_after
                .or(file.node_lost_after_secs)
                .unwrap_or(30),
            pending_timeout_secs: flags
                .pending_timeout
                .or(file.pending_timeout_secs)
                .unwrap_or(1800)
                .max(1),
            heartbeat_interval_ms: flags
                .heartbeat_interval_ms
                .or(file.heartbeat_interval_ms)
                .unwrap_or(5000),
            heartbeat_store_interval_ms: flags
                .heartbeat_store_interval_ms
                .or(file.heartbeat_store_interval_ms)
                .unwrap_or(5000)
                .max(1),
            placement: flags.placement.or(file.placement).unwrap_or(Policy::Pack),
            page_size: flags.page_size.or(file.page_size).unwrap_or(100).max(1),
            max_group_cpu_millis: (flags.max_group_cpu.or(file.max_group_cpu).unwrap_or(4.0)
                * 1000.0)
                .round() as u64,
            max_group_memory_mib: (flags
                .max_group_memory_gb
                .or(file.max_group_memory_gb)
                .unwrap_or(16.0)
                * 1024.0)
                .round() as u64,
            allow_privileged: flags.allow_privileged || file.allow_privileged.unwrap_or(false),
            public_url: flags.public_url.or(file.public_url),
            max_body_bytes: flags
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(1 << 20),
            quota_groups: flags.quota_groups.or(file.quota_groups).unwrap_or(1000),
            quota_cpu_millis: flags.quota_cores.or(file.quota_cores).unwrap_or(1000) * 1000,
            exec_ttl_secs: flags.exec_ttl_secs.or(file.exec_ttl_secs).unwrap_or(60),
            dns_advertise: flags
                .dns_advertise
                .or(file.dns_advertise)
                .or_else(|| dns_listen.and_then(advertised_by_default)),
            dns_listen,
            dns_ttl: flags.dns_ttl.or(file.dns_ttl).unwrap_or(60),
            dns_workers: flags.dns_workers.or(file.dns_workers).unwrap_or(1).max(1),
            price_sheet: flags.price_sheet.or(file.price_sheet),
            billing: flags.billing.or(file.billing).unwrap_or(Switch::On) == Switch::On,
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            access_token_lifetime_secs: flags
                .access_token_lifetime_secs
                .or(file.access_token_lifetime_secs)
                .unwrap_or(3600)
                .max(1),
            metrics_retention: flags
                .metrics_retention
                .or(file.metrics_retention)
                .unwrap_or(MIN_RETENTION),
            data_dir,
        }
    }
}

/// `36h`, `7d`, `90m` or `86400s` (a whole number and a unit), at least [`MIN_RETENTION`].
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: a whole number and s, m, h or d, as in 36h"
            ));
        }
    };
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(|| format!("{text:?}: a whole number and s, m, h or d, as in 36h"))?;
    let retention = Duration::from_secs(secs);
    if retention < MIN_RETENTION {
        return Err(format!(
            "{text:?}: metrics are kept at least 24h (the last day always reads back)"
        ));
    }
    Ok(retention)
}

fn retention_from_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    text.map(|t| parse_retention(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// The nameserver advertised when `--dns-advertise` is not given: the embedded server's address,
/// if resolvers can use it (port 53, the only one resolv.conf speaks) and groups can reach it (an IP
/// of its own, not every address or loopback).
fn advertised_by_default(listen: SocketAddr) -> Option<IpAddr> {
    let ip = listen.ip();
    (listen.port() == 53 && !ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_kept_a_day_unless_told_longer() {
        let dir = std::path::Path::new("/tmp/unused");
        assert_eq!(Config::with_data_dir(dir).metrics_retention, MIN_RETENTION);
        assert_eq!(parse_retention("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_retention("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_retention("86400s"), Ok(MIN_RETENTION));
        for bad in [
            "23h",
            "1439m",
            "",
            "h",
            "24",
            "24 h",
            "1.5d",
            "99999999999999999999d",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
        let file = FileConfig::parse("metrics_retention = \"2d\"\n").unwrap();
        let config = Config::resolve(Flags::default(), file);
        assert_eq!(config.metrics_retention, Duration::from_secs(2 * 86_400));
        assert!(FileConfig::parse("metrics_retention = \"1h\"\n").is_err());
    }

    #[test]
    fn the_advertised_nameserver_is_the_dns_listen_ip_when_groups_can_use_it() {
        let advertised = |args: &[&str], file: &str| {
            let flags =
                Flags::parse_from(std::iter::once("berth-apiserver").chain(args.iter().copied()));
            Config::resolve(flags, FileConfig::parse(file).unwrap()).dns_advertise
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(advertised(&[], ""), None, "0.0.0.0:5353 by default");
        assert_eq!(
            advertised(&["--dns-listen", "10.88.0.1:53"], ""),
            ip("10.88.0.1")
        );
        assert_eq!(advertised(&["--dns-listen", "10.88.0.1:5353"], ""), None);
        assert_eq!(advertised(&["--dns-listen", "0.0.0.0:53"], ""), None);
        assert_eq!(advertised(&["--dns-listen", "127.0.0.1:53"], ""), None);
        assert_eq!(
            advertised(&["--dns-listen", "[fd00::1]:53"], ""),
            ip("fd00::1")
        );
        assert_eq!(
            advertised(&["--dns-listen", "10.88.0.1:53", "--no-dns"], ""),
            None
        );
        assert_eq!(
            advertised(
                &[
                    "--dns-listen",
                    "10.88.0.1:53",
                    "--dns-advertise",
                    "192.0.2.53"
                ],
                ""
            ),
            ip("192.0.2.53")
        );
        assert_eq!(
            advertised(&[], "dns_advertise = \"192.0.2.9\"\n"),
            ip("192.0.2.9")
        );
        assert_eq!(
            advertised(
                &["--dns-advertise", "192.0.2.1"],
                "dns_advertise = \"192.0.2.9\"\n"
            ),
            ip("192.0.2.1"),
            "the flag beats the file"
        );
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file =
            FileConfig::parse("region = \"West Europe\"\npage_size = 7\nnode_timeout_secs = 9\n")
                .unwrap();
        let flags = Flags::parse_from([
            "berth-apiserver",
            "--page-size",
            "3",
            "--data-dir",
            "/tmp/x",
        ]);
        let config = Config::resolve(flags, file);
        assert_eq!(config.page_size, 3);
        assert_eq!(config.region, "westeurope");
        assert_eq!(config.node_timeout_secs, 9);
        assert_eq!(config.heartbeat_interval_ms, 5000);
        assert_eq!(config.heartbeat_store_interval_ms, 5000);
        assert_eq!(config.store, "sqlite:///tmp/x/berth.db");
    }

    #[test]
    fn node_loss_timers_default_and_come_from_flags_or_file() {
        let config = Config::with_data_dir(Path::new("/tmp/x"));
        assert_eq!(
            (
                config.node_timeout_secs,
                config.node_lost_after_secs,
                config.pending_timeout_secs
            ),
            (15, 30, 1800)
        );
        assert_eq!(config.check(), Ok(()));
        let file =
            FileConfig::parse("node_lost_after_secs = 50\npending_timeout_secs = 60\n").unwrap();
        let flags = Flags::parse_from(["berth-apiserver", "--pending-timeout", "7"]);
        let config = Config::resolve(flags, file);
        assert_eq!(
            (config.node_lost_after_secs, config.pending_timeout_secs),
            (50, 7)
        );
    }

    #[test]
    fn a_node_is_never_lost_before_it_is_not_ready() {
        let flags = Flags::parse_from([
            "berth-apiserver",
            "--node-timeout-secs",
            "30",
            "--node-lost-after",
            "30",
        ]);
        let config = Config::resolve(flags, FileConfig::default());
        let refused = config.check().unwrap_err();
        assert_eq!(
            refused,
            ConfigError::LostBeforeNotReady {
                lost_after: 30,
                timeout: 30
            }
        );
        assert!(
            refused.to_string().contains("--node-lost-after"),
            "{refused}"
        );
    }

    #[test]
    fn the_metrics_listener_is_off_unless_a_flag_or_the_file_names_it() {
        assert_eq!(
            Config::with_data_dir(Path::new("/tmp/x")).metrics_listen,
            None
        );
        let file = FileConfig::parse("metrics_listen = \"127.0.0.1:9100\"\n").unwrap();
        let config = Config::resolve(Flags::parse_from(["berth-apiserver"]), file);
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        let file = FileConfig::parse("metrics_listen = \"127.0.0.1:9100\"\n").unwrap();
        let flags = Flags::parse_from(["berth-apiserver", "--metrics-listen", "0.0.0.0:9200"]);
        assert_eq!(
            Config::resolve(flags, file).metrics_listen,
            Some("0.0.0.0:9200".parse().unwrap())
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(FileConfig::parse("regoin = \"x\"").is_err());
    }
}
