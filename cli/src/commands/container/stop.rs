//! `berth container stop`.

use crate::cli::GroupArgs;
use crate::commands::{Context, group_path, note};

/// POSTs `stop`: the containers are terminated and billing stops. Synchronous in ACI (204).
pub async fn stop(ctx: &Context, args: &GroupArgs) -> anyhow::Result<()> {
    let path = group_path(ctx.subscription()?, &args.resource_group, &args.name);
    ctx.client.post::<()>(&format!("{path}/stop"), None).await?;
    note(&format!("stopped container group {:?}", args.name));
    Ok(())
}
