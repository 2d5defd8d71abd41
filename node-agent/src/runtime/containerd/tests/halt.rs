//! A group removed while it is being brought up leaves nothing behind: the step in flight (a
//! network namespace being pinned, CNI attaching, a container or task being created, an init
//! container running) finishes before the teardown, so nothing it makes appears after it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::node::{
    Container, ContainerState, DesiredPhase, GroupAssignment, GroupSpec, GroupStatus,
};

use super::{PATIENCE, TestNode};
use crate::runtime::Runtime as _;
use crate::runtime::containerd::{LABEL_GROUP, group, network};

fn assignment(spec: GroupSpec) -> GroupAssignment {
    GroupAssignment {
        placement: 1,
        group_id: spec.name.clone(),
        generation: 1,
        phase: DesiredPhase::Running as i32,
        spec: Some(spec),
    }
}

/// Starts `spec`, waits until `moment` holds of its status (checked every millisecond), removes it
/// and waits until the runtime has forgotten it.
async fn remove_when(node: &TestNode, spec: GroupSpec, moment: impl Fn(&GroupStatus) -> bool) {
    let group_id = spec.name.clone();
    node.runtime.start(&assignment(spec)).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = node.runtime.status(&group_id).unwrap();
        if moment(&status) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group_id}: the moment never came: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.runtime.remove(&group_id).await.unwrap();
    while node.runtime.status(&group_id).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group_id} is never removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What of group `group_id` is still on the node: containers, tasks, network namespace mounts, CNI
/// results and leases, state.
async fn leftovers(node: &TestNode, group_id: &str) -> Vec<String> {
    let inner = &node.runtime.inner;
    let mut left = Vec::new();
    for container in inner
        .cd
        .containers_labelled(LABEL_GROUP, Some(group_id))
        .await
        .unwrap()
    {
        left.push(format!("container {}", container.id));
    }
    for (init, index) in [(true, 0), (false, 0), (false, 1)] {
        let id = group::container_id(group_id, init, index);
        if let Some(task) = inner.cd.task(&id).await.unwrap() {
            left.push(format!("task {id} (pid {})", task.pid));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        let point = line.split(' ').nth(4).unwrap_or_default();
        if point.starts_with(&*node.state.to_string_lossy()) && point.contains(group_id) {
            left.push(format!("mount {point}"));
        }
    }
    if inner.network.sandboxes().iter().any(|s| s == group_id) {
        left.push("sandbox state (netns file or CNI result)".into());
    }
    // host-local's leases name the sandbox inside; results and namespaces by their file name.
    let mut pending = vec![node.state.join("runtime").join("network")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().contains(group_id)
                || std::fs::read(&path)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(group_id))
            {
                left.push(format!("network file {}", path.display()));
            }
        }
    }
    // The bridge plugin's masquerading rules carry the sandbox's id in a comment.
    for table in ["nat", "filter"] {
        let saved = std::process::Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .unwrap();
        for rule in String::from_utf8_lossy(&saved.stdout).lines() {
            if rule.contains(group_id) {
                left.push(format!("iptables -t {table}: {rule}"));
            }
        }
    }
    let dir = node.state.join("runtime").join("groups").join(group_id);
    if dir.exists() {
        left.push(format!("state {}", dir.display()));
    }
    left
}

fn has_event(status: &GroupStatus, name: &str) -> bool {
    status
        .containers
        .iter()
        .any(|c| c.events.iter().any(|e| e.name == name))
}

/// A `runc` that, asked to start a task, first touches `mark` and waits `delay_secs`: a start the
/// agent has sent is still in flight for that long.
fn slow_start_runc(dir: &Path, mark: &Path, delay_secs: u32) {
    let real = [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
    .expect("runc is installed (scripts/setup)");
    let script = format!(
        "#!/bin/sh\nfor arg in \"$@\"; do\n  if [ \"$arg\" = start ]; then : > '{}'; sleep {delay_secs}; break; fi\ndone\nexec {real} \"$@\"\n",
        mark.display()
    );
    let path = dir.join("runc");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The node's CNI plugins in `dir`, but a `bridge` whose ADD first touches `mark` and runs the real
/// one `delay_secs` later in a child process, so that, like the IPAM plugin the real bridge runs, it
/// finishes even if the plugin the agent started is killed.
fn slow_bridge_plugins(dir: &Path, mark: &Path, delay_secs: u32) -> PathBuf {
    let real = network::default_cni_bin_dir();
    let plugins = dir.join("cni");
    std::fs::create_dir_all(&plugins).unwrap();
    for entry in std::fs::read_dir(&real).unwrap().flatten() {
        if entry.file_name() != "bridge" {
            std::os::unix::fs::symlink(entry.path(), plugins.join(entry.file_name())).unwrap();
        }
    }
    let script = format!(
        "#!/bin/sh
if [ \"$CNI_COMMAND\" = ADD ]; then
  : > '{mark}'
  exec 3<&0
  ( /usr/bin/sleep {delay_secs}; exec '{bridge}' <&3 ) &
  wait $!
  exit $?
fi
exec '{bridge}'
",
        mark = mark.display(),
        bridge = real.join("bridge").display(),
    );
    let bridge = plugins.join("bridge");
    std::fs::write(&bridge, script).unwrap();
    std::fs::set_permissions(&bridge, std::fs::Permissions::from_mode(0o755)).unwrap();
    plugins
}

/// One way to catch a bring-up mid-way: the group, and the moment it is removed at.
type Case = (GroupSpec, Box<dyn Fn(&GroupStatus) -> bool>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_removed_mid_bring_up_leaves_nothing_behind() {
    let wrapper = tempfile::tempdir().unwrap();
    let mark = wrapper.path().join("start-requested");
    slow_start_runc(wrapper.path(), &mark, 3);
    let attaching = wrapper.path().join("add-requested");
    let plugins = slow_bridge_plugins(wrapper.path(), &attaching, 2);
    let node = TestNode::start_with_path(Some(wrapper.path()), |c| c.cni_bin_dir = plugins).await;
    let mut cases: Vec<Case> = Vec::new();
    for n in 0..2 {
        // The pull is over: the namespace is being made and CNI attaches.
        let spec = node.group(&format!("pulled{n}"), &["sleep", "60"]);
        cases.push((spec, Box::new(|s| has_event(s, "Pulled"))));
        // A container record exists; its task is being created while CNI attaches.
        let spec = node.group(&format!("created{n}"), &["sleep", "60"]);
        cases.push((spec, Box::new(|s| has_event(s, "Created"))));
    }
    // CNI's bridge plugin is attaching the sandbox.
    let added = attaching.clone();
    cases.push((
        node.group("attaching", &["sleep", "60"]),
        Box::new(move |_| added.exists()),
    ));
    // containerd has been asked to start the task (runc start is under way).
    let requested = mark.clone();
    cases.push((
        node.group("starting", &["sleep", "60"]),
        Box::new(move |_| requested.exists()),
    ));
    // An init container runs (the bring-up waits for it to exit).
    let mut spec = node.group("initing", &["sleep", "60"]);
    spec.init_containers = vec![Container {
        name: "init".into(),
        image: node.image.clone(),
        command: vec!["sleep".into(), "60".into()],
        ..Default::default()
    }];
    cases.push((
        spec,
        Box::new(|s| {
            s.containers.first().is_some_and(|c| {
                c.current
                    .as_ref()
                    .is_some_and(|r| r.state == ContainerState::Running as i32)
            })
        }),
    ));

    let mut found = Vec::new();
    for (spec, moment) in cases {
        let _ = std::fs::remove_file(&mark);
        let _ = std::fs::remove_file(&attaching);
        let name = spec.name.clone();
        remove_when(&node, spec, moment).await;
        // What a step in flight would still make lands within moments (a start: 3 s).
        tokio::time::sleep(Duration::from_secs(5)).await;
        for left in leftovers(&node, &name).await {
            found.push(format!("{name}: {left}"));
        }
    }
    assert!(found.is_empty(), "left behind:\n{}", found.join("\n"));
}
