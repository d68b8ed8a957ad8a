//! The inputs of one access decision in two statements (issue #17).
//!
//! Every statement is a round trip (on SQLite, two thread hand-offs through
//! sqlx's connection thread), and an access check used to make seven reads:
//! worker, named credential, device, tenant, the device's credentials, open
//! flags and the worker's first enrollment address. [`head`] reads the first
//! four and the address in one join; [`standing`] reads the credentials and the
//! open flags in one `UNION ALL`. Both are index searches on SQLite
//! (`service/tests/query_plans.rs`). What the rows mean is decided in
//! `domain::access`.

use super::credentials::Tier;
use super::inventory::{WORKER_COLUMNS, Worker, worker_from_prefixed_row};
use super::tenants::{self, Tenant};
use super::{Store, StoreError, StoreResult};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::LazyLock;

/// What a decision needs of a credential.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialState {
    pub id: String,
    pub device_id: String,
    pub tier: Tier,
    pub revoked_at_ms: Option<i64>,
    pub last_presence_at_ms: Option<i64>,
    pub enrolled_at_ms: i64,
}

/// What a decision needs of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    pub id: String,
    pub worker_external_id: Option<String>,
    pub revoked_at_ms: Option<i64>,
}

/// The rows [`head`] found (None: no such row).
#[derive(Debug, Clone)]
pub struct Head {
    pub worker: Option<Worker>,
    /// The credential named by id in this tenant.
    pub credential: Option<CredentialState>,
    /// The device named by id, or else the named credential's device.
    pub device: Option<DeviceState>,
    pub tenant: Option<Tenant>,
    /// The address the worker's earliest active credential enrolled from
    /// (as `inventory::first_enrollment_ip`), for the risk event.
    pub first_enrollment_ip: Option<String>,
}

/// Parameters: $1 tenant, $2 worker, $3 credential id ('' for none), $4 device id ('' to
/// take the credential's). One row always: a one-row base left-joined to each table.
pub static HEAD: LazyLock<String> = LazyLock::new(|| {
    let worker: Vec<String> = WORKER_COLUMNS.iter().map(|c| format!("w.{c} AS w_{c}")).collect();
    let tenant: Vec<String> = tenants::COLUMNS.split(',').map(str::trim).map(|c| format!("t.{c} AS t_{c}")).collect();
    format!(
        "SELECT {worker}, \
         c.id AS c_id, c.device_id AS c_device_id, c.tier AS c_tier, c.revoked_at_ms AS c_revoked_at_ms, \
         c.last_presence_at_ms AS c_last_presence_at_ms, c.enrolled_at_ms AS c_enrolled_at_ms, \
         d.id AS d_id, d.worker_external_id AS d_worker_external_id, d.revoked_at_ms AS d_revoked_at_ms, \
         {tenant}, \
         (SELECT e.enrolled_from_ip FROM credentials e WHERE e.tenant_id = $1 AND e.worker_external_id = $2 \
          AND e.revoked_at_ms IS NULL ORDER BY e.enrolled_at_ms, e.id LIMIT 1) AS first_enrollment_ip \
         FROM (SELECT 1 AS one) base \
         LEFT JOIN workers w ON w.tenant_id = $1 AND w.external_id = $2 \
         LEFT JOIN credentials c ON c.tenant_id = $1 AND c.id = $3 \
         LEFT JOIN devices d ON d.tenant_id = $1 AND d.id = COALESCE(NULLIF($4, ''), c.device_id) \
         LEFT JOIN tenants t ON t.id = $1",
        worker = worker.join(", "),
        tenant = tenant.join(", "),
    )
});

/// The worker, the named credential, the device, the tenant and the worker's
/// first enrollment address, in one statement.
pub async fn head(
    store: &Store,
    tenant_id: &str,
    worker_external_id: &str,
    credential_id: &str,
    device_id: &str,
) -> StoreResult<Head> {
    let row = sqlx::query(sqlx::AssertSqlSafe(HEAD.as_str()))
        .bind(tenant_id)
        .bind(worker_external_id)
        .bind(credential_id)
        .bind(device_id)
        .fetch_one(store.pool())
        .await?;
    let present = |column: &str| -> StoreResult<bool> { Ok(row.try_get::<Option<String>, _>(column)?.is_some()) };
    let worker = if present("w_external_id")? { Some(worker_from_prefixed_row(&row, "w_")?) } else { None };
    let credential = if present("c_id")? { Some(credential_from_row(&row, "c_")?) } else { None };
    let device = if present("d_id")? {
        Some(DeviceState {
            id: row.try_get("d_id")?,
            worker_external_id: row.try_get("d_worker_external_id")?,
            revoked_at_ms: row.try_get("d_revoked_at_ms")?,
        })
    } else {
        None
    };
    let tenant = if present("t_id")? { Some(tenants::from_prefixed_row(&row, "t_")?) } else { None };
    Ok(Head { worker, credential, device, tenant, first_enrollment_ip: row.try_get("first_enrollment_ip")? })
}

fn credential_from_row(row: &AnyRow, prefix: &str) -> StoreResult<CredentialState> {
    let get = |column: &'static str| super::prefixed(prefix, column);
    let tier: String = row.try_get(&*get("tier"))?;
    let tier = Tier::parse(&tier).ok_or_else(|| StoreError::Corrupt(format!("credentials.tier holds {tier:?}")))?;
    Ok(CredentialState {
        id: row.try_get(&*get("id"))?,
        device_id: row.try_get(&*get("device_id"))?,
        tier,
        revoked_at_ms: row.try_get(&*get("revoked_at_ms"))?,
        last_presence_at_ms: row.try_get(&*get("last_presence_at_ms"))?,
        enrolled_at_ms: row.try_get(&*get("enrolled_at_ms"))?,
    })
}

/// What [`standing`] found.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// The device's credentials (none when not asked for), active ones first,
    /// newest first, then by id: `credentials::list_for_device`'s order.
    pub credentials: Vec<CredentialState>,
    /// Open (not resolved) flags on the device or the worker: kind and
    /// stored severity, sorted, each pair once (`flags::open_kinds`).
    pub open_flags: Vec<(String, String)>,
}

/// Parameters: $1 tenant, $2 device, $3 worker, $4 1 to list the device's credentials.
/// Three index searches: `credentials_device`, and `flags::OPEN_KINDS`'s two.
pub const STANDING: &str = "SELECT 'c' AS part, id, device_id, tier, revoked_at_ms, last_presence_at_ms, \
     enrolled_at_ms, NULL AS kind, NULL AS severity FROM credentials WHERE tenant_id = $1 AND device_id = $2 AND $4 = 1 \
     UNION ALL SELECT 'f', NULL, NULL, NULL, NULL, NULL, NULL, kind, severity FROM flags \
     WHERE tenant_id = $1 AND device_id = $2 AND status <> 'resolved' \
     UNION ALL SELECT 'f', NULL, NULL, NULL, NULL, NULL, NULL, kind, severity FROM flags \
     WHERE tenant_id = $1 AND worker_external_id = $3 AND status <> 'resolved'";

/// The device's credentials (when `with_credentials`) and the open flags on
/// the device or the worker, in one statement.
pub async fn standing(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    worker_external_id: &str,
    with_credentials: bool,
) -> StoreResult<Standing> {
    let rows = sqlx::query(STANDING)
        .bind(tenant_id)
        .bind(device_id)
        .bind(worker_external_id)
        .bind(i64::from(with_credentials))
        .fetch_all(store.pool())
        .await?;
    let mut found = Standing::default();
    for row in &rows {
        let part: String = row.try_get("part")?;
        match part.as_str() {
            "c" => found.credentials.push(credential_from_row(row, "")?),
            "f" => found.open_flags.push((row.try_get("kind")?, row.try_get("severity")?)),
            other => return Err(StoreError::Corrupt(format!("the decision's standing query returned part {other:?}"))),
        }
    }
    found.credentials.sort_by(|a, b| {
        (a.revoked_at_ms.is_some(), std::cmp::Reverse(a.enrolled_at_ms), &a.id).cmp(&(
            b.revoked_at_ms.is_some(),
            std::cmp::Reverse(b.enrolled_at_ms),
            &b.id,
        ))
    });
    found.open_flags.sort();
    found.open_flags.dedup();
    Ok(found)
}
