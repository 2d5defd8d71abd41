//! [`Runtime::sample`](crate::runtime::Runtime::sample) for containerd: what each running app
//! container of each group has used (its cgroup, see [`cgroup`]) and what the group's network
//! namespace has carried (`/proc/<pid>/net/dev` of one of its processes: every container of a
//! group shares one namespace), with rates over the interval since the previous sample ([`rates`]).
//!
//! - `parse`: the counter files' formats, pure.
//! - `rates`: rates from cumulative counters, and the previous readings kept between samples.
//! - `cgroup`: finding the cgroup hierarchies and reading a container's cgroup (v2, or v1).

mod cgroup;
mod parse;
mod rates;

use std::sync::{Mutex, PoisonError};

use berth_proto::clock::now_ms;
use berth_proto::node::{ContainerSample, ContainerState, GroupSample, GroupStatus};

use self::cgroup::Hierarchies;
use self::rates::{Counter, Rates, Reading, Run};

/// The previous readings of one runtime's counters.
#[derive(Debug, Default)]
pub(super) struct Sampler {
    rates: Mutex<Rates>,
}

impl Sampler {
    /// Measures every group in `statuses` with an app container running, whose cgroups are at
    /// `/<cgroup_parent>/<group>/<container>`. Reads files only (the caller runs it off the async
    /// workers).
    pub(super) fn sample(&self, cgroup_parent: &str, statuses: &[GroupStatus]) -> Vec<GroupSample> {
        let hierarchies = Hierarchies::of_host();
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let samples: Vec<GroupSample> = statuses
            .iter()
            .filter_map(|status| sample_group(&hierarchies, &mut rates, cgroup_parent, status))
            .collect();
        rates.retain(|counter| {
            let (group, container) = match counter {
                Counter::Cpu { group, container } => (group, Some(container)),
                Counter::Rx { group } | Counter::Tx { group } => (group, None),
            };
            samples.iter().any(|sample| {
                sample.group_id == *group
                    && container
                        .is_none_or(|name| sample.containers.iter().any(|c| c.name == *name))
            })
        });
        samples
    }
}

/// One group's sample, if any of its app containers runs and could be read.
fn sample_group(
    hierarchies: &Hierarchies,
    rates: &mut Rates,
    cgroup_parent: &str,
    status: &GroupStatus,
) -> Option<GroupSample> {
    let mut containers = Vec::new();
    let mut pid = None;
    for container in status.containers.iter().filter(|c| !c.init) {
        let Some(current) = container
            .current
            .as_ref()
            .filter(|run| run.state == ContainerState::Running as i32)
        else {
            continue;
        };
        let path = format!("/{cgroup_parent}/{}/{}", status.group_id, container.name);
        let Some(usage) = hierarchies.read(&path) else {
            continue;
        };
        let reading = Reading {
            run: Run(
                u64::from(container.restart_count),
                current.start_time_unix_ms,
            ),
            value: usage.cpu_usage_ns,
            at_ms: now_ms(),
        };
        let counter = Counter::Cpu {
            group: status.group_id.clone(),
            container: container.name.clone(),
        };
        let cpu_millicores = rates::millicores(rates.observe(counter, reading));
        pid = pid.or(usage.pid);
        containers.push(ContainerSample {
            name: container.name.clone(),
            cpu_usage_ns: usage.cpu_usage_ns,
            cpu_millicores,
            memory_working_set_bytes: usage.memory_working_set_bytes,
        });
    }
    if containers.is_empty() {
        return None;
    }
    let observed_unix_ms = now_ms();
    let net = pid
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok())
        .and_then(|text| parse::net_dev(&text));
    let mut sample = GroupSample {
        group_id: status.group_id.clone(),
        placement: status.placement,
        observed_unix_ms,
        containers,
        ..Default::default()
    };
    if let Some(net) = net {
        // A new run of the group has a new sandbox, whose counters start at 0.
        let run = Run(status.placement, status.run_started_unix_ms);
        let reading = |value| Reading {
            run,
            value,
            at_ms: observed_unix_ms,
        };
        let group = || status.group_id.clone();
        sample.rx_bytes = net.rx_bytes;
        sample.tx_bytes = net.tx_bytes;
        sample.rx_bytes_per_second =
            rates.observe(Counter::Rx { group: group() }, reading(net.rx_bytes));
        sample.tx_bytes_per_second =
            rates.observe(Counter::Tx { group: group() }, reading(net.tx_bytes));
    }
    Some(sample)
}
