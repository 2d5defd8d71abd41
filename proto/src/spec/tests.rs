use super::*;
use crate::node::{
    AzureFile, Container, DnsConfig, EmptyDir, EnvVar, GitRepo, GroupSpec, HttpGet, Probe,
    SecretVolume, SecurityContext, Volume, VolumeMount, volume::Source,
};

fn volume(name: &str, source: Source) -> Volume {
    Volume {
        name: name.into(),
        source: Some(source),
    }
}

/// A spec that uses every kind of field the rules look at.
fn valid() -> GroupSpec {
    GroupSpec {
        name: "web".into(),
        containers: vec![Container {
            name: "app".into(),
            image: "mcr.microsoft.com/azuredocs/aci-helloworld:latest".into(),
            command: vec!["sh".into(), "-c".into(), "exec httpd -f".into()],
            env: vec![EnvVar {
                name: "MODE".into(),
                value: "prod".into(),
                secure: false,
            }],
            volume_mounts: vec![
                VolumeMount {
                    name: "cache".into(),
                    mount_path: "/cache/".into(),
                    read_only: false,
                },
                VolumeMount {
                    name: "source".into(),
                    mount_path: "/src".into(),
                    read_only: true,
                },
            ],
            security_context: Some(SecurityContext {
                capabilities_add: vec!["NET_BIND_SERVICE".into()],
                capabilities_drop: vec!["ALL".into()],
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                exec_command: vec!["cat".into(), "/tmp/healthy".into()],
                period_seconds: 5,
                failure_threshold: 3,
                success_threshold: 1,
                ..Default::default()
            }),
            readiness_probe: Some(Probe {
                http_get: Some(HttpGet {
                    path: "/ready?full=1".into(),
                    port: 80,
                    scheme: "https".into(),
                    headers: [("X-Probe".to_string(), "berth".to_string())].into(),
                }),
                success_threshold: 2,
                ..Default::default()
            }),
            ..Default::default()
        }],
        init_containers: vec![Container {
            name: "init".into(),
            image: "busybox".into(),
            ..Default::default()
        }],
        volumes: vec![
            volume("cache", Source::EmptyDir(EmptyDir {})),
            volume(
                "source",
                Source::GitRepo(GitRepo {
                    repository: "https://github.com/Azure-Samples/aci-helloworld.git".into(),
                    directory: String::new(),
                    revision: "main".into(),
                }),
            ),
            volume(
                "secrets",
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
            search_domains: vec!["svc.local example.com".into()],
            options: "ndots:2".into(),
        }),
        ..Default::default()
    }
}

fn refused(spec: &GroupSpec) -> Refusal {
    admit(spec, false).expect_err("refused")
}

#[test]
fn a_valid_spec_is_admitted() {
    assert_eq!(admit(&valid(), false), Ok(()));
}

type Mutation = Box<dyn Fn(&mut GroupSpec)>;

#[test]
fn each_rule_names_its_field() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("properties.containers", Box::new(|s| s.containers.clear())),
        (
            "properties.containers[0].name",
            Box::new(|s| s.containers[0].name = "App".into()),
        ),
        (
            "properties.containers[0].name",
            Box::new(|s| s.containers[0].name = "init".into()),
        ),
        (
            "properties.initContainers[0].properties.image",
            Box::new(|s| s.init_containers[0].image = "BusyBox".into()),
        ),
        (
            "properties.containers[0].properties.command[2]",
            Box::new(|s| s.containers[0].command[2] = "a\0b".into()),
        ),
        (
            "properties.containers[0].properties.environmentVariables[0].name",
            Box::new(|s| s.containers[0].env[0].name = "1abc".into()),
        ),
        (
            "properties.containers[0].properties.environmentVariables[0].secureValue",
            Box::new(|s| {
                s.containers[0].env[0].secure = true;
                s.containers[0].env[0].value = "\0".into();
            }),
        ),
        (
            "properties.containers[0].properties.volumeMounts[1].mountPath",
            Box::new(|s| s.containers[0].volume_mounts[1].mount_path = "/cache".into()),
        ),
        (
            "properties.containers[0].properties.volumeMounts[0].mountPath",
            Box::new(|s| s.containers[0].volume_mounts[0].mount_path = "/".into()),
        ),
        (
            "properties.containers[0].properties.volumeMounts[0].name",
            Box::new(|s| s.containers[0].volume_mounts[0].name = "other".into()),
        ),
        (
            "properties.containers[0].properties.securityContext.capabilities.add[0]",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .capabilities_add = vec!["SYS_ADMIN".into()]
            }),
        ),
        (
            "properties.containers[0].properties.securityContext.privileged",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .privileged = Some(true)
            }),
        ),
        (
            "properties.volumes[1].gitRepo.repository",
            Box::new(|s| set_git(s, |g| g.repository = "file:///etc".into())),
        ),
        (
            "properties.volumes[1].gitRepo.directory",
            Box::new(|s| set_git(s, |g| g.directory = "/etc".into())),
        ),
        (
            "properties.volumes[1].gitRepo.revision",
            Box::new(|s| set_git(s, |g| g.revision = "--orphan".into())),
        ),
        (
            "properties.volumes[2].secret.a/b",
            Box::new(|s| {
                s.volumes[2].source = Some(Source::Secret(SecretVolume {
                    files: [("a/b".to_string(), Vec::new())].into(),
                }))
            }),
        ),
        (
            "properties.volumes[2].secret",
            Box::new(|s| {
                s.volumes[2].source = Some(Source::Secret(SecretVolume {
                    files: (0..3000)
                        .map(|i| (format!("f{i}"), vec![1u8; 4000]))
                        .collect(),
                }))
            }),
        ),
        (
            "properties.volumes[3].azureFile.shareName",
            Box::new(|s| set_share(s, |a| a.share_name = "../../..".into())),
        ),
        (
            "properties.volumes[3].azureFile.storageAccountName",
            Box::new(|s| set_share(s, |a| a.storage_account_name = "a/b".into())),
        ),
        (
            "properties.volumes[3].name",
            Box::new(|s| s.volumes[3].name = "cache".into()),
        ),
        (
            "properties.volumes[0]",
            Box::new(|s| s.volumes[0].source = None),
        ),
        (
            "properties.dnsConfig.searchDomains",
            Box::new(|s| {
                s.dns_config.as_mut().unwrap().search_domains = vec!["a\nnameserver 1.1.1.1".into()]
            }),
        ),
        (
            "properties.dnsConfig.options",
            Box::new(|s| s.dns_config.as_mut().unwrap().options = "x\ny".into()),
        ),
        (
            "properties.dnsConfig.nameServers[0]",
            Box::new(|s| s.dns_config.as_mut().unwrap().name_servers[0] = "dns".into()),
        ),
        (
            "properties.containers[0].properties.livenessProbe",
            Box::new(|s| live(s).http_get = readiness(s).http_get.clone()),
        ),
        (
            "properties.containers[0].properties.readinessProbe",
            Box::new(|s| readiness(s).http_get = None),
        ),
        (
            "properties.containers[0].properties.livenessProbe.exec.command",
            Box::new(|s| live(s).exec_command = vec!["a\0".into()]),
        ),
        (
            "properties.containers[0].properties.livenessProbe.exec.command",
            Box::new(|s| live(s).exec_command = vec!["x".into(); 257]),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.port",
            Box::new(|s| get(s).port = 70_000),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.port",
            Box::new(|s| get(s).port = 0),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.scheme",
            Box::new(|s| get(s).scheme = "gopher".into()),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.path",
            Box::new(|s| get(s).path = "/a HTTP/1.0\r\nHost: x".into()),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.path",
            Box::new(|s| get(s).path = "ready".into()),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.httpHeaders[0].name",
            Box::new(|s| {
                get(s).headers.insert("Bad Name".into(), "v".into());
            }),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.httpHeaders[0].value",
            Box::new(|s| {
                get(s)
                    .headers
                    .insert("X-A".into(), "v\r\nX-Injected: 1".into());
            }),
        ),
        (
            "properties.containers[0].properties.readinessProbe.httpGet.httpHeaders",
            Box::new(|s| {
                get(s).headers = (0..33).map(|i| (format!("X-{i}"), String::new())).collect();
            }),
        ),
        (
            "properties.containers[0].properties.livenessProbe.periodSeconds",
            Box::new(|s| live(s).period_seconds = 3601),
        ),
        (
            "properties.containers[0].properties.livenessProbe.initialDelaySeconds",
            Box::new(|s| live(s).initial_delay_seconds = 86_400),
        ),
        (
            "properties.containers[0].properties.readinessProbe.timeoutSeconds",
            Box::new(|s| readiness(s).timeout_seconds = 3601),
        ),
        (
            "properties.containers[0].properties.readinessProbe.failureThreshold",
            Box::new(|s| readiness(s).failure_threshold = 1001),
        ),
        (
            "properties.containers[0].properties.livenessProbe.successThreshold",
            Box::new(|s| live(s).success_threshold = 2),
        ),
    ];
    for (target, mutate) in cases {
        let mut spec = valid();
        mutate(&mut spec);
        assert_eq!(refused(&spec).target, target);
    }
}

fn live(spec: &mut GroupSpec) -> &mut Probe {
    spec.containers[0].liveness_probe.as_mut().unwrap()
}

fn readiness(spec: &mut GroupSpec) -> &mut Probe {
    spec.containers[0].readiness_probe.as_mut().unwrap()
}

fn get(spec: &mut GroupSpec) -> &mut HttpGet {
    readiness(spec).http_get.as_mut().unwrap()
}

fn set_git(spec: &mut GroupSpec, change: impl Fn(&mut GitRepo)) {
    if let Some(Source::GitRepo(git)) = spec.volumes[1].source.as_mut() {
        change(git);
    }
}

fn set_share(spec: &mut GroupSpec, change: impl Fn(&mut AzureFile)) {
    if let Some(Source::AzureFile(share)) = spec.volumes[3].source.as_mut() {
        change(share);
    }
}

#[test]
fn the_operator_may_allow_privileged_containers_and_any_capability() {
    let mut spec = valid();
    let sc = spec.containers[0].security_context.as_mut().unwrap();
    sc.privileged = Some(true);
    sc.capabilities_add = vec!["SYS_ADMIN".into()];
    assert!(admit(&spec, false).is_err());
    assert_eq!(admit(&spec, true), Ok(()));
}
