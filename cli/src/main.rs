//! The `berth` binary: parse, run, map the error to an exit code.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use berth_cli::cli::Cli;
use berth_cli::client::ClientError;
use berth_cli::session::SessionError;
use berth_cli::{CommandExit, UsageError};
use clap::Parser as _;

/// Exit codes, as documented in `--help`'s footer and the crate README.
mod exit {
    pub(crate) const GENERAL: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const NOT_FOUND: u8 = 3;
    pub(crate) const AUTH: u8 = 4;
    pub(crate) const SERVER: u8 = 5;
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::GENERAL);
        }
    };
    match runtime.block_on(berth_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<CommandExit>() {
                // The command's own ending: said as it is, if at all.
                Some(exit) if exit.message.is_empty() => {}
                Some(exit) => eprintln!("{}", exit.message),
                None => eprintln!("{} {}", error_label(), message(&e)),
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code of a failed command: the first error in the chain that says more than "failed".
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(exit) = cause.downcast_ref::<CommandExit>() {
            return exit.code;
        }
        if let Some(e) = cause.downcast_ref::<SessionError>() {
            return match e {
                SessionError::Failed(_) => exit::GENERAL,
                SessionError::Closed { code, .. } if *code == SessionError::POLICY_VIOLATION => {
                    exit::AUTH
                }
                SessionError::Closed { .. }
                | SessionError::Status(_)
                | SessionError::NoStatus
                | SessionError::Broken(_) => exit::SERVER,
            };
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Api { status: 404, .. } => exit::NOT_FOUND,
                ClientError::Api {
                    status: 401 | 403, ..
                } => exit::AUTH,
                ClientError::Api { status, .. } if *status >= 500 => exit::SERVER,
                ClientError::Api { .. } => exit::GENERAL,
                ClientError::Transport { .. }
                | ClientError::Decode { .. }
                | ClientError::WebSocketUrl { .. }
                | ClientError::WebSocket { .. } => exit::SERVER,
                ClientError::Encode(_)
                | ClientError::InvalidEndpoint { .. }
                | ClientError::CaFile { .. }
                | ClientError::CaPem { .. }
                | ClientError::CaCertificate { .. }
                | ClientError::Build(_)
                | ClientError::Tls(_) => exit::GENERAL,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
    }
    exit::GENERAL
}

/// The server's own words (`<code>: <message> (target: <target>)`) when it sent some, else the
/// whole chain of context.
fn message(e: &anyhow::Error) -> String {
    let api = e
        .chain()
        .find_map(|c| match c.downcast_ref::<ClientError>() {
            Some(api @ ClientError::Api { .. }) => Some(api.to_string()),
            _ => None,
        });
    api.unwrap_or_else(|| format!("{e:#}"))
}

/// `error:`, in bold red on a terminal unless NO_COLOR is set.
fn error_label() -> &'static str {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> anyhow::Error {
        anyhow::Error::new(ClientError::Api {
            status,
            code: "Code".into(),
            message: "what happened".into(),
            target: Some("web".into()),
        })
        .context("while doing something")
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        assert_eq!(exit_code(&api(404)), 3);
        assert_eq!(exit_code(&api(401)), 4);
        assert_eq!(exit_code(&api(403)), 4);
        assert_eq!(exit_code(&api(503)), 5);
        assert_eq!(exit_code(&api(400)), 1);
        assert_eq!(exit_code(&api(409)), 1);
        let usage = anyhow::Error::new(UsageError("bad".into())).context("in file");
        assert_eq!(exit_code(&usage), 2);
        let exited = anyhow::Error::new(CommandExit {
            code: 42,
            message: String::new(),
        });
        assert_eq!(exit_code(&exited), 42);
        assert_eq!(exit_code(&SessionError::Failed("no".into()).into()), 1);
        assert_eq!(exit_code(&SessionError::NoStatus.into()), 5);
        let refused = SessionError::Closed {
            code: 1008,
            reason: "invalid or expired password".into(),
        };
        assert_eq!(exit_code(&refused.into()), 4);
        assert_eq!(exit_code(&anyhow::anyhow!("anything else")), 1);
    }

    #[test]
    fn api_errors_print_the_servers_words() {
        assert_eq!(message(&api(404)), "Code: what happened (target: web)");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&e), "outer: inner");
    }
}
