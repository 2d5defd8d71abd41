//! The command tree. Every flag's doc comment is its `--help` text.
//!
//! The connection flags are global (they may come before or after the subcommand) and also read from
//! the environment; [`crate::config::resolve`] applies flag > environment > config file. The environment
//! is read there rather than by clap so that the precedence is one function that tests can drive.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;

use crate::billing::{Granularity, UsageFormat, parse_time};
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
  5  server, network or TLS error (5xx, no answer, untrusted certificate)
`container exec` exits with the code of the command it ran (which may be any of the above).";

/// Connection and output flags, accepted anywhere on the command line.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Berth's HTTPS endpoint, e.g. https://127.0.0.1:8443; repeat it (or separate with commas) for
    /// apiserver replicas, tried in turn when one cannot be reached [env: BERTH_ENDPOINTS, BERTH_ENDPOINT]
    #[arg(
        long = "endpoint",
        global = true,
        value_name = "URL",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
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
            endpoint: (!self.endpoints.is_empty()).then(|| self.endpoints.join(",")),
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
    /// Berth's DNS server
    Dns {
        #[command(subcommand)]
        command: DnsCommand,
    },
    /// Usage and cost: your subscription's summary, or every subscription's rows (operators)
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Set up the Azure CLI for this Berth: makes a credential for the subscription (operator
    /// tokens can) and prints the `az cloud register`, `az cloud set` and `az login
    /// --service-principal` lines with the CA variables; with --apply runs the az lines
    AzSetup(AzSetupArgs),
}

#[derive(Debug, Args)]
pub struct AzSetupArgs {
    /// The name az knows this Berth by (`az cloud list`)
    #[arg(long, value_name = "NAME", default_value = "berth")]
    pub cloud_name: String,
    /// Run the az lines (az signs in now) and print only the variables to export
    #[arg(long)]
    pub apply: bool,
    /// The az to run with --apply
    #[arg(long, value_name = "PATH", default_value = "az")]
    pub az: std::path::PathBuf,
    /// The credential's lifetime: 30d, 12h, … [default: never expires]
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_seconds)]
    pub expires_in: Option<u64>,
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
    /// Print the logs of a container, or follow them
    Logs(LogsArgs),
    /// Run a command in a running container: `berth container exec -g RG NAME -- CMD ARGS...`
    ///
    /// Stdin is forwarded when it is not a terminal (so `echo hi | berth container exec -g RG NAME --
    /// cat` prints hi), or with -i. With -t the command runs on a pseudo-terminal; with -it on a
    /// terminal, this terminal is in raw mode for the session (Ctrl-C goes to the command). Exits with
    /// the command's exit code.
    Exec(ExecArgs),
    /// Print a container's output from now on, until it stops for good or Ctrl-C
    Attach(ContainerArgs),
    /// Show a metric of a group's containers (ACI's metrics API): a table, or a chart with --chart
    Metrics(MetricsArgs),
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

/// Names one container: a group, by NAME or -n NAME, and a container in it.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// Resource group
    #[arg(long, short = 'g', value_name = "RG")]
    pub resource_group: String,
    /// Container group name (or -n NAME)
    #[arg(value_name = "NAME", required_unless_present = "name_flag")]
    pub name: Option<String>,
    /// Container group name, as the other container commands take it
    #[arg(
        long = "name",
        short = 'n',
        id = "name_flag",
        value_name = "NAME",
        conflicts_with = "name"
    )]
    pub name_flag: Option<String>,
    /// Container in the group [default: the group's only container; required when it has several]
    #[arg(long, value_name = "CONTAINER")]
    pub container: Option<String>,
}

impl ContainerArgs {
    /// The container group's name, from NAME or -n.
    pub fn group_name(&self) -> &str {
        // clap makes sure one of the two is there.
        self.name
            .as_deref()
            .or(self.name_flag.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: ContainerArgs,
    /// Go on printing lines as they are written, until the container stops for good (or Ctrl-C)
    #[arg(long, short = 'f', conflicts_with = "previous")]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Start each line with the time it was logged
    #[arg(long)]
    pub timestamps: bool,
    /// The logs of the run before the container's last restart
    #[arg(long)]
    pub previous: bool,
    /// Only lines logged since then: an RFC 3339 time (2025-01-31T10:00:00Z) or an age (30s, 5m, 1h30m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The group, and with --container only that container
    #[command(flatten)]
    pub target: ContainerArgs,
    /// CpuUsage (millicores), MemoryUsage (bytes), NetworkBytesReceivedPerSecond or
    /// NetworkBytesTransmittedPerSecond
    #[arg(long, value_name = "METRIC", default_value = "CpuUsage")]
    pub metric: String,
    /// How far back: 30m, 6h, 1d, …
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::duration::parse_seconds)]
    pub since: u64,
    /// A sparkline per container instead of the table
    #[arg(long)]
    pub chart: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub target: ContainerArgs,
    /// Forward stdin even when it is a terminal (it is always forwarded when it is not one)
    #[arg(long, short = 'i')]
    pub stdin: bool,
    /// Run the command on a pseudo-terminal (stdout and stderr then arrive as one stream)
    #[arg(long, short = 't')]
    pub tty: bool,
    /// The command and its arguments, after `--`; run as given, without a shell
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
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
    /// Client certificates of standalone `berth-dns` servers
    DnsCertificate {
        #[command(subcommand)]
        command: DnsCertificateCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DnsCertificateCommand {
    /// Issue a certificate for a standalone `berth-dns`: writes dns.crt, dns.key (0600) and ca.crt
    /// into --out-dir and prints their paths
    Create(DnsCertificateCreateArgs),
}

#[derive(Debug, Args)]
pub struct DnsCertificateCreateArgs {
    /// Directory to write dns.crt, dns.key and ca.crt into (created if missing; existing files are
    /// not overwritten)
    #[arg(long, value_name = "DIR")]
    pub out_dir: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; prints only the token unless -o json|yaml
    Create(TokenCreateArgs),
    /// List API tokens: id, prefix, scope, when made, when they expire or were revoked (never the
    /// secret)
    List,
    /// Revoke an API token: the next request with it is refused (on other apiserver replicas
    /// within a second)
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id (`berth admin token list`; the part after `berth_` in the token)
    #[arg(value_name = "ID")]
    pub id: String,
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
    /// Lifetime: 30d, 12h, 90m, 3600s, 1d12h (units w, d, h, m, s) [default: never expires]
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_seconds)]
    pub expires_in: Option<u64>,
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
    /// List the nodes: status (Ready, NotReady, Lost), scheduling (Cordoned, Draining), capacity
    /// and what is allocated on them
    List,
    /// Place no new group on a node; the groups on it keep running
    Cordon(NodeArgs),
    /// Place groups on a node again (ends a drain too)
    Uncordon(NodeArgs),
    /// Move every group off a node: cordons it, stops each group there with the normal grace and
    /// places it on another node; waits until each runs elsewhere, showing them as they do
    ///
    /// Exits 0 once every moved group runs (or has finished) on another node; 1 when --timeout
    /// passes first, naming the groups still waiting and why.
    Drain(NodeDrainArgs),
    /// Remove a node from the cluster; refused while groups are on it unless --force
    Delete(NodeDeleteArgs),
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's name (or id), as `berth admin node list` shows it
    #[arg(value_name = "NAME")]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct NodeDrainArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Return once the groups are taken off the node, without waiting for them to run elsewhere
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the groups are still placed when nodes can take
    /// them)
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct NodeDeleteArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Delete it even with groups on it: they are taken off as from a lost node (those their
    /// restart policy runs again are placed elsewhere)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Resolve a name through Berth's DNS server: prints the answers, one per line
    ///
    /// Exits 0 when the server answered with records of the type asked, 1 otherwise (NXDOMAIN,
    /// REFUSED, no record of that type, or no answer in time), saying which.
    Check(DnsCheckArgs),
}

#[derive(Debug, Args)]
pub struct DnsCheckArgs {
    /// The name, e.g. web.local.berth.internal (a group's `fqdn`)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The DNS server, HOST:PORT (or HOST, port 5353) [default: the endpoint's host, port 5353]
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Ask over TCP instead of UDP (UDP falls back to TCP by itself when an answer is truncated)
    #[arg(long)]
    pub tcp: bool,
    /// The record type to ask for
    #[arg(long = "type", value_enum, ignore_case = true, default_value_t = DnsRecordType::A)]
    pub record_type: DnsRecordType,
    /// Seconds to wait for the answer
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// The record types `dns check` asks for: the ones Berth's server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsRecordType {
    /// IPv4 addresses
    #[value(name = "A")]
    A,
    /// IPv6 addresses
    #[value(name = "AAAA")]
    Aaaa,
    /// The zone's start of authority (ask for the zone's name)
    #[value(name = "SOA")]
    Soa,
    /// The zone's name servers (ask for the zone's name)
    #[value(name = "NS")]
    Ns,
}

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Stream every subscription's usage rows, as CSV or JSON lines (operator tokens only)
    ///
    /// Rows are FOCUS columns (BillingPeriodStart … x_Accrued); the CSV header names are the JSON
    /// keys. The body goes to stdout as it arrives, or with --file to FILE.partial, renamed to FILE
    /// once complete (a failed or interrupted export removes FILE.partial and leaves FILE alone). The
    /// global --output does not apply: the rows are written as the server sends them.
    Export(BillingExportArgs),
    /// Your subscription's usage and cost since the start of the month, per group and meter
    ///
    /// Sums the subscription's monthly usage rows (exactly, as decimals) into one line per container
    /// group and meter, then a TOTAL line. ACCRUING says a group still runs, so its line still grows.
    /// With -o json|yaml, prints the rows themselves.
    Show(BillingShowArgs),
}

#[derive(Debug, Args)]
pub struct BillingExportArgs {
    /// Start of the period: RFC 3339 (2026-11-01T09:30:00+01:00) or a date (2026-11-01, midnight
    /// UTC) [server default: the start of the current month, UTC]
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<OffsetDateTime>,
    /// End of the period: RFC 3339 or a date, as --from [server default: now]
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<OffsetDateTime>,
    /// How finely usage is cut into rows [server default: raw]
    #[arg(long, value_enum, value_name = "GRANULARITY")]
    pub granularity: Option<Granularity>,
    /// Format of the rows [server default: csv]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<UsageFormat>,
    /// Write to FILE instead of stdout (through FILE.partial; progress on stderr on a terminal)
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BillingShowArgs {
    /// Start of the period: RFC 3339 (2026-11-01T09:30:00+01:00) or a date (2026-11-01, midnight
    /// UTC) [default: the start of the current month, UTC]
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<OffsetDateTime>,
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
            assert_eq!(cli.global.endpoints, ["https://e"]);
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

    fn exec(line: &[&str]) -> Result<ExecArgs, clap::Error> {
        let cli = Cli::try_parse_from(["berth", "container", "exec"].iter().chain(line))?;
        match cli.command {
            Command::Container {
                command: ContainerCommand::Exec(args),
            } => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn exec_takes_the_group_either_way_and_the_argv_after_dashes() {
        let args = exec(&["-g", "rg", "web", "--", "ls", "-l", "--", "x"]).unwrap();
        assert_eq!(args.target.group_name(), "web");
        assert_eq!(args.command, ["ls", "-l", "--", "x"]);
        assert!(!args.stdin && !args.tty);
        let args = exec(&[
            "-it",
            "-n",
            "web",
            "-g",
            "rg",
            "--container",
            "c",
            "--",
            "sh",
        ])
        .unwrap();
        assert_eq!(args.target.group_name(), "web");
        assert_eq!(args.target.container.as_deref(), Some("c"));
        assert!(args.stdin && args.tty);
        assert_eq!(args.command, ["sh"]);

        let kind = |line: &[&str]| exec(line).unwrap_err().kind();
        use clap::error::ErrorKind;
        assert_eq!(
            kind(&["-g", "rg", "web", "-n", "web", "--", "sh"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            kind(&["-g", "rg", "--", "sh"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            kind(&["-g", "rg", "web"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(kind(&["-g", "rg", "web", "sh"]), ErrorKind::UnknownArgument);
    }

    #[test]
    fn dns_check_takes_a_type_in_either_case() {
        let cli = Cli::try_parse_from([
            "berth",
            "dns",
            "check",
            "web.local.berth.internal",
            "--type",
            "aaaa",
            "--tcp",
        ])
        .unwrap();
        let Command::Dns {
            command: DnsCommand::Check(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.name, "web.local.berth.internal");
        assert_eq!(args.record_type, DnsRecordType::Aaaa);
        assert!(args.tcp);
        assert_eq!(args.server, None);
        assert_eq!(args.timeout, 5);
        let err = Cli::try_parse_from(["berth", "dns", "check", "x", "--type", "MX"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        let err =
            Cli::try_parse_from(["berth", "dns", "check", "x", "--timeout", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    fn billing(line: &[&str]) -> Result<BillingCommand, clap::Error> {
        let cli = Cli::try_parse_from(["berth", "billing"].iter().chain(line))?;
        match cli.command {
            Command::Billing { command } => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn billing_export_takes_times_dates_and_a_file() {
        let BillingCommand::Export(args) = billing(&[
            "export",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-22T20:00:00+01:00",
            "--granularity",
            "hourly",
            "--format",
            "jsonl",
            "-f",
            "usage.jsonl",
        ])
        .unwrap() else {
            panic!("not export");
        };
        assert_eq!(
            args.from.map(crate::billing::format_time).as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            args.to.map(crate::billing::format_time).as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
        assert_eq!(args.granularity, Some(Granularity::Hourly));
        assert_eq!(args.format, Some(UsageFormat::Jsonl));
        assert_eq!(args.file, Some(PathBuf::from("usage.jsonl")));

        let BillingCommand::Export(args) = billing(&["export"]).unwrap() else {
            panic!("not export");
        };
        assert!(args.from.is_none() && args.to.is_none() && args.file.is_none());
        assert!(args.granularity.is_none() && args.format.is_none());

        // -o stays the global output format; the file is -f.
        let cli = Cli::try_parse_from(["berth", "billing", "export", "-o", "json", "--file", "x"])
            .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
    }

    #[test]
    fn billing_refuses_bad_times_and_values_as_usage_errors() {
        use clap::error::ErrorKind;
        let err = billing(&["export", "--from", "last tuesday"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(
            err.to_string().contains("expected an RFC 3339 time"),
            "{err}"
        );
        let err = billing(&["show", "--from", "2026-11-01T10:00:00"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let err = billing(&["export", "--granularity", "weekly"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        let err = billing(&["export", "--format", "parquet"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        let err = billing(&["show", "--to", "2026-11-02"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn billing_show_takes_the_global_subscription() {
        let cli = Cli::try_parse_from([
            "berth",
            "billing",
            "show",
            "--subscription",
            "dev",
            "--from",
            "2026-10-15",
        ])
        .unwrap();
        assert_eq!(cli.global.subscription.as_deref(), Some("dev"));
        let Command::Billing {
            command: BillingCommand::Show(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(
            args.from.map(crate::billing::format_time).as_deref(),
            Some("2026-10-15T00:00:00Z")
        );
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
