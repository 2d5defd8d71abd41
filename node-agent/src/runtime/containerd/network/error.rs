//! Why group networking could not be set up or torn down.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use super::cni::{CniCommand, PLUGIN_TIMEOUT};
use super::isolation::IsolationError;
use super::spoofing::SpoofingError;

/// Why group networking could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The bridge name is not a usable Linux interface name.
    #[error(
        "bridge name {name:?} is invalid: use 1 to 15 characters from letters, digits, '-', '_' and '.'"
    )]
    InvalidBridge {
        /// The name given.
        name: String,
    },
    /// The subnet is not a usable CIDR.
    #[error("subnet {subnet:?} is invalid: {reason}")]
    InvalidSubnet {
        /// The subnet given.
        subnet: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The state directory must be absolute: its paths are handed to plugins and runc.
    #[error("the network state directory {path} must be an absolute path")]
    RelativeStateDir {
        /// The path given.
        path: PathBuf,
    },
    /// A sandbox id that could escape the state directory or is not a valid CNI container id.
    #[error("sandbox id {id:?} is invalid: use 1 to 64 characters from a-z, 0-9 and '-'")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// Port 0 cannot be published.
    #[error("port 0 cannot be exposed")]
    InvalidPort,
    /// A CNI plugin is not installed where the config says.
    #[error(
        "CNI plugin {plugin:?} is not an executable file in {dir}: install containernetworking-plugins \
         or point cni_bin_dir at the directory that has them"
    )]
    PluginMissing {
        /// The plugin's name.
        plugin: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// A file or directory of the network state could not be handled.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A mount or namespace operation failed (the agent needs CAP_SYS_ADMIN, i.e. root).
    #[error("could not {action} {path}")]
    Mount {
        /// What was being done.
        action: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// The thread that creates a namespace could not be started or died.
    #[error("the thread creating network namespace {path} could not run")]
    NetnsThread {
        /// The namespace being created.
        path: PathBuf,
    },
    /// A plugin could not be started or talked to.
    #[error("could not run CNI plugin {path}")]
    PluginSpawn {
        /// The plugin's binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A plugin took longer than allowed and was killed.
    #[error("CNI plugin {plugin:?} did not finish {command} within {} s", PLUGIN_TIMEOUT.as_secs())]
    PluginTimeout {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        command: CniCommand,
    },
    /// A plugin reported a CNI error.
    #[error("CNI plugin {plugin:?} failed {command} (code {code}): {msg}{}", details_suffix(.details))]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// The CNI error code (1-99 are defined by the spec, 100+ by the plugin).
        code: u32,
        /// The plugin's message.
        msg: String,
        /// The plugin's details, possibly empty.
        details: String,
    },
    /// A plugin failed without a CNI error on stdout (crashed, killed, or not a CNI plugin).
    #[error("CNI plugin {plugin:?} failed {command} ({status}): {output}")]
    PluginCrashed {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// How it exited.
        status: String,
        /// The start of its stderr (or stdout).
        output: String,
    },
    /// A plugin succeeded but its result is not usable.
    #[error("CNI plugin {plugin:?} returned an unusable result: {reason}")]
    BadResult {
        /// The plugin's name.
        plugin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The saved result could not be written.
    #[error("could not save the network result of sandbox {id}")]
    SaveResult {
        /// The sandbox.
        id: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Some teardown steps failed; the others were done. Retrying `teardown` is safe.
    #[error("could not fully tear down sandbox {id}: {}", join_errors(.failures))]
    Teardown {
        /// The sandbox.
        id: String,
        /// Every step that failed.
        failures: Vec<NetworkError>,
    },
    /// The bridge could not be deleted.
    #[error("could not delete bridge {bridge}: {reason}")]
    BridgeDelete {
        /// The bridge.
        bridge: String,
        /// Why.
        reason: String,
    },
    /// An isolation rule could not be set or removed.
    #[error("could not apply the group isolation rules")]
    Isolation(#[from] IsolationError),
    /// An anti-spoofing rule could not be set or removed.
    #[error("could not apply the group anti-spoofing rules")]
    Spoofing(#[from] SpoofingError),
    /// Some steps of [`super::Network::purge`] failed; the others were done.
    #[error("could not fully remove the network: {}", join_errors(.failures))]
    Purge {
        /// Every step that failed.
        failures: Vec<NetworkError>,
    },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// Errors with their causes, for variants that gather several.
fn join_errors(errors: &[NetworkError]) -> String {
    errors
        .iter()
        .map(|error| {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}
