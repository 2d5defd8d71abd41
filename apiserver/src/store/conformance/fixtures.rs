//! What the cases build stores from: specs, groups, nodes, placements, operations, reports.

use std::collections::BTreeMap;

use crate::model::reported::{ContainerReport, ContainerRun, GroupPhase, ReportedStatus, RunState};
use crate::model::{ContainerSpec, GroupSpec, OsType, RestartPolicy, Size};
use crate::store::{
    GroupKey, GroupRecord, NewGroup, NodeRecord, NodeStatus, OperationKind, OperationRecord,
    OperationStatus, Placement, Store,
};

pub(crate) fn spec(cpu_millis: u64) -> GroupSpec {
    GroupSpec {
        os_type: OsType::Linux,
        restart_policy: RestartPolicy::Always,
        sku: "Standard".to_owned(),
        containers: vec![ContainerSpec {
            name: "c".to_owned(),
            image: "img".to_owned(),
            command: Vec::new(),
            ports: Vec::new(),
            env: Vec::new(),
            requests: Size {
                cpu_millis,
                memory_mib: 1024,
                gpu: 0,
            },
            limits: None,
            gpu_sku: None,
            volume_mounts: Vec::new(),
            liveness_probe: None,
            readiness_probe: None,
            security_context: None,
        }],
        init_containers: Vec::new(),
        volumes: Vec::new(),
        registry_credentials: Vec::new(),
        ip_address: None,
        dns_config: None,
        priority: None,
    }
}

/// A group `name` in `sub`/`rg` asking for `cpu_millis`, with a generous quota.
pub(crate) fn new_group(name: &str, cpu_millis: u64) -> NewGroup {
    NewGroup {
        id: uuid::Uuid::new_v4().to_string(),
        key: GroupKey::new("sub", "rg", name),
        resource_group_as: "rg".to_owned(),
        location: "local".to_owned(),
        tags: BTreeMap::new(),
        spec: spec(cpu_millis),
        sealed_spec: vec![1, 2, 3],
        fqdn: None,
        now_ms: 1,
        operation_id: uuid::Uuid::new_v4().to_string(),
        resource_id: format!("/x/{name}"),
        quota: (100, 100_000),
    }
}

pub(crate) fn node(id: &str, cpu_millis: u64) -> NodeRecord {
    NodeRecord {
        cordoned: false,
        draining: false,
        id: id.to_owned(),
        name: id.to_owned(),
        os_type: OsType::Linux,
        capacity: Size {
            cpu_millis,
            memory_mib: 64 * 1024,
            gpu: 0,
        },
        used: Size::default(),
        labels: BTreeMap::new(),
        agent_version: "t".to_owned(),
        status: NodeStatus::Ready,
        last_heartbeat_ms: 1,
        joined_ms: 1,
    }
}

/// Joins a Ready node `id` with `cpu_millis` (through a join token of its own).
pub(crate) async fn join(store: &dyn Store, id: &str, cpu_millis: u64) {
    let token = format!("token-{id}");
    store
        .insert_join_token(&token, "hash", 1, i64::MAX, 0)
        .await
        .unwrap();
    store
        .join_node(&token, "hash", &node(id, cpu_millis))
        .await
        .unwrap()
        .unwrap();
}

pub(crate) fn placement(g: &NewGroup, node_id: &str, generation: i64) -> Placement {
    Placement {
        group_id: g.id.clone(),
        node_id: node_id.to_owned(),
        requests: g.spec.requests(),
        generation,
    }
}

/// Creates `g` and places it on `node_id`.
pub(crate) async fn create_placed(store: &dyn Store, g: &NewGroup, node_id: &str) {
    store.create_group(g).await.unwrap();
    let placed = store
        .commit_placements(&[placement(g, node_id, 1)], 2)
        .await
        .unwrap();
    assert_eq!(placed.len(), 1, "{} is placed", g.key.name);
}

pub(crate) async fn group(store: &dyn Store, id: &str) -> GroupRecord {
    store.group_by_id(id).await.unwrap().unwrap()
}

pub(crate) async fn used_cpu(store: &dyn Store, node_id: &str) -> u64 {
    store.node(node_id).await.unwrap().unwrap().used.cpu_millis
}

pub(crate) fn operation(group: &GroupRecord, kind: OperationKind, now_ms: i64) -> OperationRecord {
    OperationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        subscription: group.subscription.clone(),
        group_id: group.id.clone(),
        resource_id: format!("/x/{}", group.name),
        kind,
        generation: group.generation,
        status: OperationStatus::Pending,
        error_code: None,
        error_message: None,
        started_ms: now_ms,
        ended_ms: None,
    }
}

/// A report of `group_id` at `generation` in `phase`, from the copy of its first placement.
pub(crate) fn report(group_id: &str, generation: i64, phase: GroupPhase) -> ReportedStatus {
    ReportedStatus {
        group_id: group_id.to_owned(),
        generation: generation as u64,
        phase,
        placement: 1,
        ..Default::default()
    }
}

/// A group `name` asking for `cpu_millis` under `policy`.
pub(crate) fn new_group_with(name: &str, cpu_millis: u64, policy: RestartPolicy) -> NewGroup {
    let mut g = new_group(name, cpu_millis);
    g.spec.restart_policy = policy;
    g
}

/// A report of a running copy of placement `placement`: started at `started_ms` and seen at
/// `observed_ms` (node clock), finished at `finished_ms` if not 0.
pub(crate) fn run_report(
    group_id: &str,
    placement: i64,
    (started_ms, observed_ms, finished_ms): (i64, i64, i64),
) -> ReportedStatus {
    let phase = if finished_ms > 0 {
        GroupPhase::Stopped
    } else {
        GroupPhase::Running
    };
    ReportedStatus {
        placement: placement as u64,
        run_started_unix_ms: started_ms,
        observed_unix_ms: observed_ms,
        run_finished_unix_ms: finished_ms,
        ..report(group_id, 1, phase)
    }
}

/// A report whose one container has started (at node time 5).
pub(crate) fn ran(status: ReportedStatus, state: RunState) -> ReportedStatus {
    ReportedStatus {
        containers: vec![ContainerReport {
            name: "c".to_owned(),
            current: Some(ContainerRun {
                state,
                start_time_unix_ms: 5,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..status
    }
}
