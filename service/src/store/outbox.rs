//! The SIEM outbox (flags and presence failures, appended in the transaction
//! that records them) and the integrations that read it (docs/siem.md).
//!
//! Rows are read in `(txn, seq)` order and only once no running transaction
//! can still precede them, exactly as the shared risk log is: see
//! crate::store::risk_events for why identity order alone is not commit
//! order on PostgreSQL. Each integration keeps its own cursor in that order.

use super::risk_events::Position;
use super::{Backend, Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub txn: i64,
    pub tenant_id: String,
    pub kind: String,
    pub at_ms: i64,
    pub payload_json: String,
}

impl OutboxRow {
    pub fn position(&self) -> Position {
        Position { txn: self.txn, seq: self.seq }
    }
}

#[derive(Debug, Clone)]
pub struct Integration {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub format: String,
    pub tls: bool,
    pub secret: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub cursor: Position,
    pub failures: i64,
    pub next_attempt_ms: i64,
    pub last_error: String,
    pub last_delivered_at_ms: i64,
    pub delivered: i64,
}

fn stable(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "txn < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        Backend::Sqlite => "1 = 1",
    }
}

fn row_from(row: &AnyRow) -> StoreResult<OutboxRow> {
    Ok(OutboxRow {
        seq: row.try_get("seq")?,
        txn: row.try_get("txn")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("kind")?,
        at_ms: row.try_get("at_ms")?,
        payload_json: row.try_get("payload_json")?,
    })
}

fn integration_from(row: &AnyRow) -> StoreResult<Integration> {
    Ok(Integration {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        target: row.try_get("target")?,
        format: row.try_get("format")?,
        tls: row.try_get::<i64, _>("tls")? != 0,
        secret: row.try_get("secret")?,
        created_at_ms: row.try_get("created_at_ms")?,
        created_by: row.try_get("created_by")?,
        cursor: Position { txn: row.try_get("cursor_txn")?, seq: row.try_get("cursor_seq")? },
        failures: row.try_get("failures")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        last_error: row.try_get("last_error")?,
        last_delivered_at_ms: row.try_get("last_delivered_at_ms")?,
        delivered: row.try_get("delivered")?,
    })
}

/// Appends a row in the caller's transaction.
pub async fn append(tx: &mut Tx, tenant_id: &str, kind: &str, at_ms: i64, payload_json: &str) -> StoreResult<()> {
    sqlx::query("INSERT INTO outbox (tenant_id, kind, at_ms, payload_json) VALUES ($1, $2, $3, $4)")
        .bind(tenant_id)
        .bind(kind)
        .bind(at_ms)
        .bind(payload_json)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The tenant's stable rows after `cursor`, in order, at most `limit`.
pub async fn after(store: &Store, tenant_id: &str, cursor: Position, limit: i64) -> StoreResult<Vec<OutboxRow>> {
    let sql = format!(
        "SELECT * FROM outbox WHERE tenant_id = $1 AND (txn, seq) > ($2, $3) AND {} ORDER BY txn, seq LIMIT $4",
        stable(store.backend())
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(cursor.txn)
        .bind(cursor.seq)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(row_from).collect()
}

/// The tenant's last stable position, or START when it has none.
pub async fn last_stable(store: &Store, tenant_id: &str) -> StoreResult<Position> {
    let sql = format!(
        "SELECT txn, seq FROM outbox WHERE tenant_id = $1 AND {} ORDER BY txn DESC, seq DESC LIMIT 1",
        stable(store.backend())
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id).fetch_optional(store.pool()).await?;
    match row {
        Some(row) => Ok(Position { txn: row.try_get("txn")?, seq: row.try_get("seq")? }),
        None => Ok(Position { txn: -1, seq: -1 }),
    }
}

/// Rows in the whole outbox (the backlog metric).
pub async fn count(store: &Store) -> StoreResult<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox").fetch_one(store.pool()).await?;
    Ok(row.try_get("n")?)
}

/// Deletes the tenant's rows every one of its integrations has delivered
/// (all of them when it has none). Returns how many went.
pub async fn prune_delivered(store: &Store, tenant_id: &str) -> StoreResult<u64> {
    let done = sqlx::query(
        "DELETE FROM outbox WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM integrations i \
         WHERE i.tenant_id = $1 AND (i.cursor_txn < outbox.txn OR (i.cursor_txn = outbox.txn AND i.cursor_seq < outbox.seq)))",
    )
    .bind(tenant_id)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Keeps the tenant's newest `cap` rows and deletes the older ones, delivered
/// or not. Returns how many went.
pub async fn prune_over_cap(store: &Store, tenant_id: &str, cap: i64) -> StoreResult<u64> {
    let edge =
        sqlx::query("SELECT txn, seq FROM outbox WHERE tenant_id = $1 ORDER BY txn DESC, seq DESC LIMIT 1 OFFSET $2")
            .bind(tenant_id)
            .bind(cap)
            .fetch_optional(store.pool())
            .await?;
    let Some(edge) = edge else { return Ok(0) };
    let (txn, seq): (i64, i64) = (edge.try_get("txn")?, edge.try_get("seq")?);
    let done = sqlx::query("DELETE FROM outbox WHERE tenant_id = $1 AND (txn, seq) <= ($2, $3)")
        .bind(tenant_id)
        .bind(txn)
        .bind(seq)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Tenants with rows in the outbox, at most `limit`.
pub async fn tenants(store: &Store, limit: i64) -> StoreResult<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT tenant_id FROM outbox ORDER BY tenant_id LIMIT $1")
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(|r| Ok(r.try_get("tenant_id")?)).collect()
}

pub async fn insert_integration(tx: &mut Tx, i: &Integration) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, name, kind, target, format, tls, secret, created_at_ms, \
         created_by, cursor_txn, cursor_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&i.id)
    .bind(&i.tenant_id)
    .bind(&i.name)
    .bind(&i.kind)
    .bind(&i.target)
    .bind(&i.format)
    .bind(i64::from(i.tls))
    .bind(&i.secret)
    .bind(i.created_at_ms)
    .bind(&i.created_by)
    .bind(i.cursor.txn)
    .bind(i.cursor.seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list_integrations(store: &Store, tenant_id: &str) -> StoreResult<Vec<Integration>> {
    let rows = sqlx::query("SELECT * FROM integrations WHERE tenant_id = $1 ORDER BY id")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(integration_from).collect()
}

pub async fn count_integrations(store: &Store, tenant_id: &str) -> StoreResult<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM integrations WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(store.pool())
        .await?;
    Ok(row.try_get("n")?)
}

pub async fn get_integration(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Option<Integration>> {
    let row = sqlx::query("SELECT * FROM integrations WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(integration_from).transpose()
}

pub async fn delete_integration(tx: &mut Tx, tenant_id: &str, id: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM integrations WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Integrations due for an attempt, not leased, and with rows after their
/// cursor, oldest attempt first. Idle integrations are left out so that a
/// quiet tenant costs a read per tick, not a lease write.
pub async fn due(store: &Store, now_ms: i64, limit: i64) -> StoreResult<Vec<Integration>> {
    let rows = sqlx::query(
        "SELECT * FROM integrations i WHERE next_attempt_ms <= $1 AND lease_until_ms < $1 \
         AND EXISTS (SELECT 1 FROM outbox o WHERE o.tenant_id = i.tenant_id \
         AND (o.txn, o.seq) > (i.cursor_txn, i.cursor_seq)) \
         ORDER BY next_attempt_ms, id LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(integration_from).collect()
}

/// Takes the integration's lease for `owner` until `until_ms` unless another
/// replica holds one; true when this call took it.
pub async fn claim(store: &Store, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE integrations SET lease_owner = $2, lease_until_ms = $3 WHERE id = $1 AND lease_until_ms < $4",
    )
    .bind(id)
    .bind(owner)
    .bind(until_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the cursor past a delivered row and extends the lease to
/// `lease_until_ms` while `owner` holds it; false when it no longer does (it
/// expired and another replica took it).
pub async fn delivered(
    store: &Store,
    id: &str,
    owner: &str,
    to: Position,
    now_ms: i64,
    lease_until_ms: i64,
) -> StoreResult<bool> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE integrations SET cursor_txn = $3, cursor_seq = $4, failures = 0, next_attempt_ms = 0, \
         last_error = '', last_delivered_at_ms = $5, delivered = delivered + 1, lease_until_ms = $6 \
         WHERE id = $1 AND lease_owner = $2 AND (cursor_txn < $3 OR (cursor_txn = $3 AND cursor_seq < $4))",
    )
    .bind(id)
    .bind(owner)
    .bind(to.txn)
    .bind(to.seq)
    .bind(now_ms)
    .bind(lease_until_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt, when to try again, and gives the lease back.
pub async fn failed(store: &Store, id: &str, owner: &str, error: &str, next_attempt_ms: i64) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "UPDATE integrations SET failures = failures + 1, last_error = $3, next_attempt_ms = $4, \
         lease_owner = '', lease_until_ms = 0 WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(error)
    .bind(next_attempt_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives the lease back after a run with nothing left to send.
pub async fn release(store: &Store, id: &str, owner: &str) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    sqlx::query("UPDATE integrations SET lease_owner = '', lease_until_ms = 0 WHERE id = $1 AND lease_owner = $2")
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
