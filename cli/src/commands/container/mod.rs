//! `berth container …`: the ACI container-group operations.

pub mod attach;
pub mod create;
pub mod delete;
pub mod exec;
pub mod list;
pub mod logs;
pub mod metrics;
pub mod restart;
pub mod show;
pub mod start;
pub mod stop;

use std::io::Write;

use anyhow::Context as _;
use serde_json::Value;

use crate::UsageError;
use crate::cli::ContainerArgs;
use crate::client::segment;
use crate::commands::{Context, group_path};

/// The path of the container `args` names: `--container`, else the group's only container (found
/// with a GET of the group). A group of several containers needs `--container`, as with `az`.
pub async fn container_path(ctx: &Context, args: &ContainerArgs) -> anyhow::Result<String> {
    let name = args.group_name();
    let group = group_path(ctx.subscription()?, &args.resource_group, name);
    let container = match &args.container {
        Some(container) => container.clone(),
        None => {
            let answer: Value = ctx.client.get(&group).await?.json()?;
            only_container(name, &answer)?
        }
    };
    Ok(format!("{group}/containers/{}", segment(&container)))
}

/// Writes `bytes` to `out` and flushes, so that output shows as it arrives; `name` names `out` in
/// the error.
fn emit(out: &mut dyn Write, bytes: &[u8], name: &str) -> anyhow::Result<()> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write to {name}"))
}

/// The name of the one container of `group` (a group as GET returns it).
fn only_container(name: &str, group: &Value) -> anyhow::Result<String> {
    let names: Vec<&str> = group["properties"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match names.as_slice() {
        [only] => Ok((*only).to_owned()),
        [] => anyhow::bail!("container group {name:?} has no containers"),
        several => Err(UsageError(format!(
            "container group {name:?} has {} containers ({}): pass --container",
            several.len(),
            several.join(", ")
        ))
        .into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_only_container_is_the_default() {
        let group = |names: &[&str]| {
            let containers: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
            json!({"properties": {"containers": containers}})
        };
        assert_eq!(only_container("g", &group(&["web"])).unwrap(), "web");
        let err = only_container("g", &group(&["web", "sidecar"])).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert_eq!(
            err.to_string(),
            "container group \"g\" has 2 containers (web, sidecar): pass --container"
        );
        assert!(only_container("g", &group(&[])).is_err());
        assert!(only_container("g", &json!({})).is_err());
    }
}
