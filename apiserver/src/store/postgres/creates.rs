//! Group commit of creates in PostgreSQL: concurrent creates are gathered by a few tasks and each
//! batch is one transaction of a constant number of statements (arrays through `unnest`), so a
//! create costs a fraction of a statement and of a commit.
//!
//! What keeps a batch correct beside other batches and other replicas: names and DNS labels are
//! unique indexes (`ON CONFLICT DO NOTHING` skips a taken one); the quota is one guarded upsert of
//! the subscription's usage row per subscription (re-evaluated on the newest row, and the row stays
//! locked until commit); the resource groups the batch creates into are held `FOR KEY SHARE` (a
//! delete waits) or inserted under the subscription's advisory lock (the limit is a count; see
//! `resource_groups`). A batch PostgreSQL aborts to break a deadlock is run again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::resource_groups;
use crate::store::rows::json;
use crate::store::sqlx_error::is_retryable;
use crate::store::{
    Conflict, NewGroup, ResourceGroupCreation, ResourceGroupRecord, Result, StoreError,
};

/// Creates gathered into one transaction at most.
const CREATE_BATCH: usize = 256;
/// Batches in flight at once (each on its own connection).
const WRITERS: usize = 4;
/// Times a batch aborted by a deadlock or a serialization failure is tried.
const ATTEMPTS: usize = 4;

pub(super) type CreateRequest = (NewGroup, oneshot::Sender<Result<()>>);

type Sql<T> = std::result::Result<T, sqlx::Error>;

/// Starts the writers; they run until every sender is gone.
pub(super) fn spawn(pool: PgPool) -> mpsc::Sender<CreateRequest> {
    let (tx, rx) = mpsc::channel(4096);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..WRITERS {
        tokio::spawn(writer(pool.clone(), rx.clone()));
    }
    tx
}

/// Takes whatever creates have queued (while another writer commits its batch) and commits them.
async fn writer(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<CreateRequest>>>) {
    let mut batch = Vec::with_capacity(CREATE_BATCH);
    loop {
        if rx.lock().await.recv_many(&mut batch, CREATE_BATCH).await == 0 {
            return;
        }
        let groups: Vec<&NewGroup> = batch.iter().map(|(g, _)| g).collect();
        let mut outcome = commit(&pool, &groups).await;
        for _ in 1..ATTEMPTS {
            match &outcome {
                Err(err) if is_retryable(err) => outcome = commit(&pool, &groups).await,
                _ => break,
            }
        }
        let results = match outcome {
            Ok(results) => results,
            Err(err) => {
                tracing::error!(error = %err, creates = groups.len(), "create batch failed");
                groups
                    .iter()
                    .map(|_| Err(StoreError::Unavailable))
                    .collect()
            }
        };
        for ((_, reply), result) in batch.drain(..).zip(results) {
            // A caller that went away (client hung up) does not need its answer.
            let _ = reply.send(result);
        }
    }
}

async fn commit(pool: &PgPool, groups: &[&NewGroup]) -> Sql<Vec<Result<()>>> {
    let mut results: Vec<Option<Result<()>>> = groups.iter().map(|_| None).collect();
    let mut tx = pool.begin().await?;

    // 1. The groups, all at once; a row that breaks a uniqueness rule (name or FQDN) is skipped.
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO groups (id, subscription, resource_group, resource_group_as, name, location, tags, spec, \
         sealed_spec, os_type, cpu_millis, memory_mib, gpu, fqdn, generation, desired, provisioning_state, \
         events, created_ms, updated_ms) \
         SELECT u.id, u.subscription, u.resource_group, u.resource_group_as, u.name, u.location, u.tags, u.spec, \
         u.sealed_spec, u.os_type, u.cpu_millis, u.memory_mib, u.gpu, u.fqdn, 1, 'Running', 'Pending', '[]', \
         u.now_ms, u.now_ms \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
              $8::text[], $9::bytea[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[], \
              $15::bigint[]) \
           AS u(id, subscription, resource_group, resource_group_as, name, location, tags, spec, sealed_spec, \
                os_type, cpu_millis, memory_mib, gpu, fqdn, now_ms) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(column(groups, |g| g.id.clone()))
    .bind(column(groups, |g| g.key.subscription.clone()))
    .bind(column(groups, |g| g.key.resource_group.clone()))
    .bind(column(groups, |g| g.resource_group_as.clone()))
    .bind(column(groups, |g| g.key.name.clone()))
    .bind(column(groups, |g| g.location.clone()))
    .bind(column(groups, |g| json(&g.tags)))
    .bind(column(groups, |g| json(&g.spec.redacted())))
    .bind(column(groups, |g| g.sealed_spec.clone()))
    .bind(column(groups, |g| g.spec.os_type.as_str().to_owned()))
    .bind(column(groups, |g| g.spec.requests().cpu_millis as i64))
    .bind(column(groups, |g| g.spec.requests().memory_mib as i64))
    .bind(column(groups, |g| i64::from(g.spec.requests().gpu)))
    .bind(column(groups, |g| g.fqdn.clone()))
    .bind(column(groups, |g| g.now_ms))
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    for (i, g) in groups.iter().enumerate() {
        if !inserted.contains(&g.id) {
            results[i] = Some(Err(StoreError::Conflict(conflict_kind(&mut tx, g).await?)));
        }
    }

    // 2. Quotas, per subscription: all of a subscription's creates in one conditional upsert; if
    //    they do not fit together, one by one, so each gets its own answer.
    let mut refused = Vec::new();
    for (sub, members) in &by(groups, &results, |g| g.key.subscription.as_str()) {
        let quota = groups[members[0]].quota;
        let cpu: u64 = members
            .iter()
            .map(|i| groups[*i].spec.requests().cpu_millis)
            .sum();
        if count(&mut tx, sub, members.len() as i64, cpu, quota).await? {
            continue;
        }
        for i in members {
            let cpu = groups[*i].spec.requests().cpu_millis;
            if !count(&mut tx, sub, 1, cpu, quota).await? {
                let (groups_used, cpu_used) = usage(&mut tx, sub).await?;
                results[*i] = Some(Err(StoreError::QuotaExceeded {
                    groups: groups_used,
                    cpu_millis: cpu_used,
                }));
                refused.push(groups[*i].id.clone());
            }
        }
    }

    // 3. Resource groups: the existing ones held until commit; those that do not exist yet made,
    //    with the location of the first group created into them. A group whose resource group
    //    would pass the subscription's limit is refused, and given back its quota.
    let wanted = by(groups, &results, |g| {
        (g.key.subscription.as_str(), g.key.resource_group.as_str())
    });
    let mut held = hold(&mut tx, wanted.keys().copied()).await?;
    for (key, members) in &wanted {
        if held.contains(key) {
            continue;
        }
        let first = groups[members[0]];
        let record = ResourceGroupRecord {
            subscription: first.key.subscription.clone(),
            name: first.resource_group_as.clone(),
            location: first.location.clone(),
            tags: BTreeMap::new(),
            created_ms: first.now_ms,
            updated_ms: first.now_ms,
        };
        let made = loop {
            match resource_groups::insert(&mut tx, &record).await? {
                ResourceGroupCreation::Created => break true,
                ResourceGroupCreation::LimitReached => break false,
                // Made by a concurrent create meanwhile: hold it (unless deleted again since).
                ResourceGroupCreation::Exists => {
                    held.extend(hold(&mut tx, [*key]).await?);
                    if held.contains(key) {
                        break true;
                    }
                }
            }
        };
        if made {
            continue;
        }
        for i in members {
            let g = groups[*i];
            sqlx::query(
                "UPDATE subscription_usage SET groups = groups - 1, cpu_millis = cpu_millis - $1 \
                 WHERE subscription = $2",
            )
            .bind(g.spec.requests().cpu_millis as i64)
            .bind(&g.key.subscription)
            .execute(&mut *tx)
            .await?;
            results[*i] = Some(Err(StoreError::ResourceGroupLimit));
            refused.push(g.id.clone());
        }
    }
    if !refused.is_empty() {
        sqlx::query("DELETE FROM groups WHERE id = ANY($1)")
            .bind(&refused)
            .execute(&mut *tx)
            .await?;
    }

    // 4. The create operations of the groups that made it.
    let created: Vec<&NewGroup> = groups
        .iter()
        .enumerate()
        .filter(|(i, _)| results[*i].is_none())
        .map(|(_, g)| *g)
        .collect();
    if !created.is_empty() {
        sqlx::query(
            "INSERT INTO operations (id, subscription, group_id, resource_id, kind, generation, status, started_ms) \
             SELECT u.id, u.subscription, u.group_id, u.resource_id, 'create', 1, 'Pending', u.started_ms \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
               AS u(id, subscription, group_id, resource_id, started_ms)",
        )
        .bind(column(&created, |g| g.operation_id.clone()))
        .bind(column(&created, |g| g.key.subscription.clone()))
        .bind(column(&created, |g| g.id.clone()))
        .bind(column(&created, |g| g.resource_id.clone()))
        .bind(column(&created, |g| g.now_ms))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

/// One column of the batch, as an array to bind.
fn column<T>(groups: &[&NewGroup], value: impl Fn(&NewGroup) -> T) -> Vec<T> {
    groups.iter().map(|g| value(g)).collect()
}

/// The creates still going ahead, by `key`, in key order (so locks are taken in one order).
fn by<'a, K: Ord>(
    groups: &[&'a NewGroup],
    results: &[Option<Result<()>>],
    key: impl Fn(&'a NewGroup) -> K,
) -> BTreeMap<K, Vec<usize>> {
    let mut out: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        if results[i].is_none() {
            out.entry(key(g)).or_default().push(i);
        }
    }
    out
}

/// Holds the existing ones of these resource groups `FOR KEY SHARE` until commit; returns them.
async fn hold<'a>(
    conn: &mut PgConnection,
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Sql<BTreeSet<(&'a str, &'a str)>> {
    let keys: Vec<(&str, &str)> = keys.into_iter().collect();
    if keys.is_empty() {
        return Ok(BTreeSet::new());
    }
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT subscription, name FROM resource_groups \
         WHERE (subscription, name) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
         ORDER BY subscription, name FOR KEY SHARE",
    )
    .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let found: HashSet<(String, String)> = found.into_iter().collect();
    Ok(keys
        .into_iter()
        .filter(|(s, n)| found.contains(&((*s).to_owned(), (*n).to_owned())))
        .collect())
}

/// Which uniqueness rule a skipped row broke.
async fn conflict_kind(conn: &mut PgConnection, g: &NewGroup) -> Sql<Conflict> {
    let taken: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM groups WHERE subscription = $1 AND resource_group = $2 AND name = $3",
    )
    .bind(&g.key.subscription)
    .bind(&g.key.resource_group)
    .bind(&g.key.name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(if taken.is_some() || g.fqdn.is_none() {
        Conflict::GroupName
    } else {
        Conflict::DnsLabel
    })
}

/// Counts `n` groups and `cpu` millicores against the subscription's quota, if they fit.
async fn count(
    conn: &mut PgConnection,
    sub: &str,
    n: i64,
    cpu: u64,
    quota: (i64, u64),
) -> Sql<bool> {
    if n > quota.0 || cpu > quota.1 {
        return Ok(false);
    }
    let counted = sqlx::query(
        "INSERT INTO subscription_usage AS u (subscription, groups, cpu_millis) VALUES ($1, $2, $3) \
         ON CONFLICT (subscription) DO UPDATE SET groups = u.groups + $2, cpu_millis = u.cpu_millis + $3 \
         WHERE u.groups + $2 <= $4 AND u.cpu_millis + $3 <= $5",
    )
    .bind(sub)
    .bind(n)
    .bind(cpu as i64)
    .bind(quota.0)
    .bind(quota.1 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(counted.rows_affected() == 1)
}

async fn usage(conn: &mut PgConnection, sub: &str) -> Sql<(i64, u64)> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT groups, cpu_millis FROM subscription_usage WHERE subscription = $1")
            .bind(sub)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map_or((0, 0), |(groups, cpu)| (groups, cpu as u64)))
}
