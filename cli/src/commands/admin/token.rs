//! `berth admin token create`.

use serde_json::Value;

use crate::admin::{CreatedToken, TOKENS_PATH, TokenRequest};
use crate::cli::TokenCreateArgs;
use crate::commands::Context;
use crate::output;

/// Creates an API token. Table output is the token alone, for `TOKEN=$(berth admin token create …)`.
pub async fn create(ctx: &Context, args: &TokenCreateArgs) -> anyhow::Result<()> {
    let request = TokenRequest {
        subscriptions: args.subscriptions.clone(),
        operator: args.operator,
    };
    let answer = ctx.client.post(TOKENS_PATH, Some(&request)).await?;
    match output::document(ctx.output, &answer.json::<Value>()?)? {
        Some(text) => output::emit(&text),
        None => output::emit(&answer.json::<CreatedToken>()?.token),
    }
}
