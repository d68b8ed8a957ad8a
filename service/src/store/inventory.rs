//! Workers and the device inventory.

use super::columns::{Columns, FromColumns};
use super::{Store, StoreResult, Tx, prefixed};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct Worker {
    pub external_id: String,
    pub display_name: String,
    pub created_at_ms: i64,
    pub declared: Declared,
}

/// What an administrator declared for a worker (risk engine inputs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    /// Latitude and longitude, both or neither.
    pub home: Option<(f64, f64)>,
    /// ISO 3166-1 alpha-2, or empty.
    pub home_country: String,
    /// `Mon-Fri 09:00-17:00`, or empty.
    pub working_hours: String,
    /// IANA name or fixed offset; set when `working_hours` is.
    pub working_timezone: String,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub tenant_id: String,
    pub serial_number: String,
    pub model: String,
    pub asset_tag: String,
    pub worker_external_id: Option<String>,
    pub registered_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub revoke_reason: Option<String>,
}

fn worker_from_row(row: &impl Columns) -> StoreResult<Worker> {
    worker_from_prefixed_row(row, "")
}

impl FromColumns for Worker {
    fn from_columns(row: &impl Columns) -> StoreResult<Worker> {
        worker_from_row(row)
    }
}

/// The address a worker enrolled from, as one column.
struct EnrolledFrom(Option<String>);

impl FromColumns for EnrolledFrom {
    fn from_columns(row: &impl Columns) -> StoreResult<EnrolledFrom> {
        Ok(EnrolledFrom(row.column("enrolled_from_ip")?))
    }
}

/// The worker whose columns `row` holds as `<prefix><column>` (a join names them apart).
pub(crate) fn worker_from_prefixed_row(row: &impl Columns, prefix: &str) -> StoreResult<Worker> {
    let get = |column: &'static str| prefixed(prefix, column);
    Ok(Worker {
        external_id: row.column(&get("external_id"))?,
        display_name: row.column(&get("display_name"))?,
        created_at_ms: row.column(&get("created_at_ms"))?,
        declared: Declared {
            home: match (row.column::<Option<f64>>(&get("home_lat"))?, row.column::<Option<f64>>(&get("home_lon"))?) {
                (Some(lat), Some(lon)) => Some((lat, lon)),
                _ => None,
            },
            home_country: row.column(&get("home_country"))?,
            working_hours: row.column(&get("working_hours"))?,
            working_timezone: row.column(&get("working_timezone"))?,
        },
    })
}

/// Every column [`worker_from_prefixed_row`] reads.
pub(crate) const WORKER_COLUMNS: [&str; 8] = [
    "external_id",
    "display_name",
    "created_at_ms",
    "home_lat",
    "home_lon",
    "home_country",
    "working_hours",
    "working_timezone",
];

/// Replaces a worker's declared home and working hours (the worker exists).
pub async fn set_declared(tx: &mut Tx, tenant_id: &str, external_id: &str, d: &Declared) -> StoreResult<()> {
    sqlx::query(
        "UPDATE workers SET home_lat = $1, home_lon = $2, home_country = $3, working_hours = $4, \
         working_timezone = $5 WHERE tenant_id = $6 AND external_id = $7",
    )
    .bind(d.home.map(|h| h.0))
    .bind(d.home.map(|h| h.1))
    .bind(&d.home_country)
    .bind(&d.working_hours)
    .bind(&d.working_timezone)
    .bind(tenant_id)
    .bind(external_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every worker with a declaration, with its tenant (to warm the risk engine).
pub async fn declared_workers(store: &Store) -> StoreResult<Vec<(String, Worker)>> {
    let rows = sqlx::query("SELECT * FROM workers WHERE home_lat IS NOT NULL OR working_hours <> ''")
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(|row| Ok((row.try_get("tenant_id")?, worker_from_row(row)?))).collect()
}

fn device_from_row(row: &impl Columns) -> StoreResult<Device> {
    Ok(Device {
        id: row.column("id")?,
        tenant_id: row.column("tenant_id")?,
        serial_number: row.column("serial_number")?,
        model: row.column("model")?,
        asset_tag: row.column("asset_tag")?,
        worker_external_id: row.column("worker_external_id")?,
        registered_at_ms: row.column("registered_at_ms")?,
        revoked_at_ms: row.column("revoked_at_ms")?,
        revoke_reason: row.column("revoke_reason")?,
    })
}

impl FromColumns for Device {
    fn from_columns(row: &impl Columns) -> StoreResult<Device> {
        device_from_row(row)
    }
}

/// Creates the worker or renames it; returns the stored row.
pub async fn upsert_worker(
    tx: &mut Tx,
    tenant_id: &str,
    external_id: &str,
    display_name: &str,
    now_ms: i64,
) -> StoreResult<Worker> {
    sqlx::query(
        "INSERT INTO workers (tenant_id, external_id, display_name, created_at_ms) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, external_id) DO UPDATE SET display_name = excluded.display_name",
    )
    .bind(tenant_id)
    .bind(external_id)
    .bind(display_name)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query("SELECT * FROM workers WHERE tenant_id = $1 AND external_id = $2")
        .bind(tenant_id)
        .bind(external_id)
        .fetch_one(&mut **tx)
        .await?;
    worker_from_row(&row)
}

pub async fn get_worker(store: &Store, tenant_id: &str, external_id: &str) -> StoreResult<Option<Worker>> {
    store.get_by_key("SELECT * FROM workers WHERE tenant_id = $1 AND external_id = $2", &[tenant_id, external_id]).await
}

/// The address the worker's earliest active credential enrolled from: the
/// risk engine's stand-in for a home until one is declared.
pub async fn first_enrollment_ip(store: &Store, tenant_id: &str, external_id: &str) -> StoreResult<Option<String>> {
    let found: Option<EnrolledFrom> = store
        .get_by_key(
            "SELECT enrolled_from_ip FROM credentials WHERE tenant_id = $1 AND worker_external_id = $2 \
             AND revoked_at_ms IS NULL ORDER BY enrolled_at_ms, id LIMIT 1",
            &[tenant_id, external_id],
        )
        .await?;
    Ok(found.and_then(|f| f.0))
}

pub async fn list_workers(store: &Store, tenant_id: &str, after: &str, limit: i64) -> StoreResult<Vec<Worker>> {
    let rows = sqlx::query(
        "SELECT * FROM workers WHERE tenant_id = $1 AND external_id > $2 \
         ORDER BY external_id LIMIT $3",
    )
    .bind(tenant_id)
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(worker_from_row).collect()
}

pub async fn insert_device(tx: &mut Tx, device: &Device) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, tenant_id, serial_number, model, asset_tag, worker_external_id, \
         registered_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&device.id)
    .bind(&device.tenant_id)
    .bind(&device.serial_number)
    .bind(&device.model)
    .bind(&device.asset_tag)
    .bind(device.worker_external_id.as_deref())
    .bind(device.registered_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get_device(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Option<Device>> {
    store.get_by_key("SELECT * FROM devices WHERE tenant_id = $1 AND id = $2", &[tenant_id, id]).await
}

pub async fn list_devices(
    store: &Store,
    tenant_id: &str,
    worker_external_id: &str,
    include_revoked: bool,
    after: &str,
    limit: i64,
) -> StoreResult<Vec<Device>> {
    let rows = sqlx::query(
        "SELECT * FROM devices WHERE tenant_id = $1 \
         AND ($2 = '' OR worker_external_id = $2) \
         AND ($3 = 1 OR revoked_at_ms IS NULL) \
         AND id > $4 ORDER BY id LIMIT $5",
    )
    .bind(tenant_id)
    .bind(worker_external_id)
    .bind(i64::from(include_revoked))
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(device_from_row).collect()
}

pub async fn assign_device(tx: &mut Tx, tenant_id: &str, id: &str, worker_external_id: &str) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE devices SET worker_external_id = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .bind(worker_external_id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes the device and every credential on it, in the caller's transaction.
pub async fn revoke_device(tx: &mut Tx, tenant_id: &str, id: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE devices SET revoked_at_ms = COALESCE(revoked_at_ms, $3), \
         revoke_reason = COALESCE(revoke_reason, $4) WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now_ms)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE credentials SET revoked_at_ms = $3, revoke_reason = $4 \
         WHERE tenant_id = $1 AND device_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now_ms)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
