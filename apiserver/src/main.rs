//! `berth-apiserver`: parses flags, sets up logging, runs the library until SIGTERM or ctrl-c.

use anyhow::Context as _;
use berth_apiserver::config::{Config, FileConfig, Flags};
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

/// mimalloc: the apiserver allocates small objects from many threads at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,h2=warn".into()),
        )
        .init();
    let flags = Flags::parse();
    let file = match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("while reading {}", path.display()))?;
            FileConfig::parse(&text).with_context(|| format!("while parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let validate_only = flags.validate;
    let config = Config::resolve(flags, file);
    config.check().context("the configuration is refused")?;
    if validate_only {
        println!("configuration is valid: {config:#?}");
        return Ok(());
    }

    let shutdown = CancellationToken::new();
    let running = berth_apiserver::start(config, shutdown.clone())
        .await
        .context("while starting the apiserver")?;
    if let Some(token) = &running.initial_operator_token {
        tracing::info!("initial operator token: {token}");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    running.wait().await;
    Ok(())
}
