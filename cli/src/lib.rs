//! The `berth` command line: container groups over Berth's ACI-compatible API, `az container`-style.
//!
//! `main` parses the command line with [`cli::Cli`], calls [`run`] and maps the error it returns to an
//! exit code; everything else lives here so it can be tested without a process.
//!
//! # Layout
//! - [`cli`]: the clap command tree and the global flags.
//! - [`config`]: the TOML config file and the flag > environment > file precedence.
//! - [`client`]: the HTTPS client: base URL, bearer token, private CA, api-version, typed errors.
//! - [`poller`]: waits for an `Azure-AsyncOperation` to end, with a spinner on a terminal.
//! - [`session`]: the websocket sessions of `exec` and `attach`: Kubernetes' channel framing, the exit
//!   status, what ends a session badly.
//! - [`terminal`]: raw mode (restored by a guard) and the window size of the local terminal.
//! - [`group_spec`]: the body `container create` PUTs, from az-like flags or an ACI YAML/JSON file.
//! - [`cmdline`]: the quote-aware splitter behind `--command-line`.
//! - [`duration`]: `--expires-in` durations (`30d`, `12h`, `1d12h`).
//! - [`admin`]: the `/admin/v1` wire shapes (Berth-only, so not in `berth-proto`).
//! - [`billing`]: the usage routes' wire (query, `--from`/`--to` times, usage rows) and what the
//!   billing commands compute from it: exact decimal sums per group and meter, rows of a streamed
//!   export counted across chunks.
//! - [`output`]: `--output table|json|yaml` rendering.
//! - [`commands`]: one module per verb, each with one `pub async fn` (`dns check` asks Berth's DNS
//!   server directly, with hickory-proto's message codec; `az-setup` prints, or runs, what the Azure
//!   CLI needs).

pub mod admin;
pub mod billing;
pub mod cli;
pub mod client;
pub mod cmdline;
pub mod commands;
pub mod config;
pub mod duration;
pub mod group_spec;
pub mod output;
pub mod poller;
pub mod session;
pub mod terminal;

use std::path::Path;

use crate::cli::{
    AdminCommand, BillingCommand, Cli, Command, ContainerCommand, DnsCertificateCommand,
    DnsCommand, JoinTokenCommand, NodeCommand, TokenCommand,
};
use crate::commands::Context;
use crate::config::ConfigFile;

/// A mistake on the command line that clap cannot see (two flags that disagree, a malformed `K=V`):
/// `main` exits with 2, as for clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The command ran and ends with an exit code of its own rather than with an error of Berth's: the
/// exit code of the command `container exec` ran, or 128 + the signal that ended a session. `main`
/// exits with `code` and prints `message`, if any, as it is (no `error:` label).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandExit {
    pub code: u8,
    pub message: String,
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Another library may have installed a provider first; either way one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let config_path = config::config_path(cli.global.config.as_deref(), &env)?;
    let overrides = cli.global.overrides();
    let output = cli.global.output;

    match cli.command {
        Command::Login => {
            // A broken config file is what `login` is there to replace: warn, don't stop.
            let file = ConfigFile::load(&config_path).unwrap_or_else(|e| {
                eprintln!("warning: ignoring {}: {e:#}", config_path.display());
                ConfigFile::default()
            });
            // `login` finds the subscription from the token; the file's old one does not count.
            let file = ConfigFile {
                subscription: None,
                ..file
            };
            let settings = config::resolve(&overrides, &env, &file);
            commands::login::login(&settings, &config_path).await
        }
        Command::Container { command } => {
            let ctx = context(&config_path, &overrides, &env, output)?;
            match command {
                ContainerCommand::Create(args) => {
                    commands::container::create::create(&ctx, &args).await
                }
                ContainerCommand::Show(args) => commands::container::show::show(&ctx, &args).await,
                ContainerCommand::List(args) => commands::container::list::list(&ctx, &args).await,
                ContainerCommand::Delete(args) => {
                    commands::container::delete::delete(&ctx, &args).await
                }
                ContainerCommand::Stop(args) => commands::container::stop::stop(&ctx, &args).await,
                ContainerCommand::Start(args) => {
                    commands::container::start::start(&ctx, &args).await
                }
                ContainerCommand::Restart(args) => {
                    commands::container::restart::restart(&ctx, &args).await
                }
                ContainerCommand::Logs(args) => commands::container::logs::logs(&ctx, &args).await,
                ContainerCommand::Exec(args) => commands::container::exec::exec(&ctx, &args).await,
                ContainerCommand::Attach(args) => {
                    commands::container::attach::attach(&ctx, &args).await
                }
                ContainerCommand::Metrics(args) => {
                    commands::container::metrics::metrics(&ctx, &args).await
                }
            }
        }
        Command::Admin { command } => {
            let ctx = context(&config_path, &overrides, &env, output)?;
            match command {
                AdminCommand::Token {
                    command: TokenCommand::Create(args),
                } => commands::admin::token::create(&ctx, &args).await,
                AdminCommand::Token {
                    command: TokenCommand::List,
                } => commands::admin::token::list(&ctx).await,
                AdminCommand::Token {
                    command: TokenCommand::Revoke(args),
                } => commands::admin::token::revoke(&ctx, &args).await,
                AdminCommand::JoinToken {
                    command: JoinTokenCommand::Create(args),
                } => commands::admin::join_token::create(&ctx, &args).await,
                AdminCommand::Node { command } => match command {
                    NodeCommand::List => commands::admin::node::list(&ctx).await,
                    NodeCommand::Cordon(args) => {
                        commands::admin::node::cordon(&ctx, &args.node, true).await
                    }
                    NodeCommand::Uncordon(args) => {
                        commands::admin::node::cordon(&ctx, &args.node, false).await
                    }
                    NodeCommand::Drain(args) => commands::admin::drain::drain(&ctx, &args).await,
                    NodeCommand::Delete(args) => commands::admin::node::delete(&ctx, &args).await,
                },
                AdminCommand::DnsCertificate {
                    command: DnsCertificateCommand::Create(args),
                } => commands::admin::dns_certificate::create(&ctx, &args).await,
            }
        }
        Command::Billing { command } => {
            let ctx = context(&config_path, &overrides, &env, output)?;
            match command {
                BillingCommand::Export(args) => {
                    commands::billing::export::export(&ctx, &args).await
                }
                BillingCommand::Show(args) => commands::billing::show::show(&ctx, &args).await,
            }
        }
        Command::AzSetup(args) => {
            let ctx = context(&config_path, &overrides, &env, output)?;
            commands::az_setup::run(&ctx, &args).await
        }
        Command::Dns {
            command: DnsCommand::Check(args),
        } => {
            // Needs no token; the config file only matters for the default server (the endpoint).
            let file = if args.server.is_some() {
                ConfigFile::default()
            } else {
                ConfigFile::load(&config_path)?
            };
            let settings = config::resolve(&overrides, &env, &file);
            commands::dns::check(&settings, output, &args).await
        }
    }
}

/// Everything a command that talks to the apiserver needs, from the config file and the flags.
fn context(
    config_path: &Path,
    overrides: &config::Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    output: output::OutputFormat,
) -> anyhow::Result<Context> {
    let file = ConfigFile::load(config_path)?;
    let settings = config::resolve(overrides, env, &file);
    Context::new(settings, output, config_path)
}
