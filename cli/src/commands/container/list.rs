//! `berth container list`.

use berth_proto::arm::ListResult;
use serde_json::Value;

use crate::cli::ListArgs;
use crate::commands::{Context, groups_path};
use crate::output;

/// Lists the groups of a resource group, or of the subscription, following `nextLink` to the end.
pub async fn list(ctx: &Context, args: &ListArgs) -> anyhow::Result<()> {
    let mut groups = Vec::new();
    let mut next = Some(groups_path(
        ctx.subscription()?,
        args.resource_group.as_deref(),
    ));
    while let Some(target) = next.take() {
        let page: ListResult<Value> = ctx.client.get(&target).await?.json()?;
        groups.extend(page.value);
        // A link back to the same page would never end.
        next = page
            .next_link
            .filter(|link| !link.is_empty() && *link != target);
    }
    match output::groups(ctx.output, &groups)? {
        Some(text) => output::emit(&text),
        None => Ok(()),
    }
}
