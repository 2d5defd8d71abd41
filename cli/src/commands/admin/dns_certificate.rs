//! `berth admin dns-certificate create`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::admin::{DNS_CERTIFICATES_PATH, DnsCertificate};
use crate::cli::DnsCertificateCreateArgs;
use crate::commands::Context;
use crate::output;

/// Writes `contents` to a new file (never over an existing one), with `mode`.
fn write_new(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (is it there already?)", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Asks the apiserver for a `berth-dns` client certificate and writes it, its key and the cluster CA
/// into `--out-dir`, for `berth-dns --cert-file --key-file --ca-file`. The key exists only there.
pub async fn create(ctx: &Context, args: &DnsCertificateCreateArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let answer: DnsCertificate = ctx
        .client
        .post(DNS_CERTIFICATES_PATH, None::<&Value>)
        .await?
        .json()?;
    let field = |name: &str, value: &str| {
        anyhow::ensure!(!value.is_empty(), "the apiserver's answer has no '{name}'");
        Ok(value.to_owned())
    };
    let files = [
        ("dns.crt", field("certificate", &answer.certificate)?, 0o644),
        ("dns.key", field("key", &answer.key)?, 0o600),
        ("ca.crt", field("ca", &answer.ca)?, 0o644),
    ];
    let mut written = serde_json::Map::new();
    for (name, contents, mode) in &files {
        let path = args.out_dir.join(name);
        write_new(&path, contents, *mode)?;
        written.insert(
            (*name).to_owned(),
            Value::String(path.display().to_string()),
        );
    }
    written.insert("id".to_owned(), Value::String(answer.id.clone()));
    let summary = Value::Object(written);
    match output::document(ctx.output, &summary)? {
        Some(text) => output::emit(&text),
        None => output::emit(&format!(
            "certificate {} for berth-dns written to {}: dns.crt, dns.key, ca.crt",
            answer.id,
            args.out_dir.display()
        )),
    }
}
