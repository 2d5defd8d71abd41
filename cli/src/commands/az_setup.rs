//! `berth az-setup`: what the Azure CLI needs to drive this Berth. It makes a new credential (a
//! token for one subscription, which `az login --service-principal` signs in with: its id is the
//! client id, the token the secret; with a tenant's token, which cannot make tokens, that token
//! itself), then prints the shell lines that register Berth as a cloud,
//! select it and sign in, with the CA variables `az` and its websocket client read; with `--apply`
//! it runs the `az` lines itself and prints only the variables, which a child cannot set for its
//! parent shell.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

use crate::admin::{TOKENS_PATH, TokenRequest};
use crate::cli::AzSetupArgs;
use crate::client::ClientError;
use crate::commands::Context;
use crate::output;

/// What one line of the set-up does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `export NAME=value`.
    Env(&'static str, String),
    /// `az args…`; `why` is said in a comment above it.
    Az {
        args: Vec<String>,
        why: &'static str,
    },
}

/// The facts the set-up is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub cloud: String,
    /// The endpoint, with the trailing slash `az cloud register` keeps.
    pub endpoint: String,
    pub ca_file: String,
    pub client_id: String,
    pub secret: String,
    pub tenant: String,
}

/// The set-up's lines, in the order they run.
pub fn steps(setup: &Setup) -> Vec<Step> {
    let az = |why, args: &[&str]| Step::Az {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        why,
    };
    vec![
        // `requests` (every ARM call and the sign-in) reads the first, `websocket-client`
        // (`az container exec`) the second.
        Step::Env("REQUESTS_CA_BUNDLE", setup.ca_file.clone()),
        Step::Env("WEBSOCKET_CLIENT_CA_BUNDLE", setup.ca_file.clone()),
        az(
            "Berth as a cloud of az's own, from its metadata endpoint",
            &[
                "cloud",
                "register",
                "-n",
                &setup.cloud,
                "--endpoint-resource-manager",
                &setup.endpoint,
            ],
        ),
        az(
            "az talks to it from now on",
            &["cloud", "set", "-n", &setup.cloud],
        ),
        az(
            "sign in with the new credential (client id and secret)",
            &[
                "login",
                "--service-principal",
                "-u",
                &setup.client_id,
                "-p",
                &setup.secret,
                "--tenant",
                &setup.tenant,
            ],
        ),
    ]
}

/// The steps as shell lines (comments included), to paste or `eval`.
pub fn render(steps: &[Step]) -> String {
    let mut text = String::new();
    for step in steps {
        match step {
            Step::Env(name, value) => {
                text.push_str(&format!("export {name}={}\n", shell_quote(value)));
            }
            Step::Az { args, why } => {
                text.push_str(&format!("# {why}\n"));
                let words: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
                text.push_str(&format!("az {}\n", words.join(" ")));
            }
        }
    }
    text
}

/// `word` as `sh` reads it back: bare when it is made of safe characters only, else single-quoted.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Deserialize)]
struct Credential {
    id: String,
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tenant {
    tenant_id: String,
}

#[derive(Debug, Deserialize)]
struct Tenants {
    value: Vec<Tenant>,
}

/// Makes the credential, then prints the set-up or, with `--apply`, runs it.
pub async fn run(ctx: &Context, args: &AzSetupArgs) -> anyhow::Result<()> {
    let subscription = ctx.subscription()?.to_owned();
    let ca_file = ctx
        .settings
        .ca_file
        .as_deref()
        .context("no CA file: pass --ca-file or run `berth login`")?;
    let ca_file = std::fs::canonicalize(ca_file)
        .with_context(|| format!("the CA file {}", ca_file.display()))?
        .to_string_lossy()
        .into_owned();
    let tenants: Tenants = ctx.client.get("/tenants").await?.json()?;
    let tenant = tenants
        .value
        .into_iter()
        .next()
        .context("the server named no tenant")?
        .tenant_id;
    let request = TokenRequest {
        subscriptions: vec![subscription],
        operator: false,
        expires_in_seconds: args.expires_in.map(crate::admin::wire_seconds),
    };
    let credential = match ctx.client.post(TOKENS_PATH, Some(&request)).await {
        Ok(answer) => answer.json::<Credential>()?,
        // A tenant's own token (what `scripts/up` logs the CLI in with) cannot make tokens: az
        // signs in with that token itself.
        Err(ClientError::Api { status: 403, .. }) => {
            let token = ctx.settings.token.clone().unwrap_or_default();
            let id = own_token_id(&token)
                .context("this token can make no credential and is not one az can sign in with")?
                .to_owned();
            eprintln!(
                "note: only an operator token makes a new credential; az signs in with this one \
                 (id {id}): revoking it signs az out"
            );
            Credential { id, token }
        }
        Err(e) => return Err(e).context("making the credential"),
    };
    let mut endpoint = ctx.client.endpoint().to_string();
    if !endpoint.ends_with('/') {
        endpoint.push('/');
    }
    let setup = Setup {
        cloud: args.cloud_name.clone(),
        endpoint,
        ca_file,
        client_id: credential.id,
        secret: credential.token,
        tenant,
    };
    let steps = steps(&setup);
    if !args.apply {
        return output::emit(render(&steps).trim_end());
    }
    apply(&steps, &args.az)?;
    let env: Vec<Step> = steps
        .into_iter()
        .filter(|s| matches!(s, Step::Env(..)))
        .collect();
    eprintln!("az is signed in to {}; in your shell, also:", setup.cloud);
    output::emit(render(&env).trim_end())
}

/// The id of a Berth token, `berth_<id>_<secret>`: the client id az signs in with.
pub fn own_token_id(token: &str) -> Option<&str> {
    let (id, secret) = token.strip_prefix("berth_")?.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// Runs the `az` steps with the variables set, stopping at the first that fails.
fn apply(steps: &[Step], az: &Path) -> anyhow::Result<()> {
    let mut command_env = Vec::new();
    for step in steps {
        match step {
            Step::Env(name, value) => command_env.push((*name, value.clone())),
            Step::Az { args, .. } => {
                let shown = args.first().map(String::as_str).unwrap_or_default();
                let output = std::process::Command::new(az)
                    .args(args)
                    .envs(command_env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(std::process::Stdio::null())
                    .output()
                    .with_context(|| format!("running {}", az.display()))?;
                if !output.status.success() {
                    anyhow::bail!(
                        "`az {shown} …` failed ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            cloud: "berth".into(),
            endpoint: "https://berth.example:8443/".into(),
            ca_file: "/home/me/My Files/ca.crt".into(),
            client_id: "k3x9".into(),
            secret: "berth_k3x9_s'cr$t".into(),
            tenant: "7c1d8b8e-3a4f-4e0b-9a55-0c2f6a1d2e3f".into(),
        }
    }

    #[test]
    fn the_lines_register_select_and_sign_in_with_the_ca_variables_first() {
        let text = render(&steps(&setup()));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "export REQUESTS_CA_BUNDLE='/home/me/My Files/ca.crt'",
                "export WEBSOCKET_CLIENT_CA_BUNDLE='/home/me/My Files/ca.crt'",
                "az cloud register -n berth --endpoint-resource-manager https://berth.example:8443/",
                "az cloud set -n berth",
                "az login --service-principal -u k3x9 -p 'berth_k3x9_s'\\''cr$t' --tenant 7c1d8b8e-3a4f-4e0b-9a55-0c2f6a1d2e3f",
            ]
        );
    }

    #[test]
    fn a_tokens_id_is_what_follows_berth_up_to_the_next_underscore() {
        assert_eq!(
            own_token_id("berth_abcdefghijkl_S3cr_et"),
            Some("abcdefghijkl")
        );
        for not_one in [
            "",
            "berth_",
            "berth__x",
            "berth_id_",
            "berth_id",
            "other_id_secret",
        ] {
            assert_eq!(own_token_id(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn quoting_reads_back_as_the_same_word_in_sh() {
        for word in [
            "plain",
            "",
            "a b",
            "it's",
            "$HOME",
            "`x`",
            "a\"b",
            "tab\there",
            "~",
        ] {
            let quoted = shell_quote(word);
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {quoted}")])
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "{quoted}");
        }
    }
}
