//! The network's state on disk (see the module documentation of [`super`]): where things live,
//! the saved record of each sandbox, and the small file operations the rest uses.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

use super::{Network, NetworkError, PortSpec, Sandbox};

/// What is saved per sandbox: enough to answer [`Network::existing`] and to run `DEL` like libcni.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SandboxRecord {
    pub(super) id: String,
    pub(super) netns: PathBuf,
    pub(super) ip: IpAddr,
    pub(super) gateway: Option<IpAddr>,
    pub(super) ports: Vec<PortSpec>,
    /// The chain's final CNI result, the `prevResult` of every `DEL`.
    pub(super) result: Value,
}

impl SandboxRecord {
    pub(super) fn sandbox(&self) -> Sandbox {
        Sandbox {
            id: self.id.clone(),
            netns: self.netns.clone(),
            ip: self.ip,
            gateway: self.gateway,
        }
    }
}

impl Network {
    pub(super) fn cni_dir(&self) -> PathBuf {
        self.config.state_dir.join("cni")
    }

    pub(super) fn netns_dir(&self) -> PathBuf {
        self.config.state_dir.join("netns")
    }

    pub(super) fn records_dir(&self) -> PathBuf {
        self.config.state_dir.join("sandboxes")
    }

    pub(super) fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir().join(id)
    }

    pub(super) fn record_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }

    pub(super) fn has_state(&self, id: &str) -> bool {
        [self.netns_path(id), self.record_path(id)]
            .iter()
            .any(|path| fs::symlink_metadata(path).is_ok())
    }

    pub(super) fn load_record(&self, id: &str) -> Option<SandboxRecord> {
        let path = self.record_path(id);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                warn!(path = %path.display(), %error, "ignoring an unreadable sandbox network record");
                None
            }
        }
    }

    /// Saves the record of a sandbox whose ADD succeeded.
    pub(super) fn save(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortSpec],
        result: Value,
    ) -> Result<Sandbox, NetworkError> {
        let (ip, gateway) = self.address(&result)?;
        let record = SandboxRecord {
            id: id.to_string(),
            netns: netns.to_path_buf(),
            ip,
            gateway,
            ports: ports.to_vec(),
            result,
        };
        let bytes = serde_json::to_vec(&record).map_err(|source| NetworkError::SaveResult {
            id: id.to_string(),
            source,
        })?;
        write_atomically(&self.record_path(id), &bytes)?;
        Ok(record.sandbox())
    }
}

pub(super) fn create_dir(path: &Path) -> Result<(), NetworkError> {
    fs::create_dir_all(path).map_err(|source| NetworkError::Io {
        action: "create directory",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = fs::write(&temporary, bytes).and_then(|()| fs::rename(&temporary, path));
    written.map_err(|source| {
        let _ = fs::remove_file(&temporary);
        NetworkError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Removes a file; one that is already gone is fine.
pub(super) fn remove_file(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => Err(NetworkError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// The names of a directory's entries; none if it cannot be read.
pub(super) fn list_dir(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect()
}
