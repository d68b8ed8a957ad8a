//! Probe rounds: when a cross-tenant cluster appears behind one egress, every
//! member is challenged at the same moment with a short deadline, and again
//! every `[probes] interval_secs`, `[probes] rounds` times in all. One person
//! answering for a room of laptops answers each round one device after
//! another (or runs out of time), which the engine's `presence_burst` counts
//! once enough rounds are in.
//!
//! Every replica's engine asks for the same probe (same egress and time, from
//! the same shared log). The replica that claims it in `risk_probes` writes
//! all its rounds in the same transaction (crate::store::risk_events); any
//! replica's scheduler then issues a due round, marking it issued in the
//! transaction that inserts its challenges. So each round goes out exactly
//! once, whichever replicas run, stop or restart in between.

use crate::domain::app::App;
use crate::domain::error::ApiResult;
use crate::store::risk_events::{self, ProbeRound};
use crate::store::{StoreError, credentials, presence as presence_store};
use crate::util::now_ms;

/// Rounds issued per scheduler pass at most (the rest wait for the next tick).
const ROUNDS_PER_PASS: i64 = 100;

/// Schedules the rounds of the probes the engine asked for since the last
/// call (claimed once across replicas) and, when it claimed one, issues every
/// round that is due. Runs after each catch-up with the shared log, so a new
/// cluster's first round goes out before the request that completed the
/// cluster returns; later rounds go out from the scheduler ([`issue_due`]),
/// which keeps the query for due rounds off every request's path.
pub(crate) async fn schedule(app: &App) -> ApiResult<()> {
    let (requests, cadence) = app.risk.take_probes();
    if !cadence.enabled {
        return Ok(());
    }
    let mut claimed_any = false;
    for request in requests {
        let now = now_ms();
        let rounds = cadence.rounds_of(&request, now);
        let claimed = app
            .store
            .retrying("risk.probe_schedule", || async {
                let mut tx = app.store.begin().await?;
                let claimed = risk_events::schedule_probe(&mut tx, &request.egress, request.at, now, &rounds).await?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok::<_, StoreError>(claimed)
            })
            .await?;
        claimed_any |= claimed;
        if claimed {
            tracing::info!(
                egress = %request.egress, devices = request.devices.len(), rounds = cadence.rounds,
                interval_secs = cadence.interval_secs, "probe rounds scheduled"
            );
        }
    }
    if claimed_any { issue_due(app).await } else { Ok(()) }
}

/// Issues the rounds that are due and not issued yet.
pub(crate) async fn issue_due(app: &App) -> ApiResult<()> {
    for round in risk_events::due_rounds(&app.store, now_ms(), ROUNDS_PER_PASS).await? {
        issue(app, &round).await?;
    }
    Ok(())
}

/// Challenges every active credential of every device of the round at once.
async fn issue(app: &App, round: &ProbeRound) -> ApiResult<()> {
    let devices: Vec<(String, String)> = match serde_json::from_str(&round.devices_json) {
        Ok(devices) => devices,
        Err(e) => {
            // Written by a tetherd; one that no longer parses is issued empty (marked, never retried).
            tracing::warn!(egress = %round.egress, round = round.round_no, error = %e, "unreadable probe round");
            Vec::new()
        }
    };
    let mut live = Vec::new();
    for (tenant_id, device_id) in &devices {
        let listed = credentials::list_for_device(&app.store, tenant_id, device_id).await?;
        live.extend(listed.into_iter().filter(|c| c.revoked_at_ms.is_none()));
    }
    let now = now_ms();
    let challenges: Vec<_> = live
        .iter()
        .map(|c| crate::domain::presence::challenge::new_challenge(c, round.deadline_secs, "probe", now))
        .collect();
    let count = i64::try_from(challenges.len()).unwrap_or(i64::MAX);
    let issued = app
        .store
        .retrying("risk.probe_round", || async {
            let mut tx = app.store.begin().await?;
            if !risk_events::mark_round_issued(&mut tx, round, now, count).await? {
                return Ok(false); // another replica or task issued it
            }
            for challenge in &challenges {
                presence_store::insert_challenge_in(&mut tx, challenge).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if issued {
        for challenge in &challenges {
            // Nobody listening is fine: agents also poll.
            let _ = app.issued.send(challenge.credential_id.clone());
        }
        tracing::info!(
            egress = %round.egress, round = round.round_no, devices = devices.len(), issued = challenges.len(),
            "probe round issued"
        );
    }
    Ok(())
}
