//! Pulls OCI images into containerd through its gRPC services (content, leases, snapshots, diff,
//! images), working with containerd 1.6 and 2.x, and unpacks them for one snapshotter.
//!
//! A pull: resolve the reference's manifest (choosing linux/amd64 from an index), fetch the config,
//! stream the missing layers into the content store (digests verified on the way), label parents so
//! containerd's garbage collector keeps their children, extract each layer into a committed snapshot
//! named by its chain ID, and create the image record. All of it happens under a lease, deleted at
//! the end, so nothing is collected mid-pull. Concurrent pulls of the same image share one pull.
//!
//! # Layout
//! - `reference`: parsing and Docker Hub normalization of image references.
//! - `registry`: the registry HTTP API v2 client with `Basic` and `Bearer` authentication.
//! - `manifest`: index, manifest and config formats; platform choice; chain IDs.
//! - `store`: the containerd calls, with namespace and lease metadata.

mod manifest;
mod reference;
mod registry;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;
use tracing::Instrument as _;

pub use berth_proto::node::RegistryCredential;

use self::manifest::{ConfigFile, Descriptor, Manifest, Parsed};
use self::reference::Reference;
use self::registry::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, RegistryClient, Session};
use self::store::{BlobWriter, Committed, Ctx, Extraction};

/// How many layers of one image download at once.
const LAYER_CONCURRENCY: usize = 3;
/// The size of the pieces a layer is written to containerd in.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Content label: the config of a manifest, kept by GC while the manifest is.
const GC_REF_CONFIG: &str = "containerd.io/gc.ref.content.config";
/// Content label on a layer blob: its uncompressed digest (diff ID).
const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// Pulls images into one containerd namespace and unpacks them for one snapshotter. Cheap to clone;
/// clones share the registry tokens and the in-flight pulls.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
    namespace: String,
    snapshotter: String,
    registry: RegistryClient,
    /// Pulls under way, by normalized reference and credential.
    in_flight: Mutex<HashMap<String, SharedPull>>,
}

type SharedPull = Shared<BoxFuture<'static, Result<PulledImage, PullError>>>;

/// What the runtime needs of a present, unpacked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The normalized reference, also the containerd image name (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The digest the reference resolved to: the index's digest for a multi-platform image, else the
    /// manifest's (`reference@manifest_digest` pulls the same image again).
    pub manifest_digest: String,
    /// The digest of the image config (Docker's "image ID").
    pub config_digest: String,
    /// The chain ID of the top layer: the committed snapshot to use as the parent of a container's
    /// rootfs in `Snapshots.Prepare`.
    pub chain_id: String,
    /// The image's runtime defaults.
    pub config: ImageConfig,
    /// Whether the image was already present, so that no registry was contacted.
    pub cached: bool,
}

/// The runtime defaults an image config carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Empty means `/`.
    pub working_dir: String,
    /// `user[:group]`, names or ids; empty means root.
    pub user: String,
}

/// Why an image could not be made present. The messages are meant for users (ACI's
/// `InaccessibleImage`) and never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// The registry wants credentials we do not have, or refused the ones we sent.
    #[error(
        "image '{reference}' cannot be pulled: authentication with registry {registry} failed: {detail}"
    )]
    Auth {
        reference: String,
        registry: String,
        detail: String,
    },
    /// The repository, tag or digest does not exist.
    #[error("image '{reference}' cannot be pulled: it was not found: {detail}")]
    NotFound { reference: String, detail: String },
    /// The registry could not be reached, or failed (5xx, throttling, broken download).
    #[error("image '{reference}' cannot be pulled: registry {registry} is unreachable: {detail}")]
    Unreachable {
        reference: String,
        registry: String,
        detail: String,
    },
    /// The reference is malformed, or what the registry served is not a usable linux/amd64 image.
    #[error("image '{reference}' cannot be pulled: {detail}")]
    Invalid { reference: String, detail: String },
    /// containerd failed or is unreachable: a node problem, not the image's.
    #[error("image cannot be pulled: containerd failed: {detail}")]
    Containerd { detail: String },
}

impl PullError {
    /// A short, stable name of the kind: `auth`, `not-found`, `unreachable`, `invalid`, `containerd`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth { .. } => "auth",
            Self::NotFound { .. } => "not-found",
            Self::Unreachable { .. } => "unreachable",
            Self::Invalid { .. } => "invalid",
            Self::Containerd { .. } => "containerd",
        }
    }
}

impl ImageService {
    /// A service pulling into containerd `namespace` (Berth uses `berth`) and unpacking for
    /// `snapshotter` (`overlayfs`).
    pub fn new(channel: Channel, namespace: &str, snapshotter: &str) -> Self {
        Self::build(channel, namespace, snapshotter, Vec::new())
    }

    /// Also speaks plain HTTP to these registries (`host` or `host:port`). Loopback registries
    /// (`localhost`, `127.0.0.0/8`, `::1`) always use plain HTTP.
    pub fn with_insecure_registries(self, hosts: Vec<String>) -> Self {
        let inner = &self.inner;
        Self::build(
            inner.channel.clone(),
            &inner.namespace,
            &inner.snapshotter,
            hosts,
        )
    }

    fn build(channel: Channel, namespace: &str, snapshotter: &str, insecure: Vec<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                channel,
                namespace: namespace.to_string(),
                snapshotter: snapshotter.to_string(),
                registry: RegistryClient::new(insecure),
                in_flight: Mutex::default(),
            }),
        }
    }

    /// Makes `image` present and unpacked; returns what the runtime needs. IfNotPresent semantics:
    /// an image already in containerd's image store with its snapshot unpacked returns at once
    /// without contacting the registry (`cached: true`). Concurrent calls for the same normalized
    /// reference (and the same credential for its registry) share one pull, which runs to its end
    /// even if every caller goes away. `credentials` are matched to the registry by server name.
    pub async fn ensure(
        &self,
        image: &str,
        credentials: &[RegistryCredential],
    ) -> Result<PulledImage, PullError> {
        let reference = Reference::parse(image).map_err(|error| PullError::Invalid {
            reference: image.to_string(),
            detail: format!("it is not a valid image reference: {error}"),
        })?;
        let credential = credentials
            .iter()
            .find(|c| reference.matches_server(&c.server))
            .cloned();
        self.join_or_start(reference, image, credential).await
    }

    /// Removes the containerd image record; its content and snapshots then go by containerd's GC.
    /// Removing an absent image succeeds.
    pub async fn remove(&self, image: &str) -> Result<(), PullError> {
        let reference = Reference::parse(image).map_err(|error| PullError::Invalid {
            reference: image.to_string(),
            detail: format!("it is not a valid image reference: {error}"),
        })?;
        let ctx = Ctx::new(self.inner.channel.clone(), &self.inner.namespace)?;
        if ctx.delete_image(&reference.to_string()).await? {
            tracing::info!(image = %reference, "image removed");
        }
        Ok(())
    }

    /// How many blob downloads this service started (a test and benchmark probe).
    #[doc(hidden)]
    pub fn blobs_fetched(&self) -> u64 {
        self.inner.registry.blobs_fetched()
    }

    /// Joins the pull of the same image with the same credential, or starts one in its own task.
    fn join_or_start(
        &self,
        reference: Reference,
        image: &str,
        credential: Option<RegistryCredential>,
    ) -> SharedPull {
        let key = format!(
            "{reference}\n{}",
            credential
                .as_ref()
                .map(registry::identity)
                .unwrap_or_default()
        );
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pull) = in_flight.get(&key) {
            tracing::debug!(image = %reference, "joining a pull under way");
            return pull.clone();
        }
        let inner = Arc::clone(&self.inner);
        let image = image.to_string();
        let task_key = key.clone();
        let span = tracing::info_span!("pull", image = %reference);
        let task = tokio::spawn(
            async move {
                let result = inner.ensure(&reference, &image, credential.as_ref()).await;
                inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&task_key);
                result
            }
            .instrument(span),
        );
        let pull = async move {
            task.await.unwrap_or_else(|error| {
                Err(PullError::Containerd {
                    detail: format!("the pull task ended abnormally: {error}"),
                })
            })
        }
        .boxed()
        .shared();
        in_flight.insert(key, pull.clone());
        pull
    }
}

/// A blob held in memory: a manifest or an index.
struct Blob {
    media_type: String,
    digest: String,
    bytes: Bytes,
}

impl Blob {
    fn descriptor(&self) -> containerd_client::types::Descriptor {
        containerd_descriptor(
            &self.media_type,
            &self.digest,
            i64::try_from(self.bytes.len()).unwrap_or(i64::MAX),
        )
    }
}

/// The platform manifest of a pull and, for a multi-platform image, the index it came from.
struct Resolved {
    manifest_blob: Blob,
    manifest: Manifest,
    /// The index and the position of the chosen manifest in it.
    index: Option<(Blob, usize)>,
}

impl Inner {
    /// The cached image, or a pull under a lease that is deleted afterwards.
    async fn ensure(
        &self,
        reference: &Reference,
        image: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<PulledImage, PullError> {
        let ctx = Ctx::new(self.channel.clone(), &self.namespace)?;
        if let Some(cached) = self.cached(&ctx, reference).await? {
            tracing::debug!(chain_id = %cached.chain_id, "image already present");
            return Ok(cached);
        }
        let started = Instant::now();
        tracing::info!("pulling");
        let (leased, lease) = ctx.with_new_lease().await?;
        let result = self.pull(&leased, reference, image, credential).await;
        if let Err(error) = ctx.delete_lease(lease).await {
            tracing::warn!(%error, "the pull's lease stays until it expires");
        }
        match &result {
            Ok(pulled) => tracing::info!(
                digest = %pulled.manifest_digest,
                elapsed_ms = started.elapsed().as_millis(),
                "pulled"
            ),
            Err(error) => tracing::info!(kind = error.kind(), %error, "pull failed"),
        }
        result
    }

    /// The image as containerd has it, if its record, manifest, config and top snapshot are all
    /// present. Anything missing or unreadable means "not cached".
    async fn cached(
        &self,
        ctx: &Ctx,
        reference: &Reference,
    ) -> Result<Option<PulledImage>, PullError> {
        let name = reference.to_string();
        let Some(target) = ctx.image(&name).await?.and_then(|record| record.target) else {
            return Ok(None);
        };
        let Some(manifest) = self.local_manifest(ctx, &target).await? else {
            return Ok(None);
        };
        let Some(config_bytes) = ctx.read(&manifest.config.digest, MAX_CONFIG_BYTES).await? else {
            return Ok(None);
        };
        let config = match manifest::parse_config(&config_bytes, manifest.layers.len()) {
            Ok(config) => config,
            Err(detail) => {
                tracing::debug!(%detail, "the stored config is unusable, pulling again");
                return Ok(None);
            }
        };
        let chain = manifest::chain_ids(&config.rootfs.diff_ids);
        let Some(top) = chain.last() else {
            return Ok(None);
        };
        if !ctx.snapshot_exists(&self.snapshotter, top).await? {
            return Ok(None);
        }
        Ok(Some(pulled_image(
            reference,
            &target.digest,
            &manifest.config.digest,
            top,
            &config,
            true,
        )))
    }

    /// The platform manifest of a stored image target (a manifest, or an index holding one).
    async fn local_manifest(
        &self,
        ctx: &Ctx,
        target: &containerd_client::types::Descriptor,
    ) -> Result<Option<Manifest>, PullError> {
        let Some(bytes) = ctx.read(&target.digest, MAX_MANIFEST_BYTES).await? else {
            return Ok(None);
        };
        let manifest = match manifest::parse(&target.media_type, &bytes) {
            Ok((_, Parsed::Manifest(manifest))) => manifest,
            Ok((_, Parsed::Index(index))) => {
                let Ok((_, chosen)) = manifest::select_platform(&index) else {
                    return Ok(None);
                };
                let Some(bytes) = ctx.read(&chosen.digest, MAX_MANIFEST_BYTES).await? else {
                    return Ok(None);
                };
                match manifest::parse(&chosen.media_type, &bytes) {
                    Ok((_, Parsed::Manifest(manifest))) => manifest,
                    _ => return Ok(None),
                }
            }
            Err(detail) => {
                tracing::debug!(%detail, "the stored manifest is unusable, pulling again");
                return Ok(None);
            }
        };
        Ok(Some(manifest))
    }

    /// Fetches what is missing, writes it with GC labels, unpacks, and records the image.
    async fn pull(
        &self,
        ctx: &Ctx,
        reference: &Reference,
        image: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<PulledImage, PullError> {
        let session = self.registry.session(reference, image, credential);
        let resolved = resolve(&session, reference).await?;
        let manifest = &resolved.manifest;
        if manifest.layers.is_empty() {
            return Err(session.invalid("the image has no layers".to_string()));
        }
        let config_bytes = self.config_bytes(ctx, &session, &manifest.config).await?;
        let config = manifest::parse_config(&config_bytes, manifest.layers.len())
            .map_err(|detail| session.invalid(detail))?;
        let diff_ids = &config.rootfs.diff_ids;
        let chain = manifest::chain_ids(diff_ids);
        let top = chain.last().cloned().unwrap_or_default();

        // Futures collected first: a stream mapping through a closure would not be `Send` for
        // every lifetime, which `tokio::spawn` needs.
        let fetches: Vec<_> = manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| fetch_layer(ctx, &session, layer, diff_id))
            .collect();
        futures::stream::iter(fetches)
            .buffer_unordered(LAYER_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        self.write_parents(ctx, &resolved, config_bytes, &top)
            .await?;
        self.unpack(ctx, image, manifest, diff_ids, &chain).await?;

        let target = match &resolved.index {
            Some((index, _)) => index,
            None => &resolved.manifest_blob,
        };
        ctx.put_image(&reference.to_string(), target.descriptor(), HashMap::new())
            .await?;
        Ok(pulled_image(
            reference,
            &target.digest,
            &manifest.config.digest,
            &top,
            &config,
            false,
        ))
    }

    /// The config's bytes: from the content store if present there, else from the registry.
    async fn config_bytes(
        &self,
        ctx: &Ctx,
        session: &Session<'_>,
        config: &Descriptor,
    ) -> Result<Bytes, PullError> {
        if let Some(stored) = ctx.read(&config.digest, MAX_CONFIG_BYTES).await? {
            return Ok(Bytes::from(stored));
        }
        session.small_blob(&config.digest, config.size).await
    }

    /// Writes the config, the manifest and the index (children first), each labelled so that GC
    /// keeps what it refers to: the config keeps the unpacked snapshot, the manifest its config and
    /// layers, the index the chosen manifest.
    async fn write_parents(
        &self,
        ctx: &Ctx,
        resolved: &Resolved,
        config_bytes: Bytes,
        top_chain_id: &str,
    ) -> Result<(), PullError> {
        let manifest = &resolved.manifest;
        let config_labels = HashMap::from([(
            format!("containerd.io/gc.ref.snapshot.{}", self.snapshotter),
            top_chain_id.to_string(),
        )]);
        let config_digest = &manifest.config.digest;
        ctx.write_bytes(
            &format!("config-{config_digest}"),
            config_digest,
            config_bytes,
            config_labels,
        )
        .await?;

        let blob = &resolved.manifest_blob;
        ctx.write_bytes(
            &format!("manifest-{}", blob.digest),
            &blob.digest,
            blob.bytes.clone(),
            manifest_labels(manifest),
        )
        .await?;

        if let Some((index, position)) = &resolved.index {
            let labels = HashMap::from([(
                format!("containerd.io/gc.ref.content.m.{position}"),
                blob.digest.clone(),
            )]);
            ctx.write_bytes(
                &format!("index-{}", index.digest),
                &index.digest,
                index.bytes.clone(),
                labels,
            )
            .await?;
        }
        Ok(())
    }

    /// Extracts the layers whose snapshots are missing, bottom up.
    async fn unpack(
        &self,
        ctx: &Ctx,
        image: &str,
        manifest: &Manifest,
        diff_ids: &[String],
        chain: &[String],
    ) -> Result<(), PullError> {
        let snapshotter = &self.snapshotter;
        if let Some(top) = chain.last()
            && ctx.snapshot_exists(snapshotter, top).await?
        {
            return Ok(());
        }
        let mut parent = "";
        let layers = manifest.layers.iter().zip(diff_ids).zip(chain);
        for ((layer, diff_id), chain_id) in layers {
            if !ctx.snapshot_exists(snapshotter, chain_id).await? {
                let started = Instant::now();
                let extraction = Extraction {
                    layer: containerd_descriptor(&layer.media_type, &layer.digest, layer.size),
                    diff_id,
                    parent,
                    chain_id,
                };
                ctx.apply_layer(image, snapshotter, extraction).await?;
                tracing::debug!(
                    layer = %layer.digest,
                    %chain_id,
                    elapsed_ms = started.elapsed().as_millis(),
                    "layer unpacked"
                );
            }
            parent = chain_id;
        }
        Ok(())
    }
}

/// Fetches the reference's manifest; for an index, also the linux/amd64 manifest it lists.
async fn resolve(session: &Session<'_>, reference: &Reference) -> Result<Resolved, PullError> {
    let top = session.manifest(reference.manifest_reference()).await?;
    let (media_type, parsed) =
        manifest::parse(&top.content_type, &top.bytes).map_err(|d| session.invalid(d))?;
    let top = Blob {
        media_type,
        digest: top.digest,
        bytes: top.bytes,
    };
    let index = match parsed {
        Parsed::Manifest(manifest) => {
            return Ok(Resolved {
                manifest_blob: top,
                manifest,
                index: None,
            });
        }
        Parsed::Index(index) => index,
    };
    let (position, chosen) = manifest::select_platform(&index).map_err(|d| session.invalid(d))?;
    let child = session.manifest(&chosen.digest).await?;
    if i64::try_from(child.bytes.len()).ok() != Some(chosen.size) {
        return Err(session.invalid(format!(
            "manifest {} is {} bytes, but the index says {}",
            chosen.digest,
            child.bytes.len(),
            chosen.size
        )));
    }
    let (media_type, parsed) =
        manifest::parse(&child.content_type, &child.bytes).map_err(|d| session.invalid(d))?;
    let Parsed::Manifest(manifest) = parsed else {
        return Err(session.invalid(format!(
            "the index's linux/amd64 entry {} is itself an index",
            chosen.digest
        )));
    };
    Ok(Resolved {
        manifest_blob: Blob {
            media_type,
            digest: child.digest,
            bytes: child.bytes,
        },
        manifest,
        index: Some((top, position)),
    })
}

/// Makes the layer blob present in the content store with its `uncompressed` label, downloading
/// it only if containerd lacks it.
async fn fetch_layer(
    ctx: &Ctx,
    session: &Session<'_>,
    layer: &Descriptor,
    diff_id: &str,
) -> Result<(), PullError> {
    let labels = HashMap::from([(UNCOMPRESSED_LABEL.to_string(), diff_id.to_string())]);
    if ctx.info(&layer.digest).await?.is_some() {
        tracing::debug!(layer = %layer.digest, "layer already in the content store");
        return ctx.ensure_labels(&layer.digest, &labels).await;
    }
    let ingest = format!("layer-{}", layer.digest);
    let Some(mut writer) = ctx.writer(&ingest, &layer.digest, layer.size).await? else {
        return ctx.ensure_labels(&layer.digest, &labels).await;
    };
    if writer.is_complete() {
        match writer.commit_existing(labels.clone()).await {
            Ok(committed) => {
                tracing::debug!(layer = %layer.digest, "layer linked from the content store");
                if committed == Committed::Existed {
                    ctx.ensure_labels(&layer.digest, &labels).await?;
                }
                return Ok(());
            }
            Err(error) => {
                // A stale ingest that does not verify: start over.
                tracing::debug!(layer = %layer.digest, %error, "discarding a stale ingest");
                ctx.abort(&ingest).await;
                let Some(fresh) = ctx.writer(&ingest, &layer.digest, layer.size).await? else {
                    return ctx.ensure_labels(&layer.digest, &labels).await;
                };
                writer = fresh;
            }
        }
    }
    let started = Instant::now();
    if let Err(error) = download(session, layer, &mut writer).await {
        drop(writer);
        ctx.abort(&ingest).await;
        return Err(error);
    }
    if writer.commit(labels.clone()).await? == Committed::Existed {
        ctx.ensure_labels(&layer.digest, &labels).await?;
    }
    tracing::debug!(
        layer = %layer.digest,
        bytes = layer.size,
        elapsed_ms = started.elapsed().as_millis(),
        "layer fetched"
    );
    Ok(())
}

/// Streams a layer from the registry into `writer` in [`WRITE_CHUNK_BYTES`] pieces, checking its
/// size and sha256 digest on the way.
async fn download(
    session: &Session<'_>,
    layer: &Descriptor,
    writer: &mut BlobWriter,
) -> Result<(), PullError> {
    let what = format!("layer {}", layer.digest);
    let expected_size = u64::try_from(layer.size).unwrap_or(0);
    let mut body = session.blob(&layer.digest).await?.bytes_stream();
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut pending = BytesMut::with_capacity(WRITE_CHUNK_BYTES);
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| session.body_error(&what, &e))?;
        received += piece.len() as u64;
        if received > expected_size {
            return Err(session.invalid(format!(
                "the registry served more than the {expected_size} bytes the manifest gives {what}"
            )));
        }
        hasher.update(&piece);
        pending.extend_from_slice(&piece);
        if pending.len() >= WRITE_CHUNK_BYTES {
            writer.write(pending.split().freeze()).await?;
        }
    }
    if !pending.is_empty() {
        writer.write(pending.freeze()).await?;
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if received != expected_size || digest != layer.digest {
        return Err(session.invalid(format!(
            "the registry served {received} bytes with digest {digest} for {what} ({expected_size} bytes expected)"
        )));
    }
    Ok(())
}

/// The manifest's GC labels: its config and each layer (`containerd.io/gc.ref.content.l.<i>`).
fn manifest_labels(manifest: &Manifest) -> HashMap<String, String> {
    let mut labels = HashMap::from([(GC_REF_CONFIG.to_string(), manifest.config.digest.clone())]);
    for (i, layer) in manifest.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    labels
}

fn containerd_descriptor(
    media_type: &str,
    digest: &str,
    size: i64,
) -> containerd_client::types::Descriptor {
    containerd_client::types::Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size,
        annotations: HashMap::new(),
    }
}

fn pulled_image(
    reference: &Reference,
    manifest_digest: &str,
    config_digest: &str,
    chain_id: &str,
    config: &ConfigFile,
    cached: bool,
) -> PulledImage {
    PulledImage {
        reference: reference.to_string(),
        manifest_digest: manifest_digest.to_string(),
        config_digest: config_digest.to_string(),
        chain_id: chain_id.to_string(),
        config: config.image_config(),
        cached,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
