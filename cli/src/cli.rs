//! The command tree. Every flag's doc comment is its `--help` text.
//!
//! The connection flags are global (they may come before or after the subcommand) and also read from
//! the environment; [`crate::config::resolve`] applies flag > environment > config file. The environment
//! is read there rather than by clap so that the precedence is one function that tests can drive.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;
use crate::group_spec::GroupFlags;
use crate::output::OutputFormat;

/// Run container groups on Berth, the way `az container` runs them on Azure Container Instances.
#[derive(Debug, Parser)]
#[command(name = "berth", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The exit codes, for `berth --help`; `main` maps errors to them.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  general error (a failed or timed-out operation, a refused request, a bad config)
  2  usage error
  3  not found
  4  authentication or authorisation refused (401/403)
  5  server, network or TLS error (5xx, no answer, untrusted certificate)";

/// Connection and output flags, accepted anywhere on the command line.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Berth's HTTPS endpoint, e.g. https://127.0.0.1:8443 [env: BERTH_ENDPOINT]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Bearer token [env: BERTH_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// PEM file with Berth's CA: the only root trusted [env: BERTH_CA_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Subscription to work in [env: BERTH_SUBSCRIPTION]
    #[arg(long, global = true, value_name = "ID")]
    pub subscription: Option<String>,
    /// Location of new container groups; default from the config file, else "local" [env: BERTH_LOCATION]
    #[arg(long, short = 'l', global = true, value_name = "LOCATION")]
    pub location: Option<String>,
    /// Config file [env: BERTH_CONFIG] [default: <config dir>/berth/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl GlobalArgs {
    /// The flags that override the environment and the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            endpoint: self.endpoint.clone(),
            token: self.token.clone(),
            ca_file: self.ca_file.clone(),
            subscription: self.subscription.clone(),
            location: self.location.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an endpoint, token and CA, then save them in the config file
    ///
    /// Takes --endpoint, --token, --ca-file and optionally --subscription and --location. Without
    /// --subscription, picks the token's only subscription.
    Login,
    /// Manage container groups
    Container {
        #[command(subcommand)]
        command: ContainerCommand,
    },
    /// Berth administration (operator tokens only)
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create (or update) a container group, from flags or from a YAML/JSON file
    Create(Box<CreateArgs>),
    /// Show a container group
    Show(GroupArgs),
    /// List container groups of a resource group, or of the whole subscription
    List(ListArgs),
    /// Delete a container group
    Delete(DeleteArgs),
    /// Stop every container of a group (stops billing)
    Stop(GroupArgs),
    /// Start a stopped container group
    Start(WaitingGroupArgs),
    /// Restart every container of a group in place
    Restart(WaitingGroupArgs),
}

/// Names one container group.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Resource group
    #[arg(long, short = 'g', value_name = "RG")]
    pub resource_group: String,
    /// Container group name
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: String,
}

/// How to treat a long-running operation.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return as soon as the server has accepted the request
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the operation goes on)
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct WaitingGroupArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Resource group
    #[arg(long, short = 'g', value_name = "RG")]
    pub resource_group: String,
    /// Container group name (and the name of its container); with --file, must match the file's name
    #[arg(
        long,
        short = 'n',
        value_name = "NAME",
        required_unless_present = "file"
    )]
    pub name: Option<String>,
    /// ACI YAML (or JSON, by the .json extension) describing the group; excludes the group flags
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub group: GroupFlags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Resource group; without it, every group of the subscription
    #[arg(long, short = 'g', value_name = "RG")]
    pub resource_group: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// API tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Tokens that let a node join the cluster
    JoinToken {
        #[command(subcommand)]
        command: JoinTokenCommand,
    },
    /// Nodes of the cluster
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; prints only the token unless -o json|yaml
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Subscription the token may use (repeat, or list several after one flag)
    // Same id as the global `--subscription`, so clap lets this command own the flag (a duplicate long
    // flag with another id would be refused); `berth --subscription x admin token create` lands here too.
    #[arg(id = "subscription", long = "subscription", value_name = "ID", num_args = 1.., action = clap::ArgAction::Append)]
    pub subscriptions: Vec<String>,
    /// Make an operator token (administration, every subscription)
    #[arg(long)]
    pub operator: bool,
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Create a join token; prints only the token unless -o json|yaml
    Create(JoinTokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct JoinTokenCreateArgs {
    /// How many nodes may join with it [server default: 1]
    #[arg(long, value_name = "N")]
    pub uses: Option<u32>,
    /// Lifetime in seconds [server default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes with their capacity and what is allocated on them
    List,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from([
            "berth",
            "--endpoint",
            "https://e",
            "-o",
            "json",
            "container",
            "list",
        ])
        .unwrap();
        let after = Cli::try_parse_from([
            "berth",
            "container",
            "list",
            "--endpoint",
            "https://e",
            "-o",
            "json",
        ])
        .unwrap();
        for cli in [before, after] {
            assert_eq!(cli.global.endpoint.as_deref(), Some("https://e"));
            assert_eq!(cli.global.output, OutputFormat::Json);
        }
    }

    #[test]
    fn token_create_owns_its_subscription_list() {
        let cli = Cli::try_parse_from([
            "berth",
            "admin",
            "token",
            "create",
            "--subscription",
            "a",
            "b",
            "--subscription",
            "c",
        ])
        .unwrap();
        let Command::Admin {
            command:
                AdminCommand::Token {
                    command: TokenCommand::Create(args),
                },
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.subscriptions, ["a", "b", "c"]);
        assert!(!args.operator);

        let cli = Cli::try_parse_from([
            "berth",
            "--subscription",
            "x",
            "admin",
            "token",
            "create",
            "--operator",
        ])
        .unwrap();
        let Command::Admin {
            command:
                AdminCommand::Token {
                    command: TokenCommand::Create(args),
                },
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        // Before the subcommand it is the same flag; BERTH_SUBSCRIPTION is not (config::resolve).
        assert_eq!(args.subscriptions, ["x"]);
        assert!(args.operator);
    }

    #[test]
    fn login_takes_the_global_flags() {
        let cli = Cli::try_parse_from([
            "berth",
            "login",
            "--endpoint",
            "https://e",
            "--token",
            "t",
            "--ca-file",
            "ca.pem",
            "--subscription",
            "s",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Login));
        assert_eq!(cli.global.subscription.as_deref(), Some("s"));
        assert_eq!(cli.global.ca_file, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn create_needs_an_image_or_a_file() {
        let err = Cli::try_parse_from(["berth", "container", "create", "-g", "rg", "-n", "web"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = Cli::try_parse_from([
            "berth",
            "container",
            "create",
            "-g",
            "rg",
            "-f",
            "x.yaml",
            "--image",
            "nginx",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        Cli::try_parse_from(["berth", "container", "create", "-g", "rg", "-f", "x.yaml"]).unwrap();
    }
}
