//! `berth admin node list|cordon|uncordon|delete` (`drain` is in [`super::drain`]).

use berth_proto::arm::ListResult;
use reqwest::StatusCode;
use serde_json::Value;

use crate::admin::{NODES_PATH, Node, NodeEvacuation, node_action_path, node_path};
use crate::cli::NodeDeleteArgs;
use crate::commands::{Context, note};
use crate::output;

/// Lists the cluster's nodes: status, scheduling, capacity, allocation, groups and last heartbeat.
pub async fn list(ctx: &Context) -> anyhow::Result<()> {
    let answer = ctx.client.get(NODES_PATH).await?;
    let page: ListResult<Value> = answer.json()?;
    if let Some(text) = output::document(ctx.output, &Value::Array(page.value.clone()))? {
        return output::emit(&text);
    }
    let nodes: Vec<Node> = answer.json::<ListResult<Node>>()?.value;
    match output::nodes_table(&nodes) {
        Some(text) => output::emit(&text),
        None => Ok(()),
    }
}

/// Cordons (`cordoned`) or uncordons a node; prints it as the list would.
pub async fn cordon(ctx: &Context, node: &str, cordoned: bool) -> anyhow::Result<()> {
    let action = if cordoned { "cordon" } else { "uncordon" };
    let answer = ctx
        .client
        .post::<()>(&node_action_path(node, action), None)
        .await?;
    if let Some(text) = output::document(ctx.output, &answer.json::<Value>()?)? {
        return output::emit(&text);
    }
    match output::nodes_table(&[answer.json::<Node>()?]) {
        Some(text) => output::emit(&text),
        None => Ok(()),
    }
}

/// Deletes a node; with `--force`, the groups still on it are taken off first (moved or settled as
/// from a lost node), and the answer says which.
pub async fn delete(ctx: &Context, args: &NodeDeleteArgs) -> anyhow::Result<()> {
    let mut path = node_path(&args.node.node);
    if args.force {
        path.push_str("?force=true");
    }
    let answer = ctx.client.delete(&path).await?;
    // 204: there was nothing on it to take off.
    let evacuation = if answer.status == StatusCode::NO_CONTENT || answer.body.is_empty() {
        None
    } else {
        Some(answer.json::<Value>()?)
    };
    if let Some(text) = output::document(ctx.output, evacuation.as_ref().unwrap_or(&Value::Null))? {
        return output::emit(&text);
    }
    let evacuation = evacuation
        .map(serde_json::from_value::<NodeEvacuation>)
        .transpose()?
        .unwrap_or_default();
    note(&deleted_message(&args.node.node, &evacuation));
    Ok(())
}

/// What `delete` says when it is done.
fn deleted_message(node: &str, evacuation: &NodeEvacuation) -> String {
    let (moved, settled) = (evacuation.moved.len(), evacuation.settled.len());
    if moved + settled == 0 {
        format!("Deleted node {node}.")
    } else {
        format!(
            "Deleted node {node}: {moved} group{} placed again elsewhere, {settled} finished group{} taken off.",
            plural(moved),
            plural(settled)
        )
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_says_what_it_took_off() {
        assert_eq!(
            deleted_message("n1", &NodeEvacuation::default()),
            "Deleted node n1."
        );
        let forced = NodeEvacuation {
            moved: vec!["a".into(), "b".into()],
            settled: vec!["c".into()],
            ..Default::default()
        };
        assert_eq!(
            deleted_message("n1", &forced),
            "Deleted node n1: 2 groups placed again elsewhere, 1 finished group taken off."
        );
    }
}
