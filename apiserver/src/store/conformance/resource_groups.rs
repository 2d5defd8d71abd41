//! Resource groups: implicit with a group's create, deleted only when empty, the subscription's limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fixtures::new_group;
use crate::store::{
    GroupKey, RESOURCE_GROUPS_PER_SUBSCRIPTION, ResourceGroupCreation, ResourceGroupDeletion,
    ResourceGroupRecord, Store, StoreError,
};

pub(crate) async fn a_create_makes_its_resource_group_which_is_deleted_only_when_empty(
    store: Arc<dyn Store>,
) {
    let mut g = new_group("a", 100);
    g.key = GroupKey::new("sub", "MyRG", "a");
    g.resource_group_as = "MyRG".to_owned();
    store.create_group(&g).await.unwrap();
    let rg = store.resource_group("sub", "myrg").await.unwrap().unwrap();
    assert_eq!((rg.name.as_str(), rg.location.as_str()), ("MyRG", "local"));
    let again = ResourceGroupRecord {
        name: "MYRG".to_owned(),
        ..rg.clone()
    };
    assert_eq!(
        store.create_resource_group(&again).await.unwrap(),
        ResourceGroupCreation::Exists
    );
    let tags = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
    store
        .set_resource_group_tags("sub", "MYRG", &tags, 7)
        .await
        .unwrap();
    let tagged = store.resource_group("sub", "MyRg").await.unwrap().unwrap();
    assert_eq!((tagged.tags, tagged.updated_ms), (tags, 7));
    assert_eq!(
        store.delete_resource_group("sub", "myrg").await.unwrap(),
        ResourceGroupDeletion::NotEmpty
    );
    store.delete_group(&g.id, 2).await.unwrap();
    assert_eq!(
        store.delete_resource_group("sub", "MYRG").await.unwrap(),
        ResourceGroupDeletion::Deleted
    );
    assert_eq!(
        store.delete_resource_group("sub", "MYRG").await.unwrap(),
        ResourceGroupDeletion::NotFound
    );
    assert!(store.resource_groups("sub").await.unwrap().is_empty());
}

pub(crate) async fn past_the_resource_group_limit_nothing_is_created_and_quota_is_given_back(
    store: Arc<dyn Store>,
) {
    let record = |name: String| ResourceGroupRecord {
        subscription: "sub".to_owned(),
        name,
        location: "local".to_owned(),
        tags: BTreeMap::new(),
        created_ms: 1,
        updated_ms: 1,
    };
    // All but the last few sequentially; the last ones race for the remaining places.
    for i in 0..RESOURCE_GROUPS_PER_SUBSCRIPTION - 4 {
        assert_eq!(
            store
                .create_resource_group(&record(format!("rg{i}")))
                .await
                .unwrap(),
            ResourceGroupCreation::Created
        );
    }
    // Several rounds (four places freed before each), so that the later ones race on connections
    // already open.
    for round in 0..5 {
        if round > 0 {
            for i in 0..4 {
                assert_eq!(
                    store
                        .delete_resource_group("sub", &format!("rg{}", 100 + round * 4 + i))
                        .await
                        .unwrap(),
                    ResourceGroupDeletion::Deleted
                );
            }
        }
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (store, rg) = (store.clone(), record(format!("late{round}-{i}")));
                tokio::spawn(async move { store.create_resource_group(&rg).await.unwrap() })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            if task.await.unwrap() == ResourceGroupCreation::Created {
                created += 1;
            }
        }
        assert_eq!(created, 4, "round {round}");
    }
    assert_eq!(
        store
            .create_resource_group(&record("extra".to_owned()))
            .await
            .unwrap(),
        ResourceGroupCreation::LimitReached
    );
    // A container group into a new resource group is refused; into an existing one it is not.
    let mut refused = new_group("a", 100);
    refused.key = GroupKey::new("sub", "extra", "a");
    refused.resource_group_as = "extra".to_owned();
    assert!(matches!(
        store.create_group(&refused).await,
        Err(StoreError::ResourceGroupLimit)
    ));
    assert!(store.group(&refused.key).await.unwrap().is_none());
    assert_eq!(store.usage("sub").await.unwrap().0, 0);
    let mut fits = new_group("b", 100);
    fits.key = GroupKey::new("sub", "RG7", "b");
    fits.resource_group_as = "RG7".to_owned();
    store.create_group(&fits).await.unwrap();
    assert_eq!(store.usage("sub").await.unwrap().0, 1);
    assert_eq!(
        store.resource_groups("sub").await.unwrap().len() as i64,
        RESOURCE_GROUPS_PER_SUBSCRIPTION
    );
}

/// A delete racing a create into the resource group: either the create's group is in it (the
/// delete is refused) or the delete went first and the create made it again; never a group left in a
/// deleted resource group. Several rounds, so that they really race.
pub(crate) async fn a_resource_group_is_never_deleted_under_a_group_created_into_it(
    store: Arc<dyn Store>,
) {
    for round in 0..20 {
        let rg = format!("rg{round}");
        let record = ResourceGroupRecord {
            subscription: "sub".to_owned(),
            name: rg.clone(),
            location: "local".to_owned(),
            tags: BTreeMap::new(),
            created_ms: 1,
            updated_ms: 1,
        };
        store.create_resource_group(&record).await.unwrap();
        let mut g = new_group("a", 100);
        g.key = GroupKey::new("sub", &rg, "a");
        g.resource_group_as = rg.clone();
        let create = {
            let (store, g) = (store.clone(), g.clone());
            tokio::spawn(async move { store.create_group(&g).await.unwrap() })
        };
        let delete = {
            let (store, rg) = (store.clone(), rg.clone());
            tokio::spawn(async move { store.delete_resource_group("sub", &rg).await.unwrap() })
        };
        create.await.unwrap();
        let deleted = delete.await.unwrap();
        assert!(store.group(&g.key).await.unwrap().is_some());
        assert!(
            store.resource_group("sub", &rg).await.unwrap().is_some(),
            "round {round}: the delete answered {deleted:?} and left the group without its resource group"
        );
    }
}
