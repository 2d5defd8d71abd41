//! A group's volumes on the node: `emptyDir` (a directory that lives as long as the group), `secret`
//! (a tmpfs whose files are mode 0400, owned by the user of the container that mounts it), `gitRepo`
//! (a clone at `revision`, made confined: [`git`]) and `azureFile` (a directory under the operator's
//! share root, so its data outlives the group). Every name and path is checked against traversal
//! before it touches the disk.

pub mod git;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_proto::node::volume::Source;
use berth_proto::node::{Container, GroupSpec, Volume};

use self::git::{GitConfig, GitError, GitSandbox};
use super::spec::BindMount;

/// Why a volume could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {reason}")]
    Invalid { volume: String, reason: String },
    #[error("volume {volume}: {action}: {source}")]
    Io {
        volume: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {volume}: mounting its tmpfs: {source}")]
    Mount {
        volume: String,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    /// A gitRepo volume without a sandbox to clone it in (the caller's mistake).
    #[error("volume {volume}: gitRepo volumes are cloned only once the group's network is up")]
    NoGitSandbox { volume: String },
    #[error("volume {volume}: azureFile volumes need the agent's --share-root")]
    NoShareRoot { volume: String },
}

/// True if `name` is one plain path component (no `/`, not `.` or `..`, not empty), by the shared
/// spec rules (`berth_proto::spec::names::is_plain`).
pub fn is_plain_name(name: &str) -> bool {
    berth_proto::spec::names::is_plain(name)
}

fn io(volume: &str, action: &'static str) -> impl FnOnce(std::io::Error) -> VolumeError {
    let volume = volume.to_string();
    move |source| VolumeError::Io {
        volume,
        action,
        source,
    }
}

/// Where each volume of a group lives on the node.
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    paths: HashMap<String, (PathBuf, bool)>,
}

impl Prepared {
    /// The bind mounts of `container`, read-only where the mount or the share says so.
    pub fn mounts_for(&self, container: &Container) -> Result<Vec<BindMount>, VolumeError> {
        let mut out = Vec::new();
        for mount in &container.volume_mounts {
            let Some((source, volume_read_only)) = self.paths.get(&mount.name) else {
                return Err(VolumeError::Invalid {
                    volume: mount.name.clone(),
                    reason: format!(
                        "container {} mounts a volume the group does not define",
                        container.name
                    ),
                });
            };
            let destination =
                berth_proto::spec::paths::mount_path(&mount.mount_path).map_err(|error| {
                    VolumeError::Invalid {
                        volume: mount.name.clone(),
                        reason: format!("mount path {:?}: {error}", mount.mount_path),
                    }
                })?;
            out.push(BindMount {
                source: source.clone(),
                destination,
                read_only: mount.read_only || *volume_read_only,
            });
        }
        // A mount inside another comes after it, whatever the spec's order (`/d` before `/d/x`).
        out.sort_by_key(|m| m.destination.matches('/').count());
        Ok(out)
    }
}

/// Volume name -> uid/gid of the first container that mounts it (secret files are owned by it).
pub type Owners = HashMap<String, (u32, u32)>;

/// True if `spec` has a gitRepo volume (whose clone needs the group's network up first).
pub fn has_git_repo(spec: &GroupSpec) -> bool {
    spec.volumes
        .iter()
        .any(|v| matches!(v.source, Some(Source::GitRepo(_))))
}

/// Makes every volume of `spec` exist under `dir` (the group's volume directory) and returns where
/// each lives; gitRepo volumes are cloned in `git` (the group's sandbox, network attached).
/// Idempotent: running it again for the same group keeps data and refreshes secrets.
pub async fn prepare(
    spec: &GroupSpec,
    dir: &Path,
    share_root: Option<&Path>,
    owners: &Owners,
    git: Option<(&GitConfig, &GitSandbox)>,
) -> Result<Prepared, VolumeError> {
    let mut prepared = Prepared::default();
    for volume in &spec.volumes {
        if !is_plain_name(&volume.name) {
            return Err(VolumeError::Invalid {
                volume: volume.name.clone(),
                reason: "the name must be one path component".into(),
            });
        }
        let path = dir.join(&volume.name);
        let entry = match &volume.source {
            Some(Source::EmptyDir(_)) | None => {
                std::fs::create_dir_all(&path)
                    .map_err(io(&volume.name, "creating its directory"))?;
                (path, false)
            }
            Some(Source::Secret(secret)) => {
                let (uid, gid) = owners.get(&volume.name).copied().unwrap_or((0, 0));
                secret_volume(volume, &secret.files, &path, uid, gid)?;
                (path, true)
            }
            Some(Source::GitRepo(repo)) => {
                let Some((config, sandbox)) = git else {
                    return Err(VolumeError::NoGitSandbox {
                        volume: volume.name.clone(),
                    });
                };
                git::git_volume(&volume.name, repo, &path, config, sandbox).await?;
                (path, false)
            }
            Some(Source::AzureFile(share)) => {
                let Some(root) = share_root else {
                    return Err(VolumeError::NoShareRoot {
                        volume: volume.name.clone(),
                    });
                };
                let account = share.storage_account_name.as_str();
                let names = berth_proto::spec::names::storage_account(account)
                    .and_then(|()| berth_proto::spec::names::share(&share.share_name));
                if names.is_err() || !is_plain_name(account) || !is_plain_name(&share.share_name) {
                    return Err(VolumeError::Invalid {
                        volume: volume.name.clone(),
                        reason: "the share and storage account names must be plain names".into(),
                    });
                }
                let path = root.join(account).join(&share.share_name);
                std::fs::create_dir_all(&path).map_err(io(&volume.name, "creating its share"))?;
                (path, share.read_only)
            }
        };
        prepared.paths.insert(volume.name.clone(), entry);
    }
    Ok(prepared)
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.to_string_lossy();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| mount_point == target)
}

fn secret_volume(
    volume: &Volume,
    files: &HashMap<String, Vec<u8>>,
    path: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), VolumeError> {
    for name in files.keys() {
        if berth_proto::spec::names::secret_file(name).is_err() {
            return Err(VolumeError::Invalid {
                volume: volume.name.clone(),
                reason: format!("secret file name {name:?} must be one path component"),
            });
        }
    }
    std::fs::create_dir_all(path).map_err(io(&volume.name, "creating its directory"))?;
    if !is_mount_point(path) {
        use nix::mount::MsFlags;
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0700,size=16m"),
        )
        .map_err(|source| VolumeError::Mount {
            volume: volume.name.clone(),
            source,
        })?;
    }
    let owner = |p: &Path| {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
            .map_err(io(&volume.name, "changing owners"))
    };
    for (name, contents) in files {
        let file = path.join(name);
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, contents).map_err(io(&volume.name, "writing a secret file"))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400))
            .map_err(io(&volume.name, "setting a secret file's mode"))?;
        owner(&file)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o500))
        .map_err(io(&volume.name, "setting its mode"))?;
    owner(path)
}

/// Unmounts the group's tmpfs volumes and deletes its volume directory (shares stay).
pub fn cleanup(dir: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_mount_point(&path) {
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_cannot_traverse() {
        assert!(is_plain_name("cert.pem"));
        assert!(!is_plain_name("../x"));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name("a/b"));
    }

    #[test]
    fn mounts_are_normalised_and_parents_come_first() {
        let mut prepared = Prepared::default();
        prepared
            .paths
            .insert("data".into(), (PathBuf::from("/node/data"), false));
        let mount = |path: &str| berth_proto::node::VolumeMount {
            name: "data".into(),
            mount_path: path.into(),
            read_only: false,
        };
        let container = Container {
            name: "app".into(),
            volume_mounts: vec![mount("/d/x/"), mount("//d/./")],
            ..Default::default()
        };
        let mounts = prepared.mounts_for(&container).unwrap();
        let destinations: Vec<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(destinations, ["/d", "/d/x"]);
        let root = Container {
            volume_mounts: vec![mount("/")],
            ..container
        };
        assert!(prepared.mounts_for(&root).is_err());
    }
}
