//! Every metric tetherd exports, created once from the process's meter
//! provider, and the typed `record_*` functions the rest of the service calls.
//! Label values come from fixed sets (gRPC codes, outcomes, formats, flag
//! kinds), never from request data, so a caller cannot grow the series count.
//! Before [`install`] runs (unit tests, the demo) recording does nothing.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider, ObservableGauge};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

/// The instrumentation scope name of every tetherd metric.
pub const SCOPE: &str = "tetherd";

/// Latency buckets in seconds: signature checks take tens of microseconds,
/// a slow database call seconds.
const LATENCY_BOUNDARIES: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Instruments {
    rpc_calls: Counter<u64>,
    rpc_duration: Histogram<f64>,
    enrollments: Counter<u64>,
    presence: Counter<u64>,
    verification_duration: Histogram<f64>,
    access_decisions: Counter<u64>,
    deny_reasons: Counter<u64>,
    flags: Counter<u64>,
    pool_timeouts: Counter<u64>,
    db_retries: Counter<u64>,
    db_group_commits: Counter<u64>,
    db_group_committed: Counter<u64>,
    siem_deliveries: Counter<u64>,
    siem_dropped: Counter<u64>,
    // Kept so the callbacks stay registered for the provider's lifetime.
    _pool: Vec<ObservableGauge<i64>>,
    _mds: Vec<ObservableGauge<i64>>,
    _provider: SdkMeterProvider,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
/// The pool the `tether.db.pool.*` gauges read (the serving store's).
static POOL: RwLock<Option<sqlx::AnyPool>> = RwLock::new(None);
/// Transactions waiting for a connection right now (sqlx keeps its wait queue private).
static WAITING: AtomicI64 = AtomicI64::new(0);
/// The FIDO metadata BLOB in force: its `no` (-1: none) and its `nextUpdate` as days since the
/// Unix epoch, so staleness is judged when the gauge is read, not when the BLOB was loaded.
static MDS_NO: AtomicI64 = AtomicI64::new(-1);
static MDS_NEXT_UPDATE_DAY: AtomicI64 = AtomicI64::new(i64::MIN);
/// Outbox rows not yet pruned, as the last delivery sweep counted them.
static SIEM_BACKLOG: AtomicI64 = AtomicI64::new(0);

/// Creates the instruments on `provider`. Only the first call in a process
/// takes effect (instruments are process-wide); returns whether it did.
pub fn install(provider: &SdkMeterProvider) -> bool {
    let meter = provider.meter(SCOPE);
    INSTRUMENTS.set(instruments(&meter, provider.clone())).is_ok()
}

fn instruments(meter: &Meter, provider: SdkMeterProvider) -> Instruments {
    let latency = |name: &'static str, description: &'static str| {
        meter
            .f64_histogram(name)
            .with_unit("s")
            .with_description(description)
            .with_boundaries(LATENCY_BOUNDARIES.to_vec())
            .build()
    };
    let counter =
        |name: &'static str, description: &'static str| meter.u64_counter(name).with_description(description).build();
    let gauge = |name: &'static str, description: &'static str, read: fn() -> Vec<(i64, Option<&'static str>)>| {
        meter
            .i64_observable_gauge(name)
            .with_unit("{connection}")
            .with_description(description)
            .with_callback(move |observer| {
                for (value, state) in read() {
                    match state {
                        Some(state) => observer.observe(value, &[KeyValue::new("state", state)]),
                        None => observer.observe(value, &[]),
                    }
                }
            })
            .build()
    };
    Instruments {
        rpc_calls: counter("tether.rpc.server.calls", "gRPC calls answered, by method and status code"),
        rpc_duration: latency("tether.rpc.server.duration", "Time to answer a gRPC call (streams: to open it)"),
        enrollments: counter("tether.enrollments", "Finished enrollment attempts, by key kind, format and outcome"),
        presence: counter("tether.presence.answers", "Presence outcomes recorded, including missed challenges"),
        verification_duration: latency(
            "tether.verification.duration",
            "Time spent in one verification step (attestation, assertion, quote, risk evaluation)",
        ),
        access_decisions: counter("tether.access.decisions", "Gateway access decisions, by result"),
        deny_reasons: counter("tether.access.deny_reasons", "Reasons given with DENY decisions"),
        flags: counter("tether.flags.raised", "Risk flags raised, by kind and severity"),
        pool_timeouts: counter("tether.db.pool.timeouts", "Calls that gave up waiting for a database connection"),
        db_retries: counter(
            "tether.db.retries",
            "Transactions the database aborted for a concurrent one: re-runs, and how the unit of work ended",
        ),
        db_group_commits: counter(
            "tether.db.group_commits",
            "SQLite batch transactions committed (one fsync each) by this process's group commit",
        ),
        db_group_committed: counter(
            "tether.db.group_committed_transactions",
            "Write transactions those batches held: divided by tether.db.group_commits, the mean batch size",
        ),
        siem_deliveries: counter(
            "tether.siem.deliveries",
            "Outbox events sent to SIEM integrations, by integration kind and outcome (ok, failed)",
        ),
        siem_dropped: counter(
            "tether.siem.dropped",
            "Undelivered outbox events deleted because a tenant's outbox reached its cap",
        ),
        _pool: vec![
            gauge("tether.db.pool.connections", "Open database connections, by state (idle, used)", pool_connections),
            gauge("tether.db.pool.max", "Most connections the pool may open", pool_max),
            gauge("tether.db.pool.waiting", "Transactions waiting for a free connection", pool_waiting),
            meter
                .i64_observable_gauge("tether.siem.backlog")
                .with_unit("{event}")
                .with_description("Outbox events kept for SIEM integrations (delivered rows are pruned)")
                .with_callback(|observer| observer.observe(SIEM_BACKLOG.load(Ordering::Relaxed), &[]))
                .build(),
        ],
        _mds: vec![
            meter
                .i64_observable_gauge("tether.mds.no")
                .with_description("The FIDO metadata BLOB in force (--mds-file): its no; absent without one")
                .with_callback(|observer| {
                    let no = MDS_NO.load(Ordering::Relaxed);
                    if no >= 0 {
                        observer.observe(no, &[]);
                    }
                })
                .build(),
            meter
                .i64_observable_gauge("tether.mds.stale")
                .with_description("1 when the FIDO metadata BLOB in force is past its nextUpdate: fetch a newer one")
                .with_callback(|observer| {
                    if MDS_NO.load(Ordering::Relaxed) >= 0 {
                        let today = time::OffsetDateTime::now_utc().unix_timestamp().div_euclid(86_400);
                        observer.observe(i64::from(MDS_NEXT_UPDATE_DAY.load(Ordering::Relaxed) < today), &[]);
                    }
                })
                .build(),
        ],
        _provider: provider,
    }
}

/// Records the FIDO metadata BLOB put in force; `next_update` None (unreadable) counts as stale.
pub fn record_mds(no: u64, next_update: Option<time::Date>) {
    let day = next_update.map_or(i64::MIN, |d| (d - time::Date::from_ordinal_date(1970, 1).unwrap_or(d)).whole_days());
    MDS_NEXT_UPDATE_DAY.store(day, Ordering::Relaxed);
    MDS_NO.store(i64::try_from(no).unwrap_or(i64::MAX), Ordering::Relaxed);
}

fn watched_pool() -> Option<sqlx::AnyPool> {
    match POOL.read() {
        Ok(pool) => pool.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn pool_connections() -> Vec<(i64, Option<&'static str>)> {
    let Some(pool) = watched_pool() else { return Vec::new() };
    let size = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX).min(size);
    vec![(idle, Some("idle")), (size - idle, Some("used"))]
}

fn pool_max() -> Vec<(i64, Option<&'static str>)> {
    watched_pool().map(|p| vec![(i64::from(p.options().get_max_connections()), None)]).unwrap_or_default()
}

fn pool_waiting() -> Vec<(i64, Option<&'static str>)> {
    vec![(WAITING.load(Ordering::Relaxed).max(0), None)]
}

/// Points the pool gauges at the serving store's pool.
pub fn watch_pool(pool: &sqlx::AnyPool) {
    match POOL.write() {
        Ok(mut slot) => *slot = Some(pool.clone()),
        Err(poisoned) => *poisoned.into_inner() = Some(pool.clone()),
    }
}

/// Counts one transaction as waiting for a connection until the guard drops.
pub fn waiting_for_connection() -> WaitingGuard {
    WAITING.fetch_add(1, Ordering::Relaxed);
    WaitingGuard(())
}

pub struct WaitingGuard(());

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

fn with(f: impl FnOnce(&Instruments)) {
    if let Some(instruments) = INSTRUMENTS.get() {
        f(instruments);
    }
}

pub(crate) fn record_rpc(method: &str, code: &'static str, elapsed: Duration) {
    with(|i| {
        let labels = [KeyValue::new("method", method.to_string()), KeyValue::new("code", code)];
        i.rpc_calls.add(1, &labels);
        i.rpc_duration.record(elapsed.as_secs_f64(), &labels);
    });
}

/// How an enrollment attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentOutcome {
    Attested,
    Unattested,
    /// Refused: bad token, bad attestation, policy, ...
    Rejected,
    /// The server could not finish it (database).
    Error,
}

impl EnrollmentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentOutcome::Attested => "attested",
            EnrollmentOutcome::Unattested => "unattested",
            EnrollmentOutcome::Rejected => "rejected",
            EnrollmentOutcome::Error => "error",
        }
    }
}

/// One finished enrollment attempt. `kind` is `webauthn` or `tpm`; `format`
/// the attestation format (`unknown` when the attempt failed before it was read).
pub fn record_enrollment(kind: &'static str, outcome: EnrollmentOutcome, format: &str) {
    with(|i| {
        let labels = [
            KeyValue::new("kind", kind),
            KeyValue::new("format", bounded(format)),
            KeyValue::new("outcome", outcome.as_str()),
        ];
        i.enrollments.add(1, &labels);
    });
}

/// One presence record: `ok`, `failed`, `replayed`, `late`, `clone_suspected` or `missed`.
pub fn record_presence(outcome: &str) {
    if super::held::hold(|| super::held::Held::Presence { outcome: outcome.to_string() }) {
        return;
    }
    with(|i| i.presence.add(1, &[KeyValue::new("outcome", bounded(outcome))]));
}

pub(crate) fn record_verification(step: &'static str, ok: bool, elapsed: Duration) {
    with(|i| {
        let labels = [KeyValue::new("step", step), KeyValue::new("outcome", if ok { "ok" } else { "error" })];
        i.verification_duration.record(elapsed.as_secs_f64(), &labels);
    });
}

/// One access decision with its deny reasons (stable snake_case names).
pub fn record_access_result(allow: bool, reasons: impl IntoIterator<Item = &'static str>) {
    with(|i| {
        i.access_decisions.add(1, &[KeyValue::new("decision", if allow { "allow" } else { "deny" })]);
        for reason in reasons {
            i.deny_reasons.add(1, &[KeyValue::new("reason", reason)]);
        }
    });
}

/// One flag written, by kind and severity.
pub fn record_flag(kind: &str, severity: &str) {
    if super::held::hold(|| super::held::Held::Flag { kind: kind.to_string(), severity: severity.to_string() }) {
        return;
    }
    with(|i| {
        i.flags.add(1, &[KeyValue::new("kind", bounded(kind)), KeyValue::new("severity", bounded(severity))]);
    });
}

/// One call that timed out waiting for a database connection.
pub fn record_pool_timeout() {
    with(|i| i.pool_timeouts.add(1, &[]));
}

/// One step of re-running an aborted transaction (`store::retry`): `what` is
/// the unit of work; `outcome` is `retried` (one re-run), `recovered` (a
/// re-run succeeded) or `exhausted` (the last attempt failed too).
pub fn record_db_retry(what: &'static str, outcome: &'static str) {
    with(|i| i.db_retries.add(1, &[KeyValue::new("what", what), KeyValue::new("outcome", outcome)]));
}

/// One SQLite batch committed with `transactions` write transactions in it (crate::store::group_commit).
pub fn record_group_commit(transactions: u64) {
    with(|i| {
        i.db_group_commits.add(1, &[]);
        i.db_group_committed.add(transactions, &[]);
    });
}

/// Values taken from stored records are short identifiers; anything else is
/// folded into `other` so no label can carry arbitrary text.
/// One outbox event sent to an integration (`kind` webhook or syslog), or one failed attempt.
pub fn record_siem_delivery(kind: &str, ok: bool) {
    with(|i| {
        let labels = [KeyValue::new("kind", bounded(kind)), KeyValue::new("outcome", if ok { "ok" } else { "failed" })];
        i.siem_deliveries.add(1, &labels);
    });
}

/// Undelivered outbox events deleted over a tenant's cap.
pub fn record_siem_dropped(n: u64) {
    with(|i| i.siem_dropped.add(n, &[]));
}

/// The outbox's size as last counted.
pub fn set_siem_backlog(n: i64) {
    SIEM_BACKLOG.store(n, Ordering::Relaxed);
}

fn bounded(value: &str) -> String {
    let fits = !value.is_empty()
        && value.len() <= 32
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if fits { value.to_string() } else { "other".to_string() }
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn labels_from_records_stay_short_identifiers() {
        assert_eq!(bounded("clone_suspected"), "clone_suspected");
        assert_eq!(bounded("fido-u2f"), "fido-u2f");
        assert_eq!(bounded("Bearer tk.key.secret"), "other");
        assert_eq!(bounded(&"a".repeat(33)), "other");
        assert_eq!(bounded(""), "other");
    }
}
