//! `berth container create`.

use std::time::Duration;

use anyhow::Context as _;
use berth_proto::manifest::Format;
use serde_json::Value;

use crate::UsageError;
use crate::cli::CreateArgs;
use crate::commands::{Context, group_path};
use crate::config::DEFAULT_LOCATION;
use crate::{group_spec, output, poller};

/// PUTs the group (from the flags or `--file`), waits for it to be provisioned unless `--no-wait`,
/// then prints it.
pub async fn create(ctx: &Context, args: &CreateArgs) -> anyhow::Result<()> {
    let subscription = ctx.subscription()?;
    let (name, api_version, body) = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let fallback = ctx
                .settings
                .location_default
                .as_deref()
                .unwrap_or(DEFAULT_LOCATION);
            let manifest = group_spec::read_file(
                &text,
                Format::of(path),
                args.name.as_deref(),
                ctx.settings.location_override.as_deref(),
                fallback,
            )
            .with_context(|| format!("in {}", path.display()))?;
            (manifest.name, manifest.api_version, manifest.body)
        }
        None => {
            let name = args
                .name
                .clone()
                .ok_or_else(|| UsageError("--name is required".into()))?;
            let group = args.group.build(&name, ctx.settings.location())?;
            let body = serde_json::to_value(group).context("cannot encode the group")?;
            (name, crate::client::API_VERSION.to_owned(), body)
        }
    };

    let path = group_path(subscription, &args.resource_group, &name);
    let accepted = ctx.client.put(&path, &api_version, &body).await?;
    if args.wait.no_wait {
        return output::emit(&output::group(ctx.output, &accepted.json::<Value>()?)?);
    }
    let timeout = Duration::from_secs(args.wait.timeout);
    // No `Azure-AsyncOperation` means the PUT was complete (ARM's rule); either way, GET the result.
    poller::wait(&ctx.client, &accepted, &format!("creating {name}"), timeout).await?;
    let group: Value = ctx.client.get(&path).await?.json()?;
    output::emit(&output::group(ctx.output, &group)?)
}
