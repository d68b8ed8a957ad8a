//! The Prometheus scrape endpoint (`--metrics-listen`): `GET /metrics` in
//! the text exposition format, on its own plain-HTTP port so it can stay
//! inside the cluster while gRPC is exposed (and so a scrape never needs a
//! client certificate).

use std::net::SocketAddr;
use std::sync::OnceLock;
use tokio::sync::watch;

static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// The registry the metrics reader writes into; set once by `init`.
pub(crate) fn set_registry(registry: prometheus::Registry) {
    let _ = REGISTRY.set(registry);
}

/// The current metrics in the Prometheus text format.
pub fn render() -> String {
    let Some(registry) = REGISTRY.get() else { return String::new() };
    let families = registry.gather();
    let mut text = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        Ok(()) => text,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            String::new()
        }
    }
}

async fn metrics() -> impl axum::response::IntoResponse {
    ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], render())
}

/// With an address, binds it, prints `tetherd metrics listening on ADDR`
/// (port 0 picks a free one) and serves until `stopping` turns true.
pub async fn start(listen: Option<&str>, mut stopping: watch::Receiver<bool>) -> anyhow::Result<Option<SocketAddr>> {
    let Some(listen) = listen.filter(|l| !l.trim().is_empty()) else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(listen.trim())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    // Scripts and tests read the bound address from this line, as for gRPC.
    println!("tetherd metrics listening on {local}");
    tracing::info!(%local, "Prometheus metrics endpoint at /metrics");
    let router = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    tokio::spawn(async move {
        let shutdown = async move {
            while !*stopping.borrow() {
                if stopping.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(Some(local))
}
