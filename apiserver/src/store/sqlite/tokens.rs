//! API tokens in SQLite: issue, look up, list, revoke, and the batched `last_used_ms` writes.
//!
//! The SQL is the dialect SQLite and PostgreSQL share (`RETURNING`, a CTE feeding `UPDATE … FROM`).

use sqlx::SqlitePool;

use super::SqliteStore;
use super::json;
use crate::store::TokenStore;
use crate::store::rows::{TOKEN_COLUMNS as COLUMNS, token_from_row as from_row};
use crate::store::{Result, Revocation, TokenRecord};

/// Rows per multi-row statement (three bound parameters each at most).
const CHUNK: usize = 256;

pub(super) async fn insert(writer: &SqlitePool, token: &TokenRecord) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO tokens ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&token.id)
    .bind(&token.hash)
    .bind(&token.prefix)
    .bind(json(&token.subscriptions))
    .bind(token.operator)
    .bind(token.created_ms)
    .bind(token.expires_ms)
    .bind(token.revoked_ms)
    .bind(token.last_used_ms)
    .execute(writer)
    .await?;
    Ok(())
}

pub(super) async fn by_hash(reader: &SqlitePool, hash: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?"))
        .bind(hash)
        .fetch_optional(reader)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn by_id(reader: &SqlitePool, id: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?"))
        .bind(id)
        .fetch_optional(reader)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn all(reader: &SqlitePool) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tokens ORDER BY created_ms, id"
    ))
    .fetch_all(reader)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One statement decides: a token already revoked keeps its first revocation; an operator token is
/// only revoked while another live operator token exists. (SQLite's single writer serialises two
/// revokes of the last two operator tokens; PostgreSQL locks the live operator tokens first, see
/// `postgres/tokens.rs`.)
pub(super) async fn revoke(writer: &SqlitePool, id: &str, now_ms: i64) -> Result<Revocation> {
    let mut tx = writer.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?1) WHERE id = ?2 \
         AND (operator = 0 OR revoked_ms IS NOT NULL OR EXISTS (\
             SELECT 1 FROM tokens other WHERE other.operator = 1 AND other.id <> ?2 \
             AND other.revoked_ms IS NULL AND (other.expires_ms IS NULL OR other.expires_ms > ?1))) \
         RETURNING {COLUMNS}"
    ))
    .bind(now_ms)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match row {
        Some(row) => Revocation::Revoked(from_row(&row)?),
        None => {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tokens WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match exists {
                Some(_) => Revocation::LastOperator,
                None => Revocation::NotFound,
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

pub(super) async fn record_use(writer: &SqlitePool, used: &[(String, i64)]) -> Result<()> {
    if used.is_empty() {
        return Ok(());
    }
    let mut tx = writer.begin().await?;
    for chunk in used.chunks(CHUNK) {
        let sql = format!(
            "WITH used (id, at_ms) AS (VALUES {}) \
             UPDATE tokens SET last_used_ms = used.at_ms FROM used \
             WHERE tokens.id = used.id AND (tokens.last_used_ms IS NULL OR tokens.last_used_ms < used.at_ms)",
            vec!["(?, ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (id, at_ms) in chunk {
            query = query.bind(id).bind(at_ms);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        insert(&self.writer, token).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        by_hash(&self.reader, hash).await
    }

    async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        by_id(&self.reader, id).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        all(&self.reader).await
    }

    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<Revocation> {
        revoke(&self.writer, id, now_ms).await
    }

    async fn record_token_use(&self, used: &[(String, i64)]) -> Result<()> {
        record_use(&self.writer, used).await
    }

    async fn count_tokens(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.reader)
            .await?)
    }
}
