//! PCR policies: expected values of selected PCRs for a device model or one device.

use super::{Store, StoreError, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;
use tether_attestation::tpm::HashAlg;

/// A PCR bank by its tpm2-tools name (sha1, sha256, sha384, sha512).
pub fn bank(name: &str) -> Option<HashAlg> {
    [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
        .into_iter()
        .find(|alg| alg.name().eq_ignore_ascii_case(name.trim()))
}

/// What a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One device, by id.
    Device(String),
    /// Every device whose `devices.model` is exactly this.
    Model(String),
}

impl Scope {
    /// The stored scope column: "device" or "model".
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Device(_) => "device",
            Scope::Model(_) => "model",
        }
    }

    /// The device id or the model.
    pub fn target(&self) -> &str {
        match self {
            Scope::Device(t) | Scope::Model(t) => t,
        }
    }

    fn from_columns(kind: &str, target: String) -> StoreResult<Scope> {
        match kind {
            "device" => Ok(Scope::Device(target)),
            "model" => Ok(Scope::Model(target)),
            other => Err(StoreError::Corrupt(format!("a PCR policy has the unknown scope {other:?}"))),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind(), self.target())
    }
}

/// One PCR's expected value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// sha1, sha256, sha384 or sha512.
    pub bank: String,
    pub index: u32,
    /// Lowercase hex.
    pub value_hex: String,
}

impl Expected {
    /// "sha256:7".
    pub fn pcr(&self) -> String {
        format!("{}:{}", self.bank, self.index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPolicy {
    pub scope: Scope,
    /// Ordered by bank, then index.
    pub pcrs: Vec<Expected>,
    pub updated_at_ms: i64,
}

struct PolicyRow {
    scope: Scope,
    expected: Expected,
    updated_at_ms: i64,
}

fn from_row(row: &AnyRow) -> StoreResult<PolicyRow> {
    let kind: String = row.try_get("scope")?;
    let index: i64 = row.try_get("pcr_index")?;
    Ok(PolicyRow {
        scope: Scope::from_columns(&kind, row.try_get("target")?)?,
        expected: Expected {
            bank: row.try_get("bank")?,
            index: u32::try_from(index)
                .map_err(|_| StoreError::Corrupt(format!("a PCR policy names PCR index {index}")))?,
            value_hex: row.try_get("value_hex")?,
        },
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Groups rows ordered by scope and target into policies.
fn group(rows: Vec<AnyRow>) -> StoreResult<Vec<PcrPolicy>> {
    let mut out: Vec<PcrPolicy> = Vec::new();
    for row in &rows {
        let r = from_row(row)?;
        match out.last_mut() {
            Some(last) if last.scope == r.scope => {
                last.pcrs.push(r.expected);
                last.updated_at_ms = last.updated_at_ms.max(r.updated_at_ms);
            }
            _ => out.push(PcrPolicy { scope: r.scope, pcrs: vec![r.expected], updated_at_ms: r.updated_at_ms }),
        }
    }
    Ok(out)
}

/// Every policy of the tenant: device policies first, then model policies.
pub async fn list(store: &Store, tenant_id: &str) -> StoreResult<Vec<PcrPolicy>> {
    let rows = sqlx::query("SELECT * FROM pcr_policies WHERE tenant_id = $1 ORDER BY scope, target, bank, pcr_index")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    group(rows)
}

/// The scope's policy as the transaction sees it.
pub async fn get_tx(tx: &mut Tx, tenant_id: &str, scope: &Scope) -> StoreResult<Option<PcrPolicy>> {
    let rows = sqlx::query(
        "SELECT * FROM pcr_policies WHERE tenant_id = $1 AND scope = $2 AND target = $3 \
         ORDER BY scope, target, bank, pcr_index",
    )
    .bind(tenant_id)
    .bind(scope.kind())
    .bind(scope.target())
    .fetch_all(&mut **tx)
    .await?;
    Ok(group(rows)?.into_iter().next())
}

/// The policy that applies to a device: its own, else its model's, else none.
pub async fn applicable(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    model: &str,
) -> StoreResult<Option<PcrPolicy>> {
    let rows = sqlx::query(
        "SELECT * FROM pcr_policies WHERE tenant_id = $1 AND ((scope = 'device' AND target = $2) \
         OR (scope = 'model' AND target = $3)) ORDER BY scope, target, bank, pcr_index",
    )
    .bind(tenant_id)
    .bind(device_id)
    .bind(model)
    .fetch_all(store.pool())
    .await?;
    // "device" sorts before "model": the device's own policy, when there is one, comes first.
    Ok(group(rows)?.into_iter().next())
}

/// Replaces the scope's policy with `policy.pcrs`.
pub async fn replace(tx: &mut Tx, tenant_id: &str, policy: &PcrPolicy) -> StoreResult<()> {
    clear(tx, tenant_id, &policy.scope).await?;
    for e in &policy.pcrs {
        sqlx::query(
            "INSERT INTO pcr_policies (tenant_id, scope, target, bank, pcr_index, value_hex, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant_id)
        .bind(policy.scope.kind())
        .bind(policy.scope.target())
        .bind(&e.bank)
        .bind(i64::from(e.index))
        .bind(&e.value_hex)
        .bind(policy.updated_at_ms)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes the scope's policy; returns how many PCR rows it had.
pub async fn clear(tx: &mut Tx, tenant_id: &str, scope: &Scope) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM pcr_policies WHERE tenant_id = $1 AND scope = $2 AND target = $3")
        .bind(tenant_id)
        .bind(scope.kind())
        .bind(scope.target())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}
