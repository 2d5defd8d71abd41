//! `berth admin join-token create`.

use serde_json::Value;

use crate::admin::{JOIN_TOKENS_PATH, JoinToken, JoinTokenRequest, wire_seconds};
use crate::cli::JoinTokenCreateArgs;
use crate::commands::Context;
use crate::output;

/// Creates a join token for `berth-node-agent --join-token`. Table output is the token alone.
pub async fn create(ctx: &Context, args: &JoinTokenCreateArgs) -> anyhow::Result<()> {
    let request = JoinTokenRequest {
        uses: args.uses.map(i64::from),
        ttl_seconds: args.ttl.map(wire_seconds),
    };
    let answer = ctx.client.post(JOIN_TOKENS_PATH, Some(&request)).await?;
    match output::document(ctx.output, &answer.json::<Value>()?)? {
        Some(text) => output::emit(&text),
        None => output::emit(&answer.json::<JoinToken>()?.token),
    }
}
