//! The inputs of one access decision in one statement (issue #17).
//!
//! Every statement is a round trip (on SQLite, two thread hand-offs through
//! sqlx's connection thread), and an access check used to make seven reads:
//! worker, named credential, device, tenant, the device's credentials, open
//! flags and the worker's first enrollment address. [`DECISION_INPUTS`] reads
//! them all as one `UNION ALL` of index searches (`service/tests/query_plans.rs`):
//! a head row joining the worker, the named credential, the device, the tenant
//! and the address; a row per credential of the device; a row per open flag.
//! What the rows mean is decided in `domain::access`.

use super::columns::Columns;
use super::credentials::Tier;
use super::inventory::{WORKER_COLUMNS, Worker, worker_from_prefixed_row};
use super::tenants::{self, Tenant};
use super::{Store, StoreError, StoreResult};
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

/// The rows of one decision (None: no such row).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub worker: Option<Worker>,
    /// The credential named by id in this tenant.
    pub credential: Option<CredentialState>,
    /// The device named by id, or else the named credential's device.
    pub device: Option<DeviceState>,
    pub tenant: Option<Tenant>,
    /// The address the worker's earliest active credential enrolled from
    /// (as `inventory::first_enrollment_ip`), for the risk event.
    pub first_enrollment_ip: Option<String>,
    /// The device's credentials when no credential was named, active ones
    /// first, newest first, then by id: `credentials::list_for_device`'s order.
    pub device_credentials: Vec<CredentialState>,
    /// Open (not resolved) flags on the device or the worker: kind and
    /// stored severity, sorted, each pair once (`flags::open_kinds`).
    pub open_flags: Vec<(String, String)>,
}

const CREDENTIAL_COLUMNS: [&str; 6] =
    ["id", "device_id", "tier", "revoked_at_ms", "last_presence_at_ms", "enrolled_at_ms"];

/// The device a request names: its device id, or else its named credential's.
const NAMED_DEVICE: &str =
    "COALESCE(NULLIF($4, ''), (SELECT n.device_id FROM credentials n WHERE n.tenant_id = $1 AND n.id = $3))";

/// Parameters: $1 tenant, $2 worker, $3 credential id ('' for none), $4 device id ('' to
/// take the credential's). Rows: `part` 'h' once (a one-row base left-joined to each
/// table), 'c' per credential of the device (only when no credential is named), 'f' per
/// open flag on the device or the worker. Every branch has every column, NULL where it
/// has no value.
pub static DECISION_INPUTS: LazyLock<String> = LazyLock::new(|| {
    let mut columns: Vec<(String, String)> = vec![("part".into(), "'h'".into())];
    columns.extend(WORKER_COLUMNS.iter().map(|c| (format!("w_{c}"), format!("w.{c}"))));
    columns.extend(CREDENTIAL_COLUMNS.iter().map(|c| (format!("c_{c}"), format!("c.{c}"))));
    columns.extend(["id", "worker_external_id", "revoked_at_ms"].iter().map(|c| (format!("d_{c}"), format!("d.{c}"))));
    columns.extend(tenants::COLUMNS.split(',').map(str::trim).map(|c| (format!("t_{c}"), format!("t.{c}"))));
    columns.push((
        "first_enrollment_ip".into(),
        "(SELECT e.enrolled_from_ip FROM credentials e WHERE e.tenant_id = $1 AND e.worker_external_id = $2 \
         AND e.revoked_at_ms IS NULL ORDER BY e.enrolled_at_ms, e.id LIMIT 1)"
            .into(),
    ));
    columns.push(("kind".into(), "NULL".into()));
    columns.push(("severity".into(), "NULL".into()));
    // Each later branch: its values by column name, NULL for the rest.
    let branch = |values: &[(String, String)]| -> String {
        columns
            .iter()
            .map(|(name, _)| values.iter().find(|(n, _)| n == name).map_or("NULL".to_string(), |(_, v)| v.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let head = columns.iter().map(|(name, value)| format!("{value} AS {name}")).collect::<Vec<_>>().join(", ");
    let mut credential = vec![("part".to_string(), "'c'".to_string())];
    credential.extend(CREDENTIAL_COLUMNS.iter().map(|c| (format!("c_{c}"), format!("x.{c}"))));
    let flag =
        [("part", "'f'"), ("kind", "g.kind"), ("severity", "g.severity")].map(|(n, v)| (n.to_string(), v.to_string()));
    format!(
        "SELECT {head} FROM (SELECT 1 AS one) base \
         LEFT JOIN workers w ON w.tenant_id = $1 AND w.external_id = $2 \
         LEFT JOIN credentials c ON c.tenant_id = $1 AND c.id = $3 \
         LEFT JOIN devices d ON d.tenant_id = $1 AND d.id = COALESCE(NULLIF($4, ''), c.device_id) \
         LEFT JOIN tenants t ON t.id = $1 \
         UNION ALL SELECT {credential} FROM credentials x \
         WHERE x.tenant_id = $1 AND x.device_id = {NAMED_DEVICE} AND $3 = '' \
         UNION ALL SELECT {flag} FROM flags g \
         WHERE g.tenant_id = $1 AND g.device_id = {NAMED_DEVICE} AND g.status <> 'resolved' \
         UNION ALL SELECT {flag} FROM flags g \
         WHERE g.tenant_id = $1 AND g.worker_external_id = $2 AND g.status <> 'resolved'",
        credential = branch(&credential),
        flag = branch(&flag),
    )
});

/// Every row one access decision reads, in one statement ([`DECISION_INPUTS`]).
pub async fn decision_inputs(
    store: &Store,
    tenant_id: &str,
    worker_external_id: &str,
    credential_id: &str,
    device_id: &str,
) -> StoreResult<Inputs> {
    let mut found = Inputs::default();
    let mut heads = 0;
    if let Some(direct) = store.direct() {
        direct.read(|conn| {
            let mut statement = conn.prepare_cached(DECISION_INPUTS.as_str())?;
            let values: [&dyn rusqlite::ToSql; 4] = [&tenant_id, &worker_external_id, &credential_id, &device_id];
            let mut rows = super::direct::query(&mut statement, &values)?;
            while let Some(row) = rows.next()? {
                take_row(row, &mut found, &mut heads)?;
            }
            Ok(())
        })?;
    } else {
        let rows = sqlx::query(sqlx::AssertSqlSafe(DECISION_INPUTS.as_str()))
            .bind(tenant_id)
            .bind(worker_external_id)
            .bind(credential_id)
            .bind(device_id)
            .fetch_all(store.pool())
            .await?;
        for row in &rows {
            take_row(row, &mut found, &mut heads)?;
        }
    }
    if heads != 1 {
        return Err(StoreError::Corrupt(format!("the decision's inputs query returned {heads} head rows, not 1")));
    }
    found.device_credentials.sort_by(|a, b| {
        let key = |c: &CredentialState| (c.revoked_at_ms.is_some(), std::cmp::Reverse(c.enrolled_at_ms), c.id.clone());
        key(a).cmp(&key(b))
    });
    found.open_flags.sort();
    found.open_flags.dedup();
    Ok(found)
}

/// Adds one row of [`DECISION_INPUTS`] to `found`, counting head rows in `heads`.
fn take_row(row: &impl Columns, found: &mut Inputs, heads: &mut usize) -> StoreResult<()> {
    let part: String = row.column("part")?;
    match part.as_str() {
        "h" => {
            *heads += 1;
            read_head(row, found)
        }
        "c" => {
            found.device_credentials.push(credential_from_row(row)?);
            Ok(())
        }
        "f" => {
            found.open_flags.push((row.column("kind")?, row.column("severity")?));
            Ok(())
        }
        other => Err(StoreError::Corrupt(format!("the decision's inputs query returned part {other:?}"))),
    }
}

fn read_head(row: &impl Columns, found: &mut Inputs) -> StoreResult<()> {
    let present = |column: &str| -> StoreResult<bool> { Ok(row.column::<Option<String>>(column)?.is_some()) };
    if present("w_external_id")? {
        found.worker = Some(worker_from_prefixed_row(row, "w_")?);
    }
    if present("c_id")? {
        found.credential = Some(credential_from_row(row)?);
    }
    if present("d_id")? {
        found.device = Some(DeviceState {
            id: row.column("d_id")?,
            worker_external_id: row.column("d_worker_external_id")?,
            revoked_at_ms: row.column("d_revoked_at_ms")?,
        });
    }
    if present("t_id")? {
        found.tenant = Some(tenants::from_prefixed_row(row, "t_")?);
    }
    found.first_enrollment_ip = row.column("first_enrollment_ip")?;
    Ok(())
}

/// A credential from the `c_` columns (the named one in the head row, or one of the device's).
fn credential_from_row(row: &impl Columns) -> StoreResult<CredentialState> {
    let tier: String = row.column("c_tier")?;
    let tier = Tier::parse(&tier).ok_or_else(|| StoreError::Corrupt(format!("credentials.tier holds {tier:?}")))?;
    Ok(CredentialState {
        id: row.column("c_id")?,
        device_id: row.column("c_device_id")?,
        tier,
        revoked_at_ms: row.column("c_revoked_at_ms")?,
        last_presence_at_ms: row.column("c_last_presence_at_ms")?,
        enrolled_at_ms: row.column("c_enrolled_at_ms")?,
    })
}
