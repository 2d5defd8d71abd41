//! What the worker does with probe verdicts, on a real node: readiness sets the container's `ready`
//! and the group's `not_ready`, a failed liveness probe kills the task and the restart policy decides
//! (a restart counted under `Always`, none under `Never`). The verdicts are sent as a prober would
//! send them (the probes themselves wait an hour, so none of their own interferes).

use std::time::Duration;

use berth_proto::node::{ContainerState, GroupPhase, GroupStatus, Probe};

use super::{TestNode, events};
use crate::runtime::containerd::group::{self, Command};
use crate::runtime::containerd::probe::{ProbeKind, Verdict};

fn quiet_probe() -> Probe {
    Probe {
        exec_command: vec!["true".into()],
        initial_delay_seconds: 3600,
        period_seconds: 10,
        failure_threshold: 3,
        success_threshold: 1,
        timeout_seconds: 1,
        ..Default::default()
    }
}

async fn start(node: &TestNode, name: &str, policy: &str) {
    let mut spec = node.group(name, &["sleep", "3600"]);
    spec.restart_policy = policy.into();
    spec.containers[0].liveness_probe = Some(quiet_probe());
    spec.containers[0].readiness_probe = Some(quiet_probe());
    node.assign(spec, 1).await;
}

fn running(status: &GroupStatus) -> bool {
    status.containers.first().is_some_and(|c| {
        c.current
            .as_ref()
            .is_some_and(|r| r.state == ContainerState::Running as i32)
    })
}

/// The pid of group `name`'s app task.
async fn pid(node: &TestNode, name: &str) -> u32 {
    let id = group::container_id(name, false, 0);
    node.runtime.inner.cd.task(&id).await.unwrap().unwrap().pid
}

fn probed(node: &TestNode, name: &str, pid: u32, kind: ProbeKind, verdict: Verdict) {
    let id = group::container_id(name, false, 0);
    assert!(node.runtime.send(
        name,
        Command::Probed {
            id,
            pid,
            kind,
            verdict
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_verdicts_set_readiness_and_a_failed_liveness_probe_restarts_by_the_policy() {
    let node = TestNode::start(|c| {
        c.restart_backoff = Duration::from_millis(200);
        c.stop_grace = Duration::from_secs(1);
    })
    .await;
    start(&node, "live", "Always").await;
    let status = node.wait_for("live", "runs", running).await;
    assert!(
        !status.containers[0].ready,
        "not ready before its probe passes"
    );
    assert!(status.not_ready);

    let first = pid(&node, "live").await;
    probed(
        &node,
        "live",
        first,
        ProbeKind::Readiness,
        Verdict::Ready {
            ready: true,
            output: String::new(),
        },
    );
    let status = node
        .wait_for("live", "ready", |s| s.containers[0].ready)
        .await;
    assert!(!status.not_ready);

    let output = "connection refused".to_string();
    probed(
        &node,
        "live",
        first,
        ProbeKind::Readiness,
        Verdict::Ready {
            ready: false,
            output,
        },
    );
    let status = node.wait_for("live", "not ready", |s| s.not_ready).await;
    assert!(!status.containers[0].ready);
    assert!(events(&status).contains("Unhealthy: Readiness probe failed: connection refused"));

    // A verdict about an earlier task changes nothing.
    let output = "stale".to_string();
    probed(
        &node,
        "live",
        first + 1,
        ProbeKind::Liveness,
        Verdict::Unhealthy { output },
    );

    let output = "exit status 1".to_string();
    probed(
        &node,
        "live",
        first,
        ProbeKind::Liveness,
        Verdict::Unhealthy { output },
    );
    let status = node
        .wait_for("live", "restarted", |s| {
            s.containers[0].restart_count == 1 && running(s)
        })
        .await;
    let all = events(&status);
    assert!(
        all.contains("Unhealthy: Liveness probe failed: exit status 1"),
        "{all}"
    );
    assert!(
        all.contains("Killing: Container app failed liveness probe, will be restarted"),
        "{all}"
    );
    assert!(!all.contains("stale"), "{all}");
    let previous = status.containers[0].previous.clone().unwrap();
    assert_eq!(previous.state, ContainerState::Terminated as i32);
    assert_ne!(previous.exit_code, 0);
    assert_ne!(pid(&node, "live").await, first);
    assert_eq!(status.phase(), GroupPhase::Running);
    assert!(
        status.not_ready,
        "a new task is not ready until its probe passes"
    );

    // Under Never, the policy wins: killed, not restarted.
    start(&node, "once", "Never").await;
    node.wait_for("once", "runs", running).await;
    let first = pid(&node, "once").await;
    let output = "timed out".to_string();
    probed(
        &node,
        "once",
        first,
        ProbeKind::Liveness,
        Verdict::Unhealthy { output },
    );
    let status = node
        .wait_for("once", "ends", |s| s.phase() == GroupPhase::Failed)
        .await;
    let all = events(&status);
    assert!(
        all.contains("Killing: Container app failed liveness probe, will be killed"),
        "{all}"
    );
    assert_eq!(status.containers[0].restart_count, 0);
    let current = status.containers[0].current.clone().unwrap();
    assert_eq!(current.state, ContainerState::Terminated as i32);
    assert!(status.not_ready);
}
