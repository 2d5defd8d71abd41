//! containerd's content store, snapshots, diff applier, leases and image records, as one pull uses
//! them: every call carries the namespace and, during a pull, the pull's lease.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest,
    DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image, Info, InfoRequest,
    ReadContentRequest, UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use containerd_client::types::Descriptor as ContainerdDescriptor;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use super::PullError;

/// gRPC metadata naming the containerd namespace of a call.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// gRPC metadata naming the lease that protects what a call creates from garbage collection.
const LEASE_HEADER: &str = "containerd-lease";
/// Lease label: containerd's GC drops the lease after this time, should we die mid-pull.
const LEASE_EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// How long a pull's lease outlives a crashed agent (containerd's own client uses 24 h).
const LEASE_TTL: time::Duration = time::Duration::hours(24);
/// Snapshot label: the committed name an extraction is for; lets containerd answer AlreadyExists
/// when another unpack (in any namespace) already has the layer.
const SNAPSHOT_REF_LABEL: &str = "containerd.io/snapshot.ref";
/// How long to wait for another writer holding the same content ref (another pull of the layer).
const LOCKED_WAIT: Duration = Duration::from_secs(600);
/// How often to look again at a locked content ref.
const LOCKED_POLL: Duration = Duration::from_millis(250);

/// Where and under which lease the calls of one operation go. Cheap to clone.
#[derive(Clone)]
pub(super) struct Ctx {
    channel: Channel,
    namespace: AsciiMetadataValue,
    lease: Option<AsciiMetadataValue>,
}

impl Ctx {
    /// A context for `namespace`, which must be a valid containerd namespace name.
    pub(super) fn new(channel: Channel, namespace: &str) -> Result<Self, PullError> {
        let valid = namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && namespace
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        let namespace = AsciiMetadataValue::try_from(namespace)
            .ok()
            .filter(|_| valid)
            .ok_or_else(|| PullError::Containerd {
                detail: format!("'{namespace}' is not a valid containerd namespace"),
            })?;
        Ok(Self {
            channel,
            namespace,
            lease: None,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(NAMESPACE_HEADER, self.namespace.clone());
        if let Some(lease) = &self.lease {
            metadata.insert(LEASE_HEADER, lease.clone());
        }
        request
    }

    fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
    }

    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    /// Creates a lease that expires on its own after [`LEASE_TTL`]; returns a context that puts
    /// everything it creates under the lease.
    pub(super) async fn with_new_lease(&self) -> Result<(Ctx, Lease), PullError> {
        let id = format!("berth-pull-{:016x}", rand::random::<u64>());
        let expires = (time::OffsetDateTime::now_utc() + LEASE_TTL)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| containerd_detail(format!("cannot format the lease expiry: {e}")))?;
        let labels = HashMap::from([(LEASE_EXPIRE_LABEL.to_string(), expires)]);
        LeasesClient::new(self.channel.clone())
            .create(self.request(CreateLeaseRequest {
                id: id.clone(),
                labels,
            }))
            .await
            .map_err(|s| containerd_error("creating a lease", &s))?;
        let header = AsciiMetadataValue::try_from(id.as_str())
            .map_err(|e| containerd_detail(format!("lease id {id}: {e}")))?;
        let leased = Ctx {
            lease: Some(header),
            ..self.clone()
        };
        Ok((leased, Lease { id }))
    }

    /// Deletes `lease`; what it protected is then kept only by references (image, labels).
    pub(super) async fn delete_lease(&self, lease: Lease) -> Result<(), PullError> {
        let unleased = Ctx {
            lease: None,
            ..self.clone()
        };
        let result = LeasesClient::new(self.channel.clone())
            .delete(unleased.request(DeleteLeaseRequest {
                id: lease.id.clone(),
                sync: false,
            }))
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(containerd_error(
                &format!("deleting lease {}", lease.id),
                &status,
            )),
        }
    }

    /// The content store's record of `digest`, or `None` if this namespace lacks it.
    pub(super) async fn info(&self, digest: &str) -> Result<Option<Info>, PullError> {
        let result = self
            .content()
            .info(self.request(InfoRequest {
                digest: digest.to_string(),
            }))
            .await;
        match result {
            Ok(response) => Ok(response.into_inner().info),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(containerd_error(&format!("content info {digest}"), &status)),
        }
    }

    /// Reads a whole blob of at most `limit` bytes; `None` if the namespace lacks it.
    pub(super) async fn read(
        &self,
        digest: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, PullError> {
        let result = self
            .content()
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await;
        let mut stream = match result {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(containerd_error(&format!("reading {digest}"), &status)),
        };
        let mut data = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    if data.len() + chunk.data.len() > limit {
                        return Err(containerd_detail(format!(
                            "content {digest} is larger than {limit} bytes"
                        )));
                    }
                    data.extend_from_slice(&chunk.data);
                }
                Ok(None) => return Ok(Some(data)),
                Err(status) if status.code() == Code::NotFound => return Ok(None),
                Err(status) => {
                    return Err(containerd_error(&format!("reading {digest}"), &status));
                }
            }
        }
    }

    /// Adds `labels` to the content `digest` where they are missing or different.
    pub(super) async fn ensure_labels(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), PullError> {
        let Some(info) = self.info(digest).await? else {
            return Err(containerd_detail(format!(
                "content {digest} vanished before it could be labelled"
            )));
        };
        let missing: Vec<String> = labels
            .iter()
            .filter(|(key, value)| info.labels.get(*key) != Some(*value))
            .map(|(key, _)| format!("labels.{key}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let update = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: labels.clone(),
                ..Info::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: missing }),
        };
        self.content()
            .update(self.request(update))
            .await
            .map_err(|s| containerd_error(&format!("labelling {digest}"), &s))?;
        Ok(())
    }

    /// Opens a content writer for `digest` (`size` bytes) under `reference`, waiting while another
    /// writer holds the same reference. `None` means the content is already there.
    pub(super) async fn writer(
        &self,
        reference: &str,
        digest: &str,
        size: i64,
    ) -> Result<Option<BlobWriter>, PullError> {
        let deadline = tokio::time::Instant::now() + LOCKED_WAIT;
        loop {
            match BlobWriter::open(self, reference, digest, size).await {
                Ok(writer) => return Ok(Some(writer)),
                Err(status) if status.code() == Code::AlreadyExists => return Ok(None),
                Err(status) if is_locked(&status) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%reference, "content ref locked by another writer, waiting");
                    tokio::time::sleep(LOCKED_POLL).await;
                    if self.info(digest).await?.is_some() {
                        return Ok(None);
                    }
                }
                Err(status) => {
                    return Err(containerd_error(&format!("writing {digest}"), &status));
                }
            }
        }
    }

    /// Writes a small blob whole with `labels`; if it already exists, makes sure it has them.
    pub(super) async fn write_bytes(
        &self,
        reference: &str,
        digest: &str,
        bytes: Bytes,
        labels: HashMap<String, String>,
    ) -> Result<(), PullError> {
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let written = match self.writer(reference, digest, size).await? {
            Some(mut writer) => {
                if !bytes.is_empty() {
                    writer.write(bytes).await?;
                }
                writer.commit(labels.clone()).await?
            }
            None => Committed::Existed,
        };
        if written == Committed::Existed {
            self.ensure_labels(digest, &labels).await?;
        }
        Ok(())
    }

    /// Drops a partial ingest (best effort: the lease's end would collect it anyway).
    pub(super) async fn abort(&self, reference: &str) {
        let result = self
            .content()
            .abort(self.request(AbortRequest {
                r#ref: reference.to_string(),
            }))
            .await;
        if let Err(status) = result
            && status.code() != Code::NotFound
        {
            tracing::debug!(%reference, error = %status.message(), "aborting an ingest failed");
        }
    }

    /// Whether the snapshot `key` exists.
    pub(super) async fn snapshot_exists(
        &self,
        snapshotter: &str,
        key: &str,
    ) -> Result<bool, PullError> {
        let result = self
            .snapshots()
            .stat(self.request(StatSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(containerd_error(&format!("snapshot stat {key}"), &status)),
        }
    }

    /// Extracts a layer on top of its parent into the committed snapshot named by its chain ID,
    /// checking that it uncompresses to its diff ID. Someone else committing the same chain ID
    /// meanwhile counts as success.
    pub(super) async fn apply_layer(
        &self,
        image: &str,
        snapshotter: &str,
        extraction: Extraction<'_>,
    ) -> Result<(), PullError> {
        let chain_id = extraction.chain_id;
        let key = format!("extract-{:016x} {chain_id}", rand::random::<u64>());
        let prepared = self
            .snapshots()
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.clone(),
                parent: extraction.parent.to_string(),
                labels: HashMap::from([(SNAPSHOT_REF_LABEL.to_string(), chain_id.to_string())]),
            }))
            .await;
        let mounts = match prepared {
            Ok(response) => response.into_inner().mounts,
            Err(status) if status.code() == Code::AlreadyExists => return Ok(()),
            Err(status) => {
                return Err(containerd_error(
                    &format!("preparing snapshot for {chain_id}"),
                    &status,
                ));
            }
        };
        let result = self
            .apply_and_commit(image, snapshotter, extraction, &key, mounts)
            .await;
        if result.is_err() {
            self.remove_snapshot(snapshotter, &key).await;
        }
        result
    }

    async fn apply_and_commit(
        &self,
        image: &str,
        snapshotter: &str,
        extraction: Extraction<'_>,
        key: &str,
        mounts: Vec<containerd_client::types::Mount>,
    ) -> Result<(), PullError> {
        let Extraction {
            layer,
            diff_id,
            chain_id,
            ..
        } = extraction;
        let layer_digest = layer.digest.clone();
        let applied = DiffClient::new(self.channel.clone())
            .apply(self.request(ApplyRequest {
                diff: Some(layer),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            }))
            .await
            .map_err(|s| containerd_error(&format!("applying layer {layer_digest}"), &s))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != diff_id {
            return Err(PullError::Invalid {
                reference: image.to_string(),
                detail: format!(
                    "layer {layer_digest} uncompresses to {applied}, but the image config says {diff_id}"
                ),
            });
        }
        let committed = self
            .snapshots()
            .commit(self.request(CommitSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                name: chain_id.to_string(),
                key: key.to_string(),
                labels: HashMap::new(),
            }))
            .await;
        match committed {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                self.remove_snapshot(snapshotter, key).await;
                Ok(())
            }
            Err(status) => Err(containerd_error(
                &format!("committing snapshot {chain_id}"),
                &status,
            )),
        }
    }

    async fn remove_snapshot(&self, snapshotter: &str, key: &str) {
        let result = self
            .snapshots()
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await;
        if let Err(status) = result
            && status.code() != Code::NotFound
        {
            tracing::warn!(%key, error = %status.message(), "removing a snapshot failed");
        }
    }

    /// The image record `name`, or `None`.
    pub(super) async fn image(&self, name: &str) -> Result<Option<Image>, PullError> {
        let result = self
            .images()
            .get(self.request(GetImageRequest {
                name: name.to_string(),
            }))
            .await;
        match result {
            Ok(response) => Ok(response.into_inner().image),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(containerd_error(&format!("getting image {name}"), &status)),
        }
    }

    /// Creates the image record `name` pointing at `target`, or points an existing one there.
    pub(super) async fn put_image(
        &self,
        name: &str,
        target: ContainerdDescriptor,
        labels: HashMap<String, String>,
    ) -> Result<(), PullError> {
        let image = Image {
            name: name.to_string(),
            labels,
            target: Some(target),
            created_at: None,
            updated_at: None,
        };
        let created = self
            .images()
            .create(self.request(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                self.images()
                    .update(self.request(UpdateImageRequest {
                        image: Some(image),
                        update_mask: None,
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(|s| containerd_error(&format!("updating image {name}"), &s))?;
                Ok(())
            }
            Err(status) => Err(containerd_error(&format!("creating image {name}"), &status)),
        }
    }

    /// Deletes the image record `name`; `false` if there was none.
    pub(super) async fn delete_image(&self, name: &str) -> Result<bool, PullError> {
        use containerd_client::services::v1::DeleteImageRequest;
        let result = self
            .images()
            .delete(self.request(DeleteImageRequest {
                name: name.to_string(),
                sync: false,
                target: None,
            }))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(containerd_error(&format!("deleting image {name}"), &status)),
        }
    }
}

/// One layer to extract: the blob, what it must uncompress to, and where it goes in the chain.
pub(super) struct Extraction<'a> {
    /// The layer blob in the content store.
    pub(super) layer: ContainerdDescriptor,
    /// The layer's uncompressed digest, from the image config.
    pub(super) diff_id: &'a str,
    /// The chain ID of the layers below (empty for the first layer).
    pub(super) parent: &'a str,
    /// The chain ID of the stack up to this layer: the committed snapshot's name.
    pub(super) chain_id: &'a str,
}

/// A lease created by [`Ctx::with_new_lease`]; give it back to [`Ctx::delete_lease`].
#[derive(Debug)]
pub(super) struct Lease {
    id: String,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Committed {
    /// This writer committed the content.
    Written,
    /// The content appeared meanwhile (another writer, or another namespace's copy).
    Existed,
}

/// One `Content.Write` stream: STAT, then WRITEs at increasing offsets, then COMMIT. containerd
/// answers every message; the stream holds the ref's lock until it ends.
pub(super) struct BlobWriter {
    requests: mpsc::Sender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    reference: String,
    digest: String,
    total: i64,
    offset: i64,
    complete: bool,
}

impl BlobWriter {
    async fn open(ctx: &Ctx, reference: &str, digest: &str, total: i64) -> Result<Self, Status> {
        let (requests, receiver) = mpsc::channel(2);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.to_string(),
            total,
            expected: digest.to_string(),
            ..WriteContentRequest::default()
        };
        requests
            .send(stat)
            .await
            .map_err(|_| Status::internal("the write request channel closed"))?;
        let mut responses = ctx
            .content()
            .write(ctx.request(ReceiverStream::new(receiver)))
            .await?
            .into_inner();
        let status = responses
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("containerd ended the write stream"))?;
        Ok(Self {
            requests,
            responses,
            reference: reference.to_string(),
            digest: digest.to_string(),
            total,
            offset: 0,
            complete: total > 0 && status.offset == total,
        })
    }

    /// Whether containerd already holds all the bytes: the blob is in the content store under
    /// another namespace (shared content policy), or a previous ingest under this ref got to the
    /// end. [`BlobWriter::commit_existing`] then links or verifies it without a download.
    pub(super) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Appends `data`. The first write is at offset 0, which discards a stale partial ingest.
    pub(super) async fn write(&mut self, data: Bytes) -> Result<(), PullError> {
        let length = i64::try_from(data.len()).unwrap_or(i64::MAX);
        let request = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            data: data.to_vec(),
            ..WriteContentRequest::default()
        };
        let response = self
            .round_trip(request)
            .await
            .map_err(|s| containerd_error(&format!("writing {}", self.digest), &s))?;
        self.offset += length;
        if response.offset != self.offset {
            return Err(containerd_detail(format!(
                "writing {}: containerd is at offset {}, expected {}",
                self.digest, response.offset, self.offset
            )));
        }
        Ok(())
    }

    /// Commits what was written with `labels`; containerd checks its size and digest.
    pub(super) async fn commit(
        self,
        labels: HashMap<String, String>,
    ) -> Result<Committed, PullError> {
        let offset = self.offset;
        self.commit_at(offset, labels).await
    }

    /// Commits, without writing, the bytes containerd already holds
    /// ([`BlobWriter::is_complete`]). Committing at offset 0 would make containerd truncate them.
    pub(super) async fn commit_existing(
        self,
        labels: HashMap<String, String>,
    ) -> Result<Committed, PullError> {
        let total = self.total;
        self.commit_at(total, labels).await
    }

    async fn commit_at(
        mut self,
        offset: i64,
        labels: HashMap<String, String>,
    ) -> Result<Committed, PullError> {
        let request = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            offset,
            total: self.total,
            expected: self.digest.clone(),
            labels,
            ..WriteContentRequest::default()
        };
        match self.round_trip(request).await {
            Ok(_) => Ok(Committed::Written),
            Err(status) if status.code() == Code::AlreadyExists => Ok(Committed::Existed),
            Err(status) => Err(containerd_error(
                &format!("committing {}", self.digest),
                &status,
            )),
        }
    }

    async fn round_trip(
        &mut self,
        request: WriteContentRequest,
    ) -> Result<WriteContentResponse, Status> {
        if self.requests.send(request).await.is_err() {
            // The stream ended; its status says why.
            return Err(self
                .responses
                .message()
                .await
                .err()
                .unwrap_or_else(|| Status::unavailable("containerd ended the write stream")));
        }
        self.responses
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("containerd ended the write stream"))
    }
}

/// Whether containerd refused a writer because another holds the same ref.
fn is_locked(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().contains("locked")
}

/// A [`PullError::Containerd`] for a failed call.
pub(super) fn containerd_error(doing: &str, status: &Status) -> PullError {
    let detail = if status.code() == Code::Unavailable && status.message().contains("transport") {
        format!("{doing}: containerd is unreachable ({})", status.message())
    } else {
        format!("{doing}: {} ({:?})", status.message(), status.code())
    };
    PullError::Containerd { detail }
}

fn containerd_detail(detail: String) -> PullError {
    PullError::Containerd { detail }
}
