//! The delivery task: every tick it takes the integrations that are due,
//! leases each one (so one replica sends at a time), sends the tenant's
//! outbox rows after the integration's cursor in order, and moves the
//! cursor past each row only once the receiver took it. A failure stops the
//! run and sets the next attempt with exponential backoff; cursor, failures
//! and next attempt live in the database, so a restart or another replica
//! carries on where this one stopped. Delivery is at least once: a process
//! killed between the receiver's answer and the cursor update sends that row
//! again, with the same idempotency key and body.

use super::{format, syslog, webhook};
use crate::domain::app::App;
use crate::store::outbox::{self, Integration, OutboxRow};
use crate::store::{Store, StoreResult};
use crate::util::{new_id, now_ms};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

const TICK: Duration = Duration::from_secs(1);
/// Integrations one tick runs at once.
const INTEGRATIONS_PER_TICK: i64 = 16;
/// Rows one run reads at a time.
const BATCH: i64 = 100;
/// A run stops starting sends after this long, so other integrations get their turn.
const RUN_BUDGET: Duration = Duration::from_secs(30);
/// A lease outlives one send (SEND_TIMEOUT) and is extended after each
/// delivered row; when a process dies, another takes over this long after.
const LEASE_MS: i64 = 20_000;
/// Connect, TLS and answer, each.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF_MS: i64 = 500;
const LONGEST_BACKOFF_MS: i64 = 300_000;
/// Rows kept per tenant when a receiver stays down: beyond it the oldest are
/// dropped (and counted in `tether.siem.dropped`) so the database stays bounded.
pub const OUTBOX_CAP_PER_TENANT: i64 = 100_000;
/// Pruning runs every this many ticks.
const PRUNE_EVERY: u32 = 10;
/// Tenants one pruning pass visits.
const PRUNE_TENANTS: i64 = 1_000;

/// The wait before attempt `failures + 1`.
pub fn backoff_ms(failures: i64) -> i64 {
    let doublings = failures.clamp(0, 20) as u32;
    FIRST_BACKOFF_MS.saturating_mul(1_i64 << doublings).min(LONGEST_BACKOFF_MS)
}

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let owner = new_id("dlv");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = deliver_due(&app.store, &owner).await {
            tracing::warn!(error = %e, "SIEM delivery sweep failed; retrying next tick");
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(PRUNE_EVERY)
            && let Err(e) = prune(&app.store).await
        {
            tracing::warn!(error = %e, "SIEM outbox pruning failed; retrying later");
        }
    }
}

async fn deliver_due(store: &Store, owner: &str) -> StoreResult<()> {
    let now = now_ms();
    let mut runs = JoinSet::new();
    for integration in outbox::due(store, now, INTEGRATIONS_PER_TICK).await? {
        if outbox::claim(store, &integration.id, owner, now, now + LEASE_MS).await? {
            let (store, owner) = (store.clone(), owner.to_string());
            runs.spawn(async move { deliver(&store, &owner, integration).await });
        }
    }
    while let Some(done) = runs.join_next().await {
        match done {
            Ok(Err(e)) => tracing::warn!(error = %e, "SIEM delivery run failed"),
            Err(e) => tracing::warn!(error = %e, "SIEM delivery run ended abnormally"),
            Ok(Ok(())) => {}
        }
    }
    Ok(())
}

enum Sink {
    Webhook(webhook::Target),
    Syslog { host: String, port: u16, io: Option<Box<dyn super::net::Io>> },
}

/// Sends the integration's pending rows in order until none is left, one
/// fails, or the run's budget is spent; then gives the lease back.
async fn deliver(store: &Store, owner: &str, integration: Integration) -> StoreResult<()> {
    let started = Instant::now();
    let mut sink = match integration.kind.as_str() {
        "webhook" => webhook::parse(&integration.target).map(Sink::Webhook),
        _ => syslog::parse(&integration.target).map(|(host, port)| Sink::Syslog { host, port, io: None }),
    };
    let mut cursor = integration.cursor;
    'run: while started.elapsed() < RUN_BUDGET {
        let rows = outbox::after(store, &integration.tenant_id, cursor, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if started.elapsed() >= RUN_BUDGET {
                break 'run;
            }
            let sent = match &mut sink {
                Ok(sink) => send(sink, &integration, &row).await,
                Err(e) => Err(e.clone()),
            };
            crate::telemetry::record_siem_delivery(&integration.kind, sent.is_ok());
            if let Err(error) = sent {
                let next = now_ms() + backoff_ms(integration.failures);
                tracing::info!(integration = %integration.id, tenant = %integration.tenant_id, %error,
                    "SIEM delivery failed; will retry");
                return outbox::failed(store, &integration.id, owner, &error, next).await;
            }
            let now = now_ms();
            if !outbox::delivered(store, &integration.id, owner, row.position(), now, now + LEASE_MS).await? {
                // The lease lapsed and another replica took over: stop, it resends from its cursor.
                return Ok(());
            }
            cursor = row.position();
        }
    }
    if let Ok(Sink::Syslog { io: Some(io), .. }) = sink {
        syslog::close(io, SEND_TIMEOUT).await;
    }
    outbox::release(store, &integration.id, owner).await
}

async fn send(sink: &mut Sink, integration: &Integration, row: &OutboxRow) -> Result<(), String> {
    let key = format::key(row);
    let body = if integration.format == "cef" { format::cef(row) } else { format::json(row) };
    match sink {
        Sink::Webhook(target) => {
            webhook::post(target, &integration.secret, &key, &row.kind, body, now_ms() / 1000, SEND_TIMEOUT).await
        }
        Sink::Syslog { host, port, io } => {
            if io.is_none() {
                *io = Some(syslog::open(host, *port, integration.tls, SEND_TIMEOUT).await?);
            }
            let Some(stream) = io.as_mut() else { return Err("no syslog connection".into()) };
            let sent = syslog::send(stream, &syslog::frame(row, &key, &body), SEND_TIMEOUT).await;
            if sent.is_err() {
                *io = None;
            }
            sent
        }
    }
}

/// Deletes rows every integration of their tenant has delivered, then
/// enforces the per-tenant cap, and refreshes the backlog gauge.
async fn prune(store: &Store) -> StoreResult<()> {
    for tenant in outbox::tenants(store, PRUNE_TENANTS).await? {
        outbox::prune_delivered(store, &tenant).await?;
        let dropped = outbox::prune_over_cap(store, &tenant, OUTBOX_CAP_PER_TENANT).await?;
        if dropped > 0 {
            tracing::warn!(tenant = %tenant, dropped, "SIEM outbox over its cap: oldest undelivered events dropped");
            crate::telemetry::record_siem_dropped(dropped);
        }
    }
    crate::telemetry::set_siem_backlog(outbox::count(store).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff_ms(0), 500);
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(4), 8_000);
        assert_eq!(backoff_ms(30), 300_000);
        assert_eq!(backoff_ms(-3), 500);
    }
}
