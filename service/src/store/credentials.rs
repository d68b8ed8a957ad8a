//! Enrolled credentials: the binding worker ↔ device ↔ hardware key.

use super::{Store, StoreError, StoreResult, Tx, flag};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct Credential {
    /// base64url of the raw credential id.
    pub id: String,
    pub tenant_id: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub kind: String,
    pub public_key_cose: Vec<u8>,
    pub format: String,
    pub attestation_type: String,
    /// True exactly when `tier` is hardware-attested.
    pub attested: bool,
    pub tier: Tier,
    pub attestation_reason: String,
    pub trust_anchor: String,
    pub aaguid: String,
    pub sign_count: i64,
    pub enrolled_at_ms: i64,
    pub enrolled_from_ip: String,
    pub revoked_at_ms: Option<i64>,
    pub revoke_reason: Option<String>,
    pub last_presence_at_ms: Option<i64>,
}

/// What a credential's attestation proved, recorded at enrollment (docs/trust.md#attestation-tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    SelfOrNone,
    HardwareUnverified,
    HardwareAttested,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::HardwareAttested => "hardware_attested",
            Tier::HardwareUnverified => "hardware_unverified",
            Tier::SelfOrNone => "self_or_none",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        [Tier::HardwareAttested, Tier::HardwareUnverified, Tier::SelfOrNone].into_iter().find(|t| t.as_str() == s)
    }
}

fn from_row(row: &AnyRow) -> StoreResult<Credential> {
    let tier: String = row.try_get("tier")?;
    let tier = Tier::parse(&tier).ok_or_else(|| StoreError::Corrupt(format!("credentials.tier holds {tier:?}")))?;
    Ok(Credential {
        tier,
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        device_id: row.try_get("device_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        kind: row.try_get("kind")?,
        public_key_cose: row.try_get("public_key_cose")?,
        format: row.try_get("format")?,
        attestation_type: row.try_get("attestation_type")?,
        attested: flag(row.try_get("attested")?),
        attestation_reason: row.try_get("attestation_reason")?,
        trust_anchor: row.try_get("trust_anchor")?,
        aaguid: row.try_get("aaguid")?,
        sign_count: row.try_get("sign_count")?,
        enrolled_at_ms: row.try_get("enrolled_at_ms")?,
        enrolled_from_ip: row.try_get("enrolled_from_ip")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        revoke_reason: row.try_get("revoke_reason")?,
        last_presence_at_ms: row.try_get("last_presence_at_ms")?,
    })
}

pub async fn insert(tx: &mut Tx, c: &Credential) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO credentials (id, tenant_id, device_id, worker_external_id, kind, public_key_cose, \
         format, attestation_type, attested, attestation_reason, trust_anchor, aaguid, sign_count, \
         enrolled_at_ms, enrolled_from_ip, tier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&c.id)
    .bind(&c.tenant_id)
    .bind(&c.device_id)
    .bind(&c.worker_external_id)
    .bind(&c.kind)
    .bind(&c.public_key_cose)
    .bind(&c.format)
    .bind(&c.attestation_type)
    .bind(i64::from(c.attested))
    .bind(&c.attestation_reason)
    .bind(&c.trust_anchor)
    .bind(&c.aaguid)
    .bind(c.sign_count)
    .bind(c.enrolled_at_ms)
    .bind(&c.enrolled_from_ip)
    .bind(c.tier.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Looks a credential up by its globally unique id (device calls carry no tenant).
pub async fn get(store: &Store, id: &str) -> StoreResult<Option<Credential>> {
    let row = sqlx::query("SELECT * FROM credentials WHERE id = $1").bind(id).fetch_optional(store.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_in_tenant(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Option<Credential>> {
    let row = sqlx::query("SELECT * FROM credentials WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every credential of a device, active ones first, newest first.
pub async fn list_for_device(store: &Store, tenant_id: &str, device_id: &str) -> StoreResult<Vec<Credential>> {
    let rows = sqlx::query(
        "SELECT * FROM credentials WHERE tenant_id = $1 AND device_id = $2 \
         ORDER BY (CASE WHEN revoked_at_ms IS NULL THEN 0 ELSE 1 END), enrolled_at_ms DESC, id",
    )
    .bind(tenant_id)
    .bind(device_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn revoke(tx: &mut Tx, tenant_id: &str, id: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE credentials SET revoked_at_ms = COALESCE(revoked_at_ms, $3), \
         revoke_reason = COALESCE(revoke_reason, $4) WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now_ms)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a verified presence answer. The counter only moves forward: the
/// update matches nothing when another answer already stored a counter at
/// least as high (returns false), which the caller treats as a clone.
pub async fn record_presence(tx: &mut Tx, id: &str, sign_count: i64, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE credentials SET sign_count = $2, last_presence_at_ms = $3 \
         WHERE id = $1 AND revoked_at_ms IS NULL AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
    )
    .bind(id)
    .bind(sign_count)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Active (not revoked) credentials, in every tenant, whose AAGUID is one of `aaguids`. Runs
/// when a FIDO metadata BLOB is loaded (startup, file change), never per request.
pub async fn active_with_aaguids(store: &Store, aaguids: &[String]) -> StoreResult<Vec<Credential>> {
    let mut found = Vec::new();
    for chunk in aaguids.chunks(100) {
        let placeholders = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT * FROM credentials WHERE revoked_at_ms IS NULL AND aaguid IN ({placeholders}) \
             ORDER BY tenant_id, id"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for aaguid in chunk {
            query = query.bind(aaguid);
        }
        for row in query.fetch_all(store.pool()).await? {
            found.push(from_row(&row)?);
        }
    }
    Ok(found)
}
