//! Background work: issue scheduled presence challenges and turn overdue
//! ones into missed-presence records. Each step is idempotent and guarded by
//! conditional updates, so a pass interrupted by shutdown loses nothing.

use crate::domain::app::App;
use crate::domain::presence;
use std::sync::Arc;
use tokio::sync::watch;

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(app.settings.scheduler_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match presence::sweep_missed(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(missed = n, "recorded missed presence challenges"),
            Err(e) => tracing::warn!(error = %e, "missed-presence sweep failed; retrying next tick"),
        }
        match presence::issue_due(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(issued = n, "issued scheduled presence challenges"),
            Err(e) => tracing::warn!(error = %e, "challenge scheduling failed; retrying next tick"),
        }
        // Other replicas' risk events, even when this one has no traffic of its own.
        if let Err(e) = crate::domain::risk_live::shared::tick(&app).await {
            tracing::warn!(error = %e, "risk catch-up failed; retrying next tick");
        }
    }
}
