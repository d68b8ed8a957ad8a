//! TPM 2.0 devices: the inventory's EK pin, credential-activation ceremonies and the
//! per-credential TPM state (the activated AK and the last quote's clock reading).

use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A credential-activation ceremony opened by BeginTpmEnrollment.
#[derive(Debug, Clone)]
pub struct TpmEnrollment {
    pub id: String,
    pub tenant_id: String,
    pub token_id: String,
    pub credential_id: String,
    pub ak_public: Vec<u8>,
    pub ek_pin: String,
    pub secret_hash: Vec<u8>,
    pub attested: bool,
    pub attestation_reason: String,
    pub trust_anchor: String,
    pub ek_manufacturer: String,
    pub ek_model: String,
    pub ek_firmware: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// The last accepted quote's clock reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub firmware_version: u64,
}

/// What Tether keeps about a TPM credential besides the common credential row.
#[derive(Debug, Clone)]
pub struct TpmCredential {
    pub credential_id: String,
    pub tenant_id: String,
    pub ak_public: Vec<u8>,
    pub ek_pin: String,
    pub ek_manufacturer: String,
    pub ek_model: String,
    pub ek_firmware: String,
    pub last: Option<Clock>,
}

fn enrollment_from_row(row: &AnyRow) -> StoreResult<TpmEnrollment> {
    Ok(TpmEnrollment {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        token_id: row.try_get("token_id")?,
        credential_id: row.try_get("credential_id")?,
        ak_public: row.try_get("ak_public")?,
        ek_pin: row.try_get("ek_pin")?,
        secret_hash: row.try_get("secret_hash")?,
        attested: super::flag(row.try_get("attested")?),
        attestation_reason: row.try_get("attestation_reason")?,
        trust_anchor: row.try_get("trust_anchor")?,
        ek_manufacturer: row.try_get("ek_manufacturer")?,
        ek_model: row.try_get("ek_model")?,
        ek_firmware: row.try_get("ek_firmware")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

fn credential_from_row(row: &AnyRow) -> StoreResult<TpmCredential> {
    let clock: Option<i64> = row.try_get("clock")?;
    let reset: Option<i64> = row.try_get("reset_count")?;
    let restart: Option<i64> = row.try_get("restart_count")?;
    let firmware: Option<String> = row.try_get("firmware_version")?;
    let corrupt = |what: &str| super::StoreError::Corrupt(format!("stored TPM {what} is out of range"));
    let last = match (clock, reset, restart, firmware) {
        (Some(clock), Some(reset), Some(restart), Some(firmware)) => Some(Clock {
            clock: u64::try_from(clock).map_err(|_| corrupt("clock"))?,
            reset_count: u32::try_from(reset).map_err(|_| corrupt("reset count"))?,
            restart_count: u32::try_from(restart).map_err(|_| corrupt("restart count"))?,
            firmware_version: u64::from_str_radix(&firmware, 16).map_err(|_| corrupt("firmware version"))?,
        }),
        _ => None,
    };
    Ok(TpmCredential {
        credential_id: row.try_get("credential_id")?,
        tenant_id: row.try_get("tenant_id")?,
        ak_public: row.try_get("ak_public")?,
        ek_pin: row.try_get("ek_pin")?,
        ek_manufacturer: row.try_get("ek_manufacturer")?,
        ek_model: row.try_get("ek_model")?,
        ek_firmware: row.try_get("ek_firmware")?,
        last,
    })
}

/// The device's pinned EK (hex SHA-256 of its SubjectPublicKeyInfo), if any.
pub async fn device_ek_pin(store: &Store, tenant_id: &str, device_id: &str) -> StoreResult<Option<String>> {
    let row = sqlx::query("SELECT ek_pin FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(device_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<Option<String>, _>("ek_pin")?,
        None => None,
    })
}

/// Within a transaction: the pin as the transaction sees it.
pub async fn device_ek_pin_tx(tx: &mut Tx, tenant_id: &str, device_id: &str) -> StoreResult<Option<String>> {
    let row = sqlx::query("SELECT ek_pin FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(device_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<Option<String>, _>("ek_pin")?,
        None => None,
    })
}

pub async fn set_device_ek_pin(tx: &mut Tx, tenant_id: &str, device_id: &str, pin: &str) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE devices SET ek_pin = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(device_id)
        .bind(pin)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_enrollment(store: &Store, e: &TpmEnrollment) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tpm_enrollments (id, tenant_id, token_id, credential_id, ak_public, ek_pin, secret_hash, \
         attested, attestation_reason, trust_anchor, ek_manufacturer, ek_model, ek_firmware, created_at_ms, \
         expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&e.id)
    .bind(&e.tenant_id)
    .bind(&e.token_id)
    .bind(&e.credential_id)
    .bind(&e.ak_public)
    .bind(&e.ek_pin)
    .bind(&e.secret_hash)
    .bind(i64::from(e.attested))
    .bind(&e.attestation_reason)
    .bind(&e.trust_anchor)
    .bind(&e.ek_manufacturer)
    .bind(&e.ek_model)
    .bind(&e.ek_firmware)
    .bind(e.created_at_ms)
    .bind(e.expires_at_ms)
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn enrollment(store: &Store, id: &str) -> StoreResult<Option<TpmEnrollment>> {
    let row = sqlx::query("SELECT * FROM tpm_enrollments WHERE id = $1").bind(id).fetch_optional(store.pool()).await?;
    row.as_ref().map(enrollment_from_row).transpose()
}

/// Marks the ceremony finished if, and only if, it was not finished yet.
pub async fn finish_enrollment(tx: &mut Tx, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE tpm_enrollments SET finished_at_ms = $2 WHERE id = $1 AND finished_at_ms IS NULL")
        .bind(id)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_credential(tx: &mut Tx, c: &TpmCredential) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tpm_credentials (credential_id, tenant_id, ak_public, ek_pin, ek_manufacturer, ek_model, \
         ek_firmware) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&c.credential_id)
    .bind(&c.tenant_id)
    .bind(&c.ak_public)
    .bind(&c.ek_pin)
    .bind(&c.ek_manufacturer)
    .bind(&c.ek_model)
    .bind(&c.ek_firmware)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn credential(store: &Store, credential_id: &str) -> StoreResult<Option<TpmCredential>> {
    let row = sqlx::query("SELECT * FROM tpm_credentials WHERE credential_id = $1")
        .bind(credential_id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(credential_from_row).transpose()
}

/// Stores a quote's clock reading, but only if the stored one is still `expected` (what the
/// caller compared against): of two concurrent answers only one compares against a reading
/// and replaces it; the other gets `false` and is retried by nobody (its challenge stays open).
pub async fn record_clock(
    tx: &mut Tx,
    credential_id: &str,
    expected: Option<Clock>,
    clock: Clock,
    now_ms: i64,
) -> StoreResult<bool> {
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let query = match expected {
        None => sqlx::query(
            "UPDATE tpm_credentials SET clock = $2, reset_count = $3, restart_count = $4, firmware_version = $5, \
             quoted_at_ms = $6 WHERE credential_id = $1 AND clock IS NULL",
        ),
        Some(_) => sqlx::query(
            "UPDATE tpm_credentials SET clock = $2, reset_count = $3, restart_count = $4, firmware_version = $5, \
             quoted_at_ms = $6 WHERE credential_id = $1 AND clock = $7 AND reset_count = $8 \
             AND restart_count = $9 AND firmware_version = $10",
        ),
    };
    let mut query = query
        .bind(credential_id)
        .bind(as_i64(clock.clock))
        .bind(i64::from(clock.reset_count))
        .bind(i64::from(clock.restart_count))
        .bind(format!("{:016x}", clock.firmware_version))
        .bind(now_ms);
    if let Some(e) = expected {
        query = query
            .bind(as_i64(e.clock))
            .bind(i64::from(e.reset_count))
            .bind(i64::from(e.restart_count))
            .bind(format!("{:016x}", e.firmware_version));
    }
    let done = query.execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}
