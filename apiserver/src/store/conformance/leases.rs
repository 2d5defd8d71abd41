//! Leases: of racing holders one gets it; it is renewed by its holder only; it passes on when it
//! expires, and at once when released.
//!
//! Generic over the store so a backend can run these before it is a whole [`Store`](crate::store::Store).

use std::sync::Arc;
use std::time::Duration;

use crate::store::LeaseStore;

pub(crate) async fn of_racing_holders_one_gets_the_lease_and_renews_it<S>(store: Arc<S>)
where
    S: LeaseStore + ?Sized + 'static,
{
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let holder = format!("replica-{i}");
                let won = store
                    .acquire_lease("control", &holder, 60_000)
                    .await
                    .unwrap();
                won.then_some(holder)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = &winners[0];
    assert!(
        store
            .acquire_lease("control", winner, 60_000)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .acquire_lease("control", "someone-else", 60_000)
            .await
            .unwrap(),
        "a running lease is not taken over"
    );
    assert!(
        store
            .acquire_lease("other", "someone-else", 60_000)
            .await
            .unwrap(),
        "leases of other names are apart"
    );
}

pub(crate) async fn an_expired_lease_passes_to_the_next_holder<S>(store: Arc<S>)
where
    S: LeaseStore + ?Sized + 'static,
{
    assert!(store.acquire_lease("control", "a", 200).await.unwrap());
    assert!(!store.acquire_lease("control", "b", 200).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        store.acquire_lease("control", "b", 60_000).await.unwrap(),
        "taken over once expired"
    );
    assert!(
        !store.acquire_lease("control", "a", 60_000).await.unwrap(),
        "the old holder cannot renew what it lost"
    );
}

pub(crate) async fn a_released_lease_passes_at_once<S>(store: Arc<S>)
where
    S: LeaseStore + ?Sized + 'static,
{
    assert!(store.acquire_lease("control", "a", 60_000).await.unwrap());
    store.release_lease("control", "b").await.unwrap();
    assert!(
        !store.acquire_lease("control", "b", 60_000).await.unwrap(),
        "only the holder releases"
    );
    store.release_lease("control", "a").await.unwrap();
    assert!(store.acquire_lease("control", "b", 60_000).await.unwrap());
}
