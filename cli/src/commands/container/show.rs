//! `berth container show`.

use serde_json::Value;

use crate::cli::GroupArgs;
use crate::commands::{Context, group_path};
use crate::output;

/// GETs one group and prints it; a missing group is a `ResourceNotFound` error (exit 3).
pub async fn show(ctx: &Context, args: &GroupArgs) -> anyhow::Result<()> {
    let path = group_path(ctx.subscription()?, &args.resource_group, &args.name);
    let group: Value = ctx.client.get(&path).await?.json()?;
    output::emit(&output::group(ctx.output, &group)?)
}
