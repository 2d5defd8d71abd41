//! Network namespaces: pinned by bind mounts in a shared mount point, made without `unsafe` by a
//! thread of their own.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs;

use super::NetworkError;
use super::state::remove_file;

/// Makes `dir` a shared mount point, bind-mounting it on itself first if it is not a mount point,
/// like `ip netns` does for `/run/netns`: namespace mounts made in it then propagate to (and their
/// unmounts reach) mount namespaces cloned from this one, such as those of containerd's shims.
pub(super) fn make_shared_mount(dir: &Path) -> Result<(), NetworkError> {
    let make_shared = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    let shared = match make_shared() {
        // EINVAL: not a mount point yet.
        Err(Errno::EINVAL) => nix::mount::mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| make_shared()),
        other => other,
    };
    shared.map_err(|source| NetworkError::Mount {
        action: "make a shared mount point of",
        path: dir.to_path_buf(),
        source,
    })
}

/// Lazily unmounts `path`; one that is not mounted or does not exist is fine.
pub(super) fn unmount(path: &Path) -> Result<(), NetworkError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
        Err(source) => Err(NetworkError::Mount {
            action: "unmount",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `path` is a mounted network (or other) namespace, rather than a plain or missing file.
pub(super) fn netns_is_live(path: &Path) -> bool {
    statfs::statfs(path).is_ok_and(|stat| stat.filesystem_type() == statfs::NSFS_MAGIC)
}

/// Creates a new network namespace and pins it by bind-mounting it on `path` (which must not exist).
///
/// The namespace is made by a dedicated thread that unshares its own network namespace, mounts
/// `/proc/thread-self/ns/net` and exits; no other thread's namespace changes. On failure `path` is
/// removed again.
pub(super) async fn create_netns(path: &Path) -> Result<(), NetworkError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|source| NetworkError::Io {
            action: "create",
            path: path.to_path_buf(),
            source,
        })?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let target = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("berth-netns".to_string())
        .spawn(move || {
            // The receiver is gone only if the setup was cancelled; the caller's next setup or
            // teardown then finds the file and cleans it up.
            let _ = sender.send(pin_new_netns(&target));
        });
    let pinned = match spawned {
        Ok(_) => receiver.await.unwrap_or_else(|_| {
            Err(NetworkError::NetnsThread {
                path: path.to_path_buf(),
            })
        }),
        Err(_) => Err(NetworkError::NetnsThread {
            path: path.to_path_buf(),
        }),
    };
    if pinned.is_err() {
        let _ = fs::remove_file(path);
    }
    pinned
}

/// Runs on a thread of its own: moves it into a new network namespace and pins that on `target`.
fn pin_new_netns(target: &Path) -> Result<(), NetworkError> {
    let failed = |action, source| NetworkError::Mount {
        action,
        path: target.to_path_buf(),
        source,
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|source| failed("create a network namespace for", source))?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| failed("bind-mount a network namespace on", source))
}

/// Unmounts and deletes a pinned namespace; a missing or unmounted one is fine.
pub(super) fn remove_netns(path: &Path) -> Result<(), NetworkError> {
    unmount(path)?;
    remove_file(path)
}
