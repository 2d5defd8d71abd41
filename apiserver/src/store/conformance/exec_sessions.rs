//! Exec sessions: they round-trip, are taken once however many race, expire, and stay bounded.
//!
//! The cases need only [`ExecSessionStore`], so a backend can run them before it is a whole
//! [`Store`](crate::store::Store).

use std::sync::Arc;

use crate::store::{ExecSessionStore, GroupKey, PendingSession, Session, SessionKind};

fn pending(id: &str, kind: SessionKind, expires_ms: i64) -> PendingSession {
    PendingSession {
        id: id.to_owned(),
        session: Session {
            kind,
            token_id: "token".to_owned(),
            group: GroupKey::new("sub", "RG", "g"),
            group_id: "gid".to_owned(),
            container: "c".to_owned(),
        },
        password_hash: [7; 32],
        expires_ms,
    }
}

fn exec() -> SessionKind {
    SessionKind::Exec {
        command: vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "echo 'a b'".to_owned(),
        ],
        tty: true,
        stdin: false,
        rows: 40,
        cols: 120,
    }
}

pub(crate) async fn a_session_round_trips_and_is_taken_once<S>(store: Arc<S>)
where
    S: ExecSessionStore + ?Sized,
{
    let e = pending("e", exec(), 1_000);
    let a = pending("a", SessionKind::Attach, 1_000);
    store.insert_exec_session(&e, 10, 100).await.unwrap();
    store.insert_exec_session(&a, 10, 100).await.unwrap();
    assert!(store.exec_session_pending("e", 10).await.unwrap());
    assert!(!store.exec_session_pending("nope", 10).await.unwrap());
    assert_eq!(store.take_exec_session("e").await.unwrap(), Some(e));
    assert_eq!(store.take_exec_session("e").await.unwrap(), None);
    assert!(!store.exec_session_pending("e", 10).await.unwrap());
    assert_eq!(store.take_exec_session("a").await.unwrap(), Some(a));
    assert_eq!(store.take_exec_session("nope").await.unwrap(), None);
}

pub(crate) async fn racing_takes_of_one_session_give_it_to_one<S>(store: Arc<S>)
where
    S: ExecSessionStore + ?Sized + 'static,
{
    for round in 0..5 {
        let id = format!("s{round}");
        store
            .insert_exec_session(&pending(&id, exec(), 1_000), 10, 100)
            .await
            .unwrap();
        let takers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let id = id.clone();
                tokio::spawn(async move { store.take_exec_session(&id).await.unwrap() })
            })
            .collect();
        let mut taken = 0;
        for taker in takers {
            taken += usize::from(taker.await.unwrap().is_some());
        }
        assert_eq!(taken, 1, "round {round}");
    }
}

pub(crate) async fn expired_sessions_are_not_pending_and_are_purged_on_insert<S>(store: Arc<S>)
where
    S: ExecSessionStore + ?Sized,
{
    let old = pending("old", exec(), 100);
    store.insert_exec_session(&old, 10, 100).await.unwrap();
    assert!(store.exec_session_pending("old", 99).await.unwrap());
    assert!(!store.exec_session_pending("old", 100).await.unwrap());
    // Taken, an expired session is still handed over: the caller refuses it.
    assert_eq!(
        store.take_exec_session("old").await.unwrap(),
        Some(old.clone())
    );
    store.insert_exec_session(&old, 10, 100).await.unwrap();
    store
        .insert_exec_session(&pending("new", exec(), 1_000), 100, 100)
        .await
        .unwrap();
    assert_eq!(
        store.take_exec_session("old").await.unwrap(),
        None,
        "purged"
    );
    assert!(store.take_exec_session("new").await.unwrap().is_some());
}

pub(crate) async fn past_the_cap_the_soonest_expiring_make_room<S>(store: Arc<S>)
where
    S: ExecSessionStore + ?Sized,
{
    for (id, expires_ms) in [("b", 1_002), ("a", 1_001), ("c", 1_003), ("d", 1_004)] {
        store
            .insert_exec_session(&pending(id, exec(), expires_ms), 10, 3)
            .await
            .unwrap();
    }
    assert_eq!(
        store.take_exec_session("a").await.unwrap(),
        None,
        "made room"
    );
    for id in ["b", "c", "d"] {
        assert!(store.take_exec_session(id).await.unwrap().is_some(), "{id}");
    }
}
