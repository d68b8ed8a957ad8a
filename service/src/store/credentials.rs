//! Enrolled credentials: the binding worker ↔ device ↔ hardware key.

use super::columns::{Columns, FromColumns};
use super::{Store, StoreError, StoreResult, Tx, flag};

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
    /// Hex SHA-1 of the attestation certificate's public key; empty without one.
    pub attestation_key_id: String,
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

fn from_row(row: &impl Columns) -> StoreResult<Credential> {
    let tier: String = row.column("tier")?;
    let tier = Tier::parse(&tier).ok_or_else(|| StoreError::Corrupt(format!("credentials.tier holds {tier:?}")))?;
    Ok(Credential {
        tier,
        id: row.column("id")?,
        tenant_id: row.column("tenant_id")?,
        device_id: row.column("device_id")?,
        worker_external_id: row.column("worker_external_id")?,
        kind: row.column("kind")?,
        public_key_cose: row.column("public_key_cose")?,
        format: row.column("format")?,
        attestation_type: row.column("attestation_type")?,
        attested: flag(row.column("attested")?),
        attestation_reason: row.column("attestation_reason")?,
        trust_anchor: row.column("trust_anchor")?,
        aaguid: row.column("aaguid")?,
        attestation_key_id: row.column("attestation_key_id")?,
        sign_count: row.column("sign_count")?,
        enrolled_at_ms: row.column("enrolled_at_ms")?,
        enrolled_from_ip: row.column("enrolled_from_ip")?,
        revoked_at_ms: row.column("revoked_at_ms")?,
        revoke_reason: row.column("revoke_reason")?,
        last_presence_at_ms: row.column("last_presence_at_ms")?,
    })
}

impl FromColumns for Credential {
    fn from_columns(row: &impl Columns) -> StoreResult<Credential> {
        from_row(row)
    }
}

pub async fn insert(tx: &mut Tx, c: &Credential) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO credentials (id, tenant_id, device_id, worker_external_id, kind, public_key_cose, \
         format, attestation_type, attested, attestation_reason, trust_anchor, aaguid, sign_count, \
         enrolled_at_ms, enrolled_from_ip, attestation_key_id, tier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
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
    .bind(&c.attestation_key_id)
    .bind(c.tier.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Looks a credential up by its globally unique id (device calls carry no tenant).
pub async fn get(store: &Store, id: &str) -> StoreResult<Option<Credential>> {
    store.get_by_key("SELECT * FROM credentials WHERE id = $1", &[id]).await
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
    let done = sqlx::query(RECORD_PRESENCE).bind(id).bind(sign_count).bind(now_ms).execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

pub(super) const RECORD_PRESENCE: &str = "UPDATE credentials SET sign_count = $2, last_presence_at_ms = $3 \
     WHERE id = $1 AND revoked_at_ms IS NULL AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))";

/// Which column [`active_of_models`] matches.
#[derive(Debug, Clone, Copy)]
pub enum ModelColumn {
    Aaguid,
    AttestationKeyId,
}

/// Active credentials whose AAGUID (or attestation key id) is one of `values`, in every tenant
/// or only in `tenant_id`.
pub async fn active_of_models(
    store: &Store,
    tenant_id: Option<&str>,
    column: ModelColumn,
    values: &[String],
) -> StoreResult<Vec<Credential>> {
    let column = match column {
        ModelColumn::Aaguid => "aaguid",
        ModelColumn::AttestationKeyId => "attestation_key_id",
    };
    let mut found = Vec::new();
    for chunk in values.chunks(100) {
        let placeholders = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT * FROM credentials WHERE revoked_at_ms IS NULL AND ($1 = '' OR tenant_id = $1) \
             AND {column} IN ({placeholders}) ORDER BY tenant_id, id"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id.unwrap_or(""));
        for value in chunk {
            query = query.bind(value);
        }
        for row in query.fetch_all(store.pool()).await? {
            found.push(from_row(&row)?);
        }
    }
    Ok(found)
}
