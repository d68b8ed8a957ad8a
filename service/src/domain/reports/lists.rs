//! The three filtered listings: flags, presence failures, sessions. Each is
//! keyset-paged on (time, id), newest first, so rows inserted while a client
//! pages never shift the pages it has not read yet.

use super::evidence;
use super::filters::{
    FailureFilter, FailureOutcome, FlagFilter, PageRequest, Paged, SessionFilter, member_list, next_token,
};
use crate::domain::error::ApiResult;
use crate::store::{Store, StoreResult};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize)]
pub struct FlagItem {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub status: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub credential_id: String,
    pub session_id: String,
    pub raised_at_ms: i64,
    /// Other tenants' cluster members removed (see `evidence::redact`).
    pub evidence: serde_json::Value,
    pub note: String,
    /// 0 = never reviewed.
    pub updated_at_ms: i64,
    pub updated_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureItem {
    pub id: String,
    pub outcome: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub credential_id: String,
    pub challenge_id: String,
    pub at_ms: i64,
    pub source_ip: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionReason {
    pub code: String,
    pub detail: String,
}

/// A flag as it stood when a session was decided.
#[derive(Debug, Clone, Serialize)]
pub struct FlagAtTime {
    pub id: String,
    pub kind: String,
    pub severity: String,
    /// The status now.
    pub status: String,
    pub raised_at_ms: i64,
    /// Raised by this very session.
    pub attached: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionItem {
    pub id: String,
    pub worker_external_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub source_ip: String,
    pub gateway_id: String,
    pub decision: String,
    pub reasons: Vec<SessionReason>,
    /// Tier denials monitor mode did not enforce (the session was allowed for them).
    pub would_deny: Vec<SessionReason>,
    pub at_ms: i64,
    pub flags: Vec<FlagAtTime>,
}

pub(crate) fn flag_from_row(row: &AnyRow, tenant_id: &str) -> StoreResult<FlagItem> {
    let evidence_json: String = row.try_get("evidence_json")?;
    Ok(FlagItem {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        status: row.try_get("status")?,
        device_id: row.try_get("device_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        credential_id: row.try_get("credential_id")?,
        session_id: row.try_get("session_id")?,
        raised_at_ms: row.try_get("raised_at_ms")?,
        evidence: evidence::redact(&evidence::parse(&evidence_json), tenant_id),
        note: row.try_get("note")?,
        updated_at_ms: row.try_get::<Option<i64>, _>("updated_at_ms")?.unwrap_or(0),
        updated_by: row.try_get("updated_by")?,
    })
}

pub(crate) fn failure_from_row(row: &AnyRow) -> StoreResult<FailureItem> {
    Ok(FailureItem {
        id: row.try_get("id")?,
        outcome: row.try_get("outcome")?,
        device_id: row.try_get("device_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        credential_id: row.try_get("credential_id")?,
        challenge_id: row.try_get("challenge_id")?,
        at_ms: row.try_get("at_ms")?,
        source_ip: row.try_get("source_ip")?,
        detail: row.try_get("detail")?,
    })
}

fn session_reasons(row: &AnyRow, column: &str) -> StoreResult<Vec<SessionReason>> {
    let json: String = row.try_get(column)?;
    let reasons: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
    Ok(reasons
        .iter()
        .map(|v| SessionReason {
            code: v["code"].as_str().unwrap_or_default().to_string(),
            detail: v["detail"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

pub(crate) fn session_from_row(row: &AnyRow) -> StoreResult<SessionItem> {
    Ok(SessionItem {
        id: row.try_get("id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        device_id: row.try_get("device_id")?,
        credential_id: row.try_get("credential_id")?,
        source_ip: row.try_get("source_ip")?,
        gateway_id: row.try_get("gateway_id")?,
        decision: row.try_get("decision")?,
        reasons: session_reasons(row, "reasons_json")?,
        would_deny: session_reasons(row, "would_deny_json")?,
        at_ms: row.try_get("at_ms")?,
        flags: Vec::new(),
    })
}

pub async fn list_flags(
    store: &Store,
    tenant_id: &str,
    filter: &FlagFilter,
    page: &PageRequest,
) -> ApiResult<Paged<FlagItem>> {
    let (at, id) = page.bound();
    let rows = sqlx::query(
        "SELECT * FROM flags WHERE tenant_id = $1 \
         AND raised_at_ms >= $2 AND raised_at_ms < $3 \
         AND ($4 = '' OR worker_external_id = $4) AND ($5 = '' OR device_id = $5) \
         AND ($6 = '' OR $6 LIKE '%,' || kind || ',%') \
         AND ($7 = '' OR $7 LIKE '%,' || severity || ',%') \
         AND ($8 = '' OR $8 LIKE '%,' || status || ',%') \
         AND (raised_at_ms < $9 OR (raised_at_ms = $9 AND id < $10)) \
         ORDER BY raised_at_ms DESC, id DESC LIMIT $11",
    )
    .bind(tenant_id)
    .bind(filter.window.since_ms)
    .bind(filter.window.until_or_max())
    .bind(filter.worker_external_id.trim())
    .bind(filter.device_id.trim())
    .bind(member_list(filter.kinds.iter().map(String::as_str)))
    .bind(member_list(filter.severities.iter().map(|s| s.as_str())))
    .bind(member_list(filter.statuses.iter().map(|s| s.as_str())))
    .bind(at)
    .bind(id)
    .bind(page.size)
    .fetch_all(store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    let items = rows.iter().map(|r| flag_from_row(r, tenant_id)).collect::<StoreResult<Vec<_>>>()?;
    let next = next_token(items.last().map(|f| (f.raised_at_ms, f.id.as_str())), items.len(), page.size);
    Ok(Paged { items, next_page_token: next })
}

pub async fn list_failures(
    store: &Store,
    tenant_id: &str,
    filter: &FailureFilter,
    page: &PageRequest,
) -> ApiResult<Paged<FailureItem>> {
    let outcomes = if filter.outcomes.is_empty() { FailureOutcome::ALL } else { &filter.outcomes[..] };
    let (at, id) = page.bound();
    let rows = sqlx::query(
        "SELECT * FROM presence_events WHERE tenant_id = $1 \
         AND at_ms >= $2 AND at_ms < $3 \
         AND ($4 = '' OR worker_external_id = $4) AND ($5 = '' OR device_id = $5) \
         AND $6 LIKE '%,' || outcome || ',%' \
         AND (at_ms < $7 OR (at_ms = $7 AND id < $8)) \
         ORDER BY at_ms DESC, id DESC LIMIT $9",
    )
    .bind(tenant_id)
    .bind(filter.window.since_ms)
    .bind(filter.window.until_or_max())
    .bind(filter.worker_external_id.trim())
    .bind(filter.device_id.trim())
    .bind(member_list(outcomes.iter().map(|o| o.as_str())))
    .bind(at)
    .bind(id)
    .bind(page.size)
    .fetch_all(store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    let items = rows.iter().map(failure_from_row).collect::<StoreResult<Vec<_>>>()?;
    let next = next_token(items.last().map(|e| (e.at_ms, e.id.as_str())), items.len(), page.size);
    Ok(Paged { items, next_page_token: next })
}

pub async fn list_sessions(
    store: &Store,
    tenant_id: &str,
    filter: &SessionFilter,
    page: &PageRequest,
) -> ApiResult<Paged<SessionItem>> {
    let (at, id) = page.bound();
    let rows = sqlx::query(
        "SELECT * FROM sessions WHERE tenant_id = $1 \
         AND at_ms >= $2 AND at_ms < $3 \
         AND ($4 = '' OR worker_external_id = $4) AND ($5 = '' OR device_id = $5) \
         AND ($6 = '' OR decision = $6) \
         AND (at_ms < $7 OR (at_ms = $7 AND id < $8)) \
         AND ($10 = 0 OR would_deny_json <> '[]') \
         ORDER BY at_ms DESC, id DESC LIMIT $9",
    )
    .bind(tenant_id)
    .bind(filter.window.since_ms)
    .bind(filter.window.until_or_max())
    .bind(filter.worker_external_id.trim())
    .bind(filter.device_id.trim())
    .bind(filter.decision.map(|d| d.as_str()).unwrap_or(""))
    .bind(at)
    .bind(id)
    .bind(page.size)
    .bind(i64::from(filter.would_deny_only))
    .fetch_all(store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    let mut items = rows.iter().map(session_from_row).collect::<StoreResult<Vec<_>>>()?;
    attach_flags(store, tenant_id, &mut items).await?;
    let next = next_token(items.last().map(|s| (s.at_ms, s.id.as_str())), items.len(), page.size);
    Ok(Paged { items, next_page_token: next })
}

/// A flag near a session: the flag, the session that raised it, when it was resolved (MAX = not).
type Candidate = (FlagAtTime, String, i64);

/// Fills each session's `flags`: those it raised, and those on its device or
/// worker raised no later than it and not resolved before it. Only the
/// latest review is stored on a flag, so a flag resolved and later reopened
/// counts as open throughout (the audit log holds the full history).
pub(crate) async fn attach_flags(store: &Store, tenant_id: &str, sessions: &mut [SessionItem]) -> ApiResult<()> {
    let (Some(latest), Some(earliest)) =
        (sessions.iter().map(|s| s.at_ms).max(), sessions.iter().map(|s| s.at_ms).min())
    else {
        return Ok(());
    };
    let mut by_pair: HashMap<(String, String), Vec<Candidate>> = HashMap::new();
    for session in sessions.iter() {
        let key = (session.device_id.clone(), session.worker_external_id.clone());
        if by_pair.contains_key(&key) {
            continue;
        }
        let rows = sqlx::query(
            "SELECT id, kind, severity, status, raised_at_ms, session_id, updated_at_ms FROM flags \
             WHERE tenant_id = $1 AND (device_id = $2 OR ($3 <> '' AND worker_external_id = $3)) \
             AND raised_at_ms <= $4 AND (status <> 'resolved' OR updated_at_ms IS NULL OR updated_at_ms > $5) \
             ORDER BY raised_at_ms DESC, id DESC LIMIT 1000",
        )
        .bind(tenant_id)
        .bind(&session.device_id)
        .bind(&session.worker_external_id)
        .bind(latest)
        .bind(earliest)
        .fetch_all(store.pool())
        .await
        .map_err(crate::store::StoreError::from)?;
        let mut list = Vec::with_capacity(rows.len());
        for row in &rows {
            let status: String = row.try_get("status").map_err(crate::store::StoreError::from)?;
            let updated: Option<i64> = row.try_get("updated_at_ms").map_err(crate::store::StoreError::from)?;
            let resolved_at = if status == "resolved" { updated.unwrap_or(i64::MAX) } else { i64::MAX };
            let flag = FlagAtTime {
                id: row.try_get("id").map_err(crate::store::StoreError::from)?,
                kind: row.try_get("kind").map_err(crate::store::StoreError::from)?,
                severity: row.try_get("severity").map_err(crate::store::StoreError::from)?,
                status,
                raised_at_ms: row.try_get("raised_at_ms").map_err(crate::store::StoreError::from)?,
                attached: false,
            };
            let session_id: String = row.try_get("session_id").map_err(crate::store::StoreError::from)?;
            list.push((flag, session_id, resolved_at));
        }
        by_pair.insert(key, list);
    }
    for session in sessions.iter_mut() {
        let key = (session.device_id.clone(), session.worker_external_id.clone());
        let Some(list) = by_pair.get(&key) else { continue };
        session.flags = list
            .iter()
            .filter(|(f, raised_by, resolved_at)| {
                *raised_by == session.id || (f.raised_at_ms <= session.at_ms && *resolved_at > session.at_ms)
            })
            .map(|(f, raised_by, _)| FlagAtTime { attached: *raised_by == session.id, ..f.clone() })
            .collect();
    }
    Ok(())
}
