//! Exec and attach sessions handed out and not yet opened, shared by every replica: a session POSTed
//! on one opens on any. Only the password's SHA-256 is kept.

use super::{GroupKey, Result};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub kind: SessionKind,
    /// The token that asked for it.
    pub token_id: String,
    pub group: GroupKey,
    pub group_id: String,
    pub container: String,
}

/// A stored session: what it opens, its password's hash and when it stops opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSession {
    pub id: String,
    pub session: Session,
    pub password_hash: [u8; 32],
    /// Apiserver clock.
    pub expires_ms: i64,
}

/// Sessions waiting to be opened.
#[async_trait::async_trait]
pub trait ExecSessionStore: Send + Sync {
    /// Stores a new session. First forgets those expired at `now_ms` and, if `keep` or more are still
    /// waiting, the ones expiring soonest, so at most about `keep` wait (replicas inserting at once may
    /// each make room: the bound is approximate, never exceeded by more than their number).
    async fn insert_exec_session(
        &self,
        session: &PendingSession,
        now_ms: i64,
        keep: usize,
    ) -> Result<()>;
    /// Takes session `id` out of the store, expired or not (the caller checks password and expiry):
    /// however many callers race for one session, at most one gets it.
    async fn take_exec_session(&self, id: &str) -> Result<Option<PendingSession>>;
    /// Whether session `id` is stored and not expired at `now_ms` (nothing changes).
    async fn exec_session_pending(&self, id: &str, now_ms: i64) -> Result<bool>;
}

/// A session's row, the same in both backends.
#[derive(Debug, sqlx::FromRow)]
pub(in crate::store) struct SessionRow {
    pub(in crate::store) id: String,
    pub(in crate::store) password_hash: Vec<u8>,
    pub(in crate::store) kind: String,
    pub(in crate::store) command: String,
    pub(in crate::store) tty: i64,
    pub(in crate::store) stdin: i64,
    pub(in crate::store) term_rows: i64,
    pub(in crate::store) term_cols: i64,
    pub(in crate::store) token_id: String,
    pub(in crate::store) subscription: String,
    pub(in crate::store) resource_group: String,
    pub(in crate::store) group_name: String,
    pub(in crate::store) group_id: String,
    pub(in crate::store) container: String,
    pub(in crate::store) expires_ms: i64,
}

/// The columns of [`SessionRow`], in its order.
pub(in crate::store) const SESSION_COLUMNS: &str = "id, password_hash, kind, command, tty, stdin, \
     term_rows, term_cols, token_id, subscription, resource_group, group_name, group_id, container, \
     expires_ms";

impl From<&PendingSession> for SessionRow {
    fn from(p: &PendingSession) -> Self {
        let (kind, command, tty, stdin, rows, cols) = match &p.session.kind {
            SessionKind::Exec {
                command,
                tty,
                stdin,
                rows,
                cols,
            } => ("exec", command.as_slice(), *tty, *stdin, *rows, *cols),
            SessionKind::Attach => ("attach", &[][..], false, false, 0, 0),
        };
        Self {
            id: p.id.clone(),
            password_hash: p.password_hash.to_vec(),
            kind: kind.to_owned(),
            command: serde_json::to_string(command)
                .expect("a list of strings always serialises to JSON"),
            tty: i64::from(tty),
            stdin: i64::from(stdin),
            term_rows: i64::from(rows),
            term_cols: i64::from(cols),
            token_id: p.session.token_id.clone(),
            subscription: p.session.group.subscription.clone(),
            resource_group: p.session.group.resource_group.clone(),
            group_name: p.session.group.name.clone(),
            group_id: p.session.group_id.clone(),
            container: p.session.container.clone(),
            expires_ms: p.expires_ms,
        }
    }
}

impl TryFrom<SessionRow> for PendingSession {
    type Error = super::StoreError;

    fn try_from(row: SessionRow) -> Result<Self> {
        let corrupt = |what: &str| super::StoreError::Corrupt(format!("exec_sessions.{what}"));
        let kind = match row.kind.as_str() {
            "exec" => SessionKind::Exec {
                command: serde_json::from_str(&row.command).map_err(|_| corrupt("command"))?,
                tty: row.tty != 0,
                stdin: row.stdin != 0,
                rows: u32::try_from(row.term_rows).map_err(|_| corrupt("term_rows"))?,
                cols: u32::try_from(row.term_cols).map_err(|_| corrupt("term_cols"))?,
            },
            "attach" => SessionKind::Attach,
            _ => return Err(corrupt("kind")),
        };
        Ok(Self {
            id: row.id,
            password_hash: row
                .password_hash
                .try_into()
                .map_err(|_| corrupt("password_hash"))?,
            session: Session {
                kind,
                token_id: row.token_id,
                // Stored lower case already: not through `GroupKey::new`, which would not change it.
                group: GroupKey {
                    subscription: row.subscription,
                    resource_group: row.resource_group,
                    name: row.group_name,
                },
                group_id: row.group_id,
                container: row.container,
            },
            expires_ms: row.expires_ms,
        })
    }
}
