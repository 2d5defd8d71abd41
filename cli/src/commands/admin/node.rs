//! `berth admin node list`.

use berth_proto::arm::ListResult;
use serde_json::Value;

use crate::admin::{NODES_PATH, Node};
use crate::commands::Context;
use crate::output;

/// Lists the cluster's nodes: capacity, allocation, groups and last heartbeat.
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
