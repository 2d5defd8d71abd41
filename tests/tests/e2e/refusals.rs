//! Every refusal the node agent can make about a spec is made by the API first.
//!
//! The agent checks each assignment with `berth_proto::spec::admit` before it touches the node. Here,
//! for every rule `admit` has (every variant of `Broken` and of the errors it wraps, matched
//! exhaustively so a new one does not compile without a case), a node spec breaking it is refused by
//! `admit`, and the same spec sent to the API as ACI's JSON is a 400 naming the same field, with
//! nothing persisted.

use std::collections::BTreeSet;

use base64::Engine as _;
use berth_proto::node::{
    AzureFile, Container, DnsConfig, EmptyDir, EnvVar, GitRepo, GroupSpec, HttpGet, Probe,
    SecretVolume, SecurityContext, Volume, VolumeMount, volume::Source,
};
use berth_proto::spec::dns::DnsError;
use berth_proto::spec::git::GitError;
use berth_proto::spec::image::ReferenceError;
use berth_proto::spec::names::NameError;
use berth_proto::spec::paths::PathError;
use berth_proto::spec::probe::ProbeError;
use berth_proto::spec::process::ProcessError;
use berth_proto::spec::{Broken, admit};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{SUB, Shared};

/// Each leaf rule of `admit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    ContainerName,
    VolumeName,
    EnvName,
    SecretFileName,
    ShareName,
    StorageAccountName,
    MountRelative,
    MountCharacter,
    MountParent,
    MountTooLong,
    MountRoot,
    MountProc,
    MountManaged,
    GitRepository,
    GitDirectory,
    GitRevision,
    ImageEmpty,
    ImageDomain,
    ImageRepository,
    ImageTag,
    ImageDigest,
    ImageTooLong,
    Nul,
    UnknownCapability,
    PrivilegedCapability,
    NameServer,
    SearchDomain,
    DnsOption,
    ProbeAction,
    ProbeCommandTooLong,
    ProbeNul,
    ProbePort,
    ProbeScheme,
    ProbePath,
    ProbeTooManyHeaders,
    ProbeHeaderName,
    ProbeHeaderValue,
    ProbeOutOfRange,
    ProbeLivenessSuccess,
    NoContainers,
    DuplicateName,
    UnknownVolume,
    DuplicateMountPath,
    NoSource,
    SecretTooLarge,
    Privileged,
}

/// The rule behind a refusal: exhaustive, so every rule the node gains needs a case here.
fn rule_of(broken: &Broken) -> Rule {
    match broken {
        Broken::Name(e) => match e {
            NameError::Container(_) => Rule::ContainerName,
            NameError::Volume(_) => Rule::VolumeName,
            NameError::EnvVar(_) => Rule::EnvName,
            NameError::SecretFile(_) => Rule::SecretFileName,
            NameError::Share(_) => Rule::ShareName,
            NameError::StorageAccount(_) => Rule::StorageAccountName,
        },
        Broken::Path(e) => match e {
            PathError::Relative => Rule::MountRelative,
            PathError::Character => Rule::MountCharacter,
            PathError::Parent => Rule::MountParent,
            PathError::TooLong => Rule::MountTooLong,
            PathError::Root => Rule::MountRoot,
            PathError::Proc => Rule::MountProc,
            PathError::Managed(_) => Rule::MountManaged,
        },
        Broken::Git(e) => match e {
            GitError::Repository => Rule::GitRepository,
            GitError::Directory(_) => Rule::GitDirectory,
            GitError::Revision => Rule::GitRevision,
        },
        Broken::Image { source, .. } => match source {
            ReferenceError::Empty => Rule::ImageEmpty,
            ReferenceError::Domain(_) => Rule::ImageDomain,
            ReferenceError::Repository(_) => Rule::ImageRepository,
            ReferenceError::Tag(_) => Rule::ImageTag,
            ReferenceError::Digest(_) => Rule::ImageDigest,
            ReferenceError::TooLong => Rule::ImageTooLong,
        },
        Broken::Process(e) => match e {
            ProcessError::Nul => Rule::Nul,
            ProcessError::UnknownCapability(_) => Rule::UnknownCapability,
            ProcessError::PrivilegedCapability(_) => Rule::PrivilegedCapability,
        },
        Broken::Dns(e) => match e {
            DnsError::NameServer(_) => Rule::NameServer,
            DnsError::SearchDomain(_) => Rule::SearchDomain,
            DnsError::Option(_) => Rule::DnsOption,
        },
        Broken::Probe(e) => match e {
            ProbeError::Action => Rule::ProbeAction,
            ProbeError::CommandTooLong => Rule::ProbeCommandTooLong,
            ProbeError::Process(_) => Rule::ProbeNul,
            ProbeError::Port(_) => Rule::ProbePort,
            ProbeError::Scheme(_) => Rule::ProbeScheme,
            ProbeError::Path => Rule::ProbePath,
            ProbeError::TooManyHeaders => Rule::ProbeTooManyHeaders,
            ProbeError::HeaderName(_) => Rule::ProbeHeaderName,
            ProbeError::HeaderValue(_) => Rule::ProbeHeaderValue,
            ProbeError::OutOfRange { .. } => Rule::ProbeOutOfRange,
            ProbeError::LivenessSuccess => Rule::ProbeLivenessSuccess,
        },
        Broken::NoContainers => Rule::NoContainers,
        Broken::DuplicateName(_) => Rule::DuplicateName,
        Broken::UnknownVolume(_) => Rule::UnknownVolume,
        Broken::DuplicateMountPath(_) => Rule::DuplicateMountPath,
        Broken::NoSource => Rule::NoSource,
        Broken::SecretTooLarge => Rule::SecretTooLarge,
        Broken::Privileged => Rule::Privileged,
    }
}

const ALL: [Rule; 46] = [
    Rule::ContainerName,
    Rule::VolumeName,
    Rule::EnvName,
    Rule::SecretFileName,
    Rule::ShareName,
    Rule::StorageAccountName,
    Rule::MountRelative,
    Rule::MountCharacter,
    Rule::MountParent,
    Rule::MountTooLong,
    Rule::MountRoot,
    Rule::MountProc,
    Rule::MountManaged,
    Rule::GitRepository,
    Rule::GitDirectory,
    Rule::GitRevision,
    Rule::ImageEmpty,
    Rule::ImageDomain,
    Rule::ImageRepository,
    Rule::ImageTag,
    Rule::ImageDigest,
    Rule::ImageTooLong,
    Rule::Nul,
    Rule::UnknownCapability,
    Rule::PrivilegedCapability,
    Rule::NameServer,
    Rule::SearchDomain,
    Rule::DnsOption,
    Rule::ProbeAction,
    Rule::ProbeCommandTooLong,
    Rule::ProbeNul,
    Rule::ProbePort,
    Rule::ProbeScheme,
    Rule::ProbePath,
    Rule::ProbeTooManyHeaders,
    Rule::ProbeHeaderName,
    Rule::ProbeHeaderValue,
    Rule::ProbeOutOfRange,
    Rule::ProbeLivenessSuccess,
    Rule::NoContainers,
    Rule::DuplicateName,
    Rule::UnknownVolume,
    Rule::DuplicateMountPath,
    Rule::NoSource,
    Rule::SecretTooLarge,
    Rule::Privileged,
];

fn volume(name: &str, source: Source) -> Volume {
    Volume {
        name: name.into(),
        source: Some(source),
    }
}

/// A valid node spec using every kind of field the rules look at.
fn valid() -> GroupSpec {
    GroupSpec {
        name: "walk".into(),
        containers: vec![Container {
            name: "app".into(),
            image: "registry.local/busybox:1".into(),
            command: vec!["sh".into(), "-c".into(), "sleep 1".into()],
            env: vec![EnvVar {
                name: "MODE".into(),
                value: "x".into(),
                secure: false,
            }],
            volume_mounts: vec![
                VolumeMount {
                    name: "cache".into(),
                    mount_path: "/cache".into(),
                    read_only: false,
                },
                VolumeMount {
                    name: "source".into(),
                    mount_path: "/src".into(),
                    read_only: false,
                },
            ],
            security_context: Some(SecurityContext {
                capabilities_add: vec!["CHOWN".into()],
                capabilities_drop: vec!["ALL".into()],
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                exec_command: vec!["cat".into(), "/tmp/healthy".into()],
                period_seconds: 5,
                ..Default::default()
            }),
            readiness_probe: Some(Probe {
                http_get: Some(HttpGet {
                    path: "/ready".into(),
                    port: 8080,
                    scheme: "http".into(),
                    headers: [("X-Probe".to_string(), "walk".to_string())].into(),
                }),
                success_threshold: 2,
                ..Default::default()
            }),
            ..Default::default()
        }],
        init_containers: vec![Container {
            name: "init".into(),
            image: "registry.local/busybox:1".into(),
            ..Default::default()
        }],
        volumes: vec![
            volume("cache", Source::EmptyDir(EmptyDir {})),
            volume(
                "source",
                Source::GitRepo(GitRepo {
                    repository: "https://git.example.com/site.git".into(),
                    ..Default::default()
                }),
            ),
            volume(
                "certs",
                Source::Secret(SecretVolume {
                    files: [("tls.key".to_string(), b"key".to_vec())].into(),
                }),
            ),
            volume(
                "share",
                Source::AzureFile(AzureFile {
                    share_name: "keep".into(),
                    storage_account_name: "acct".into(),
                    read_only: false,
                }),
            ),
        ],
        dns_config: Some(DnsConfig {
            name_servers: vec!["10.0.0.10".into()],
            search_domains: vec!["svc.local".into()],
            options: "ndots:2".into(),
        }),
        ..Default::default()
    }
}

/// The node spec as ACI's JSON, field for field.
fn arm(spec: &GroupSpec) -> Value {
    let container = |c: &Container, init: bool| {
        let mut props = json!({
            "image": c.image,
            "command": c.command,
            "environmentVariables": c.env.iter().map(|e| if e.secure {
                json!({"name": e.name, "secureValue": e.value})
            } else {
                json!({"name": e.name, "value": e.value})
            }).collect::<Vec<_>>(),
            "volumeMounts": c.volume_mounts.iter().map(|m| json!({"name": m.name, "mountPath": m.mount_path})).collect::<Vec<_>>(),
        });
        if !init {
            props["resources"] = json!({"requests": {"cpu": 1.0, "memoryInGB": 1.0}});
        }
        if let Some(sc) = &c.security_context {
            props["securityContext"] = json!({
                "capabilities": {"add": sc.capabilities_add, "drop": sc.capabilities_drop},
            });
            if let Some(p) = sc.privileged {
                props["securityContext"]["privileged"] = json!(p);
            }
        }
        for (field, probe) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
        ] {
            if let Some(p) = probe {
                props[field] = arm_probe(p);
            }
        }
        json!({"name": c.name, "properties": props})
    };
    let volumes: Vec<Value> = spec
        .volumes
        .iter()
        .map(|v| {
            let mut out = json!({"name": v.name});
            match &v.source {
                None => {}
                Some(Source::EmptyDir(_)) => out["emptyDir"] = json!({}),
                Some(Source::Secret(s)) => {
                    out["secret"] = s
                        .files
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v))))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                Some(Source::GitRepo(g)) => {
                    out["gitRepo"] = json!({"repository": g.repository, "directory": g.directory, "revision": g.revision});
                }
                Some(Source::AzureFile(a)) => {
                    out["azureFile"] = json!({
                        "shareName": a.share_name,
                        "storageAccountName": a.storage_account_name,
                        "storageAccountKey": "a2V5",
                    });
                }
            }
            out
        })
        .collect();
    let mut properties = json!({
        "osType": "Linux",
        "containers": spec.containers.iter().map(|c| container(c, false)).collect::<Vec<_>>(),
        "initContainers": spec.init_containers.iter().map(|c| container(c, true)).collect::<Vec<_>>(),
        "volumes": volumes,
    });
    if let Some(d) = &spec.dns_config {
        properties["dnsConfig"] = json!({
            "nameServers": d.name_servers,
            "searchDomains": d.search_domains.join(" "),
            "options": d.options,
        });
    }
    json!({"location": "local", "properties": properties})
}

/// A node probe as ACI's JSON: timings left out where 0 (absent on the node).
fn arm_probe(p: &Probe) -> Value {
    let mut out = json!({});
    if !p.exec_command.is_empty() {
        out["exec"] = json!({"command": p.exec_command});
    }
    if let Some(h) = &p.http_get {
        let mut names: Vec<&String> = h.headers.keys().collect();
        names.sort();
        out["httpGet"] = json!({
            "path": h.path,
            "port": h.port,
            "scheme": h.scheme,
            "httpHeaders": names.iter().map(|n| json!({"name": n, "value": h.headers[*n]})).collect::<Vec<_>>(),
        });
    }
    for (field, n) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("periodSeconds", p.period_seconds),
        ("failureThreshold", p.failure_threshold),
        ("successThreshold", p.success_threshold),
        ("timeoutSeconds", p.timeout_seconds),
    ] {
        if n > 0 {
            out[field] = json!(n);
        }
    }
    out
}

fn live(spec: &mut GroupSpec) -> &mut Probe {
    spec.containers[0]
        .liveness_probe
        .get_or_insert_with(Default::default)
}

fn ready_get(spec: &mut GroupSpec) -> &mut HttpGet {
    spec.containers[0]
        .readiness_probe
        .get_or_insert_with(Default::default)
        .http_get
        .get_or_insert_with(Default::default)
}

fn git(spec: &mut GroupSpec, change: impl Fn(&mut GitRepo)) {
    if let Some(Source::GitRepo(g)) = spec.volumes[1].source.as_mut() {
        change(g);
    }
}

fn share(spec: &mut GroupSpec, change: impl Fn(&mut AzureFile)) {
    if let Some(Source::AzureFile(a)) = spec.volumes[3].source.as_mut() {
        change(a);
    }
}

fn secret(spec: &mut GroupSpec, files: Vec<(String, Vec<u8>)>) {
    spec.volumes[2].source = Some(Source::Secret(SecretVolume {
        files: files.into_iter().collect(),
    }));
}

fn sc(spec: &mut GroupSpec) -> &mut SecurityContext {
    spec.containers[0]
        .security_context
        .get_or_insert_with(Default::default)
}

fn mount(spec: &mut GroupSpec, path: &str) {
    spec.containers[0].volume_mounts[0].mount_path = path.into();
}

type Mutation = Box<dyn Fn(&mut GroupSpec)>;

/// One broken spec per rule.
fn cases() -> Vec<(Rule, Mutation)> {
    vec![
        (
            Rule::ContainerName,
            Box::new(|s| s.containers[0].name = "App".into()),
        ),
        (
            Rule::VolumeName,
            Box::new(|s| s.volumes[0].name = "abc".into()),
        ),
        (
            Rule::EnvName,
            Box::new(|s| s.containers[0].env[0].name = "1abc".into()),
        ),
        (
            Rule::SecretFileName,
            Box::new(|s| secret(s, vec![("..".into(), b"x".to_vec())])),
        ),
        (
            Rule::ShareName,
            Box::new(|s| share(s, |a| a.share_name = "../../..".into())),
        ),
        (
            Rule::StorageAccountName,
            Box::new(|s| share(s, |a| a.storage_account_name = "a/b".into())),
        ),
        (Rule::MountRelative, Box::new(|s| mount(s, "cache"))),
        (Rule::MountCharacter, Box::new(|s| mount(s, "/ca\0che"))),
        (Rule::MountParent, Box::new(|s| mount(s, "/cache/../etc"))),
        (
            Rule::MountTooLong,
            Box::new(|s| mount(s, &"/x".repeat(2500))),
        ),
        (Rule::MountRoot, Box::new(|s| mount(s, "/"))),
        (Rule::MountProc, Box::new(|s| mount(s, "/proc/sys"))),
        (
            Rule::MountManaged,
            Box::new(|s| mount(s, "/etc/resolv.conf")),
        ),
        (
            Rule::GitRepository,
            Box::new(|s| git(s, |g| g.repository = "file:///etc".into())),
        ),
        (
            Rule::GitDirectory,
            Box::new(|s| git(s, |g| g.directory = "/etc".into())),
        ),
        (
            Rule::GitRevision,
            Box::new(|s| git(s, |g| g.revision = "--orphan".into())),
        ),
        (
            Rule::ImageEmpty,
            Box::new(|s| s.containers[0].image = String::new()),
        ),
        (
            Rule::ImageDomain,
            Box::new(|s| s.containers[0].image = "bad_host.com/x".into()),
        ),
        (
            Rule::ImageRepository,
            Box::new(|s| s.containers[0].image = "BusyBox".into()),
        ),
        (
            Rule::ImageTag,
            Box::new(|s| s.containers[0].image = "busybox:-x".into()),
        ),
        (
            Rule::ImageDigest,
            Box::new(|s| s.containers[0].image = "busybox@sha256:abc".into()),
        ),
        (
            Rule::ImageTooLong,
            Box::new(|s| s.containers[0].image = format!("a/{}", "b".repeat(300))),
        ),
        (
            Rule::Nul,
            Box::new(|s| s.containers[0].command[2] = "sleep\u{0} 1".into()),
        ),
        (
            Rule::UnknownCapability,
            Box::new(|s| sc(s).capabilities_add = vec!["CAP_".into()]),
        ),
        (
            Rule::PrivilegedCapability,
            Box::new(|s| sc(s).capabilities_add = vec!["SYS_ADMIN".into()]),
        ),
        (
            Rule::NameServer,
            Box::new(|s| {
                if let Some(d) = s.dns_config.as_mut() {
                    d.name_servers = vec!["dns.example.com".into()];
                }
            }),
        ),
        (
            Rule::SearchDomain,
            Box::new(|s| {
                if let Some(d) = s.dns_config.as_mut() {
                    d.search_domains = vec!["a..b".into()];
                }
            }),
        ),
        (
            Rule::DnsOption,
            Box::new(|s| {
                if let Some(d) = s.dns_config.as_mut() {
                    d.options = "ndots:2;rotate".into();
                }
            }),
        ),
        (
            Rule::ProbeAction,
            Box::new(|s| live(s).http_get = Some(ready_get(s).clone())),
        ),
        (
            Rule::ProbeCommandTooLong,
            Box::new(|s| live(s).exec_command = vec!["x".into(); 300]),
        ),
        (
            Rule::ProbeNul,
            Box::new(|s| live(s).exec_command = vec!["cat\u{0}".into()]),
        ),
        (Rule::ProbePort, Box::new(|s| ready_get(s).port = 70_000)),
        (
            Rule::ProbeScheme,
            Box::new(|s| ready_get(s).scheme = "gopher".into()),
        ),
        (
            Rule::ProbePath,
            Box::new(|s| ready_get(s).path = "/a HTTP/1.0".into()),
        ),
        (
            Rule::ProbeTooManyHeaders,
            Box::new(|s| {
                ready_get(s).headers = (0..33).map(|i| (format!("X-{i}"), String::new())).collect();
            }),
        ),
        (
            Rule::ProbeHeaderName,
            Box::new(|s| ready_get(s).headers = [("Bad Name".into(), "v".into())].into()),
        ),
        (
            Rule::ProbeHeaderValue,
            Box::new(|s| ready_get(s).headers = [("X-A".into(), "v\r\nX-B: 1".into())].into()),
        ),
        (
            Rule::ProbeOutOfRange,
            Box::new(|s| live(s).period_seconds = 3601),
        ),
        (
            Rule::ProbeLivenessSuccess,
            Box::new(|s| live(s).success_threshold = 2),
        ),
        (Rule::NoContainers, Box::new(|s| s.containers.clear())),
        (
            Rule::DuplicateName,
            Box::new(|s| s.volumes[3].name = "cache".into()),
        ),
        (
            Rule::UnknownVolume,
            Box::new(|s| s.containers[0].volume_mounts[0].name = "nowhere".into()),
        ),
        (
            Rule::DuplicateMountPath,
            Box::new(|s| s.containers[0].volume_mounts[1].mount_path = "/cache/".into()),
        ),
        (Rule::NoSource, Box::new(|s| s.volumes[0].source = None)),
        (
            Rule::SecretTooLarge,
            Box::new(|s| secret(s, (0..2100).map(|i| (format!("f{i}"), vec![1u8])).collect())),
        ),
        (
            Rule::Privileged,
            Box::new(|s| sc(s).privileged = Some(true)),
        ),
    ]
}

#[tokio::test]
async fn every_refusal_of_the_node_is_a_400_of_the_api_first() {
    assert_eq!(admit(&valid(), false), Ok(()));
    let api = Shared::tenant_api();
    // No node joined this cluster: a valid spec passes validation and meets the capacity check (409).
    let (status, _, answer) = api
        .put_group(SUB, "rg-refusals", "walk-valid", &arm(&valid()))
        .await;
    assert_ne!(
        status,
        StatusCode::BAD_REQUEST,
        "the valid spec passes validation: {answer}"
    );

    let mut covered = BTreeSet::new();
    for (i, (rule, mutate)) in cases().into_iter().enumerate() {
        let mut spec = valid();
        mutate(&mut spec);
        let refusal = admit(&spec, false).expect_err("the node refuses it");
        assert_eq!(rule_of(&refusal.broken), rule, "{refusal}");
        covered.insert(rule);

        let name = format!("walk-{i}");
        let (status, _, answer) = api.put_group(SUB, "rg-refusals", &name, &arm(&spec)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rule:?}: {answer}");
        assert_eq!(
            answer["error"]["target"], refusal.target,
            "{rule:?}: the API names the field the node would: {answer}"
        );
        let (after, _) = api.get_group(SUB, "rg-refusals", &name).await;
        assert_eq!(after, StatusCode::NOT_FOUND, "{rule:?}: nothing persisted");
    }
    let all: BTreeSet<Rule> = ALL.into_iter().collect();
    assert_eq!(covered, all, "every rule of the node has a case");
}
