//! API tokens in SQLite: issue, look up, list, revoke, and the batched `last_used_ms` writes.
//!
//! The SQL is the dialect SQLite and PostgreSQL share (`RETURNING`, a CTE feeding `UPDATE … FROM`).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::{corrupt, json};
use crate::store::{Result, Revocation, TokenRecord};

const COLUMNS: &str =
    "id, hash, prefix, subscriptions, operator, created_ms, expires_ms, revoked_ms, last_used_ms";

/// Rows per multi-row statement (three bound parameters each at most).
const CHUNK: usize = 256;

fn from_row(row: &SqliteRow) -> Result<TokenRecord> {
    let subs: String = row.try_get("subscriptions")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        prefix: row.try_get("prefix")?,
        subscriptions: serde_json::from_str(&subs)
            .map_err(|e| corrupt("tokens.subscriptions", e))?,
        operator: row.try_get("operator")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
    })
}

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
/// only revoked while another live operator token exists. (On PostgreSQL this needs the
/// transaction to be SERIALIZABLE, or two revokes of the last two operator tokens could both pass;
/// SQLite's single writer serialises them.)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store as _};

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

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn tokens_round_trip_and_list_in_order() {
        let (_dir, store) = store().await;
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
    }

    #[tokio::test]
    async fn revoking_is_idempotent_and_never_takes_the_last_live_operator_token() {
        let (_dir, store) = store().await;
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

    #[tokio::test]
    async fn last_use_is_written_in_one_go_and_never_moves_back() {
        let (_dir, store) = store().await;
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
}
