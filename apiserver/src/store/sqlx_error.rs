//! sqlx's errors into the store's, for both backends (SQLite and PostgreSQL): the driver's types stop
//! here.

use crate::store::{BackendError, BackendErrorKind, StoreError};

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let kind = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => BackendErrorKind::Unavailable,
            sqlx::Error::Database(db) if db.is_unique_violation() || db.is_check_violation() => {
                BackendErrorKind::Constraint
            }
            sqlx::Error::Database(db)
                if db.is_foreign_key_violation()
                    || matches!(db.kind(), sqlx::error::ErrorKind::NotNullViolation) =>
            {
                BackendErrorKind::Constraint
            }
            // SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock past the busy timeout.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6")) => {
                BackendErrorKind::Unavailable
            }
            // PostgreSQL: serialization failure, deadlock (the transaction may be retried); too many
            // connections, shutting down, cannot connect now (class 08: connection exceptions).
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    matches!(
                        &*c,
                        "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
                    ) || c.starts_with("08")
                }) =>
            {
                BackendErrorKind::Unavailable
            }
            sqlx::Error::Migrate(_) => BackendErrorKind::Migration,
            _ => BackendErrorKind::Statement,
        };
        StoreError::Backend(BackendError {
            kind,
            message: err.to_string(),
        })
    }
}

/// Whether a statement broke a uniqueness rule.
pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether PostgreSQL gave up a transaction to let another one through (a deadlock broken, a
/// serialization failure): nothing of it was written, so running it again is safe.
pub(super) fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(BackendError {
            kind: BackendErrorKind::Migration,
            message: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_survives_and_the_driver_does_not() {
        let err = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(
            err,
            StoreError::Backend(BackendError {
                kind: BackendErrorKind::Unavailable,
                ..
            })
        ));
        let err = StoreError::from(sqlx::Error::RowNotFound);
        assert!(matches!(
            err,
            StoreError::Backend(BackendError {
                kind: BackendErrorKind::Statement,
                ..
            })
        ));
    }
}
