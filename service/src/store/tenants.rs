//! Tenants (employers) and their policy.

use super::columns::{Columns, FromColumns};
use super::{Store, StoreError, StoreResult, Tx, prefixed};
use std::sync::LazyLock;
use tether_risk::FlagPolicy;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub rp_id: String,
    pub origin: String,
    /// What credentials of the tiers below hardware-attested may do.
    pub hardware_unverified: TierAction,
    pub self_or_none: TierAction,
    pub enforcement: Enforcement,
    /// Lower-case hyphenated AAGUIDs; empty = any model.
    pub allowed_aaguids: Vec<String>,
    pub presence_interval_s: i64,
    pub challenge_deadline_s: i64,
    pub presence_window_s: i64,
    pub flag_policy: FlagPolicy,
    /// Canonical CIDRs, most recently registered set.
    pub office_egress: Vec<ipnet::IpNet>,
}

impl Policy {
    pub fn new(rp_id: &str, origin: &str) -> Policy {
        Policy {
            rp_id: rp_id.to_string(),
            origin: origin.to_string(),
            hardware_unverified: TierAction::Deny,
            self_or_none: TierAction::Deny,
            enforcement: Enforcement::Enforce,
            allowed_aaguids: Vec::new(),
            presence_interval_s: 3600,
            challenge_deadline_s: 300,
            presence_window_s: 7200,
            flag_policy: FlagPolicy::default(),
            office_egress: Vec::new(),
        }
    }

    /// The older single switch, now shorthand for both tiers: true when neither denies.
    pub fn allow_unattested(&self) -> bool {
        self.hardware_unverified != TierAction::Deny && self.self_or_none != TierAction::Deny
    }

    /// Sets both tiers as `allow_unattested` did: enrolled and flagged, or refused.
    pub fn set_allow_unattested(&mut self, allow: bool) {
        let action = if allow { TierAction::AllowAndFlag } else { TierAction::Deny };
        self.hardware_unverified = action;
        self.self_or_none = action;
    }
}

/// What a tenant lets a credential of one attestation tier do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierAction {
    Allow,
    AllowAndFlag,
    Deny,
}

impl TierAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TierAction::Allow => "allow",
            TierAction::AllowAndFlag => "allow_and_flag",
            TierAction::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<TierAction> {
        [TierAction::Allow, TierAction::AllowAndFlag, TierAction::Deny].into_iter().find(|a| a.as_str() == s)
    }
}

/// Whether tier denials are enforced or only recorded as "would deny".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    Enforce,
    Monitor,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Monitor => "monitor",
        }
    }

    pub fn parse(s: &str) -> Option<Enforcement> {
        [Enforcement::Enforce, Enforcement::Monitor].into_iter().find(|a| a.as_str() == s)
    }
}

/// Every column [`from_prefixed_row`] reads (store::decision selects them with a prefix).
pub(crate) const COLUMNS: &str = "id, name, created_at_ms, rp_id, origin, allowed_aaguids, \
     presence_interval_s, challenge_deadline_s, presence_window_s, flag_policy, office_egress, \
     tier_hardware_unverified, tier_self_or_none, enforcement";

fn stored<T>(row: &impl Columns, prefix: &str, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let value: String = row.column(&prefixed(prefix, column))?;
    parse(&value).ok_or_else(|| StoreError::Corrupt(format!("tenants.{column} holds {value:?}")))
}

fn from_row(row: &impl Columns) -> StoreResult<Tenant> {
    from_prefixed_row(row, "")
}

impl FromColumns for Tenant {
    fn from_columns(row: &impl Columns) -> StoreResult<Tenant> {
        from_row(row)
    }
}

/// The tenant whose columns `row` holds as `<prefix><column>` (a join names them apart).
pub(crate) fn from_prefixed_row(row: &impl Columns, prefix: &str) -> StoreResult<Tenant> {
    let get = |column: &'static str| prefixed(prefix, column);
    let aaguids: String = row.column(&get("allowed_aaguids"))?;
    let flag_policy: String = row.column(&get("flag_policy"))?;
    let flag_policy = FlagPolicy::from_stored(&flag_policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let offices: String = row.column(&get("office_egress"))?;
    let office_egress = offices
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("tenants.office_egress holds {s:?}"))))
        .collect::<StoreResult<Vec<ipnet::IpNet>>>()?;
    Ok(Tenant {
        id: row.column(&get("id"))?,
        name: row.column(&get("name"))?,
        created_at_ms: row.column(&get("created_at_ms"))?,
        policy: Policy {
            rp_id: row.column(&get("rp_id"))?,
            origin: row.column(&get("origin"))?,
            hardware_unverified: stored(row, prefix, "tier_hardware_unverified", TierAction::parse)?,
            self_or_none: stored(row, prefix, "tier_self_or_none", TierAction::parse)?,
            enforcement: stored(row, prefix, "enforcement", Enforcement::parse)?,
            allowed_aaguids: aaguids.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            presence_interval_s: row.column(&get("presence_interval_s"))?,
            challenge_deadline_s: row.column(&get("challenge_deadline_s"))?,
            presence_window_s: row.column(&get("presence_window_s"))?,
            flag_policy,
            office_egress,
        },
    })
}

pub async fn insert(tx: &mut Tx, tenant: &Tenant) -> StoreResult<()> {
    let p = &tenant.policy;
    sqlx::query(
        "INSERT INTO tenants (id, name, created_at_ms, rp_id, origin, allow_unattested, \
         allowed_aaguids, presence_interval_s, challenge_deadline_s, presence_window_s, flag_policy, \
         office_egress, tier_hardware_unverified, tier_self_or_none, enforcement) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&tenant.id)
    .bind(&tenant.name)
    .bind(tenant.created_at_ms)
    .bind(&p.rp_id)
    .bind(&p.origin)
    // Still written so that a binary from before migration 18 reads the nearest policy it knows.
    .bind(i64::from(p.allow_unattested()))
    .bind(p.allowed_aaguids.join(","))
    .bind(p.presence_interval_s)
    .bind(p.challenge_deadline_s)
    .bind(p.presence_window_s)
    .bind(p.flag_policy.to_stored())
    .bind(offices_stored(&p.office_egress))
    .bind(p.hardware_unverified.as_str())
    .bind(p.self_or_none.as_str())
    .bind(p.enforcement.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> StoreResult<Option<Tenant>> {
    static GET: LazyLock<String> = LazyLock::new(|| format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"));
    store.get_by_key(GET.as_str(), &[id]).await
}

pub async fn get_by_name(store: &Store, name: &str) -> StoreResult<Option<Tenant>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tenants WHERE name = $1"));
    let row = sqlx::query(sql).bind(name).fetch_optional(store.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

/// Tenants whose configured origin is one of `origins` (at most a few; the
/// caller decides what more than one means).
pub async fn by_origins(store: &Store, origins: &[String]) -> StoreResult<Vec<Tenant>> {
    let mut found = Vec::new();
    for origin in origins {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tenants WHERE origin = $1 ORDER BY id LIMIT 2"));
        let rows = sqlx::query(sql).bind(origin).fetch_all(store.pool()).await?;
        for row in &rows {
            found.push(from_row(row)?);
        }
    }
    Ok(found)
}

pub async fn list(store: &Store) -> StoreResult<Vec<Tenant>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tenants ORDER BY id"));
    let rows = sqlx::query(sql).fetch_all(store.pool()).await?;
    rows.iter().map(from_row).collect()
}

pub async fn update_policy(tx: &mut Tx, tenant_id: &str, p: &Policy) -> StoreResult<()> {
    sqlx::query(
        "UPDATE tenants SET rp_id = $2, origin = $3, allow_unattested = $4, allowed_aaguids = $5, \
         presence_interval_s = $6, challenge_deadline_s = $7, presence_window_s = $8, flag_policy = $9, \
         office_egress = $10, tier_hardware_unverified = $11, tier_self_or_none = $12, enforcement = $13 \
         WHERE id = $1",
    )
    .bind(tenant_id)
    .bind(&p.rp_id)
    .bind(&p.origin)
    .bind(i64::from(p.allow_unattested()))
    .bind(p.allowed_aaguids.join(","))
    .bind(p.presence_interval_s)
    .bind(p.challenge_deadline_s)
    .bind(p.presence_window_s)
    .bind(p.flag_policy.to_stored())
    .bind(offices_stored(&p.office_egress))
    .bind(p.hardware_unverified.as_str())
    .bind(p.self_or_none.as_str())
    .bind(p.enforcement.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn offices_stored(cidrs: &[ipnet::IpNet]) -> String {
    cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}
