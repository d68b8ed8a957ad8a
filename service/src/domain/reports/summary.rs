//! A period at a glance: flag counts, the shared-egress clusters touching
//! the tenant, and devices that keep failing presence checks.

use super::evidence;
use super::filters::TimeWindow;
use crate::domain::error::{ApiError, ApiResult};
use crate::store::{Store, StoreError};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const DEFAULT_TOP_CLUSTERS: usize = 10;
pub const MAX_TOP_CLUSTERS: usize = 100;
pub const DEFAULT_MIN_FAILURES: i64 = 2;
/// Cluster flags read per summary; enough for months of a large tenant.
const CLUSTER_FLAG_LIMIT: i64 = 20_000;
const FAILING_DEVICES_LIMIT: usize = 500;

#[derive(Debug, Clone, Default)]
pub struct SummaryRequest {
    pub window: TimeWindow,
    /// 0 = the default (10); at most 100.
    pub top_clusters: usize,
    /// 0 = the default (2).
    pub min_failures: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlagCount {
    pub kind: String,
    pub severity: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ClusterMember {
    pub device_id: String,
    pub worker_external_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub egress: String,
    /// Across every tenant sharing the egress.
    pub devices: i64,
    pub workers: i64,
    pub tenants: i64,
    pub highest_severity: String,
    pub last_seen_ms: i64,
    /// Only this tenant's devices.
    pub own_devices: Vec<ClusterMember>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeCount {
    pub outcome: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceFailures {
    pub device_id: String,
    pub worker_external_id: String,
    pub failures: i64,
    pub by_outcome: Vec<OutcomeCount>,
    pub last_at_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub window: TimeWindow,
    pub flag_counts: Vec<FlagCount>,
    pub clusters: Vec<Cluster>,
    pub repeated_failures: Vec<DeviceFailures>,
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::from(StoreError::from(e))
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "high" => 3,
        "review" => 2,
        "info" => 1,
        _ => 0,
    }
}

pub async fn summary(store: &Store, tenant_id: &str, request: &SummaryRequest) -> ApiResult<Summary> {
    let top = match request.top_clusters {
        0 => DEFAULT_TOP_CLUSTERS,
        n if n > MAX_TOP_CLUSTERS => {
            return Err(ApiError::invalid(format!("top_clusters: {n} is out of range (1 to {MAX_TOP_CLUSTERS})")));
        }
        n => n,
    };
    let min_failures = match request.min_failures {
        0 => DEFAULT_MIN_FAILURES,
        n if n < 0 => return Err(ApiError::invalid("min_failures must not be negative")),
        n => n,
    };
    let w = request.window;
    Ok(Summary {
        window: w,
        flag_counts: flag_counts(store, tenant_id, &w).await?,
        clusters: clusters(store, tenant_id, &w, top).await?,
        repeated_failures: repeated_failures(store, tenant_id, &w, min_failures).await?,
    })
}

async fn flag_counts(store: &Store, tenant_id: &str, w: &TimeWindow) -> ApiResult<Vec<FlagCount>> {
    let rows = sqlx::query(
        "SELECT kind, severity, COUNT(*) AS n FROM flags WHERE tenant_id = $1 \
         AND raised_at_ms >= $2 AND raised_at_ms < $3 GROUP BY kind, severity",
    )
    .bind(tenant_id)
    .bind(w.since_ms)
    .bind(w.until_or_max())
    .fetch_all(store.pool())
    .await
    .map_err(db)?;
    let mut counts = rows
        .iter()
        .map(|r| Ok(FlagCount { kind: r.try_get("kind")?, severity: r.try_get("severity")?, count: r.try_get("n")? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(db)?;
    counts.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)).then_with(|| a.severity.cmp(&b.severity))
    });
    Ok(counts)
}

async fn clusters(store: &Store, tenant_id: &str, w: &TimeWindow, top: usize) -> ApiResult<Vec<Cluster>> {
    let rows = sqlx::query(
        "SELECT device_id, worker_external_id, severity, raised_at_ms, evidence_json FROM flags \
         WHERE tenant_id = $1 AND kind = 'shared_egress' AND raised_at_ms >= $2 AND raised_at_ms < $3 \
         ORDER BY raised_at_ms DESC, id DESC LIMIT $4",
    )
    .bind(tenant_id)
    .bind(w.since_ms)
    .bind(w.until_or_max())
    .bind(CLUSTER_FLAG_LIMIT)
    .fetch_all(store.pool())
    .await
    .map_err(db)?;
    let mut by_egress: HashMap<String, (Cluster, BTreeSet<ClusterMember>)> = HashMap::new();
    for row in &rows {
        let evidence = evidence::parse(&row.try_get::<String, _>("evidence_json").map_err(db)?);
        let Some(egress) = evidence["egress"].as_str() else { continue };
        let severity: String = row.try_get("severity").map_err(db)?;
        let at: i64 = row.try_get("raised_at_ms").map_err(db)?;
        let count = |k: &str| evidence[k].as_i64().unwrap_or(0);
        let (cluster, members) = by_egress.entry(egress.to_string()).or_insert_with(|| {
            (
                Cluster {
                    egress: egress.to_string(),
                    devices: 0,
                    workers: 0,
                    tenants: 0,
                    highest_severity: severity.clone(),
                    last_seen_ms: at,
                    own_devices: Vec::new(),
                },
                BTreeSet::new(),
            )
        });
        cluster.devices = cluster.devices.max(count("members_total"));
        cluster.workers = cluster.workers.max(count("workers"));
        cluster.tenants = cluster.tenants.max(count("tenants"));
        cluster.last_seen_ms = cluster.last_seen_ms.max(at);
        if severity_rank(&severity) > severity_rank(&cluster.highest_severity) {
            cluster.highest_severity = severity;
        }
        members.insert(ClusterMember {
            device_id: row.try_get("device_id").map_err(db)?,
            worker_external_id: row.try_get("worker_external_id").map_err(db)?,
        });
        // Members the engine listed that were not flagged this time (cooldown) are still in the cluster.
        for m in evidence["members"].as_array().into_iter().flatten() {
            if m["tenant"].as_str() == Some(tenant_id)
                && let (Some(device), Some(worker)) = (m["device"].as_str(), m["worker"].as_str())
            {
                members.insert(ClusterMember { device_id: device.into(), worker_external_id: worker.into() });
            }
        }
    }
    let mut list: Vec<Cluster> = by_egress
        .into_values()
        .map(|(mut c, members)| {
            c.devices = c.devices.max(members.len() as i64);
            c.own_devices = members.into_iter().collect();
            c
        })
        .collect();
    list.sort_by(|a, b| {
        (b.tenants, b.workers, b.devices, b.last_seen_ms)
            .cmp(&(a.tenants, a.workers, a.devices, a.last_seen_ms))
            .then_with(|| a.egress.cmp(&b.egress))
    });
    list.truncate(top);
    Ok(list)
}

async fn repeated_failures(
    store: &Store,
    tenant_id: &str,
    w: &TimeWindow,
    min_failures: i64,
) -> ApiResult<Vec<DeviceFailures>> {
    let rows = sqlx::query(
        "SELECT device_id, worker_external_id, outcome, COUNT(*) AS n, MAX(at_ms) AS last_ms FROM presence_events \
         WHERE tenant_id = $1 AND at_ms >= $2 AND at_ms < $3 AND outcome <> 'ok' \
         GROUP BY device_id, worker_external_id, outcome",
    )
    .bind(tenant_id)
    .bind(w.since_ms)
    .bind(w.until_or_max())
    .fetch_all(store.pool())
    .await
    .map_err(db)?;
    let mut by_device: BTreeMap<(String, String), DeviceFailures> = BTreeMap::new();
    for row in &rows {
        let device_id: String = row.try_get("device_id").map_err(db)?;
        let worker: String = row.try_get("worker_external_id").map_err(db)?;
        let n: i64 = row.try_get("n").map_err(db)?;
        let last: i64 = row.try_get("last_ms").map_err(db)?;
        let entry = by_device.entry((device_id.clone(), worker.clone())).or_insert_with(|| DeviceFailures {
            device_id,
            worker_external_id: worker,
            failures: 0,
            by_outcome: Vec::new(),
            last_at_ms: last,
        });
        entry.failures += n;
        entry.last_at_ms = entry.last_at_ms.max(last);
        entry.by_outcome.push(OutcomeCount { outcome: row.try_get("outcome").map_err(db)?, count: n });
    }
    let mut list: Vec<DeviceFailures> = by_device.into_values().filter(|d| d.failures >= min_failures).collect();
    for d in &mut list {
        d.by_outcome.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.outcome.cmp(&b.outcome)));
    }
    list.sort_by(|a, b| {
        (b.failures, b.last_at_ms).cmp(&(a.failures, a.last_at_ms)).then_with(|| a.device_id.cmp(&b.device_id))
    });
    list.truncate(FAILING_DEVICES_LIMIT);
    Ok(list)
}
