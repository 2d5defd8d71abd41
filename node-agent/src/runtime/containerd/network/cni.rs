//! Berth's conflist, and running one CNI plugin (CNI 1.0.0): parameters in the environment, config
//! on stdin, result or error on stdout.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tracing::debug;

use super::validate::Subnet;
use super::{Network, NetworkConfig, NetworkError, PortSpec, isolation};

/// The CNI spec version of Berth's conflist and of every plugin invocation.
pub(super) const CNI_VERSION: &str = "1.0.0";
/// How long one plugin invocation may take before it is killed.
pub(super) const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The sandbox-side interface the chain creates.
pub(super) const IFNAME: &str = "eth0";
/// Plugins that must be present in the CNI bin directory.
const REQUIRED_PLUGINS: [&str; 5] = ["loopback", "bridge", "host-local", "portmap", "firewall"];
/// What is kept of a crashed plugin's output in an error.
const MAX_OUTPUT_IN_ERROR: usize = 2000;
/// Directories a plugin may need to find `iptables`, added after the agent's own `PATH`.
pub(super) const SBIN_PATH: &str = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin";

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach a sandbox.
    Add,
    /// Detach a sandbox.
    Del,
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
        })
    }
}

impl Network {
    pub(super) async fn run_loopback(
        &self,
        command: CniCommand,
        id: &str,
        netns: &str,
    ) -> Result<Option<Value>, NetworkError> {
        let stdin = json!({"cniVersion": CNI_VERSION, "name": self.name, "type": "loopback"});
        let call = PluginCall {
            plugin: "loopback",
            command,
            id,
            netns,
            ifname: "lo",
        };
        self.run_plugin(&call, &stdin).await
    }

    pub(super) async fn run_chained(
        &self,
        plugin: &Value,
        command: CniCommand,
        id: &str,
        netns: &str,
        prev_result: Option<&Value>,
        ports: &[PortSpec],
    ) -> Result<Option<Value>, NetworkError> {
        let mappings = if self.config.publish_ports {
            port_mappings(ports)
        } else {
            Vec::new()
        };
        let stdin = plugin_stdin(&self.name, plugin, prev_result, &mappings);
        let call = PluginCall {
            plugin: plugin_type(plugin),
            command,
            id,
            netns,
            ifname: IFNAME,
        };
        self.run_plugin(&call, &stdin).await
    }

    /// Executes one plugin the CNI way: parameters in the environment, config on stdin, result or
    /// error on stdout.
    async fn run_plugin(
        &self,
        call: &PluginCall<'_>,
        stdin: &Value,
    ) -> Result<Option<Value>, NetworkError> {
        let path = self.config.cni_bin_dir.join(call.plugin);
        debug!(plugin = call.plugin, command = %call.command, sandbox = call.id, "running CNI plugin");
        let mut child = tokio::process::Command::new(&path)
            .env_clear()
            .env("PATH", plugin_path_env())
            .env("CNI_COMMAND", call.command.to_string())
            .env("CNI_CONTAINERID", call.id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_PATH", &self.config.cni_bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NetworkError::PluginSpawn {
                path: path.clone(),
                source,
            })?;
        let input = stdin.to_string().into_bytes();
        let pipe = child.stdin.take();
        let run = async move {
            if let Some(mut pipe) = pipe
                && let Err(error) = pipe.write_all(&input).await
                && error.kind() != io::ErrorKind::BrokenPipe
            {
                return Err(error);
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, run)
            .await
            .map_err(|_| NetworkError::PluginTimeout {
                plugin: call.plugin.to_string(),
                command: call.command,
            })?
            .map_err(|source| NetworkError::PluginSpawn { path, source })?;
        interpret_output(
            call.plugin,
            call.command,
            output.status,
            &output.stdout,
            &output.stderr,
        )
    }
}

/// The parameters of one plugin execution.
struct PluginCall<'a> {
    plugin: &'a str,
    command: CniCommand,
    id: &'a str,
    netns: &'a str,
    ifname: &'a str,
}

/// `PATH` for plugins: the agent's own, then the usual system directories (for `iptables`).
pub(crate) fn plugin_path_env() -> String {
    match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => format!("{path}:{SBIN_PATH}"),
        _ => SBIN_PATH.to_string(),
    }
}

/// The network name in the conflist: per bridge, so agents sharing a host never share chains or leases.
pub(super) fn network_name(bridge: &str) -> String {
    format!("berth-{bridge}")
}

/// Berth's conflist for `config`.
pub(super) fn build_conflist(config: &NetworkConfig, subnet: Subnet) -> Value {
    let default_route = match subnet.addr {
        IpAddr::V4(_) => "0.0.0.0/0",
        IpAddr::V6(_) => "::/0",
    };
    let ipam_dir = config.state_dir.join("cni").join("ipam");
    json!({
        "cniVersion": CNI_VERSION,
        "name": network_name(&config.bridge),
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet.to_string()}]],
                    "routes": [{"dst": default_route}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {
                "type": "firewall",
                "backend": "iptables",
                "iptablesAdminChainName": isolation::forward_chain(&config.bridge),
            },
        ],
    })
}

pub(super) fn plugin_type(plugin: &Value) -> &str {
    plugin["type"].as_str().unwrap_or("?")
}

/// What one chained plugin reads on stdin, as libcni builds it: the plugin's own config plus the
/// conflist's `cniVersion` and `name`, the previous result, and the runtime config of the
/// capabilities the plugin declares.
fn plugin_stdin(
    name: &str,
    plugin: &Value,
    prev_result: Option<&Value>,
    port_mappings: &[Value],
) -> Value {
    let mut stdin = plugin.clone();
    if let Some(object) = stdin.as_object_mut() {
        object.insert("cniVersion".to_string(), json!(CNI_VERSION));
        object.insert("name".to_string(), json!(name));
        if let Some(prev_result) = prev_result {
            object.insert("prevResult".to_string(), prev_result.clone());
        }
        let wants_ports = plugin["capabilities"]["portMappings"].as_bool() == Some(true);
        if wants_ports && !port_mappings.is_empty() {
            object.insert(
                "runtimeConfig".to_string(),
                json!({"portMappings": port_mappings}),
            );
        }
    }
    stdin
}

/// CNI `portMappings` publishing each port under its own number.
fn port_mappings(ports: &[PortSpec]) -> Vec<Value> {
    ports
        .iter()
        .map(|spec| {
            json!({
                "hostPort": spec.port,
                "containerPort": spec.port,
                "protocol": spec.protocol.as_str(),
            })
        })
        .collect()
}

/// A CNI error as plugins print it on stdout.
#[derive(Deserialize)]
struct CniErrorBody {
    code: u32,
    msg: String,
    #[serde(default)]
    details: String,
}

/// Turns a plugin's exit status and output into its result (`None` when it printed nothing) or an error.
fn interpret_output(
    plugin: &str,
    command: CniCommand,
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<Value>, NetworkError> {
    if status.success() {
        if command == CniCommand::Del || stdout.trim_ascii().is_empty() {
            return Ok(None);
        }
        return serde_json::from_slice(stdout)
            .map(Some)
            .map_err(|error| NetworkError::BadResult {
                plugin: plugin.to_string(),
                reason: format!("stdout is not JSON ({error})"),
            });
    }
    if let Ok(error) = serde_json::from_slice::<CniErrorBody>(stdout) {
        return Err(NetworkError::Plugin {
            plugin: plugin.to_string(),
            command,
            code: error.code,
            msg: error.msg,
            details: error.details,
        });
    }
    let output = if stderr.trim_ascii().is_empty() {
        stdout
    } else {
        stderr
    };
    let mut output = String::from_utf8_lossy(output.trim_ascii()).into_owned();
    if output.len() > MAX_OUTPUT_IN_ERROR {
        let mut end = MAX_OUTPUT_IN_ERROR;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
        output.push('…');
    }
    Err(NetworkError::PluginCrashed {
        plugin: plugin.to_string(),
        command,
        status: status.to_string(),
        output,
    })
}

/// The parts of a CNI result Berth reads.
#[derive(Deserialize)]
struct CniResult {
    #[serde(default)]
    interfaces: Vec<CniInterface>,
    #[serde(default)]
    ips: Vec<CniIp>,
}

#[derive(Deserialize)]
struct CniInterface {
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct CniIp {
    address: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

/// The sandbox's address and gateway in a CNI result: the first address on an interface inside the
/// sandbox, else the first address.
pub(super) fn sandbox_address(result: &Value) -> Result<(IpAddr, Option<IpAddr>), String> {
    let result = CniResult::deserialize(result).map_err(|error| error.to_string())?;
    let in_sandbox = |ip: &&CniIp| {
        ip.interface
            .and_then(|index| result.interfaces.get(index))
            .is_some_and(|interface| interface.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
    };
    let chosen = result
        .ips
        .iter()
        .find(in_sandbox)
        .or_else(|| result.ips.first())
        .ok_or("it has no IP address")?;
    let address = chosen.address.split('/').next().unwrap_or_default();
    let ip = address
        .parse()
        .map_err(|_| format!("address {:?} is not an IP address", chosen.address))?;
    Ok((ip, chosen.gateway))
}

pub(super) fn check_plugins(dir: &Path) -> Result<(), NetworkError> {
    for plugin in REQUIRED_PLUGINS {
        let executable = fs::metadata(dir.join(plugin))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(NetworkError::PluginMissing {
                plugin: plugin.to_string(),
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
