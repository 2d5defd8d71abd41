//! Exec and attach sessions: what `POST …/exec` and `POST …/attach` hand out.
//!
//! A session is a websocket URL (`/exec/<id>` or `/attach/<id>`) plus a password ending in ACI's
//! `[[EOM]]`. The password is the credential (ACI's protocol carries nothing else; the token that
//! asked is kept for the log only); it opens the one container of the one group (by key and id, so a
//! group deleted and created again under the same name does not inherit it) it was issued for, once,
//! and not after `--exec-ttl-secs`. Sessions live in the store ([`ExecSessionStore`]), so a session
//! issued by one apiserver replica opens on any; only the password's SHA-256 is stored, and opening
//! takes the session out of the store before the password is compared (in constant time), so a
//! password works once and a wrong guess burns it too.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use crate::store::{ExecSessionStore, PendingSession, StoreError};
pub use crate::store::{Session, SessionKind};

/// ACI's passwords end with this, and clients send it back verbatim.
pub const PASSWORD_SUFFIX: &str = "[[EOM]]";

/// The most sessions waiting to be opened at once; beyond, those expiring soonest are dropped.
const MAX_PENDING: usize = 10_000;

/// Why a session could not be opened. Deliberately one answer: a caller learns nothing about which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid or expired password")]
pub struct Refused;

/// Why [`Sessions::open`] gave no session.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The session is unknown, expired, opened already or the password is wrong.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The store could not be asked.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// Sessions issued and not yet opened.
pub struct Sessions {
    ttl: Duration,
    store: Arc<dyn ExecSessionStore>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// A password as ACI's look: printable ASCII without quotes or backslashes, then `[[EOM]]`.
fn new_password() -> String {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@^_{|}~";
    let mut rng = rand::rng();
    let mut password: String = (0..32)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    password.push_str(PASSWORD_SUFFIX);
    password
}

impl Sessions {
    pub fn new(ttl: Duration, store: Arc<dyn ExecSessionStore>) -> Self {
        Self { ttl, store }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a session: `(id, password)`.
    pub async fn issue(&self, session: Session) -> Result<(String, String), StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let password = new_password();
        let now = crate::now_ms();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let pending = PendingSession {
            id: id.clone(),
            session,
            password_hash: digest(&password),
            expires_ms: now.saturating_add(ttl_ms),
        };
        self.store
            .insert_exec_session(&pending, now, MAX_PENDING)
            .await?;
        Ok((id, password))
    }

    /// Opens session `id` with `password`. Whatever the outcome, the session is gone afterwards: a
    /// password works once, and a wrong guess burns it too.
    pub async fn open(&self, id: &str, password: &str) -> Result<Session, OpenError> {
        let pending = self.store.take_exec_session(id).await?.ok_or(Refused)?;
        let matches = constant_time_eq(&pending.password_hash, &digest(password));
        if matches && crate::now_ms() < pending.expires_ms {
            Ok(pending.session)
        } else {
            Err(Refused.into())
        }
    }

    /// Whether session `id` exists and has not expired (it is not opened).
    pub async fn is_pending(&self, id: &str) -> Result<bool, StoreError> {
        self.store.exec_session_pending(id, crate::now_ms()).await
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{GroupKey, SqliteStore};

    /// Sessions over a fresh SQLite store (and the directory keeping it).
    async fn sessions(ttl: Duration) -> (Sessions, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (Sessions::new(ttl, Arc::new(store)), dir)
    }

    fn refused(result: Result<Session, OpenError>) -> bool {
        matches!(result, Err(OpenError::Refused(Refused)))
    }

    fn session() -> Session {
        Session {
            kind: SessionKind::Attach,
            token_id: "t".into(),
            group: GroupKey::new("s", "rg", "g"),
            group_id: "gid".into(),
            container: "c".into(),
        }
    }

    #[tokio::test]
    async fn a_password_opens_its_session_once() {
        let (sessions, _dir) = sessions(Duration::from_secs(60)).await;
        let (id, password) = sessions.issue(session()).await.unwrap();
        assert!(password.ends_with(PASSWORD_SUFFIX));
        assert_eq!(password.len(), 32 + PASSWORD_SUFFIX.len());
        assert!(sessions.is_pending(&id).await.unwrap());
        assert_eq!(sessions.open(&id, &password).await.unwrap(), session());
        assert!(!sessions.is_pending(&id).await.unwrap());
        assert!(refused(sessions.open(&id, &password).await));
    }

    #[tokio::test]
    async fn a_wrong_password_burns_the_session() {
        let (sessions, _dir) = sessions(Duration::from_secs(60)).await;
        let (id, password) = sessions.issue(session()).await.unwrap();
        assert!(refused(sessions.open(&id, "guess[[EOM]]").await));
        assert!(refused(sessions.open(&id, &password).await));
        assert!(refused(sessions.open("no-such-id", &password).await));
    }

    #[tokio::test]
    async fn an_expired_password_is_refused() {
        let (sessions, _dir) = sessions(Duration::from_millis(1)).await;
        let (id, password) = sessions.issue(session()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!sessions.is_pending(&id).await.unwrap());
        assert!(refused(sessions.open(&id, &password).await));
    }

    #[tokio::test]
    async fn a_session_issued_by_one_replica_opens_on_another_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = SqliteStore::open(&path).await.unwrap();
        let b = SqliteStore::open(&path).await.unwrap();
        let on_a = Sessions::new(Duration::from_secs(60), Arc::new(a));
        let on_b = Sessions::new(Duration::from_secs(60), Arc::new(b));
        let (id, password) = on_a.issue(session()).await.unwrap();
        assert!(on_b.is_pending(&id).await.unwrap());
        assert_eq!(on_b.open(&id, &password).await.unwrap(), session());
        assert!(refused(on_a.open(&id, &password).await), "used on B");
    }
}
