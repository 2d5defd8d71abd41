//! Groups: create, read, list in pages, quota, conflicts, the update guard, lifecycle generations,
//! and deletes that release capacity once.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fixtures::{create_placed, group, join, new_group, operation, report, spec, used_cpu};
use crate::model::reported::{GroupPhase, ReportedStatus};
use crate::store::{
    Change, Conflict, Desired, GroupKey, OperationKind, OperationStatus, ProvisioningState, Store,
    StoreError,
};

pub(crate) async fn created_groups_read_back_and_list_in_pages(store: Arc<dyn Store>) {
    let names = ["a", "b", "c", "d", "e"];
    let mut ids = Vec::new();
    for name in names {
        let g = new_group(name, 100);
        store.create_group(&g).await.unwrap();
        ids.push(g.id);
    }
    let mut elsewhere = new_group("x", 100);
    elsewhere.key = GroupKey::new("sub", "Other", "x");
    elsewhere.resource_group_as = "Other".to_owned();
    elsewhere.tags = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    store.create_group(&elsewhere).await.unwrap();

    let x = store
        .group(&GroupKey::new("sub", "OTHER", "x"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x.id, elsewhere.id);
    assert_eq!(x.resource_group, "Other", "as its creator wrote it");
    assert_eq!(x.tags, elsewhere.tags);
    assert_eq!(x.spec, elsewhere.spec.redacted());
    assert_eq!(x.requests, elsewhere.spec.requests());
    assert_eq!((x.generation, x.desired), (1, Desired::Running));
    assert_eq!(x.provisioning_state, ProvisioningState::Pending);
    assert_eq!((x.node_id.clone(), x.status.clone()), (None, None));
    assert_eq!(store.group_by_id(&x.id).await.unwrap(), Some(x));
    assert_eq!(
        store
            .group(&GroupKey::new("sub", "rg", "nope"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.sealed_spec(&ids[0]).await.unwrap(),
        Some(vec![1, 2, 3])
    );

    // Pages of two, in creation order, resuming after the last seq seen.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .list_groups("sub", Some("RG"), after, 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().unwrap().seq;
        seen.extend(page.into_iter().map(|g| g.name));
    }
    assert_eq!(seen, names);
    assert_eq!(
        store.list_groups("sub", None, 0, 100).await.unwrap().len(),
        6
    );
    assert!(
        store
            .list_groups("other-sub", None, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let with_sealed = store.groups_with_sealed(&ids[..2]).await.unwrap();
    assert_eq!(with_sealed.len(), 2);
    assert!(with_sealed.iter().all(|(_, sealed)| sealed == &[1, 2, 3]));
}

pub(crate) async fn racing_creates_of_one_name_create_it_once(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_group(&new_group("same", 100)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict(_)))),
        "{outcomes:?}"
    );
    assert_eq!(
        store.usage("sub").await.unwrap().0,
        1,
        "the losers are not counted"
    );
}

pub(crate) async fn a_taken_dns_name_is_a_conflict(store: Arc<dyn Store>) {
    let mut first = new_group("a", 100);
    first.fqdn = Some("label.local.berth".to_owned());
    store.create_group(&first).await.unwrap();
    let mut second = new_group("b", 100);
    second.fqdn = first.fqdn.clone();
    assert!(matches!(
        store.create_group(&second).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.group(&second.key).await.unwrap(), None);
    assert_eq!(store.usage("sub").await.unwrap().0, 1);
    // Once the first is gone the name is free.
    store.delete_group(&first.id, 5).await.unwrap();
    store.create_group(&second).await.unwrap();
}

pub(crate) async fn quota_counts_creates_and_deletes_give_it_back(store: Arc<dyn Store>) {
    let limited = |name: &str| {
        let mut g = new_group(name, 1000);
        g.quota = (2, 100_000);
        g
    };
    let (a, b) = (limited("a"), limited("b"));
    store.create_group(&a).await.unwrap();
    store.create_group(&b).await.unwrap();
    let (groups, size) = store.usage("sub").await.unwrap();
    assert_eq!((groups, size.cpu_millis), (2, 2000));
    match store.create_group(&limited("c")).await {
        Err(StoreError::QuotaExceeded { groups, cpu_millis }) => {
            assert_eq!((groups, cpu_millis), (2, 2000))
        }
        other => panic!("{other:?}"),
    }
    let mut big = new_group("big", 3000);
    big.quota = (10, 3500);
    assert!(matches!(
        store.create_group(&big).await,
        Err(StoreError::QuotaExceeded { .. })
    ));
    store.delete_group(&a.id, 5).await.unwrap();
    let (groups, size) = store.usage("sub").await.unwrap();
    assert_eq!((groups, size.cpu_millis), (1, 1000));
    store.create_group(&limited("c")).await.unwrap();
}

pub(crate) async fn racing_creates_never_pass_the_quota(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut g = new_group(&format!("g{i}"), 100);
                g.quota = (3, 100_000);
                store.create_group(&g).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::QuotaExceeded { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(created, 3);
    assert_eq!(store.usage("sub").await.unwrap().0, 3);
    assert_eq!(
        store.list_groups("sub", None, 0, 100).await.unwrap().len(),
        3
    );
}

pub(crate) async fn an_update_is_refused_once_the_generation_moved(store: Arc<dyn Store>) {
    let g = new_group("u", 100);
    store.create_group(&g).await.unwrap();
    let before = group(&*store, &g.id).await;
    let op = operation(&before, OperationKind::Update, 5);
    let mut changed = spec(100);
    changed.containers[0].image = "img:2".to_owned();
    let tags = BTreeMap::from([("t".to_owned(), "1".to_owned())]);
    let applied = store
        .update_group(&g.id, 1, &changed, &[9], &tags, None, &op, 5)
        .await
        .unwrap();
    assert_eq!(applied, Change::Applied { generation: 2 });
    let after = group(&*store, &g.id).await;
    assert_eq!(
        (after.generation, after.spec.clone(), after.tags.clone()),
        (2, changed.redacted(), tags.clone())
    );
    assert_eq!(after.provisioning_state, ProvisioningState::Updating);
    assert_eq!(store.sealed_spec(&g.id).await.unwrap(), Some(vec![9]));
    let recorded = store.operation(&op.id).await.unwrap().unwrap();
    assert_eq!(
        (recorded.generation, recorded.status),
        (2, OperationStatus::Pending)
    );

    // A writer that read generation 1 is refused and changes nothing.
    let stale = operation(&before, OperationKind::Update, 6);
    assert_eq!(
        store
            .update_group(
                &g.id,
                1,
                &spec(100),
                &[1],
                &BTreeMap::new(),
                None,
                &stale,
                6
            )
            .await
            .unwrap(),
        Change::Moved
    );
    assert_eq!(group(&*store, &g.id).await, after);
    assert_eq!(store.operation(&stale.id).await.unwrap(), None);
    assert_eq!(
        store
            .update_group(
                "gone",
                1,
                &spec(100),
                &[1],
                &BTreeMap::new(),
                None,
                &stale,
                6
            )
            .await
            .unwrap(),
        Change::NotFound
    );
}

pub(crate) async fn of_racing_updates_from_one_generation_one_wins(store: Arc<dyn Store>) {
    let g = new_group("u", 100);
    store.create_group(&g).await.unwrap();
    let before = group(&*store, &g.id).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, before, id) = (store.clone(), before.clone(), g.id.clone());
            tokio::spawn(async move {
                let mut changed = spec(100);
                changed.containers[0].image = format!("img:{i}");
                let op = operation(&before, OperationKind::Update, 5);
                store
                    .update_group(
                        &id,
                        before.generation,
                        &changed,
                        &[],
                        &BTreeMap::new(),
                        None,
                        &op,
                        5,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let won: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Change::Applied { .. }))
        .collect();
    assert_eq!(won, [&Change::Applied { generation: 2 }], "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == Change::Moved).count(), 5);
    assert_eq!(group(&*store, &g.id).await.generation, 2);
}

pub(crate) async fn stop_start_and_restart_move_generations(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("life", 1000);
    create_placed(&*store, &g, "n1").await;
    let placed = group(&*store, &g.id).await;
    assert_eq!(placed.provisioning_state, ProvisioningState::Creating);

    // Restart: in place, a new generation.
    let restart = operation(&placed, OperationKind::Restart, 3);
    assert_eq!(
        store
            .restart_group(&g.id, &restart, 3)
            .await
            .unwrap()
            .as_deref(),
        Some("n1"),
        "the node the restart found it on"
    );
    let restarted = group(&*store, &g.id).await;
    assert_eq!(
        (restarted.generation, restarted.node_id.as_deref()),
        (2, Some("n1"))
    );
    assert_eq!(restarted.provisioning_state, ProvisioningState::Pending);
    assert_eq!(
        store
            .operation(&restart.id)
            .await
            .unwrap()
            .unwrap()
            .generation,
        2
    );

    // Stop: off the node, capacity back; the answer is the group as it was, with its node.
    let stopped = store.stop_group(&g.id, 4).await.unwrap().unwrap();
    assert_eq!(stopped.node_id.as_deref(), Some("n1"));
    let now = group(&*store, &g.id).await;
    assert_eq!(
        (now.desired, now.node_id.clone(), now.generation),
        (Desired::Stopped, None, 2)
    );
    assert_eq!(used_cpu(&*store, "n1").await, 0);
    assert!(store.pending_groups(10).await.unwrap().is_empty());
    assert_eq!(store.stop_group("gone", 4).await.unwrap(), None);

    // Start: back to the scheduler with a new generation; a second start finds it running.
    let start = operation(&now, OperationKind::Start, 5);
    assert_eq!(
        store.start_group(&g.id, &start, 5).await.unwrap(),
        Change::Applied { generation: 3 }
    );
    let started = group(&*store, &g.id).await;
    assert_eq!(
        (started.desired, started.provisioning_state),
        (Desired::Running, ProvisioningState::Pending)
    );
    assert_eq!(
        (started.node_id.clone(), started.status.clone()),
        (None, None)
    );
    let pending = store.pending_groups(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id.as_str(), pending[0].generation),
        (g.id.as_str(), 3)
    );
    let again = operation(&started, OperationKind::Start, 6);
    assert_eq!(
        store.start_group(&g.id, &again, 6).await.unwrap(),
        Change::Moved
    );
    assert_eq!(store.operation(&again.id).await.unwrap(), None);
    assert_eq!(
        store.start_group("gone", &again, 6).await.unwrap(),
        Change::NotFound
    );
}

pub(crate) async fn delete_releases_capacity_once_however_many_race(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("d", 1500);
    create_placed(&*store, &g, "n1").await;
    assert_eq!(used_cpu(&*store, "n1").await, 1500);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (store, id) = (store.clone(), g.id.clone());
            tokio::spawn(async move { store.delete_group(&id, 5).await.unwrap() })
        })
        .collect();
    let mut deleted = 0;
    for task in tasks {
        if let Some(was) = task.await.unwrap() {
            assert_eq!(was.node_id.as_deref(), Some("n1"));
            deleted += 1;
        }
    }
    assert_eq!(deleted, 1);
    assert_eq!(used_cpu(&*store, "n1").await, 0);
    assert_eq!(store.usage("sub").await.unwrap().0, 0);
    assert_eq!(store.group_by_id(&g.id).await.unwrap(), None);
    assert!(store.groups_on_node("n1").await.unwrap().is_empty());
}

pub(crate) async fn stop_and_delete_racing_release_capacity_once(store: Arc<dyn Store>) {
    join(&*store, "n1", 64_000).await;
    let groups: Vec<_> = (0..8).map(|i| new_group(&format!("g{i}"), 1000)).collect();
    for g in &groups {
        create_placed(&*store, g, "n1").await;
    }
    assert_eq!(used_cpu(&*store, "n1").await, 8000);
    let mut tasks = Vec::new();
    for g in &groups {
        for delete in [false, true, false] {
            let (store, id) = (store.clone(), g.id.clone());
            tasks.push(tokio::spawn(async move {
                if delete {
                    store.delete_group(&id, 5).await.map(|_| ())
                } else {
                    store.stop_group(&id, 5).await.map(|_| ())
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(used_cpu(&*store, "n1").await, 0);
    assert!(
        store
            .list_groups("sub", None, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn an_update_moves_the_fqdn_unless_another_group_holds_it(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let mut web = new_group("web", 100);
    web.fqdn = Some("web.local.berth".to_owned());
    let mut other = new_group("other", 100);
    other.fqdn = Some("other.local.berth".to_owned());
    create_placed(&*store, &web, "n1").await;
    store.create_group(&other).await.unwrap();
    let running = ReportedStatus {
        ip: "10.1.0.5".to_owned(),
        ..report(&web.id, 1, GroupPhase::Running)
    };
    store.apply_status("n1", &running, 3).await.unwrap();
    let before = group(&*store, &web.id).await;

    let taken = operation(&before, OperationKind::Update, 4);
    let refused = store
        .update_group(
            &web.id,
            1,
            &spec(100),
            &[1],
            &BTreeMap::new(),
            Some("other.local.berth"),
            &taken,
            4,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(Conflict::DnsLabel))),
        "{refused:?}"
    );
    assert_eq!(group(&*store, &web.id).await, before, "nothing changed");
    assert_eq!(store.operation(&taken.id).await.unwrap(), None);

    let op = operation(&before, OperationKind::Update, 5);
    let applied = store
        .update_group(
            &web.id,
            1,
            &spec(100),
            &[1],
            &BTreeMap::new(),
            Some("site.local.berth"),
            &op,
            5,
        )
        .await
        .unwrap();
    assert_eq!(applied, Change::Applied { generation: 2 });
    assert_eq!(
        group(&*store, &web.id).await.fqdn.as_deref(),
        Some("site.local.berth")
    );
    assert_eq!(
        store.dns_records().await.unwrap(),
        [(
            "site.local.berth".to_owned(),
            vec!["10.1.0.5".parse().unwrap()]
        )],
        "the zone has the new name only"
    );
    // The old name is free for anyone.
    let mut taker = new_group("taker", 100);
    taker.fqdn = Some("web.local.berth".to_owned());
    store.create_group(&taker).await.unwrap();
}
