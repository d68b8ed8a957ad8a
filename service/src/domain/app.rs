//! Shared state of a running service.

use crate::domain::limits::{LimitSettings, Limiter};
use crate::domain::risk_live::state::LiveRisk;
use crate::domain::tenancy::pepper::Pepper;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tether_risk::Engine;
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the scheduler issues due challenges and sweeps missed ones.
    pub scheduler_tick: Duration,
    /// How often an open challenge stream re-reads the database, so streams
    /// also see challenges issued by other replicas.
    pub stream_poll: Duration,
    pub limits: LimitSettings,
    /// The longest any unary call may run (clients may ask for less).
    pub request_timeout: Duration,
    /// Bounds on what callers without an API key can hold open on the gRPC listener.
    pub streams: StreamLimits,
    /// Bounds on the web console's in-memory sessions.
    pub console_sessions: SessionLimits,
}

/// `WatchChallenges` needs no API key and lasts as long as its caller wants,
/// so open streams are bounded per process, per HTTP/2 connection and per
/// credential; the HTTP/2 settings bound every kind of stream per connection.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub watch_total: usize,
    pub watch_per_connection: usize,
    pub watch_per_credential: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls of any kind open at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// How often an idle connection is pinged, so a peer that vanished without
    /// closing its connection frees its streams.
    pub http2_keepalive_interval: Duration,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            watch_total: 10_000,
            watch_per_connection: 100,
            watch_per_credential: 4,
            http2_max_concurrent_streams: 200,
            http2_keepalive_interval: Duration::from_secs(60),
        }
    }
}

/// Console sessions: `total` bounds memory; a tenant or key at its own cap
/// replaces its own oldest session, so no tenant can sign out another.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub total: usize,
    pub per_tenant: usize,
    pub per_key: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits { total: 10_000, per_tenant: 1_000, per_key: 20 }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            scheduler_tick: Duration::from_secs(5),
            stream_poll: Duration::from_secs(2),
            limits: LimitSettings::default(),
            request_timeout: Duration::from_secs(30),
            streams: StreamLimits::default(),
            console_sessions: SessionLimits::default(),
        }
    }
}

pub struct App {
    pub store: Store,
    /// Mixed into every API-key hash; from a file or the environment.
    pub pepper: Pepper,
    pub settings: Settings,
    /// Credential ids that just received a challenge, for open streams.
    pub issued: broadcast::Sender<String>,
    /// Abuse limits (token buckets).
    pub limits: Limiter,
    /// The risk engine that turns events into flags.
    pub risk: LiveRisk,
    /// Flips to true when shutdown begins, so long-lived streams and the
    /// scheduler end and graceful shutdown does not wait on them forever.
    pub stopping: watch::Sender<bool>,
    /// Access-token signing keys (from files, never the database); unset
    /// when tokens are not enabled.
    pub access_tokens: std::sync::OnceLock<crate::domain::access::token_keys::TokenKeys>,
    /// The operator's FIDO metadata (`--mds-file`); empty when none is configured.
    pub mds: crate::domain::enrollment::mds_catalog::MdsCatalog,
    /// Tenants' own imported FIDO metadata, cached while current.
    pub tenant_mds: crate::domain::enrollment::mds_catalog::TenantMdsCache,
    /// The roots every FIDO metadata BLOB must chain to (`--mds-root`, default the shipped
    /// GlobalSign R3 and R46); unset, tenant imports are refused.
    pub mds_roots: std::sync::OnceLock<tether_attestation::trust::TrustStore>,
}

impl App {
    pub fn new(store: Store, pepper: Pepper, settings: Settings, risk: Engine) -> Arc<App> {
        let risk = LiveRisk::new(risk);
        let (issued, _) = broadcast::channel(1024);
        let (stopping, _) = watch::channel(false);
        let limits = Limiter::new(settings.limits.clone());
        Arc::new(App {
            store,
            pepper,
            settings,
            issued,
            limits,
            risk,
            stopping,
            access_tokens: Default::default(),
            mds: Default::default(),
            tenant_mds: Default::default(),
            mds_roots: Default::default(),
        })
    }
}
