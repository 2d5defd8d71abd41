//! `berth container restart`.

use std::time::Duration;

use crate::cli::WaitingGroupArgs;
use crate::commands::{Context, group_path, note};
use crate::poller;

/// POSTs `restart` (204 with an `Azure-AsyncOperation`) and waits for it unless `--no-wait`.
pub async fn restart(ctx: &Context, args: &WaitingGroupArgs) -> anyhow::Result<()> {
    let name = &args.group.name;
    let path = group_path(ctx.subscription()?, &args.group.resource_group, name);
    let answer = ctx
        .client
        .post::<()>(&format!("{path}/restart"), None)
        .await?;
    if args.wait.no_wait {
        note(&format!("restarting container group {name:?}"));
        return Ok(());
    }
    let timeout = Duration::from_secs(args.wait.timeout);
    poller::wait(&ctx.client, &answer, &format!("restarting {name}"), timeout).await?;
    note(&format!("restarted container group {name:?}"));
    Ok(())
}
