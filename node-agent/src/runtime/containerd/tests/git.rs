//! gitRepo volumes on a real node: the clone reaches what the group could reach and nothing of the
//! node's own (its files, its loopback services), runs unprivileged, and lands at its revision.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use berth_proto::node::volume::Source;
use berth_proto::node::{GitRepo, GroupPhase, GroupSpec, Volume, VolumeMount};

use super::{TestNode, events};
use crate::testing::outside::{OutsideHost, bare_repository, git};

/// What the node's loopback listener would say, were it ever asked.
const LOOPBACK_SECRET: &str = "berth-loopback-secret-7f3a9c";
const HOST_SECRET: &str = "berth-host-secret-51d2e8";

/// `spec` with gitRepo volume `source` (`repository`, `directory`, `revision`) mounted at `/src`.
fn with_git_volume(
    mut spec: GroupSpec,
    repository: &str,
    directory: &str,
    revision: &str,
) -> GroupSpec {
    spec.volumes = vec![Volume {
        name: "source".into(),
        source: Some(Source::GitRepo(GitRepo {
            repository: repository.into(),
            directory: directory.into(),
            revision: revision.into(),
        })),
    }];
    spec.containers[0].volume_mounts = vec![VolumeMount {
        name: "source".into(),
        mount_path: "/src".into(),
        read_only: false,
    }];
    spec
}

/// Every file under `dir` whose contents contain `needle` (symlinks not followed).
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        } else if meta.is_file()
            && std::fs::read(&path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_from_a_file_url_or_a_host_path_never_copies_the_host() {
    let node = TestNode::start(|_| {}).await;
    let host_repo = node.dir().join("hostrepo");
    std::fs::create_dir_all(&host_repo).unwrap();
    git(&host_repo, &["init", "-q"]).unwrap();
    std::fs::write(host_repo.join("secret.txt"), HOST_SECRET).unwrap();
    git(&host_repo, &["add", "."]).unwrap();
    git(&host_repo, &["commit", "-q", "-m", "secret"]).unwrap();
    let path = host_repo.to_string_lossy().into_owned();
    let cases = [
        ("file-url", format!("file://{path}")),
        ("host-path", path.clone()),
        ("ext", format!("ext::sh -c cat% {path}/secret.txt")),
    ];
    for (name, repository) in cases {
        let spec = with_git_volume(
            node.group(name, &["cat", "/src/data/secret.txt"]),
            &repository,
            "data",
            "",
        );
        let status = node.run_to_end(spec).await;
        let said = events(&status);
        assert_eq!(status.phase(), GroupPhase::Failed, "{name}: {said}");
        assert!(
            said.contains("properties.volumes[0].gitRepo.repository"),
            "{name}: the failure should name the volume's repository: {said}"
        );
        assert!(!said.contains(HOST_SECRET), "{name}: {said}");
        let leaked = files_containing(&node.state, HOST_SECRET);
        assert!(
            leaked.is_empty(),
            "{name}: the host's file reached {leaked:?}"
        );
    }
}

/// A listener on the node's loopback that answers every connection as a git smart-HTTP server whose
/// error names [`LOOPBACK_SECRET`], and counts connections.
struct LoopbackListener {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl LoopbackListener {
    fn start() -> LoopbackListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (Arc::clone(&connections), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nonblocking(false);
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let error = format!("ERR {LOOPBACK_SECRET}\n");
                let body = format!(
                    "001e# service=git-upload-pack\n0000{:04x}{error}",
                    error.len() + 4
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        LoopbackListener {
            port,
            connections,
            stop,
        }
    }
}

impl Drop for LoopbackListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_cannot_reach_the_nodes_loopback() {
    let node = TestNode::start(|_| {}).await;
    let listener = LoopbackListener::start();
    let repository = format!("http://127.0.0.1:{}/repo.git", listener.port);
    let spec = with_git_volume(node.group("loopback", &["true"]), &repository, "", "");
    let status = node.run_to_end(spec).await;
    let said = events(&status);
    assert_eq!(status.phase(), GroupPhase::Failed, "{said}");
    assert!(
        said.contains("gitRepo volume source: git clone failed:")
            && said.contains("Couldn't connect to server"),
        "the failure should be git's connection refused: {said}"
    );
    assert!(!said.contains(LOOPBACK_SECRET), "{said}");
    assert_eq!(
        listener.connections.load(Ordering::Relaxed),
        0,
        "the node's loopback listener was reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clones_from_an_outside_host_unprivileged_at_its_revision() {
    let node = TestNode::start(|_| {}).await;
    let base = node.dir().join("served");
    std::fs::create_dir_all(&base).unwrap();
    let commits = bare_repository(
        &base,
        "app.git",
        &[("version.txt", b"one\n"), ("version.txt", b"two\n")],
    )
    .unwrap();
    let mut outside = OutsideHost::start().unwrap();
    outside
        .serve_git(&base, &node.dir().join("git-daemon.log"))
        .unwrap();
    let spec = with_git_volume(
        node.group(
            "outside",
            &["sh", "-c", "test \"$(cat /src/code/version.txt)\" = one"],
        ),
        &outside.git_url("app.git"),
        "code",
        &commits[0],
    );
    let status = node.run_to_end(spec).await;
    assert_eq!(status.phase(), GroupPhase::Succeeded, "{}", events(&status));
    let checked_out = node.volumes_dir("outside").join("source/code/version.txt");
    assert_eq!(std::fs::read_to_string(&checked_out).unwrap(), "one\n");
    let meta = std::fs::metadata(&checked_out).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the clone should run as the unprivileged git user"
    );
    let hooks = node.volumes_dir("outside").join("source/code/.git/hooks");
    assert!(
        std::fs::read_dir(&hooks).map_or(true, |mut d| d.next().is_none()),
        "no hook templates are copied into the clone"
    );
}

/// `len` bytes no compressor shrinks.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clones_past_the_size_limit_fail_and_leave_nothing() {
    const LIMIT: u64 = 2 << 20;
    let node = TestNode::start(|config| config.git.max_bytes = LIMIT).await;
    let base = node.dir().join("served");
    std::fs::create_dir_all(&base).unwrap();
    let big = noise(8 << 20);
    bare_repository(&base, "big.git", &[("blob.bin", &big)]).unwrap();
    let mut outside = OutsideHost::start().unwrap();
    outside
        .serve_git(&base, &node.dir().join("git-daemon.log"))
        .unwrap();
    let spec = with_git_volume(
        node.group("big", &["true"]),
        &outside.git_url("big.git"),
        "",
        "",
    );
    let status = node.run_to_end(spec).await;
    let said = events(&status);
    assert_eq!(status.phase(), GroupPhase::Failed, "{said}");
    assert!(
        said.contains(&format!(
            "gitRepo volume source: git clone failed: the repository is larger than the node's limit of {LIMIT} bytes"
        )),
        "{said}"
    );
    let group_dir = node.state.join("runtime/groups/big");
    assert!(!node.volumes_dir("big").join("source").exists());
    assert!(
        !group_dir.join("git/source").exists(),
        "the partial clone is removed"
    );
}
