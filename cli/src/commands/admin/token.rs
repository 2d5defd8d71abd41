//! `berth admin token create|list|revoke`.

use berth_proto::arm::ListResult;
use serde_json::Value;

use crate::admin::{IssuedToken, TOKENS_PATH, Token, TokenRequest, token_path, wire_seconds};
use crate::cli::{TokenCreateArgs, TokenRevokeArgs};
use crate::commands::Context;
use crate::output;

/// Creates an API token. Table output is the token alone, for `TOKEN=$(berth admin token create …)`.
pub async fn create(ctx: &Context, args: &TokenCreateArgs) -> anyhow::Result<()> {
    let request = TokenRequest {
        subscriptions: args.subscriptions.clone(),
        operator: args.operator,
        expires_in_seconds: args.expires_in.map(wire_seconds),
    };
    let answer = ctx.client.post(TOKENS_PATH, Some(&request)).await?;
    match output::document(ctx.output, &answer.json::<Value>()?)? {
        Some(text) => output::emit(&text),
        None => output::emit(&answer.json::<IssuedToken>()?.token),
    }
}

/// Lists every token, revoked and expired ones included.
pub async fn list(ctx: &Context) -> anyhow::Result<()> {
    let answer = ctx.client.get(TOKENS_PATH).await?;
    let page: ListResult<Value> = answer.json()?;
    if let Some(text) = output::document(ctx.output, &Value::Array(page.value))? {
        return output::emit(&text);
    }
    let tokens: Vec<Token> = answer.json::<ListResult<Token>>()?.value;
    match output::tokens_table(&tokens) {
        Some(text) => output::emit(&text),
        None => Ok(()),
    }
}

/// Revokes a token (revoking it again is fine); prints it as the list would.
pub async fn revoke(ctx: &Context, args: &TokenRevokeArgs) -> anyhow::Result<()> {
    let answer = ctx.client.delete(&token_path(&args.id)).await?;
    if let Some(text) = output::document(ctx.output, &answer.json::<Value>()?)? {
        return output::emit(&text);
    }
    match output::tokens_table(&[answer.json::<Token>()?]) {
        Some(text) => output::emit(&text),
        None => Ok(()),
    }
}
