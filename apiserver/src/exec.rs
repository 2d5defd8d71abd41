//! Exec and attach sessions: what `POST …/exec` and `POST …/attach` hand out.
//!
//! A session is a websocket URL (`/exec/<id>` or `/attach/<id>`) plus a password ending in ACI's
//! `[[EOM]]`. The password is the credential (ACI's protocol carries nothing else; the token that
//! asked is kept for the log only); it opens the one container of the one group (by key and id, so a
//! group deleted and created again under the same name does not inherit it) it was issued for, once,
//! and not after `--exec-ttl-secs`. Only the password's SHA-256 is kept, in memory: sessions do not
//! outlive the apiserver, as ACI's do not outlive their bridge.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use crate::store::GroupKey;

/// ACI's passwords end with this, and clients send it back verbatim.
pub const PASSWORD_SUFFIX: &str = "[[EOM]]";

/// The most sessions waiting to be opened at once; beyond, the oldest are dropped.
const MAX_PENDING: usize = 10_000;

/// What a session opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    /// A new process in the container.
    Exec {
        command: Vec<String>,
        tty: bool,
        stdin: bool,
        rows: u32,
        cols: u32,
    },
    /// The container's output from now on.
    Attach,
}

/// A session as issued.
#[derive(Debug, Clone)]
pub struct Session {
    pub kind: SessionKind,
    /// The token that asked for it.
    pub token_id: String,
    pub group: GroupKey,
    pub group_id: String,
    pub container: String,
}

struct Pending {
    session: Session,
    password_hash: [u8; 32],
    expires: Instant,
}

/// Why a session could not be opened. Deliberately one answer: a caller learns nothing about which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid or expired password")]
pub struct Refused;

/// Sessions issued and not yet opened.
pub struct Sessions {
    ttl: Duration,
    pending: Mutex<HashMap<String, Pending>>,
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
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            pending: Mutex::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a session: `(id, password)`.
    pub fn issue(&self, session: Session) -> (String, String) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let password = new_password();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(id, _)| id.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            id.clone(),
            Pending {
                session,
                password_hash: digest(&password),
                expires: now + self.ttl,
            },
        );
        (id, password)
    }

    /// Opens session `id` with `password`. Whatever the outcome, the session is gone afterwards: a
    /// password works once, and a wrong guess burns it too.
    pub fn open(&self, id: &str, password: &str) -> Result<Session, Refused> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .ok_or(Refused)?;
        let matches = constant_time_eq(&pending.password_hash, &digest(password));
        if matches && Instant::now() < pending.expires {
            Ok(pending.session)
        } else {
            Err(Refused)
        }
    }

    /// Whether session `id` exists and has not expired (it is not opened).
    pub fn is_pending(&self, id: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|p| Instant::now() < p.expires)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            kind: SessionKind::Attach,
            token_id: "t".into(),
            group: GroupKey::new("s", "rg", "g"),
            group_id: "gid".into(),
            container: "c".into(),
        }
    }

    #[test]
    fn a_password_opens_its_session_once() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, password) = sessions.issue(session());
        assert!(password.ends_with(PASSWORD_SUFFIX));
        assert_eq!(password.len(), 32 + PASSWORD_SUFFIX.len());
        assert!(sessions.is_pending(&id));
        assert_eq!(sessions.open(&id, &password).unwrap().container, "c");
        assert_eq!(sessions.open(&id, &password).unwrap_err(), Refused);
    }

    #[test]
    fn a_wrong_password_burns_the_session() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, password) = sessions.issue(session());
        assert_eq!(sessions.open(&id, "guess[[EOM]]").unwrap_err(), Refused);
        assert_eq!(sessions.open(&id, &password).unwrap_err(), Refused);
        assert_eq!(sessions.open("no-such-id", &password).unwrap_err(), Refused);
    }

    #[test]
    fn an_expired_password_is_refused() {
        let sessions = Sessions::new(Duration::from_millis(1));
        let (id, password) = sessions.issue(session());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!sessions.is_pending(&id));
        assert_eq!(sessions.open(&id, &password).unwrap_err(), Refused);
    }
}
