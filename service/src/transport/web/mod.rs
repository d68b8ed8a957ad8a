//! The workers' web app (`tetherd serve --web-listen ADDR`): enrollment and
//! presence through the browser's WebAuthn, for laptops and security keys the
//! agent cannot drive (Windows Hello, Touch ID, YubiKeys).
//!
//! Transport only: every call goes through the same domain functions as the
//! gRPC EnrollmentService and PresenceService (limits, audit entries, risk
//! events included). The tenant is the one whose configured origin matches
//! the request's Host (`site.rs`); state-changing calls need the tenant's
//! exact Origin and a double-submit CSRF token; scripts come from 'self' only.

mod api;
pub mod gateway;
mod pages;
mod site;
pub mod tls;

use crate::domain::app::App;
use crate::domain::limits::{LimitSettings, Limiter, Rate};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// An attestation with a certificate chain is a few KiB; nothing we accept is near this.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Page loads and challenge polls per second per source address, and the burst
/// (a presence page polls every few seconds).
const PAGE_RATE: Rate = Rate { per_second: 5.0, burst: 60.0 };

#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies); empty: the TCP peer always.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Served over TLS: the site's origin is `https://` + Host; else either scheme (a
    /// TLS-terminating proxy in front of a loopback listener).
    pub tls: bool,
}

pub struct Web {
    app: Arc<App>,
    settings: WebSettings,
    /// limits.rs's token buckets in an instance of their own, every kind at the
    /// page rate; only the per-address kind is used.
    pages: Limiter,
}

impl Web {
    pub fn new(app: Arc<App>, settings: WebSettings) -> Arc<Web> {
        Arc::new(Web { app, settings, pages: Limiter::new(LimitSettings::uniform(PAGE_RATE)) })
    }
}

/// Plain HTTP leaves the device cookie and the enrollment token readable on
/// the network: refused unless the address is loopback (development, or a
/// TLS-terminating proxy on the same host).
pub fn check_plain_http_allowed(address: &SocketAddr) -> Result<(), String> {
    if address.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--web-listen {address} is not a loopback address: the worker web app needs --tls-cert and --tls-key \
         there (plain HTTP is allowed only on loopback, e.g. behind a TLS-terminating proxy on this host)"
    ))
}

/// Runs [`serve`] in the background, logging how it ended.
pub fn spawn(
    app: Arc<App>,
    listener: TcpListener,
    settings: WebSettings,
    tls: Option<tls::Acceptor>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = serve(app, listener, settings, tls).await {
            tracing::error!(error = %e, "the worker web app stopped");
        }
    })
}

/// Serves the web app until the service starts shutting down (`app.stopping`).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    settings: WebSettings,
    tls: Option<tls::Acceptor>,
) -> anyhow::Result<()> {
    let mut stopping = app.stopping.subscribe();
    let shutdown = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let service = router(Web::new(app, settings)).into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(acceptor) => {
            // tap_io gives the TLS listener axum's ConnectInfo<SocketAddr> (the TCP peer).
            let listener = axum::serve::ListenerExt::tap_io(tls::Listener::new(listener, acceptor), |_| {});
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await?
        }
        None => axum::serve(listener, service).with_graceful_shutdown(shutdown).await?,
    }
    Ok(())
}

pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/presence") }))
        .route("/enroll", get(pages::enroll))
        .route("/presence", get(pages::presence))
        .route("/web.js", get(script))
        .route("/web.css", get(stylesheet))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/enroll/begin", post(api::begin_enrollment))
        .route("/api/enroll/finish", post(api::finish_enrollment))
        .route("/api/presence/pending", get(api::pending))
        .route("/api/presence/answer", post(api::answer))
        .route("/gateway/check", any(gateway::check))
        .route("/gateway/radius", post(gateway::radius))
        .route("/.well-known/jwks.json", get(gateway::jwks))
        .fallback(|| async { pages::failure(StatusCode::NOT_FOUND, "There is no such page.") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(security_headers))
        .with_state(web)
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("web.js")).into_response()
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("web.css")).into_response()
}

/// Headers on every response: scripts, styles and connections to 'self' only,
/// no framing, no Referer (the enrollment page's fragment never leaves anyway),
/// no caching.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    crate::transport::security_headers::apply(
        response.headers_mut(),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    );
    response
}
