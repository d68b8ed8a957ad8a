//! Where a device timeline's entries come from: keyset reads of the event
//! tables, flag reviews from the audit log, credentials with their TPM
//! details, and the addresses the device was seen from.

use super::evidence::{self, GeoPoint};
use super::filters::{Cursor, PageRequest, TimeWindow};
use super::lists::{FailureItem, FlagItem, SessionItem};
use crate::domain::error::{ApiError, ApiResult};
use crate::store::{Store, StoreError, StoreResult};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize)]
pub struct TpmInfo {
    pub ek_manufacturer: String,
    pub ek_model: String,
    pub ek_firmware: String,
    pub ek_pin: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrollmentInfo {
    pub credential_id: String,
    pub kind: String,
    pub format: String,
    pub attestation_type: String,
    pub attested: bool,
    /// hardware_attested, hardware_unverified or self_or_none.
    pub tier: String,
    pub attestation_reason: String,
    pub trust_anchor: String,
    pub aaguid: String,
    pub tpm: Option<TpmInfo>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineDetail {
    Registered {
        serial_number: String,
        model: String,
    },
    Enrolled(EnrollmentInfo),
    CredentialRevoked {
        credential_id: String,
        reason: String,
    },
    DeviceRevoked {
        reason: String,
    },
    Presence(FailureItem),
    Session(SessionItem),
    Flag(FlagItem),
    FlagReview {
        flag_id: String,
        flag_kind: String,
        action: String,
        from: String,
        to: String,
        note: String,
        actor: String,
        audit_seq: i64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub id: String,
    pub at_ms: i64,
    pub source_ip: String,
    pub geo: Option<GeoPoint>,
    pub detail: TimelineDetail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub source_ip: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub events: i64,
    pub geo: Option<GeoPoint>,
}

/// How rows of one source that share the cursor's time compare with it.
struct Ties {
    all: i64,
    below: String,
}

fn ties(after: Option<&Cursor>, prefix: &str) -> Ties {
    match after {
        None => Ties { all: 1, below: String::new() },
        Some(c) => match c.id.strip_prefix(prefix) {
            Some(rest) => Ties { all: 0, below: rest.to_string() },
            // Every "<prefix><id>" sorts on the same side of the cursor's id.
            None if c.id.as_str() > prefix => Ties { all: 1, below: String::new() },
            None => Ties { all: 0, below: String::new() },
        },
    }
}

fn store_err(e: sqlx::Error) -> ApiError {
    ApiError::from(StoreError::from(e))
}

/// A table holding per-device events: its name, time column and entry id prefix.
pub(super) struct Source {
    table: &'static str,
    at: &'static str,
    prefix: &'static str,
}

pub(super) const PRESENCE: Source = Source { table: "presence_events", at: "at_ms", prefix: "presence:" };
pub(super) const SESSIONS: Source = Source { table: "sessions", at: "at_ms", prefix: "session:" };
pub(super) const FLAGS: Source = Source { table: "flags", at: "raised_at_ms", prefix: "flag:" };

/// Rows of a source for the device, before the cursor, newest first; one
/// more than a page so the caller knows whether another page follows.
pub(super) async fn keyset_rows(
    store: &Store,
    source: &Source,
    tenant_id: &str,
    device_id: &str,
    window: &TimeWindow,
    page: &PageRequest,
) -> ApiResult<Vec<AnyRow>> {
    let (at_bound, _) = page.bound();
    let t = ties(page.after.as_ref(), source.prefix);
    let Source { table, at, .. } = source;
    // Table and column names come from the constants above only.
    let sql = format!(
        "SELECT * FROM {table} WHERE tenant_id = $1 AND device_id = $2 AND {at} >= $3 AND {at} < $4 \
         AND ({at} < $5 OR ({at} = $5 AND ($6 = 1 OR id < $7))) ORDER BY {at} DESC, id DESC LIMIT $8"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(device_id)
        .bind(window.since_ms)
        .bind(window.until_or_max())
        .bind(at_bound)
        .bind(t.all)
        .bind(t.below)
        .bind(page.size + 1)
        .fetch_all(store.pool())
        .await
        .map_err(store_err)
}

pub(super) async fn reviews(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    window: &TimeWindow,
    page: &PageRequest,
) -> ApiResult<Vec<TimelineEntry>> {
    let (at_bound, _) = page.bound();
    let t = ties(page.after.as_ref(), "review:");
    let below: i64 = if t.below.is_empty() {
        0
    } else {
        t.below.parse().map_err(|_| ApiError::invalid("page.page_token is not a token this server issued"))?
    };
    let rows = sqlx::query(
        "SELECT a.seq, a.at_ms, a.actor, a.action, a.target, a.details_json FROM audit_log a \
         WHERE a.tenant_id = $1 AND a.action IN ('flag.acknowledged', 'flag.resolved', 'flag.reopened') \
         AND a.target IN (SELECT f.id FROM flags f WHERE f.tenant_id = $1 AND f.device_id = $2) \
         AND a.at_ms >= $3 AND a.at_ms < $4 AND (a.at_ms < $5 OR (a.at_ms = $5 AND ($6 = 1 OR a.seq < $7))) \
         ORDER BY a.at_ms DESC, a.seq DESC LIMIT $8",
    )
    .bind(tenant_id)
    .bind(device_id)
    .bind(window.since_ms)
    .bind(window.until_or_max())
    .bind(at_bound)
    .bind(t.all)
    .bind(below)
    .bind(page.size + 1)
    .fetch_all(store.pool())
    .await
    .map_err(store_err)?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq")?;
            let details = evidence::parse(&row.try_get::<String, _>("details_json")?);
            let text = |k: &str| details[k].as_str().unwrap_or_default().to_string();
            Ok(TimelineEntry {
                // Zero-padded so ids of one millisecond sort like their sequence numbers.
                id: format!("review:{seq:020}"),
                at_ms: row.try_get("at_ms")?,
                source_ip: String::new(),
                geo: None,
                detail: TimelineDetail::FlagReview {
                    flag_id: row.try_get("target")?,
                    flag_kind: text("kind"),
                    action: row.try_get("action")?,
                    from: text("from"),
                    to: text("to"),
                    note: text("note"),
                    actor: row.try_get("actor")?,
                    audit_seq: seq,
                },
            })
        })
        .collect::<StoreResult<Vec<_>>>()
        .map_err(ApiError::from)
}

/// A credential's enrollment and revocation, as the timeline shows them.
pub(super) struct Credential {
    pub id: String,
    pub enrolled_at_ms: i64,
    pub enrolled_from_ip: String,
    pub revoked_at_ms: Option<i64>,
    pub revoke_reason: Option<String>,
    pub info: EnrollmentInfo,
}

pub(super) async fn credentials(store: &Store, tenant_id: &str, device_id: &str) -> ApiResult<Vec<Credential>> {
    let rows = sqlx::query(
        "SELECT c.*, t.ek_manufacturer, t.ek_model, t.ek_firmware, t.ek_pin AS tpm_ek_pin FROM credentials c \
         LEFT JOIN tpm_credentials t ON t.credential_id = c.id WHERE c.tenant_id = $1 AND c.device_id = $2",
    )
    .bind(tenant_id)
    .bind(device_id)
    .fetch_all(store.pool())
    .await
    .map_err(store_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let manufacturer: Option<String> = row.try_get("ek_manufacturer").map_err(store_err)?;
        let tpm = match manufacturer {
            Some(ek_manufacturer) => Some(TpmInfo {
                ek_manufacturer,
                ek_model: row.try_get::<Option<String>, _>("ek_model").map_err(store_err)?.unwrap_or_default(),
                ek_firmware: row.try_get::<Option<String>, _>("ek_firmware").map_err(store_err)?.unwrap_or_default(),
                ek_pin: row.try_get::<Option<String>, _>("tpm_ek_pin").map_err(store_err)?.unwrap_or_default(),
            }),
            None => None,
        };
        let id: String = row.try_get("id").map_err(store_err)?;
        out.push(Credential {
            enrolled_at_ms: row.try_get("enrolled_at_ms").map_err(store_err)?,
            enrolled_from_ip: row.try_get("enrolled_from_ip").map_err(store_err)?,
            revoked_at_ms: row.try_get("revoked_at_ms").map_err(store_err)?,
            revoke_reason: row.try_get("revoke_reason").map_err(store_err)?,
            info: EnrollmentInfo {
                credential_id: id.clone(),
                kind: row.try_get("kind").map_err(store_err)?,
                format: row.try_get("format").map_err(store_err)?,
                attestation_type: row.try_get("attestation_type").map_err(store_err)?,
                attested: row.try_get::<i64, _>("attested").map_err(store_err)? != 0,
                tier: row.try_get("tier").map_err(store_err)?,
                attestation_reason: row.try_get("attestation_reason").map_err(store_err)?,
                trust_anchor: row.try_get("trust_anchor").map_err(store_err)?,
                aaguid: row.try_get("aaguid").map_err(store_err)?,
                tpm,
            },
            id,
        });
    }
    Ok(out)
}

/// Where the risk engine located each address of this device, from its flags' evidence.
pub(super) async fn geo_by_ip(store: &Store, tenant_id: &str, device_id: &str) -> ApiResult<HashMap<String, GeoPoint>> {
    let rows = sqlx::query(
        "SELECT evidence_json FROM flags WHERE tenant_id = $1 AND device_id = $2 \
         ORDER BY raised_at_ms, id LIMIT 1000",
    )
    .bind(tenant_id)
    .bind(device_id)
    .fetch_all(store.pool())
    .await
    .map_err(store_err)?;
    let mut found = Vec::new();
    for row in &rows {
        evidence::locations(
            &evidence::parse(&row.try_get::<String, _>("evidence_json").map_err(store_err)?),
            &mut found,
        );
    }
    // Oldest first, so the latest reading of an address wins.
    Ok(found.into_iter().collect())
}

pub(super) async fn locations(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    window: &TimeWindow,
    geo: &HashMap<String, GeoPoint>,
) -> ApiResult<Vec<Location>> {
    let mut by_ip: HashMap<String, Location> = HashMap::new();
    for (table, at) in [("presence_events", "at_ms"), ("sessions", "at_ms"), ("credentials", "enrolled_at_ms")] {
        let ip = if table == "credentials" { "enrolled_from_ip" } else { "source_ip" };
        let sql = format!(
            "SELECT {ip} AS ip, MIN({at}) AS first_ms, MAX({at}) AS last_ms, COUNT(*) AS n FROM {table} \
             WHERE tenant_id = $1 AND device_id = $2 AND {at} >= $3 AND {at} < $4 AND {ip} <> '' GROUP BY {ip}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(device_id)
            .bind(window.since_ms)
            .bind(window.until_or_max())
            .fetch_all(store.pool())
            .await
            .map_err(store_err)?;
        for row in &rows {
            let source_ip: String = row.try_get("ip").map_err(store_err)?;
            let (first, last, n): (i64, i64, i64) = (
                row.try_get("first_ms").map_err(store_err)?,
                row.try_get("last_ms").map_err(store_err)?,
                row.try_get("n").map_err(store_err)?,
            );
            let entry = by_ip.entry(source_ip.clone()).or_insert_with(|| Location {
                geo: geo.get(&source_ip).cloned(),
                source_ip,
                first_seen_ms: first,
                last_seen_ms: last,
                events: 0,
            });
            entry.first_seen_ms = entry.first_seen_ms.min(first);
            entry.last_seen_ms = entry.last_seen_ms.max(last);
            entry.events += n;
        }
    }
    let mut list: Vec<Location> = by_ip.into_values().collect();
    list.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then_with(|| a.source_ip.cmp(&b.source_ip)));
    Ok(list)
}
