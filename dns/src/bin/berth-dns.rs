//! `berth-dns`: Berth's DNS server on its own machine, following the apiserver's zone.
//!
//! Parses flags, reads the PEM files, sets up logging and signals, and runs
//! [`berth_dns::follow::Standalone`]; everything else lives in the library.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use berth_dns::ServerConfig;
use berth_dns::follow::{FollowConfig, Standalone, StandaloneConfig};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Berth's authoritative DNS server, following the apiserver's zone over mutual TLS.
///
/// Answers from the last state it saw (and saved with --state-file) while the apiserver is away.
/// Get a certificate with `POST /admin/v1/dns-certificates` on the apiserver.
#[derive(Debug, Parser)]
#[command(name = "berth-dns", version)]
struct Args {
    /// The apiserver's node port, e.g. https://apiserver.example:8444 (the port defaults to 8444)
    #[arg(long, env = "BERTH_DNS_SERVER", value_name = "URL")]
    server: String,
    /// The name the apiserver's certificate must carry [default: the host of --server]
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// PEM file with the cluster CA: the only root trusted
    #[arg(long, value_name = "FILE")]
    ca_file: PathBuf,
    /// PEM file with this server's client certificate (`<id>.dns.berth.internal`)
    #[arg(long, value_name = "FILE")]
    cert_file: PathBuf,
    /// PEM file with the certificate's private key
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Where to answer, UDP and TCP on the same address
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], berth_proto::ports::DNS)))]
    listen: SocketAddr,
    /// TTL of the A and AAAA records, in seconds [default: the server's]
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
    /// UDP worker threads [default: the server's]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where to keep the last zone seen (JSON), so a restart answers before the apiserver is back
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Serve this zone (e.g. berth.internal) whatever the apiserver's is [default: the apiserver's]
    #[arg(long, value_name = "ORIGIN")]
    zone: Option<String>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

impl Args {
    fn config(&self) -> anyhow::Result<StandaloneConfig> {
        let mut follow = FollowConfig::new(
            self.server.clone(),
            read(&self.ca_file, "CA file")?,
            read(&self.cert_file, "certificate file")?,
            read(&self.key_file, "key file")?,
        );
        follow.server_name = self.server_name.clone();
        follow.state_file = self.state_file.clone();
        let mut server = ServerConfig::new(self.listen, self.listen);
        if let Some(ttl) = self.ttl {
            server.ttl = ttl;
        }
        if let Some(workers) = self.workers {
            server.workers = workers.max(1);
        }
        Ok(StandaloneConfig {
            follow,
            server,
            zone: self.zone.clone(),
        })
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = name, "shutting down");
    shutdown.cancel();
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(signals(shutdown.clone()));
    let result = Standalone::new(config)
        .run(shutdown.clone())
        .await
        .context("berth-dns stopped");
    signals.abort();
    result
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
