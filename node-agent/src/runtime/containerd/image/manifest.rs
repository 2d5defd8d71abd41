//! The OCI and Docker v2 image formats: indexes, manifests, configs, and the identities derived from
//! them (chain IDs).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::ImageConfig;
use super::reference::is_sha256_digest;

/// OCI image index.
pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub(super) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What the manifest endpoint is asked for, best first.
pub(super) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Layer media types containerd's differ applies (it decompresses gzip and zstd itself).
const LAYER_TYPES: [&str; 6] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The only platform Berth nodes run.
pub(super) const PLATFORM_OS: &str = "linux";
/// The only architecture Berth nodes run.
pub(super) const PLATFORM_ARCHITECTURE: &str = "amd64";

/// A content descriptor as it appears in indexes and manifests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub(super) media_type: String,
    pub(super) digest: String,
    pub(super) size: i64,
    #[serde(default)]
    pub(super) platform: Option<Platform>,
}

/// The platform of one manifest of an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct Platform {
    #[serde(default)]
    pub(super) architecture: String,
    #[serde(default)]
    pub(super) os: String,
}

/// An OCI index or a Docker manifest list.
#[derive(Debug, Deserialize)]
pub(super) struct Index {
    pub(super) manifests: Vec<Descriptor>,
}

/// An OCI or Docker v2 image manifest.
#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub(super) config: Descriptor,
    pub(super) layers: Vec<Descriptor>,
}

/// What a manifest endpoint returned, once its kind is known.
#[derive(Debug)]
pub(super) enum Parsed {
    Index(Index),
    Manifest(Manifest),
}

/// The fields of a manifest's JSON that tell its kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest endpoint's body. `content_type` is the response's media type; the body's own
/// `mediaType` wins when present. Returns the media type and the parsed document.
pub(super) fn parse(content_type: &str, body: &[u8]) -> Result<(String, Parsed), String> {
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    if probe.schema_version == Some(1) {
        return Err("the image uses the obsolete Docker schema 1 manifest format".to_string());
    }
    let media_type = match probe.media_type.as_deref().filter(|m| !m.is_empty()) {
        Some(declared) => declared.to_string(),
        None if is_index_type(content_type) || is_manifest_type(content_type) => {
            content_type.to_string()
        }
        None if probe.manifests.is_some() => OCI_INDEX.to_string(),
        None if probe.config.is_some() => OCI_MANIFEST.to_string(),
        None => return Err(format!("unsupported manifest media type '{content_type}'")),
    };
    let parsed = if is_index_type(&media_type) {
        let index: Index =
            serde_json::from_slice(body).map_err(|e| format!("the index is malformed: {e}"))?;
        Parsed::Index(index)
    } else if is_manifest_type(&media_type) {
        let manifest: Manifest =
            serde_json::from_slice(body).map_err(|e| format!("the manifest is malformed: {e}"))?;
        validate_manifest(&manifest)?;
        Parsed::Manifest(manifest)
    } else {
        return Err(format!("unsupported manifest media type '{media_type}'"));
    };
    Ok((media_type, parsed))
}

/// Whether `media_type` is an OCI index or a Docker manifest list.
pub(super) fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is an OCI or Docker v2 image manifest.
pub(super) fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Picks the linux/amd64 image manifest of an index; returns its position and descriptor.
pub(super) fn select_platform(index: &Index) -> Result<(usize, Descriptor), String> {
    let chosen = index.manifests.iter().enumerate().find(|(_, d)| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCHITECTURE)
    });
    let Some((position, descriptor)) = chosen else {
        let offered: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        return Err(format!(
            "the image has no {PLATFORM_OS}/{PLATFORM_ARCHITECTURE} variant (it offers: {})",
            if offered.is_empty() {
                "no platforms".to_string()
            } else {
                offered.join(", ")
            }
        ));
    };
    validate_descriptor(descriptor, "the index's manifest")?;
    if !is_manifest_type(&descriptor.media_type) {
        return Err(format!(
            "the index's {PLATFORM_OS}/{PLATFORM_ARCHITECTURE} entry is a '{}', not an image manifest",
            descriptor.media_type
        ));
    }
    Ok((position, descriptor.clone()))
}

fn validate_manifest(manifest: &Manifest) -> Result<(), String> {
    validate_descriptor(&manifest.config, "the config")?;
    if manifest.config.media_type != OCI_CONFIG && manifest.config.media_type != DOCKER_CONFIG {
        return Err(format!(
            "the manifest's config is a '{}': this is not a container image",
            manifest.config.media_type
        ));
    }
    for (i, layer) in manifest.layers.iter().enumerate() {
        validate_descriptor(layer, &format!("layer {i}"))?;
        if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(format!(
                "layer {i} has the unsupported media type '{}'",
                layer.media_type
            ));
        }
    }
    Ok(())
}

fn validate_descriptor(descriptor: &Descriptor, what: &str) -> Result<(), String> {
    if !is_sha256_digest(&descriptor.digest) {
        return Err(format!(
            "{what} has the unsupported digest '{}' (only sha256 is supported)",
            descriptor.digest
        ));
    }
    if descriptor.size < 0 {
        return Err(format!("{what} has a negative size"));
    }
    Ok(())
}

/// An image config (`application/vnd.oci.image.config.v1+json` and Docker's equivalent).
#[derive(Debug, Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub(super) architecture: String,
    #[serde(default)]
    pub(super) os: String,
    #[serde(default)]
    pub(super) config: Option<ContainerConfig>,
    pub(super) rootfs: RootFs,
}

/// The runtime defaults of an image config.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ContainerConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// The uncompressed layer digests of an image config.
#[derive(Debug, Deserialize)]
pub(super) struct RootFs {
    #[serde(default)]
    pub(super) diff_ids: Vec<String>,
}

/// Parses an image config and checks it fits the manifest (`layers` layers) and this node's platform.
pub(super) fn parse_config(body: &[u8], layers: usize) -> Result<ConfigFile, String> {
    let config: ConfigFile =
        serde_json::from_slice(body).map_err(|e| format!("the image config is malformed: {e}"))?;
    if (!config.os.is_empty() && config.os != PLATFORM_OS)
        || (!config.architecture.is_empty() && config.architecture != PLATFORM_ARCHITECTURE)
    {
        return Err(format!(
            "the image is built for {}/{}, but this node runs {PLATFORM_OS}/{PLATFORM_ARCHITECTURE}",
            config.os, config.architecture
        ));
    }
    if config.rootfs.diff_ids.len() != layers {
        return Err(format!(
            "the image config lists {} layer diff IDs but the manifest has {layers} layers",
            config.rootfs.diff_ids.len()
        ));
    }
    if let Some(bad) = config.rootfs.diff_ids.iter().find(|d| !is_sha256_digest(d)) {
        return Err(format!(
            "the image config has the unsupported diff ID '{bad}'"
        ));
    }
    Ok(config)
}

impl ConfigFile {
    /// What the runtime needs from the config.
    pub(super) fn image_config(&self) -> ImageConfig {
        let config = self.config.as_ref();
        let list = |pick: fn(&ContainerConfig) -> &Option<Vec<String>>| {
            config.and_then(|c| pick(c).clone()).unwrap_or_default()
        };
        let text = |pick: fn(&ContainerConfig) -> &Option<String>| {
            config.and_then(|c| pick(c).clone()).unwrap_or_default()
        };
        ImageConfig {
            env: list(|c| &c.env),
            entrypoint: list(|c| &c.entrypoint),
            cmd: list(|c| &c.cmd),
            working_dir: text(|c| &c.working_dir),
            user: text(|c| &c.user),
        }
    }
}

/// Chain IDs of a layer stack: `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
/// The snapshot of layer `n` applied on its parents is named `chain(n)`.
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// `sha256:<hex>` of `bytes`.
pub(super) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        assert!(chain_ids(&[]).is_empty());
        let chain = chain_ids(&[A.to_string(), B.to_string()]);
        assert_eq!(chain[0], A);
        assert_eq!(chain[1], sha256_digest(format!("{A} {B}").as_bytes()));
    }

    #[test]
    fn picks_linux_amd64_from_an_index() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{A}","size":10,"platform":{{"architecture":"arm64","os":"linux"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{B}","size":11,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let (media_type, Parsed::Index(index)) =
            parse("application/json", index.as_bytes()).unwrap()
        else {
            panic!("not an index")
        };
        assert_eq!(media_type, DOCKER_LIST);
        let (position, chosen) = select_platform(&index).unwrap();
        assert_eq!((position, chosen.digest.as_str()), (1, B));
    }

    #[test]
    fn an_index_without_linux_amd64_is_refused() {
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{A}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        let (_, Parsed::Index(index)) = parse(OCI_INDEX, index.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let error = select_platform(&index).unwrap_err();
        assert!(
            error.contains("no linux/amd64") && error.contains("linux/arm64"),
            "{error}"
        );
    }

    #[test]
    fn refuses_schema1_artifacts_and_odd_digests() {
        let schema1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(parse("", schema1).unwrap_err().contains("schema 1"));
        let artifact = format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{A}","size":1}},"layers":[]}}"#
        );
        assert!(
            parse("", artifact.as_bytes())
                .unwrap_err()
                .contains("not a container image")
        );
        let md5 = format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"md5:00","size":1}},"layers":[]}}"#
        );
        assert!(
            parse("", md5.as_bytes())
                .unwrap_err()
                .contains("only sha256")
        );
    }

    #[test]
    fn config_must_fit_the_manifest_and_the_platform() {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["A=1"],"Entrypoint":null,"Cmd":["sh"],"WorkingDir":"/w"}},"rootfs":{{"type":"layers","diff_ids":["{A}"]}}}}"#
        );
        let parsed = parse_config(config.as_bytes(), 1).unwrap();
        let image = parsed.image_config();
        assert_eq!(image.env, vec!["A=1".to_string()]);
        assert!(image.entrypoint.is_empty());
        assert_eq!(image.cmd, vec!["sh".to_string()]);
        assert_eq!(image.working_dir, "/w");
        assert_eq!(image.user, "");
        assert!(
            parse_config(config.as_bytes(), 2)
                .unwrap_err()
                .contains("diff IDs")
        );
        let arm = config.replace("amd64", "arm64");
        assert!(
            parse_config(arm.as_bytes(), 1)
                .unwrap_err()
                .contains("linux/arm64")
        );
    }
}
