//! Tokens: round trips, revocation that never locks operators out, use times that never move back.

use std::sync::Arc;

use crate::store::{Revocation, Store, TokenRecord};

fn token(id: &str, operator: bool, expires_ms: Option<i64>) -> TokenRecord {
    TokenRecord {
        id: id.to_owned(),
        hash: format!("hash-{id}"),
        prefix: format!("berth_{id}_abcd"),
        subscriptions: if operator {
            Vec::new()
        } else {
            vec!["sub".to_owned()]
        },
        operator,
        created_ms: 10,
        expires_ms,
        revoked_ms: None,
        last_used_ms: None,
    }
}

pub(crate) async fn tokens_round_trip_and_list_in_order(store: Arc<dyn Store>) {
    let a = token("a", false, Some(1_000));
    let b = TokenRecord {
        created_ms: 20,
        ..token("b", true, None)
    };
    store.insert_token(&b).await.unwrap();
    store.insert_token(&a).await.unwrap();
    assert_eq!(
        store.token_by_hash("hash-a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.token_by_hash("nope").await.unwrap(), None);
    assert_eq!(
        store.token_by_id("a").await.unwrap(),
        store.token_by_hash("hash-a").await.unwrap()
    );
    assert_eq!(store.token_by_id("nope").await.unwrap(), None);
    assert_eq!(store.tokens().await.unwrap(), [a, b]);
    assert_eq!(store.count_tokens().await.unwrap(), 2);
}

pub(crate) async fn revoking_is_idempotent_and_never_takes_the_last_live_operator_token(
    store: Arc<dyn Store>,
) {
    store.insert_token(&token("op", true, None)).await.unwrap();
    store.insert_token(&token("t", false, None)).await.unwrap();
    // An expired operator token does not count as another one.
    store
        .insert_token(&token("old-op", true, Some(50)))
        .await
        .unwrap();
    assert_eq!(
        store.revoke_token("op", 100).await.unwrap(),
        Revocation::LastOperator
    );
    assert_eq!(
        store.revoke_token("missing", 100).await.unwrap(),
        Revocation::NotFound
    );
    let Revocation::Revoked(t) = store.revoke_token("t", 100).await.unwrap() else {
        panic!("a tenant token is revoked");
    };
    assert_eq!(t.revoked_ms, Some(100));
    let Revocation::Revoked(again) = store.revoke_token("t", 200).await.unwrap() else {
        panic!("revoking twice is fine");
    };
    assert_eq!(again.revoked_ms, Some(100), "the first revocation stands");
    assert_eq!(
        store
            .token_by_hash("hash-t")
            .await
            .unwrap()
            .unwrap()
            .revoked_ms,
        Some(100)
    );

    store.insert_token(&token("op2", true, None)).await.unwrap();
    assert!(matches!(
        store.revoke_token("op", 300).await.unwrap(),
        Revocation::Revoked(_)
    ));
    assert_eq!(
        store.revoke_token("op2", 300).await.unwrap(),
        Revocation::LastOperator
    );
    // An already revoked operator token answers as revoked, whatever else is left.
    assert!(matches!(
        store.revoke_token("op", 400).await.unwrap(),
        Revocation::Revoked(r) if r.revoked_ms == Some(300)
    ));
}

pub(crate) async fn racing_revokes_of_the_last_two_operator_tokens_leave_one(
    store: Arc<dyn Store>,
) {
    // Every live operator token revoked at once: all but one go, whoever wins. Several rounds, so
    // that the later ones race on connections already open (the first ones mostly wait for theirs).
    for round in 0..10 {
        for i in 0..8 {
            let id = format!("r{round}op{i}");
            store.insert_token(&token(&id, true, None)).await.unwrap();
        }
        let live: Vec<String> = store
            .tokens()
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.operator && t.revoked_ms.is_none())
            .map(|t| t.id)
            .collect();
        assert_eq!(live.len(), 9 - usize::from(round == 0));
        let tasks: Vec<_> = live
            .into_iter()
            .map(|id| {
                let store = store.clone();
                tokio::spawn(async move { store.revoke_token(&id, 100).await.unwrap() })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let refused = outcomes
            .iter()
            .filter(|o| **o == Revocation::LastOperator)
            .count();
        assert_eq!(refused, 1, "round {round}: {outcomes:?}");
        let live = store
            .tokens()
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.operator && t.revoked_ms.is_none())
            .count();
        assert_eq!(live, 1, "round {round}");
    }
}

pub(crate) async fn last_use_is_written_in_one_go_and_never_moves_back(store: Arc<dyn Store>) {
    store.insert_token(&token("a", false, None)).await.unwrap();
    store.insert_token(&token("b", false, None)).await.unwrap();
    store
        .record_token_use(&[("a".to_owned(), 500), ("b".to_owned(), 700)])
        .await
        .unwrap();
    store
        .record_token_use(&[
            ("a".to_owned(), 400),
            ("b".to_owned(), 800),
            ("gone".to_owned(), 1),
        ])
        .await
        .unwrap();
    let used = |id: &str| {
        let store = store.clone();
        let hash = format!("hash-{id}");
        async move {
            store
                .token_by_hash(&hash)
                .await
                .unwrap()
                .unwrap()
                .last_used_ms
        }
    };
    assert_eq!(used("a").await, Some(500));
    assert_eq!(used("b").await, Some(800));
}
