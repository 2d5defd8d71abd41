//! `berth container start`.

use std::time::Duration;

use reqwest::StatusCode;

use crate::cli::WaitingGroupArgs;
use crate::commands::{Context, group_path, note};
use crate::poller;

/// POSTs `start`: 202 with an operation to wait for, or 204 when the group already runs.
pub async fn start(ctx: &Context, args: &WaitingGroupArgs) -> anyhow::Result<()> {
    let name = &args.group.name;
    let path = group_path(ctx.subscription()?, &args.group.resource_group, name);
    let answer = ctx
        .client
        .post::<()>(&format!("{path}/start"), None)
        .await?;
    if answer.status == StatusCode::NO_CONTENT && answer.async_operation().is_none() {
        note(&format!("container group {name:?} is already running"));
        return Ok(());
    }
    if args.wait.no_wait {
        note(&format!("starting container group {name:?}"));
        return Ok(());
    }
    let timeout = Duration::from_secs(args.wait.timeout);
    poller::wait(&ctx.client, &answer, &format!("starting {name}"), timeout).await?;
    note(&format!("started container group {name:?}"));
    Ok(())
}
