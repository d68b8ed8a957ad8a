//! One risk state for every replica.
//!
//! Each replica's engine lives in its memory, but none evaluates an event
//! straight from a request: the event is first appended to `risk_events`
//! (crate::store::risk_events, which defines an order no late commit can
//! break), and every engine evaluates the log in that order — up to each new
//! event of its own and on every scheduler tick. So all replicas'
//! windows (egress clusters, travel history, counters, bursts) converge on
//! the same state, whichever replica a device happens to talk to.
//!
//! Flags: every replica stores what its evaluation raised, whoever's event
//! it was, so a pattern completed by an event one replica evaluated before
//! it could see another's is still caught by the first engine to hold both.
//! Two engines raising the same finding store it once: engine flags carry a
//! key (severity and the cooldown window the flag falls in) under a unique
//! index, and the loser's insert is "already raised". The engine never
//! raises one kind at one severity twice for a device within a cooldown, so
//! the key never hides a new finding. Probe rounds are claimed the same way.

use crate::domain::app::App;
use crate::domain::audit::{self, Actor};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::risk_live::severity_name;
use crate::domain::risk_live::state::LiveRisk;
use crate::store::flags::FlagRecord;
use crate::store::risk_events::{self, Position, StoredEvent};
use crate::store::{Store, StoreError, Tx, flags};
use crate::util::{new_id, now_ms};
use std::time::{Duration, Instant};
use tether_risk::{Flag, Millis};

/// Events read per query while catching up.
const PAGE: i64 = 2_000;
/// The most events a starting replica replays (the newest ones).
pub const WARM_UP_EVENTS: i64 = 1_000_000;
/// How often a replica deletes events older than the retention.
const PRUNE_EVERY_MS: Millis = 10 * 60 * 1000;
/// Rows deleted per statement, so appenders never wait long for a prune.
const PRUNE_BATCH: i64 = 10_000;
const HOUR_MS: Millis = 3_600_000;
/// The longest an access check waits for its own event to become readable in
/// log order (for the transactions that were running when it committed);
/// past it the check fails UNAVAILABLE rather than decide without the event.
const OWN_EVENT_WAIT: Duration = Duration::from_secs(5);

/// Evaluates everything other replicas (and this one) appended since the
/// cursor; stores the flags and issues the probes that raised. Returns the flags.
pub async fn catch_up(app: &App) -> ApiResult<Vec<Flag>> {
    let mut raised = Vec::new();
    loop {
        let cursor = app.risk.lock().cursor;
        let rows = risk_events::after(&app.store, cursor, Position::END, i64::MIN, PAGE).await?;
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= PAGE;
        let evaluated = app.risk.lock().apply(rows);
        store_flags(app, &evaluated).await?;
        crate::domain::risk_live::probes::schedule(app).await?;
        raised.extend(evaluated.into_iter().flat_map(|(_, flags)| flags));
        if !full {
            return Ok(raised);
        }
    }
}

/// How a request that appended an event goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Await {
    /// Its decision depends on the event's flags: wait until the event can be
    /// evaluated in log order, and fail UNAVAILABLE past [`OWN_EVENT_WAIT`]
    /// rather than decide without it.
    Decision,
    /// It reports the flags it raised (analysts see them once the call
    /// returns): wait the same, but past the bound go on; the event is then
    /// evaluated by the next catch-up (any request's, or the scheduler's).
    Record,
}

/// Catches up through this replica's own event `row` (already appended) and
/// returns the flags it raised, stored, plus any others this catch-up raised.
pub async fn evaluate_own(app: &App, row: &StoredEvent, wait: Await) -> ApiResult<Vec<Flag>> {
    app.risk.lock().pending.insert(row.seq, None);
    let caught = catch_up_through(app, row.position(), wait).await;
    let own = app.risk.lock().pending.remove(&row.seq).flatten().unwrap_or_default();
    let mut raised = caught?;
    if !own.is_empty() {
        // Possibly evaluated by a concurrent catch-up still storing them: store
        // (idempotently) before the request that recorded the event returns.
        store_flags(app, &[(row.clone(), own.clone())]).await?;
        raised.extend(own);
    }
    raised.sort_by(|a, b| (&a.tenant, &a.device, a.kind, a.severity).cmp(&(&b.tenant, &b.device, b.kind, b.severity)));
    raised.dedup_by(|a, b| (&a.tenant, &a.device, a.kind, a.severity) == (&b.tenant, &b.device, b.kind, b.severity));
    Ok(raised)
}

/// Catches up until `position` is evaluated (see [`Await`] for how long).
async fn catch_up_through(app: &App, position: Position, wait: Await) -> ApiResult<Vec<Flag>> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut raised = catch_up(app).await?;
    while app.risk.lock().cursor < position {
        if started.elapsed() >= OWN_EVENT_WAIT {
            if wait == Await::Record {
                tracing::warn!(seq = position.seq, "risk event not evaluated in time; the next catch-up will");
                return Ok(raised);
            }
            return Err(ApiError::Unavailable(
                "the risk engine could not evaluate this request in time (a long database transaction is \
                 holding back the shared risk log); retry the call"
                    .into(),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
        raised.extend(catch_up(app).await?);
    }
    Ok(raised)
}

/// The scheduler's turn: catch up with the other replicas' events, and now
/// and then delete events older than any window needs.
pub async fn tick(app: &App) -> ApiResult<usize> {
    let mut raised = catch_up(app).await?.len();
    crate::domain::risk_live::probes::issue_due(app).await?;
    let now = now_ms();
    raised += close_due_rounds(app, now).await?;
    let (due, keep) = {
        let mut shared = app.risk.lock();
        let due = now - shared.last_prune >= PRUNE_EVERY_MS;
        if due {
            shared.last_prune = now;
        }
        (due, shared.horizon_ms() + 24 * HOUR_MS)
    };
    if due {
        let mut pruned = 0;
        loop {
            let n = risk_events::prune(&app.store, now - keep, PRUNE_BATCH).await?;
            pruned += n;
            if n < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX) {
                break;
            }
        }
        if pruned > 0 {
            tracing::debug!(pruned, "deleted risk events past the retention");
        }
    }
    Ok(raised)
}

/// Judges the presence rounds whose time is up even when no later answer
/// arrives behind their egress (the last probe round of a cluster, above
/// all) and stores what that raised. The engine dates each flag when its
/// round was due to close, so every replica raises the same flag, stored once.
async fn close_due_rounds(app: &App, now: Millis) -> ApiResult<usize> {
    let flags = app.risk.lock().engine.close_due_rounds(now);
    if flags.is_empty() {
        return Ok(0);
    }
    let count = flags.len();
    // Raised by the clock, not by an event: attributed to no credential or session.
    let row = StoredEvent {
        seq: 0,
        txn: 0,
        tenant_id: String::new(),
        device_id: String::new(),
        credential_id: String::new(),
        session_id: String::new(),
        at_ms: now,
        event_json: String::new(),
        declared_json: String::new(),
    };
    store_flags(app, &[(row, flags)]).await?;
    Ok(count)
}

/// Stores flags with their audit entries in one transaction, skipping those
/// another replica stored first.
async fn store_flags(app: &App, evaluated: &[(StoredEvent, Vec<Flag>)]) -> ApiResult<()> {
    if evaluated.iter().all(|(_, raised)| raised.is_empty()) {
        return Ok(());
    }
    let cooldown = app.risk.lock().cooldown_ms();
    // One order for every replica (tenant, then kind and device): the audit
    // heads and unique keys this locks are then taken in the same order.
    let mut all: Vec<(&StoredEvent, &Flag)> =
        evaluated.iter().flat_map(|(row, raised)| raised.iter().map(move |f| (row, f))).collect();
    all.sort_by(|(_, a), (_, b)| (&a.tenant, a.kind, &a.device).cmp(&(&b.tenant, b.kind, &b.device)));
    // Re-run whole when the database aborts it for a concurrent transaction.
    let stored = app
        .store
        .retrying("risk.flags", || async {
            let mut tx = app.store.begin().await?;
            let mut stored = Vec::new();
            for (row, flag) in &all {
                if insert_flag(&mut tx, row, flag, cooldown).await? {
                    stored.push(*flag);
                }
            }
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(stored)
        })
        .await?;
    for flag in stored {
        tracing::info!(
            tenant = %flag.tenant, device = %flag.device, kind = flag.kind.as_str(),
            severity = severity_name(flag.severity), "risk flag raised"
        );
    }
    Ok(())
}

/// Stores one flag with its audit entry; false when another replica had.
/// A cluster flag can name other members, even of other tenants: each is
/// stored with its own tenant, device and worker, and attributed to the
/// event's credential and session only when it is about the event's device.
async fn insert_flag(tx: &mut Tx, row: &StoredEvent, flag: &Flag, cooldown: Millis) -> Result<bool, StoreError> {
    let own = flag.tenant == row.tenant_id && flag.device == row.device_id;
    let record = FlagRecord {
        id: new_id("flg"),
        tenant_id: flag.tenant.clone(),
        kind: flag.kind.as_str().into(),
        severity: severity_name(flag.severity).into(),
        status: "open".into(),
        device_id: flag.device.clone(),
        worker_external_id: flag.worker.clone(),
        credential_id: if own { row.credential_id.clone() } else { String::new() },
        session_id: if own { row.session_id.clone() } else { String::new() },
        raised_at_ms: flag.at,
        evidence_json: flag.evidence.to_string(),
    };
    let key = format!("{}:{}", record.severity, flag.at.div_euclid(cooldown));
    if !flags::insert_deduped(tx, &record, &key).await? {
        return Ok(false);
    }
    crate::domain::siem::flag_raised(tx, &record).await?;
    let details = serde_json::json!({
        "flag": record.id, "kind": record.kind, "severity": record.severity, "score": flag.score,
    });
    audit::append(tx, &flag.tenant, &Actor::system(), "flag.raised", &flag.device, details).await?;
    Ok(true)
}

/// Replays the newest events of the log (at most [`WARM_UP_EVENTS`], none
/// older than the horizon) in sequence order, the order every other replica
/// evaluated them in, and continues from the end of the log. The flags and
/// probes this raises were handled when the events first happened.
/// Returns how many events were replayed.
pub async fn warm_up(risk: &LiveRisk, store: &Store, last: Position) -> Result<usize, StoreError> {
    let since = now_ms() - risk.lock().horizon_ms();
    let mut cursor = risk_events::warm_start(store, last, since, WARM_UP_EVENTS).await?;
    let mut replayed = 0;
    loop {
        let rows = risk_events::after(store, cursor, last, since, PAGE).await?;
        let Some(end) = rows.last().map(StoredEvent::position) else { break };
        replayed += rows.len();
        cursor = end;
        risk.lock().apply(rows);
    }
    let mut shared = risk.lock();
    shared.cursor = shared.cursor.max(last);
    shared.engine.take_probe_requests();
    Ok(replayed)
}
