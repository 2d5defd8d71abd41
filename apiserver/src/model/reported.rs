//! What a node reported about a group, in the control plane's own types: the store keeps it, the
//! renderer and DNS read it. Converted from the node protocol at the gateway (`From<node::GroupStatus>`)
//! and back where a backend keeps the protocol's encoding.

use berth_proto::node;
use serde::{Deserialize, Serialize};

/// The group as a whole, as its node sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupPhase {
    /// The node sent no phase (an older or broken agent).
    #[default]
    Unspecified,
    /// Accepted by the node, images being pulled or sandbox being made.
    Pending,
    Running,
    /// Every container exited 0 under restart policy Never/OnFailure.
    Succeeded,
    /// A container failed under restart policy Never, or the group could not be created.
    Failed,
    /// Stopped on request: nothing runs.
    Stopped,
    /// Torn down; the last status a node sends for a group.
    Removed,
}

/// One run of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunState {
    #[default]
    Waiting,
    Running,
    Terminated,
}

/// How serious an event is (ACI's event `type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[default]
    Normal,
    Warning,
}

impl EventKind {
    /// ACI's string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRun {
    pub state: RunState,
    /// Node clock; 0: not started.
    pub start_time_unix_ms: i64,
    /// Node clock; 0: not finished.
    pub finish_time_unix_ms: i64,
    pub exit_code: i32,
    pub detail_status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedEvent {
    pub name: String,
    pub message: String,
    pub kind: EventKind,
    pub count: u32,
    pub first_timestamp_unix_ms: i64,
    pub last_timestamp_unix_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerReport {
    pub name: String,
    pub init: bool,
    pub restart_count: u32,
    pub current: Option<ContainerRun>,
    pub previous: Option<ContainerRun>,
    pub events: Vec<ReportedEvent>,
    /// Running, and passing its readiness probe if it has one.
    pub ready: bool,
}

/// The observed state of one group on its node, always whole (never a patch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedStatus {
    pub group_id: String,
    /// The generation of the assignment this status is about.
    pub generation: u64,
    pub phase: GroupPhase,
    /// Comma-separated addresses; empty: none.
    pub ip: String,
    pub containers: Vec<ContainerReport>,
    pub events: Vec<ReportedEvent>,
    /// Node clock when this status was observed.
    pub observed_unix_ms: i64,
    /// Node clock when the current run started pulling images (billing starts here); 0: not started.
    pub run_started_unix_ms: i64,
    /// Node clock when the whole group stopped (billing ends here); 0 while anything runs.
    pub run_finished_unix_ms: i64,
    /// The placement epoch of the copy reported (`GroupRecord::placement` when it was accepted).
    pub placement: u64,
    /// Some app container with a readiness probe is not ready: no DNS record is published.
    pub not_ready: bool,
}

impl ReportedStatus {
    /// The addresses the node reported that parse.
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.ip
            .split(',')
            .filter_map(|ip| ip.trim().parse().ok())
            .collect()
    }
}

impl From<node::GroupPhase> for GroupPhase {
    fn from(phase: node::GroupPhase) -> Self {
        match phase {
            node::GroupPhase::Unspecified => GroupPhase::Unspecified,
            node::GroupPhase::Pending => GroupPhase::Pending,
            node::GroupPhase::Running => GroupPhase::Running,
            node::GroupPhase::Succeeded => GroupPhase::Succeeded,
            node::GroupPhase::Failed => GroupPhase::Failed,
            node::GroupPhase::Stopped => GroupPhase::Stopped,
            node::GroupPhase::Removed => GroupPhase::Removed,
        }
    }
}

impl From<GroupPhase> for node::GroupPhase {
    fn from(phase: GroupPhase) -> Self {
        match phase {
            GroupPhase::Unspecified => node::GroupPhase::Unspecified,
            GroupPhase::Pending => node::GroupPhase::Pending,
            GroupPhase::Running => node::GroupPhase::Running,
            GroupPhase::Succeeded => node::GroupPhase::Succeeded,
            GroupPhase::Failed => node::GroupPhase::Failed,
            GroupPhase::Stopped => node::GroupPhase::Stopped,
            GroupPhase::Removed => node::GroupPhase::Removed,
        }
    }
}

impl From<&node::ContainerRun> for ContainerRun {
    fn from(run: &node::ContainerRun) -> Self {
        ContainerRun {
            state: match run.state() {
                node::ContainerState::Running => RunState::Running,
                node::ContainerState::Terminated => RunState::Terminated,
                node::ContainerState::Waiting | node::ContainerState::Unspecified => {
                    RunState::Waiting
                }
            },
            start_time_unix_ms: run.start_time_unix_ms,
            finish_time_unix_ms: run.finish_time_unix_ms,
            exit_code: run.exit_code,
            detail_status: run.detail_status.clone(),
        }
    }
}

impl From<&ContainerRun> for node::ContainerRun {
    fn from(run: &ContainerRun) -> Self {
        node::ContainerRun {
            state: match run.state {
                RunState::Waiting => node::ContainerState::Waiting,
                RunState::Running => node::ContainerState::Running,
                RunState::Terminated => node::ContainerState::Terminated,
            } as i32,
            start_time_unix_ms: run.start_time_unix_ms,
            finish_time_unix_ms: run.finish_time_unix_ms,
            exit_code: run.exit_code,
            detail_status: run.detail_status.clone(),
        }
    }
}

impl From<&node::Event> for ReportedEvent {
    fn from(e: &node::Event) -> Self {
        ReportedEvent {
            name: e.name.clone(),
            message: e.message.clone(),
            // A node's own words are not trusted to be one of ACI's two.
            kind: if e.r#type == "Warning" {
                EventKind::Warning
            } else {
                EventKind::Normal
            },
            count: e.count,
            first_timestamp_unix_ms: e.first_timestamp_unix_ms,
            last_timestamp_unix_ms: e.last_timestamp_unix_ms,
        }
    }
}

impl From<&ReportedEvent> for node::Event {
    fn from(e: &ReportedEvent) -> Self {
        node::Event {
            name: e.name.clone(),
            message: e.message.clone(),
            r#type: e.kind.as_str().to_owned(),
            count: e.count,
            first_timestamp_unix_ms: e.first_timestamp_unix_ms,
            last_timestamp_unix_ms: e.last_timestamp_unix_ms,
        }
    }
}

impl From<&node::ContainerStatus> for ContainerReport {
    fn from(c: &node::ContainerStatus) -> Self {
        ContainerReport {
            name: c.name.clone(),
            init: c.init,
            restart_count: c.restart_count,
            current: c.current.as_ref().map(ContainerRun::from),
            previous: c.previous.as_ref().map(ContainerRun::from),
            events: c.events.iter().map(ReportedEvent::from).collect(),
            ready: c.ready,
        }
    }
}

impl From<&ContainerReport> for node::ContainerStatus {
    fn from(c: &ContainerReport) -> Self {
        node::ContainerStatus {
            name: c.name.clone(),
            init: c.init,
            restart_count: c.restart_count,
            current: c.current.as_ref().map(node::ContainerRun::from),
            previous: c.previous.as_ref().map(node::ContainerRun::from),
            events: c.events.iter().map(node::Event::from).collect(),
            ready: c.ready,
        }
    }
}

impl From<&node::GroupStatus> for ReportedStatus {
    fn from(s: &node::GroupStatus) -> Self {
        ReportedStatus {
            group_id: s.group_id.clone(),
            generation: s.generation,
            phase: s.phase().into(),
            ip: s.ip.clone(),
            containers: s.containers.iter().map(ContainerReport::from).collect(),
            events: s.events.iter().map(ReportedEvent::from).collect(),
            observed_unix_ms: s.observed_unix_ms,
            run_started_unix_ms: s.run_started_unix_ms,
            run_finished_unix_ms: s.run_finished_unix_ms,
            placement: s.placement,
            not_ready: s.not_ready,
        }
    }
}

impl From<node::GroupStatus> for ReportedStatus {
    fn from(s: node::GroupStatus) -> Self {
        ReportedStatus::from(&s)
    }
}

impl From<&ReportedStatus> for node::GroupStatus {
    fn from(s: &ReportedStatus) -> Self {
        node::GroupStatus {
            group_id: s.group_id.clone(),
            generation: s.generation,
            phase: node::GroupPhase::from(s.phase) as i32,
            ip: s.ip.clone(),
            containers: s
                .containers
                .iter()
                .map(node::ContainerStatus::from)
                .collect(),
            events: s.events.iter().map(node::Event::from).collect(),
            observed_unix_ms: s.observed_unix_ms,
            run_started_unix_ms: s.run_started_unix_ms,
            run_finished_unix_ms: s.run_finished_unix_ms,
            placement: s.placement,
            not_ready: s.not_ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_survives_the_protocol_both_ways() {
        let run = ContainerRun {
            state: RunState::Terminated,
            start_time_unix_ms: 5,
            finish_time_unix_ms: 9,
            exit_code: 3,
            detail_status: "Error".to_owned(),
        };
        let event = ReportedEvent {
            name: "Pulled".to_owned(),
            message: "pulled".to_owned(),
            kind: EventKind::Warning,
            count: 2,
            first_timestamp_unix_ms: 1,
            last_timestamp_unix_ms: 4,
        };
        let status = ReportedStatus {
            placement: 0,
            group_id: "g".to_owned(),
            generation: 7,
            phase: GroupPhase::Failed,
            ip: "10.0.0.1".to_owned(),
            containers: vec![ContainerReport {
                name: "c".to_owned(),
                init: true,
                restart_count: 4,
                current: Some(run.clone()),
                previous: Some(ContainerRun {
                    state: RunState::Running,
                    ..run
                }),
                events: vec![event.clone()],
                ready: true,
            }],
            events: vec![event],
            not_ready: true,
            observed_unix_ms: 10,
            run_started_unix_ms: 2,
            run_finished_unix_ms: 9,
        };
        let wire = node::GroupStatus::from(&status);
        assert_eq!(ReportedStatus::from(wire), status);
    }

    #[test]
    fn a_node_cannot_invent_event_kinds() {
        let wire = node::Event {
            r#type: "Critical".to_owned(),
            ..Default::default()
        };
        assert_eq!(ReportedEvent::from(&wire).kind, EventKind::Normal);
    }
}
