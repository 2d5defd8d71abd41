//! Node reports: only the assigned node's, at the current generation or an older one, count; they
//! move the provisioning state and finish operations.

use std::sync::Arc;

use super::fixtures::{create_placed, group, join, new_group, operation, ran, report};
use crate::model::reported::{EventKind, GroupPhase, ReportedEvent, ReportedStatus, RunState};
use crate::store::{
    NodeReport, OperationKind, OperationStatus, ProvisioningState, StatusOutcome, Store,
};

fn applied(state: ProvisioningState) -> StatusOutcome {
    StatusOutcome::Applied {
        provisioning_state: state,
    }
}

pub(crate) async fn reports_from_the_wrong_node_or_an_old_generation_are_ignored(
    store: Arc<dyn Store>,
) {
    join(&*store, "n1", 4000).await;
    join(&*store, "n2", 4000).await;
    let g = new_group("r", 1000);
    create_placed(&*store, &g, "n1").await;
    let running = report(&g.id, 1, GroupPhase::Running);
    assert_eq!(
        store.apply_status("n2", &running, 3).await.unwrap(),
        StatusOutcome::Ignored
    );
    assert_eq!(
        store
            .apply_status("n1", &report(&g.id, 0, GroupPhase::Running), 3)
            .await
            .unwrap(),
        StatusOutcome::Ignored,
        "generation 0 is older than the group's first"
    );
    assert_eq!(group(&*store, &g.id).await.status, None);
    let outcomes = store
        .apply_statuses(
            &[
                NodeReport {
                    node_id: "n1".to_owned(),
                    seq: 1,
                    status: running.clone(),
                },
                NodeReport {
                    node_id: "n2".to_owned(),
                    seq: 1,
                    status: running.clone(),
                },
                NodeReport {
                    node_id: "n1".to_owned(),
                    seq: 2,
                    status: running.clone(),
                },
            ],
            &[],
            4,
        )
        .await
        .unwrap();
    // Reports are whole: the last of a group answers for all of its batch.
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[2], applied(ProvisioningState::Succeeded));
    assert_eq!(group(&*store, &g.id).await.status, Some(running));
    let op = store.operation(&g.operation_id).await.unwrap().unwrap();
    assert_eq!(
        (op.status, op.ended_ms),
        (OperationStatus::Succeeded, Some(4))
    );
    // A report about a group that is gone is ignored.
    assert_eq!(
        store
            .apply_status("n1", &report("gone", 1, GroupPhase::Running), 5)
            .await
            .unwrap(),
        StatusOutcome::Ignored
    );
}

pub(crate) async fn reports_move_provisioning_and_finish_operations(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("p", 1000);
    create_placed(&*store, &g, "n1").await;
    let event = ReportedEvent {
        name: "Pulling".to_owned(),
        message: "pulling img".to_owned(),
        kind: EventKind::Normal,
        count: 1,
        first_timestamp_unix_ms: 3,
        last_timestamp_unix_ms: 3,
    };
    let pulling = ReportedStatus {
        events: vec![event],
        ..report(&g.id, 1, GroupPhase::Pending)
    };
    assert_eq!(
        store.apply_status("n1", &pulling, 3).await.unwrap(),
        applied(ProvisioningState::Creating)
    );
    assert_eq!(group(&*store, &g.id).await.status, Some(pulling));
    let op = store.operation(&g.operation_id).await.unwrap().unwrap();
    assert_eq!(op.status, OperationStatus::Pending, "still creating");

    // A restart's operation waits for a report of its generation, not the old one.
    let before = group(&*store, &g.id).await;
    let restart = operation(&before, OperationKind::Restart, 4);
    store.restart_group(&g.id, &restart, 4).await.unwrap();
    let generation = group(&*store, &g.id).await.generation;
    assert_eq!(generation, before.generation + 1);
    let old = ran(report(&g.id, 1, GroupPhase::Running), RunState::Running);
    assert_eq!(
        store.apply_status("n1", &old, 5).await.unwrap(),
        StatusOutcome::Ignored,
        "a report of the generation before the restart"
    );
    assert_eq!(
        store.operation(&restart.id).await.unwrap().unwrap().status,
        OperationStatus::Pending
    );
    let new = ran(
        report(&g.id, generation, GroupPhase::Running),
        RunState::Running,
    );
    assert_eq!(
        store.apply_status("n1", &new, 6).await.unwrap(),
        applied(ProvisioningState::Succeeded)
    );
    for id in [&restart.id, &g.operation_id] {
        assert_eq!(
            store.operation(id).await.unwrap().unwrap().status,
            OperationStatus::Succeeded
        );
    }

    // A group whose containers ran and then failed was deployed: Succeeded, its state Failed.
    let crashed = ran(
        report(&g.id, generation, GroupPhase::Failed),
        RunState::Terminated,
    );
    assert_eq!(
        store.apply_status("n1", &crashed, 7).await.unwrap(),
        applied(ProvisioningState::Succeeded)
    );
}

pub(crate) async fn a_failure_before_any_container_ran_fails_the_deployment(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("bad", 1000);
    create_placed(&*store, &g, "n1").await;
    let failed = ReportedStatus {
        events: vec![ReportedEvent {
            name: "InaccessibleImage".to_owned(),
            message: "image 'img' is not accessible".to_owned(),
            kind: EventKind::Warning,
            count: 1,
            ..Default::default()
        }],
        ..report(&g.id, 1, GroupPhase::Failed)
    };
    let batch = [NodeReport {
        node_id: "n1".to_owned(),
        seq: 1,
        status: failed,
    }];
    assert_eq!(
        store.apply_statuses(&batch, &[], 3).await.unwrap(),
        [applied(ProvisioningState::Failed)]
    );
    assert_eq!(
        group(&*store, &g.id).await.provisioning_state,
        ProvisioningState::Failed
    );
    let op = store.operation(&g.operation_id).await.unwrap().unwrap();
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.error_code.as_deref(), Some("InaccessibleImage"));
    assert_eq!(
        op.error_message.as_deref(),
        Some("image 'img' is not accessible")
    );
}

pub(crate) async fn dns_records_are_the_running_groups_with_addresses(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let mut named = new_group("web", 100);
    named.fqdn = Some("web.local.berth".to_owned());
    let mut starting = new_group("starting", 100);
    starting.fqdn = Some("starting.local.berth".to_owned());
    let unnamed = new_group("plain", 100);
    for g in [&named, &starting, &unnamed] {
        create_placed(&*store, g, "n1").await;
    }
    let with_ip = |g: &crate::store::NewGroup, phase| ReportedStatus {
        ip: "10.1.0.5, nonsense".to_owned(),
        ..report(&g.id, 1, phase)
    };
    store
        .apply_status("n1", &with_ip(&named, GroupPhase::Running), 3)
        .await
        .unwrap();
    store
        .apply_status("n1", &with_ip(&starting, GroupPhase::Pending), 3)
        .await
        .unwrap();
    store
        .apply_status("n1", &with_ip(&unnamed, GroupPhase::Running), 3)
        .await
        .unwrap();
    let records = store.dns_records().await.unwrap();
    assert_eq!(
        records,
        [(
            "web.local.berth".to_owned(),
            vec!["10.1.0.5".parse().unwrap()]
        )]
    );
    store.stop_group(&named.id, 4).await.unwrap();
    assert!(store.dns_records().await.unwrap().is_empty());
}

pub(crate) async fn a_dns_record_waits_until_the_group_is_ready(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let mut web = new_group("web", 100);
    web.fqdn = Some("web.local.berth".to_owned());
    create_placed(&*store, &web, "n1").await;
    let status = |not_ready| ReportedStatus {
        ip: "10.1.0.5".to_owned(),
        not_ready,
        ..report(&web.id, 1, GroupPhase::Running)
    };
    store.apply_status("n1", &status(true), 3).await.unwrap();
    assert_eq!(
        store.dns_records().await.unwrap(),
        [],
        "running with an address, but a readiness probe fails"
    );
    store.apply_status("n1", &status(false), 4).await.unwrap();
    let ready = [(
        "web.local.berth".to_owned(),
        vec!["10.1.0.5".parse().unwrap()],
    )];
    assert_eq!(store.dns_records().await.unwrap(), ready);
    // Not ready again (a readiness probe failing later): the name goes away again.
    store.apply_status("n1", &status(true), 5).await.unwrap();
    assert_eq!(store.dns_records().await.unwrap(), []);
}
