//! API tokens in PostgreSQL: issue, look up, list, revoke, and the batched `last_used_ms` writes.

use super::PgStore;
use crate::store::TokenStore;
use crate::store::rows::{TOKEN_COLUMNS, json, token_from_row};
use crate::store::{Result, Revocation, TokenRecord};

#[async_trait::async_trait]
impl TokenStore for PgStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&token.id)
        .bind(&token.hash)
        .bind(&token.prefix)
        .bind(json(&token.subscriptions))
        .bind(i64::from(token.operator))
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .bind(token.revoked_ms)
        .bind(token.last_used_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// The live operator tokens are locked first (in id order, so revokes never deadlock), then one
    /// guarded statement decides: of two revokes of the last two operator tokens the second waits
    /// for the first, and its statement (a new snapshot at READ COMMITTED) sees the first revoked.
    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<Revocation> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT id FROM tokens WHERE operator = 1 AND revoked_ms IS NULL ORDER BY id FOR UPDATE",
        )
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, $1) WHERE id = $2 \
             AND (operator = 0 OR revoked_ms IS NOT NULL OR EXISTS (\
                 SELECT 1 FROM tokens other WHERE other.operator = 1 AND other.id <> $2 \
                 AND other.revoked_ms IS NULL AND (other.expires_ms IS NULL OR other.expires_ms > $1))) \
             RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match row {
            Some(row) => Revocation::Revoked(token_from_row(&row)?),
            None => {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT id FROM tokens WHERE id = $1")
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

    /// One statement for the whole batch, the rows locked in id order first (replicas flushing the
    /// same tokens never deadlock); the guard keeps the newest time.
    async fn record_token_use(&self, used: &[(String, i64)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = used.iter().map(|(id, _)| id.as_str()).collect();
        let times: Vec<i64> = used.iter().map(|(_, at_ms)| *at_ms).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM tokens WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE tokens SET last_used_ms = used.at_ms \
             FROM (SELECT id, max(at_ms) AS at_ms FROM unnest($1::text[], $2::bigint[]) AS u(id, at_ms) GROUP BY id) used \
             WHERE tokens.id = used.id AND (tokens.last_used_ms IS NULL OR tokens.last_used_ms < used.at_ms)",
        )
        .bind(&ids)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn count_tokens(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.pool)
            .await?)
    }
}
