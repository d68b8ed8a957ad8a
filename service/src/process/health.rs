//! Health follows the database: when it cannot be reached, every service
//! reports NOT_SERVING (so load balancers and Kubernetes stop routing to this
//! replica) and calls fail UNAVAILABLE, which gateways treat as deny. When the
//! database answers again, health returns to SERVING by itself.

use crate::domain::app::App;
use std::sync::Arc;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Every service name health reports on; "" is the whole server.
pub const SERVICES: &[&str] = &[
    "",
    "tether.v1.AdminService",
    "tether.v1.EnrollmentService",
    "tether.v1.PresenceService",
    "tether.v1.AccessService",
    "tether.v1.ReportService",
];

async fn database_answers(app: &App) -> bool {
    let probe = sqlx::query("SELECT 1").execute(app.store.pool());
    matches!(tokio::time::timeout(Duration::from_secs(2), probe).await, Ok(Ok(_)))
}

pub async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(*service, status).await;
    }
}

/// Probes the database every `interval` until shutdown, flipping health on changes.
pub async fn watch(app: Arc<App>, reporter: HealthReporter, interval: Duration) {
    let mut stopping = app.stopping.subscribe();
    let mut serving = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => return,
        }
        let up = database_answers(&app).await;
        if up != serving {
            serving = up;
            if up {
                tracing::info!("the database answers again; serving");
                set_all(&reporter, ServingStatus::Serving).await;
            } else {
                tracing::error!("the database does not answer; reporting NOT_SERVING until it does");
                set_all(&reporter, ServingStatus::NotServing).await;
            }
        }
    }
}
