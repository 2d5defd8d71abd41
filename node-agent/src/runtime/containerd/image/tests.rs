//! Pulls against a real containerd and a real registry (root needed), plus the error texts.

use std::future::Future;
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{Kind, StatSnapshotRequest};
use containerd_client::services::v1::{
    CreateRequest, DeleteImageRequest, DeleteRequest, GetImageRequest, InfoRequest, ListRequest,
};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::*;
use crate::testing::{Containerd, Registry, push_busybox};

const NAMESPACE: &str = "berth";
const SNAPSHOTTER: &str = "overlayfs";
/// Generous: two cores shared with a compiler.
const PATIENCE: Duration = Duration::from_secs(180);

/// A containerd and a registry in one short tempdir; dropped in field order, the dir last.
struct Fixture {
    _containerd: Containerd,
    registry: Registry,
    channel: Channel,
    _dir: TempDir,
}

async fn fixture(auth: Option<(&str, &str)>) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("bi")
        .tempdir_in("/tmp")
        .unwrap();
    let containerd = Containerd::start(&dir.path().join("c")).await.unwrap();
    let registry = Registry::start(&dir.path().join("r"), auth).await.unwrap();
    let channel = containerd.channel().await.unwrap();
    Fixture {
        _containerd: containerd,
        registry,
        channel,
        _dir: dir,
    }
}

impl Fixture {
    fn service(&self) -> ImageService {
        ImageService::new(self.channel.clone(), NAMESPACE, SNAPSHOTTER)
    }

    fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.registry.addr)
    }
}

async fn patiently<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("the operation took longer than the test's patience")
}

fn ns<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", NAMESPACE.parse().unwrap());
    request
}

async fn content_labels(channel: &Channel, digest: &str) -> Option<HashMap<String, String>> {
    let result = ContentClient::new(channel.clone())
        .info(ns(InfoRequest {
            digest: digest.to_string(),
        }))
        .await;
    match result {
        Ok(response) => Some(response.into_inner().info.unwrap().labels),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("content info {digest}: {status}"),
    }
}

async fn snapshot_kind(channel: &Channel, key: &str) -> Option<Kind> {
    let result = SnapshotsClient::new(channel.clone())
        .stat(ns(StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.to_string(),
        }))
        .await;
    match result {
        Ok(response) => Some(response.into_inner().info.unwrap().kind()),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("snapshot stat {key}: {status}"),
    }
}

/// Makes containerd collect garbage now: deleting a lease with `sync` runs a GC round.
async fn collect_garbage(channel: &Channel) {
    let mut leases = LeasesClient::new(channel.clone());
    leases
        .create(ns(CreateRequest {
            id: "gc-trigger".to_string(),
            labels: HashMap::new(),
        }))
        .await
        .unwrap();
    leases
        .delete(ns(DeleteRequest {
            id: "gc-trigger".to_string(),
            sync: true,
        }))
        .await
        .unwrap();
}

/// The layer digests the pulled manifest lists, read back from containerd.
async fn layer_digests(channel: &Channel, manifest_digest: &str) -> Vec<String> {
    let ctx = Ctx::new(channel.clone(), NAMESPACE).unwrap();
    let bytes = ctx
        .read(manifest_digest, MAX_MANIFEST_BYTES)
        .await
        .unwrap()
        .unwrap();
    let (_, Parsed::Manifest(manifest)) = manifest::parse("", &bytes).unwrap() else {
        panic!("not a manifest")
    };
    manifest.layers.into_iter().map(|l| l.digest).collect()
}

#[tokio::test]
async fn pulls_unpacks_and_then_serves_from_the_cache_without_the_registry() {
    let mut fx = fixture(None).await;
    let digest = push_busybox(&fx.registry, "busybox:latest", None)
        .await
        .unwrap();
    let service = fx.service();
    let image = fx.image("busybox:latest");

    let pulled = patiently(service.ensure(&image, &[])).await.unwrap();
    assert!(!pulled.cached);
    assert_eq!(pulled.reference, image);
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.config.cmd, vec!["sh".to_string()]);
    assert_eq!(pulled.config.working_dir, "/");
    assert!(pulled.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(service.blobs_fetched(), 2, "one config and one layer");

    let record = ImagesClient::new(fx.channel.clone())
        .get(ns(GetImageRequest {
            name: image.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(record.target.unwrap().digest, digest);
    assert_eq!(
        snapshot_kind(&fx.channel, &pulled.chain_id).await,
        Some(Kind::Committed)
    );
    let leases = LeasesClient::new(fx.channel.clone())
        .list(ns(ListRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert!(
        leases.is_empty(),
        "the pull's lease was not deleted: {leases:?}"
    );

    // IfNotPresent: with the registry gone, the image is still there.
    fx.registry.stop();
    let again = patiently(service.ensure(&format!("{}/busybox", fx.registry.addr), &[]))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.chain_id, pulled.chain_id);
    assert_eq!(again.manifest_digest, pulled.manifest_digest);
    assert_eq!(again.config, pulled.config);
    assert_eq!(service.blobs_fetched(), 2);

    // Once removed, it must come from the registry again, which is gone.
    service.remove(&image).await.unwrap();
    service.remove(&image).await.unwrap();
    let error = patiently(service.ensure(&image, &[])).await.unwrap_err();
    assert_eq!(error.kind(), "unreachable", "{error}");
}

#[tokio::test]
async fn gc_labels_keep_config_layers_and_snapshot_until_the_image_goes() {
    let fx = fixture(None).await;
    push_busybox(&fx.registry, "gc/busybox:v1", None)
        .await
        .unwrap();
    let service = fx.service();
    let image = fx.image("gc/busybox:v1");
    let pulled = patiently(service.ensure(&image, &[])).await.unwrap();
    let layers = layer_digests(&fx.channel, &pulled.manifest_digest).await;
    assert_eq!(layers.len(), 1);

    let manifest_labels = content_labels(&fx.channel, &pulled.manifest_digest)
        .await
        .unwrap();
    assert_eq!(
        manifest_labels.get("containerd.io/gc.ref.content.config"),
        Some(&pulled.config_digest)
    );
    assert_eq!(
        manifest_labels.get("containerd.io/gc.ref.content.l.0"),
        Some(&layers[0])
    );
    let config_labels = content_labels(&fx.channel, &pulled.config_digest)
        .await
        .unwrap();
    assert_eq!(
        config_labels.get("containerd.io/gc.ref.snapshot.overlayfs"),
        Some(&pulled.chain_id)
    );
    let layer_labels = content_labels(&fx.channel, &layers[0]).await.unwrap();
    assert!(
        layer_labels
            .get("containerd.io/uncompressed")
            .is_some_and(|d| d.starts_with("sha256:")),
        "{layer_labels:?}"
    );

    // A GC round keeps everything the image reaches through those labels.
    collect_garbage(&fx.channel).await;
    assert!(
        content_labels(&fx.channel, &pulled.config_digest)
            .await
            .is_some()
    );
    assert!(content_labels(&fx.channel, &layers[0]).await.is_some());
    assert!(snapshot_kind(&fx.channel, &pulled.chain_id).await.is_some());

    // Without the image record, GC takes it all.
    ImagesClient::new(fx.channel.clone())
        .delete(ns(DeleteImageRequest {
            name: image.clone(),
            sync: true,
            target: None,
        }))
        .await
        .unwrap();
    collect_garbage(&fx.channel).await;
    assert!(content_labels(&fx.channel, &layers[0]).await.is_none());
    assert!(
        content_labels(&fx.channel, &pulled.manifest_digest)
            .await
            .is_none()
    );
    assert!(snapshot_kind(&fx.channel, &pulled.chain_id).await.is_none());
}

#[tokio::test]
async fn concurrent_ensures_of_one_image_share_one_pull() {
    let fx = fixture(None).await;
    push_busybox(&fx.registry, "busybox:latest", None)
        .await
        .unwrap();
    let service = fx.service();
    let other_handle = service.clone();
    let tagged = fx.image("busybox:latest");
    let untagged = fx.image("busybox");

    let (a, b, c) = patiently(async {
        tokio::join!(
            service.ensure(&tagged, &[]),
            other_handle.ensure(&tagged, &[]),
            service.ensure(&untagged, &[]),
        )
    })
    .await;
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(!a.cached);
    assert_eq!(service.blobs_fetched(), 2, "the config and the layer, once");
    assert!(
        service.inner.in_flight.lock().unwrap().is_empty(),
        "a finished pull stays in the in-flight map"
    );
}

#[tokio::test]
async fn registry_errors_say_what_went_wrong_without_the_password() {
    const USER: &str = "berth";
    const PASSWORD: &str = "s3cret-Pa55";
    const WRONG: &str = "wr0ng-Pa55";
    let fx = fixture(Some((USER, PASSWORD))).await;
    push_busybox(&fx.registry, "private/busybox:1", Some((USER, PASSWORD)))
        .await
        .unwrap();
    let service = fx.service();
    let image = fx.image("private/busybox:1");
    let server = fx.registry.addr.to_string();
    let credential = |password: &str| RegistryCredential {
        server: server.clone(),
        username: USER.to_string(),
        password: password.to_string(),
    };
    let elsewhere = RegistryCredential {
        server: "other.example.com".to_string(),
        ..credential(PASSWORD)
    };

    let anonymous = patiently(service.ensure(&image, &[elsewhere]))
        .await
        .unwrap_err();
    assert_eq!(anonymous.kind(), "auth", "{anonymous}");
    assert!(
        anonymous.to_string().contains("none were given"),
        "{anonymous}"
    );

    let wrong = patiently(service.ensure(&image, &[credential(WRONG)]))
        .await
        .unwrap_err();
    let message = wrong.to_string();
    assert!(matches!(wrong, PullError::Auth { .. }), "{wrong:?}");
    assert!(message.contains("authentication"), "{message}");
    assert!(
        message.contains("refused the credentials of user 'berth'"),
        "{message}"
    );
    assert!(message.contains(&server), "{message}");
    assert!(
        !message.contains(WRONG) && !message.contains(PASSWORD),
        "{message}"
    );
    assert!(!format!("{wrong:?}").contains(WRONG));

    let pulled = patiently(service.ensure(&image, &[credential(PASSWORD)]))
        .await
        .unwrap();
    assert!(!pulled.cached);
    assert_eq!(pulled.config.cmd, vec!["sh".to_string()]);

    let missing = patiently(service.ensure(&fx.image("private/nope:1"), &[credential(PASSWORD)]))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), "not-found", "{missing}");
    assert!(missing.to_string().contains("not found"), "{missing}");

    let missing_tag =
        patiently(service.ensure(&fx.image("private/busybox:2"), &[credential(PASSWORD)]))
            .await
            .unwrap_err();
    assert_eq!(missing_tag.kind(), "not-found", "{missing_tag}");

    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = nobody.local_addr().unwrap();
    drop(nobody);
    let unreachable = patiently(service.ensure(&format!("{closed}/x:1"), &[]))
        .await
        .unwrap_err();
    assert_eq!(unreachable.kind(), "unreachable", "{unreachable}");
    assert!(
        unreachable.to_string().contains("unreachable"),
        "{unreachable}"
    );

    let invalid = service
        .ensure("127.0.0.1:5000/UPPER", &[])
        .await
        .unwrap_err();
    assert_eq!(invalid.kind(), "invalid", "{invalid}");
}

#[tokio::test]
async fn a_second_namespace_reuses_the_stored_layers_and_labels_them() {
    let fx = fixture(None).await;
    push_busybox(&fx.registry, "busybox:latest", None)
        .await
        .unwrap();
    let image = fx.image("busybox:latest");
    let first = patiently(fx.service().ensure(&image, &[])).await.unwrap();

    let other = ImageService::new(fx.channel.clone(), "other", SNAPSHOTTER);
    let second = patiently(other.ensure(&image, &[])).await.unwrap();
    assert!(!second.cached, "image records are per namespace");
    assert_eq!(second.chain_id, first.chain_id);
    assert_eq!(
        other.blobs_fetched(),
        1,
        "only the config: the layer is shared through the content store"
    );
    let mut request = Request::new(InfoRequest {
        digest: second.manifest_digest.clone(),
    });
    request
        .metadata_mut()
        .insert("containerd-namespace", "other".parse().unwrap());
    let labels = ContentClient::new(fx.channel.clone())
        .info(request)
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
        .labels;
    assert_eq!(
        labels.get("containerd.io/gc.ref.content.config"),
        Some(&second.config_digest),
        "{labels:?}"
    );
}

#[tokio::test]
async fn bearer_token_registries_are_answered_with_one_token_per_scope() {
    const USER: &str = "robot";
    const PASSWORD: &str = "t0ken-Pa55";
    let fx = fixture(None).await;
    push_busybox(&fx.registry, "private/busybox:1", None)
        .await
        .unwrap();
    let front = TokenFront::start(fx.registry.addr, USER, PASSWORD).await;
    let service = fx.service();
    let image = format!("{}/private/busybox:1", front.addr);
    let credential = |password: &str| RegistryCredential {
        server: front.addr.to_string(),
        username: USER.to_string(),
        password: password.to_string(),
    };

    let anonymous = patiently(service.ensure(&image, &[])).await.unwrap_err();
    assert_eq!(anonymous.kind(), "auth", "{anonymous}");
    let wrong = patiently(service.ensure(&image, &[credential("nope")]))
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), "auth", "{wrong}");
    assert!(!wrong.to_string().contains("nope"), "{wrong}");
    assert_eq!(front.tokens_issued(), 0);

    let pulled = patiently(service.ensure(&image, &[credential(PASSWORD)]))
        .await
        .unwrap();
    assert_eq!(pulled.config.cmd, vec!["sh".to_string()]);
    assert_eq!(
        front.tokens_issued(),
        1,
        "one token serves the manifest, the config and the layer"
    );
}

/// A registry front in the style of Docker Hub: `/v2/` wants a Bearer token, which its `/token`
/// realm issues for the right Basic credentials; authorized requests are forwarded to `upstream`.
struct TokenFront {
    addr: std::net::SocketAddr,
    issued: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenFront {
    const TOKEN: &'static str = "tok-1";
    const SCOPE: &'static str = "repository:private/busybox:pull";

    async fn start(upstream: std::net::SocketAddr, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let counter = Arc::clone(&issued);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let exchange = FrontExchange {
                    addr,
                    upstream,
                    basic: basic.clone(),
                    http: http.clone(),
                    issued: Arc::clone(&counter),
                };
                tokio::spawn(exchange.serve(stream));
            }
        });
        Self { addr, issued, task }
    }

    fn tokens_issued(&self) -> usize {
        self.issued.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One connection to the [`TokenFront`]: one request, one response, then close.
struct FrontExchange {
    addr: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    basic: String,
    http: reqwest::Client,
    issued: Arc<std::sync::atomic::AtomicUsize>,
}

impl FrontExchange {
    async fn serve(self, mut stream: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut head = Vec::new();
        let mut buffer = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let target = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or("/")
            .to_string();
        let headers: HashMap<String, String> = lines
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let (status, extra, body) = self.respond(&target, &headers).await;
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in extra {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let _ = stream.shutdown().await;
    }

    async fn respond(
        &self,
        target: &str,
        headers: &HashMap<String, String>,
    ) -> (String, Vec<(String, String)>, Vec<u8>) {
        let authorization = headers.get("authorization").cloned().unwrap_or_default();
        if target.starts_with("/token?") {
            let query = target.replace("%3A", ":").replace("%2F", "/");
            let asks_right = query.contains(&format!("scope={}", TokenFront::SCOPE))
                && query.contains("service=berth-test");
            if authorization != self.basic || !asks_right {
                return ("401 Unauthorized".into(), Vec::new(), Vec::new());
            }
            self.issued
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = format!(
                r#"{{"access_token":"{}","expires_in":300}}"#,
                TokenFront::TOKEN
            );
            let json = vec![("Content-Type".into(), "application/json".into())];
            return ("200 OK".into(), json, body.into_bytes());
        }
        if authorization != format!("Bearer {}", TokenFront::TOKEN) {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="berth-test",scope="{}""#,
                self.addr,
                TokenFront::SCOPE
            );
            return (
                "401 Unauthorized".into(),
                vec![("WWW-Authenticate".into(), challenge)],
                Vec::new(),
            );
        }
        let mut request = self.http.get(format!("http://{}{target}", self.upstream));
        if let Some(accept) = headers.get("accept") {
            request = request.header("accept", accept);
        }
        let upstream = request.send().await.unwrap();
        let status = upstream.status();
        let mut extra = Vec::new();
        for name in ["content-type", "docker-content-digest"] {
            if let Some(value) = upstream.headers().get(name) {
                extra.push((name.to_string(), value.to_str().unwrap().to_string()));
            }
        }
        let body = upstream.bytes().await.unwrap().to_vec();
        (status.to_string(), extra, body)
    }
}

#[test]
fn messages_read_as_inaccessible_image_reasons() {
    let auth = PullError::Auth {
        reference: "127.0.0.1:5000/x".into(),
        registry: "127.0.0.1:5000".into(),
        detail: "the registry refused the credentials of user 'u' (401 Unauthorized)".into(),
    };
    assert_eq!(
        auth.to_string(),
        "image '127.0.0.1:5000/x' cannot be pulled: authentication with registry 127.0.0.1:5000 \
         failed: the registry refused the credentials of user 'u' (401 Unauthorized)"
    );
    let kinds = [
        auth.kind(),
        PullError::NotFound {
            reference: String::new(),
            detail: String::new(),
        }
        .kind(),
        PullError::Unreachable {
            reference: String::new(),
            registry: String::new(),
            detail: String::new(),
        }
        .kind(),
        PullError::Invalid {
            reference: String::new(),
            detail: String::new(),
        }
        .kind(),
        PullError::Containerd {
            detail: String::new(),
        }
        .kind(),
    ];
    assert_eq!(
        kinds,
        ["auth", "not-found", "unreachable", "invalid", "containerd"]
    );
}
