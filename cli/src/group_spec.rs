//! The body `container create` PUTs: a [`ContainerGroup`] built from az-like flags ([`GroupFlags`]), or
//! an ACI YAML/JSON file ([`read_file`], aci-api.md §7, read by [`berth_proto::manifest`]).

use std::collections::BTreeMap;

use berth_proto::arm::{
    Container, ContainerGroup, ContainerGroupProperties, ContainerPort, ContainerProperties,
    EnvironmentVariable, GpuResource, ImageRegistryCredential, IpAddress, ResourceRequests,
    ResourceRequirements,
};
use berth_proto::manifest::{Format, Manifest, ManifestError};
use clap::{Args, ValueEnum};

use crate::UsageError;
use crate::cmdline;

/// `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    #[value(name = "TCP")]
    Tcp,
    #[value(name = "UDP")]
    Udp,
}

/// `--ip-address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpAddressType {
    #[value(name = "Public")]
    Public,
    #[value(name = "Private")]
    Private,
}

/// `--os-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OsType {
    #[value(name = "Linux")]
    Linux,
    #[value(name = "Windows")]
    Windows,
}

/// `--restart-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "OnFailure")]
    OnFailure,
    #[value(name = "Never")]
    Never,
}

/// The canonical ACI spelling of a `--protocol`/`--os-type`/… value.
fn canonical(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// The flags that describe a group, as `az container create` has them. All exclude `--file`.
#[derive(Debug, Clone, Args)]
pub struct GroupFlags {
    /// Container image, e.g. nginx:1.27 or registry.example:5000/app:1
    #[arg(
        long,
        value_name = "IMAGE",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub image: Option<String>,
    /// CPU cores
    #[arg(
        long,
        value_name = "CORES",
        default_value_t = 1.0,
        conflicts_with = "file"
    )]
    pub cpu: f64,
    /// Memory in GB
    #[arg(
        long,
        value_name = "GB",
        default_value_t = 1.5,
        conflicts_with = "file"
    )]
    pub memory: f64,
    /// Ports to open, on the container and (with an IP address) on the group
    #[arg(
        long,
        value_name = "PORT",
        num_args = 1..,
        default_values_t = [80u16],
        value_parser = clap::value_parser!(u16).range(1..),
        conflicts_with = "file"
    )]
    pub ports: Vec<u16>,
    /// Protocol of the ports
    #[arg(long, value_enum, ignore_case = true, default_value_t = Protocol::Tcp, conflicts_with = "file")]
    pub protocol: Protocol,
    /// Give the group an IP address [default: none, or Public with --dns-name-label]
    #[arg(long, value_enum, ignore_case = true, conflicts_with = "file")]
    pub ip_address: Option<IpAddressType>,
    /// DNS name label of the group's public IP address (implies --ip-address Public)
    #[arg(long, value_name = "LABEL", conflicts_with = "file")]
    pub dns_name_label: Option<String>,
    /// Operating system of the containers
    #[arg(long, value_enum, ignore_case = true, default_value_t = OsType::Linux, conflicts_with = "file")]
    pub os_type: OsType,
    /// What to do when the container exits
    #[arg(long, value_enum, ignore_case = true, default_value_t = RestartPolicy::Always, conflicts_with = "file")]
    pub restart_policy: RestartPolicy,
    /// Environment variables, KEY=VALUE …
    #[arg(
        long,
        short = 'e',
        value_name = "KEY=VALUE",
        num_args = 1..,
        value_parser = parse_key_value,
        conflicts_with = "file"
    )]
    pub environment_variables: Vec<(String, String)>,
    /// Secret environment variables, KEY=VALUE … (never shown again by the server)
    #[arg(
        long,
        value_name = "KEY=VALUE",
        num_args = 1..,
        value_parser = parse_key_value,
        conflicts_with = "file"
    )]
    pub secure_environment_variables: Vec<(String, String)>,
    /// The command to run instead of the image's, split like a shell would: "/bin/sh -c 'echo hi'"
    #[arg(
        long,
        value_name = "COMMAND",
        allow_hyphen_values = true,
        conflicts_with = "file"
    )]
    pub command_line: Option<String>,
    /// Registry server of the image [default: the image's registry, with a username]
    #[arg(long, value_name = "SERVER", conflicts_with = "file")]
    pub registry_login_server: Option<String>,
    /// Registry username
    #[arg(long, value_name = "USER", conflicts_with = "file")]
    pub registry_username: Option<String>,
    /// Registry password
    #[arg(long, value_name = "PASSWORD", conflicts_with = "file")]
    pub registry_password: Option<String>,
    /// Number of GPUs
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "file")]
    pub gpu_count: Option<u32>,
    /// GPU SKU: K80, P100 or V100
    #[arg(
        long,
        value_name = "SKU",
        requires = "gpu_count",
        conflicts_with = "file"
    )]
    pub gpu_sku: Option<String>,
    /// Tags, KEY=VALUE … (a bare KEY has an empty value)
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = parse_tag, conflicts_with = "file")]
    pub tags: Vec<(String, String)>,
}

/// `KEY=VALUE`; the value may hold `=` and may be empty.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `KEY=VALUE` or a bare `KEY`.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(_) => parse_key_value(s),
        None if !s.is_empty() => Ok((s.to_owned(), String::new())),
        None => Err("empty tag".to_owned()),
    }
}

impl GroupFlags {
    /// The group these flags describe; one container, named like the group.
    pub fn build(&self, name: &str, location: &str) -> Result<ContainerGroup, UsageError> {
        let image = self
            .image
            .clone()
            .ok_or_else(|| usage("--image is required"))?;
        for (flag, value) in [("--cpu", self.cpu), ("--memory", self.memory)] {
            if !value.is_finite() || value <= 0.0 {
                return Err(usage(format!(
                    "{flag} must be a positive number, not {value}"
                )));
            }
        }
        let protocol = canonical(self.protocol);
        let ports: Vec<ContainerPort> = self
            .ports
            .iter()
            .map(|&p| ContainerPort {
                port: Some(i64::from(p)),
                protocol: Some(protocol.clone()),
            })
            .collect();

        let ip_type = match (self.ip_address, &self.dns_name_label) {
            (Some(IpAddressType::Private), Some(_)) => {
                return Err(usage(
                    "--dns-name-label needs a public IP address, not --ip-address Private",
                ));
            }
            (Some(t), _) => Some(t),
            (None, Some(_)) => Some(IpAddressType::Public),
            (None, None) => None,
        };
        let ip_address = ip_type.map(|t| IpAddress {
            ports: Some(ports.clone()),
            kind: Some(canonical(t)),
            dns_name_label: self.dns_name_label.clone(),
            ..Default::default()
        });

        let env: Vec<EnvironmentVariable> = self
            .environment_variables
            .iter()
            .map(|(k, v)| EnvironmentVariable {
                name: Some(k.clone()),
                value: Some(v.clone()),
                ..Default::default()
            })
            .chain(
                self.secure_environment_variables
                    .iter()
                    .map(|(k, v)| EnvironmentVariable {
                        name: Some(k.clone()),
                        secure_value: Some(v.clone()),
                        ..Default::default()
                    }),
            )
            .collect();

        let command = match &self.command_line {
            None => None,
            Some(line) => {
                let words =
                    cmdline::split(line).map_err(|e| usage(format!("--command-line: {e}")))?;
                if words.is_empty() {
                    return Err(usage("--command-line is empty"));
                }
                Some(words)
            }
        };

        let gpu = self.gpu_count.map(|count| GpuResource {
            count: Some(i64::from(count)),
            sku: self.gpu_sku.clone(),
        });

        let container = Container {
            name: Some(name.to_owned()),
            properties: Some(ContainerProperties {
                image: Some(image.clone()),
                command,
                ports: Some(ports),
                environment_variables: (!env.is_empty()).then_some(env),
                resources: Some(ResourceRequirements {
                    requests: Some(ResourceRequests {
                        cpu: Some(self.cpu),
                        memory_in_gb: Some(self.memory),
                        gpu,
                    }),
                    limits: None,
                }),
                ..Default::default()
            }),
        };

        let tags: BTreeMap<String, String> = self.tags.iter().cloned().collect();
        Ok(ContainerGroup {
            location: Some(location.to_owned()),
            tags: (!tags.is_empty()).then_some(tags),
            properties: Some(ContainerGroupProperties {
                containers: Some(vec![container]),
                image_registry_credentials: self.registry_credentials(&image)?,
                restart_policy: Some(canonical(self.restart_policy)),
                ip_address,
                os_type: Some(canonical(self.os_type)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn registry_credentials(
        &self,
        image: &str,
    ) -> Result<Option<Vec<ImageRegistryCredential>>, UsageError> {
        let (server, username, password) = (
            &self.registry_login_server,
            &self.registry_username,
            &self.registry_password,
        );
        if server.is_none() && username.is_none() && password.is_none() {
            return Ok(None);
        }
        let server = match server.clone().or_else(|| registry_of(image)) {
            Some(server) => server,
            None => {
                return Err(usage(format!(
                    "--registry-login-server is needed: image {image:?} names no registry"
                )));
            }
        };
        let (Some(username), Some(password)) = (username, password) else {
            return Err(usage(
                "a private registry needs --registry-username and --registry-password",
            ));
        };
        Ok(Some(vec![ImageRegistryCredential {
            server: Some(server),
            username: Some(username.clone()),
            password: Some(password.clone()),
            ..Default::default()
        }]))
    }
}

/// The registry host of an image reference, if it names one (`host.tld/…`, `host:port/…`,
/// `localhost/…`), as Docker decides it.
fn registry_of(image: &str) -> Option<String> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then(|| first.to_owned())
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Reads a `--file` (see [`Manifest::parse`]): `--name` must agree with the file's `name`; the
/// location is `location_override` (`--location`/`BERTH_LOCATION`), else the file's, else
/// `location_fallback` (the config file's, else "local"). A name that disagrees or is missing is a
/// [`UsageError`].
pub fn read_file(
    text: &str,
    format: Format,
    name_flag: Option<&str>,
    location_override: Option<&str>,
    location_fallback: &str,
) -> anyhow::Result<Manifest> {
    Manifest::parse(
        text,
        format,
        name_flag,
        location_override,
        location_fallback,
    )
    .map_err(|err| match err {
        ManifestError::NameDiffers { given, file } => usage(format!(
            "--name {given:?} differs from the file's name {file:?}"
        ))
        .into(),
        ManifestError::NoName => usage("the file has no `name`: pass --name").into(),
        other => other.into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;
    use serde_json::{Value, json};

    use super::*;
    use crate::cli::{Cli, Command, ContainerCommand, CreateArgs};

    fn create_args(extra: &[&str]) -> CreateArgs {
        let mut argv = vec!["berth", "container", "create", "-g", "rg", "-n", "web"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Container {
                command: ContainerCommand::Create(args),
            } => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn build(extra: &[&str]) -> Result<Value, UsageError> {
        let group = create_args(extra).group.build("web", "local")?;
        Ok(serde_json::to_value(group).unwrap())
    }

    #[test]
    fn defaults_are_azs() {
        let body = build(&["--image", "nginx"]).unwrap();
        assert_eq!(
            body,
            json!({
                "location": "local",
                "properties": {
                    "containers": [{
                        "name": "web",
                        "properties": {
                            "image": "nginx",
                            "ports": [{"port": 80, "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}
                        }
                    }],
                    "osType": "Linux",
                    "restartPolicy": "Always"
                }
            })
        );
        // What is sent is what the apiserver reads.
        let group: ContainerGroup = serde_json::from_value(body).unwrap();
        assert!(group.properties.unwrap().ip_address.is_none());
    }

    #[test]
    fn every_flag_lands_in_the_body() {
        let body = build(&[
            "--image",
            "registry.example:5000/app:1",
            "--cpu",
            "2",
            "--memory",
            "3.5",
            "--ports",
            "80",
            "443",
            "--protocol",
            "udp",
            "--ip-address",
            "private",
            "--os-type",
            "windows",
            "--restart-policy",
            "onfailure",
            "-e",
            "A=1",
            "B=x=y",
            "--secure-environment-variables",
            "S=secret",
            "--command-line",
            "/bin/sh -c 'echo hi; sleep 5'",
            "--registry-username",
            "u",
            "--registry-password",
            "p",
            "--gpu-count",
            "1",
            "--gpu-sku",
            "V100",
            "--tags",
            "team=a",
            "bare",
        ])
        .unwrap();
        let props = &body["properties"];
        let c = &props["containers"][0]["properties"];
        assert_eq!(c["image"], "registry.example:5000/app:1");
        assert_eq!(c["command"], json!(["/bin/sh", "-c", "echo hi; sleep 5"]));
        assert_eq!(
            c["ports"],
            json!([{"port": 80, "protocol": "UDP"}, {"port": 443, "protocol": "UDP"}])
        );
        assert_eq!(
            c["environmentVariables"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}, {"name": "S", "secureValue": "secret"}])
        );
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": 2.0, "memoryInGB": 3.5, "gpu": {"count": 1, "sku": "V100"}})
        );
        assert_eq!(
            props["ipAddress"],
            json!({"type": "Private", "ports": c["ports"]})
        );
        assert_eq!(props["osType"], "Windows");
        assert_eq!(props["restartPolicy"], "OnFailure");
        assert_eq!(
            props["imageRegistryCredentials"],
            json!([{"server": "registry.example:5000", "username": "u", "password": "p"}])
        );
        assert_eq!(body["tags"], json!({"team": "a", "bare": ""}));
    }

    #[test]
    fn a_dns_label_implies_a_public_ip() {
        let body = build(&["--image", "nginx", "--dns-name-label", "web-1"]).unwrap();
        assert_eq!(
            body["properties"]["ipAddress"],
            json!({"type": "Public", "dnsNameLabel": "web-1", "ports": [{"port": 80, "protocol": "TCP"}]})
        );
        let err = build(&[
            "--image",
            "nginx",
            "--dns-name-label",
            "web-1",
            "--ip-address",
            "Private",
        ])
        .unwrap_err();
        assert!(err.0.contains("public"), "{err}");
    }

    #[test]
    fn flag_mistakes_are_usage_errors() {
        assert!(build(&["--image", "nginx", "--command-line", "echo 'x"]).is_err());
        assert!(build(&["--image", "nginx", "--command-line", "  "]).is_err());
        assert!(build(&["--image", "nginx", "--cpu", "0"]).is_err());
        // Docker Hub images name no registry, so one must be given.
        assert!(
            build(&[
                "--image",
                "me/app",
                "--registry-username",
                "u",
                "--registry-password",
                "p"
            ])
            .is_err()
        );
        assert!(build(&["--image", "r.io/app", "--registry-username", "u"]).is_err());
        let parse = |argv: &[&str]| {
            let mut full = vec![
                "berth",
                "container",
                "create",
                "-g",
                "rg",
                "-n",
                "web",
                "--image",
                "x",
            ];
            full.extend_from_slice(argv);
            Cli::try_parse_from(full).map(|_| ()).map_err(|e| e.kind())
        };
        assert!(parse(&["-e", "NOEQUALS"]).is_err());
        assert!(parse(&["--ports", "0"]).is_err());
        assert!(parse(&["--gpu-sku", "V100"]).is_err());
        assert!(parse(&["--protocol", "SCTP"]).is_err());
    }

    /// A file the name flag disagrees with, or a nameless file without one, is a usage error; the
    /// reading itself is `berth_proto::manifest`'s (tested there).
    #[test]
    fn location_and_name_flags_against_the_file() {
        let file = "name: securetest\nlocation: eastus\nproperties: {containers: []}\n";
        let m = read_file(file, Format::Yaml, Some("securetest"), Some("local"), "x").unwrap();
        assert_eq!(m.body["location"], "local");
        let m = read_file(file, Format::Yaml, None, None, "x").unwrap();
        assert_eq!(m.body["location"], "eastus");

        let err = read_file(file, Format::Yaml, Some("other"), None, "local").unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        assert!(err.to_string().contains("--name"), "{err:#}");

        let nameless = "properties: {containers: []}\n";
        let m = read_file(nameless, Format::Yaml, Some("web"), None, "fallback").unwrap();
        assert_eq!(
            (m.name.as_str(), m.api_version.as_str()),
            ("web", "2023-05-01")
        );
        assert_eq!(m.body["location"], "fallback");
        let err = read_file(nameless, Format::Yaml, None, None, "x").unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
    }

    #[test]
    fn bad_files_are_errors_but_not_usage_errors() {
        let path = std::path::Path::new("group.JSON");
        let m = read_file(r#"{"name":"j"}"#, Format::of(path), None, None, "l").unwrap();
        assert_eq!(m.name, "j");
        for bad in ["- a\n- b\n", "name: [\n"] {
            let err = read_file(bad, Format::Yaml, Some("n"), None, "l").unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_none(), "{err:#}");
        }
    }
}
