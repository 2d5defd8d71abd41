//! `berth login`: check an endpoint, token and CA against the server, then save them.

use std::path::Path;

use anyhow::Context as _;
use berth_proto::arm::ListResult;
use reqwest::Method;
use serde::Deserialize;

use crate::UsageError;
use crate::client::Client;
use crate::config::{ConfigFile, Settings};

/// The api-version of ARM's subscription list.
const SUBSCRIPTIONS_API_VERSION: &str = "2020-01-01";

/// One entry of `GET /subscriptions` (ARM's shape; only the id matters here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    subscription_id: String,
}

/// Lists the token's subscriptions (which proves endpoint, CA and token), picks the subscription and
/// writes the config file. `settings.subscription` is only what the command line gave.
pub async fn login(settings: &Settings, config_path: &Path) -> anyhow::Result<()> {
    let need = |value: Option<&str>, flag: &str, var: &str| {
        value
            .map(str::to_owned)
            .ok_or_else(|| UsageError(format!("login needs --{flag} (or {var})")))
    };
    let endpoint = need(
        settings.endpoint.as_deref(),
        "endpoint",
        crate::config::ENV_ENDPOINT,
    )?;
    let token = need(settings.token.as_deref(), "token", crate::config::ENV_TOKEN)?;
    let ca_file = settings
        .ca_file
        .as_deref()
        .ok_or_else(|| UsageError("login needs --ca-file (or BERTH_CA_FILE)".to_owned()))?;
    // The config file is read from anywhere, so it keeps an absolute path.
    let ca_file = std::path::absolute(ca_file)
        .with_context(|| format!("cannot resolve {}", ca_file.display()))?;

    let client = Client::new(&endpoint, &token, &ca_file)?;
    let mut available = Vec::new();
    let mut next = Some("/subscriptions".to_owned());
    while let Some(target) = next.take() {
        let page: ListResult<Subscription> = client
            .send(Method::GET, &target, SUBSCRIPTIONS_API_VERSION, None)
            .await
            .context("cannot list the token's subscriptions")?
            .json()?;
        available.extend(page.value.into_iter().map(|s| s.subscription_id));
        next = page
            .next_link
            .filter(|link| !link.is_empty() && *link != target);
    }

    let subscription = match (&settings.subscription, available.as_slice()) {
        (Some(chosen), _) => {
            if !available.is_empty() && !available.contains(chosen) {
                eprintln!(
                    "warning: the token lists no subscription {chosen:?} (it lists {})",
                    available.join(", ")
                );
            }
            Some(chosen.clone())
        }
        // An operator token may be bound to no subscription.
        (None, []) => None,
        (None, [only]) => Some(only.clone()),
        (None, several) => anyhow::bail!(
            "the token can use several subscriptions: {}; pick one with --subscription",
            several.join(", ")
        ),
    };

    let file = ConfigFile {
        endpoint: Some(endpoint.clone()),
        token: Some(token),
        ca_file: Some(ca_file),
        subscription: subscription.clone(),
        location: settings
            .location_override
            .clone()
            .or_else(|| settings.location_default.clone()),
    };
    file.write(config_path)?;
    match subscription {
        Some(s) => println!("Logged in to {endpoint} (subscription {s})."),
        None => println!("Logged in to {endpoint} (no subscription)."),
    }
    println!("Saved to {}", config_path.display());
    Ok(())
}
