//! Samples of a real group: a busy container's CPU and memory from its cgroup, the group's network
//! counters from its namespace, and rates over the interval between two samples.

use std::time::Duration;

use berth_proto::node::{DesiredPhase, GroupAssignment, GroupPhase, GroupSample};

use super::{PATIENCE, TestNode};
use crate::runtime::Runtime as _;

/// Samples every `interval` until `done` holds of group `group`'s sample, or panics after PATIENCE.
async fn sample_until(
    node: &TestNode,
    group: &str,
    interval: Duration,
    done: impl Fn(&GroupSample) -> bool,
) -> GroupSample {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(interval).await;
        let samples = node.runtime.sample().await;
        if let Some(sample) = samples.into_iter().find(|s| s.group_id == group) {
            if done(&sample) {
                return sample;
            }
            last = Some(sample);
        }
    }
    panic!("group {group} never sampled as expected; last: {last:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_container_is_measured_with_its_groups_network() {
    let node = TestNode::start(|_| {}).await;
    let spec = node.group("busy", &["sh", "-c", "while :; do :; done"]);
    let assignment = GroupAssignment {
        placement: 3,
        group_id: "busy".into(),
        generation: 1,
        phase: DesiredPhase::Running as i32,
        spec: Some(spec),
    };
    node.runtime.start(&assignment).await.unwrap();
    let status = node
        .wait_for("busy", "ran", |s| s.phase() == GroupPhase::Running)
        .await;

    // The first sample has counters but no interval yet: rates 0.
    let first = sample_until(&node, "busy", Duration::ZERO, |_| true).await;
    assert_eq!(first.placement, 3);
    assert_eq!(first.containers.len(), 1, "{first:#?}");
    assert_eq!(first.containers[0].name, "app");
    assert_eq!(first.containers[0].cpu_millicores, 0.0);
    assert_eq!(first.rx_bytes_per_second, 0.0);

    // Traffic into the group's namespace: the node reaches its groups unfiltered.
    let pinged = std::process::Command::new("busybox")
        .args(["ping", "-c", "3", "-i", "0.2", "-W", "2", &status.ip])
        .output()
        .unwrap();
    assert!(pinged.status.success(), "{pinged:?}");

    // A spinning shell uses most of a core (the machine is shared: more than a tenth of one).
    let second = sample_until(&node, "busy", Duration::from_secs(1), |s| {
        s.containers
            .first()
            .is_some_and(|c| c.cpu_millicores > 100.0)
    })
    .await;
    let app = &second.containers[0];
    assert!(
        app.cpu_usage_ns > first.containers[0].cpu_usage_ns,
        "{second:#?}"
    );
    assert!(app.cpu_millicores < 64_000.0, "{second:#?}");
    assert!(app.memory_working_set_bytes > 0, "{second:#?}");
    assert!(second.observed_unix_ms >= first.observed_unix_ms);
    // Three pings of 84 bytes in, three replies out, at least.
    assert!(
        second.rx_bytes >= first.rx_bytes + 3 * 84,
        "{first:#?} {second:#?}"
    );
    assert!(
        second.tx_bytes >= first.tx_bytes + 3 * 84,
        "{first:#?} {second:#?}"
    );

    // Stopped: nothing runs, nothing is sampled.
    node.runtime.stop(&assignment).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while node.runtime.status("busy").map(|s| s.phase()) != Some(GroupPhase::Stopped) {
        assert!(tokio::time::Instant::now() < deadline, "never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = node.runtime.sample().await;
    assert!(after.iter().all(|s| s.group_id != "busy"), "{after:#?}");
}
