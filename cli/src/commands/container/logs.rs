//! `berth container logs`.

use std::io::Write as _;

use anyhow::Context as _;
use berth_proto::arm::Logs;

use crate::cli::LogsArgs;
use crate::client::segment;
use crate::commands::Context;
use crate::commands::container::container_path;

/// GETs the logs and prints their `content`; with `--follow`, prints the streamed text as it arrives
/// until the server ends it (the container stopped for good, the group was deleted).
pub async fn logs(ctx: &Context, args: &LogsArgs) -> anyhow::Result<()> {
    let path = container_path(ctx, &args.target).await?;
    let target = format!("{path}/logs{}", query(args));
    if !args.follow {
        let logs: Logs = ctx.client.get(&target).await?.json()?;
        return print_content(&logs.content);
    }
    let mut answer = ctx
        .client
        .stream(&target, "text/plain, application/json")
        .await?;
    if answer.content_type().as_deref() == Some("application/json") {
        // A server that does not stream answers as without --follow.
        let body = answer.bytes().await?;
        let logs: Logs = serde_json::from_slice(&body).context("unexpected answer to logs")?;
        return print_content(&logs.content);
    }
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = answer.chunk().await? {
        stdout
            .write_all(&chunk)
            .and_then(|()| stdout.flush())
            .context("cannot write to stdout")?;
    }
    Ok(())
}

/// The query of the logs request, `?…` or empty.
fn query(args: &LogsArgs) -> String {
    let mut pairs = Vec::new();
    if let Some(tail) = args.tail {
        pairs.push(format!("tail={tail}"));
    }
    if args.timestamps {
        pairs.push("timestamps=true".to_owned());
    }
    if args.previous {
        pairs.push("previous=true".to_owned());
    }
    if let Some(since) = &args.since {
        pairs.push(format!("since={}", segment(since)));
    }
    if args.follow {
        pairs.push("follow=true".to_owned());
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Prints the logs as they are, ending with a newline.
fn print_content(content: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(content.as_bytes())
        .and_then(|()| {
            if content.is_empty() || content.ends_with('\n') {
                Ok(())
            } else {
                stdout.write_all(b"\n")
            }
        })
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command, ContainerCommand};

    fn args(line: &[&str]) -> LogsArgs {
        let cli = Cli::try_parse_from(["berth", "container", "logs"].iter().chain(line)).unwrap();
        match cli.command {
            Command::Container {
                command: ContainerCommand::Logs(args),
            } => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_become_the_query() {
        assert_eq!(query(&args(&["-g", "rg", "web"])), "");
        assert_eq!(
            query(&args(&[
                "-g",
                "rg",
                "-n",
                "web",
                "--tail",
                "5",
                "--timestamps",
                "--since",
                "2025-01-01T00:00:00+02:00",
                "-f"
            ])),
            "?tail=5&timestamps=true&since=2025-01-01T00%3A00%3A00%2B02%3A00&follow=true"
        );
        assert_eq!(
            query(&args(&["-g", "rg", "web", "--previous", "--since", "5m"])),
            "?previous=true&since=5m"
        );
    }

    #[test]
    fn follow_and_previous_exclude_each_other() {
        let err = Cli::try_parse_from([
            "berth",
            "container",
            "logs",
            "-g",
            "rg",
            "web",
            "--follow",
            "--previous",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
