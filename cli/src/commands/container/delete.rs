//! `berth container delete`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::UsageError;
use crate::cli::DeleteArgs;
use crate::commands::{Context, group_path, note};
use crate::{output, poller};

/// Asks first (unless `--yes`), DELETEs, and prints the deleted group when the server returns it.
/// A group that does not exist (204) is not an error, as with `az`, but it is said.
pub async fn delete(ctx: &Context, args: &DeleteArgs) -> anyhow::Result<()> {
    let (rg, name) = (&args.group.resource_group, &args.group.name);
    let path = group_path(ctx.subscription()?, rg, name);
    if !args.yes
        && !confirm(&format!(
            "Delete container group {name:?} in resource group {rg:?}?"
        ))?
    {
        anyhow::bail!("not deleted: no confirmation");
    }
    let answer = ctx.client.delete(&path).await?;
    if answer.status == StatusCode::NO_CONTENT {
        note(&format!(
            "container group {name:?} not found in resource group {rg:?}: nothing to delete"
        ));
        return Ok(());
    }
    if answer.status == StatusCode::ACCEPTED && !args.wait.no_wait {
        let timeout = Duration::from_secs(args.wait.timeout);
        poller::wait(&ctx.client, &answer, &format!("deleting {name}"), timeout).await?;
        note(&format!("deleted container group {name:?}"));
        return Ok(());
    }
    if answer.body.is_empty() {
        note(&format!("deleting container group {name:?}"));
        return Ok(());
    }
    output::emit(&output::group(ctx.output, &answer.json::<Value>()?)?)
}

/// Asks on stderr, reads y/N from stdin; without a terminal there is no one to ask.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "stdin is not a terminal: pass --yes to delete without asking".into(),
        )
        .into());
    }
    eprint!("{question} (y/N): ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
