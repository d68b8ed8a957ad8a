//! The analysts' web console (`tetherd serve --console-listen ADDR`): a
//! small, read-mostly site of server-rendered HTML and plain forms. No
//! scripts at all, so the Content-Security-Policy can be `default-src 'self'`.
//!
//! Security: analyst or admin API-key login (gateway keys refused), a
//! server-side session per login, a CSRF token in every POST form, every
//! query scoped to the key's tenant, every value rendered through maud (which
//! escapes it), and
//! flag reviews through the same domain path (and audit entry) as gRPC.

mod chart;
mod device;
mod farms;
mod flags;
mod html;
mod login;
mod login_token;
mod session;
mod timeline;
mod views;

use crate::domain::app::App;
use crate::domain::error::ApiError;
use crate::domain::limits::{LimitSettings, Limiter, Rate};
use crate::domain::tenancy::auth::{Caller, Role};
use crate::store::keys;
use crate::util::now_ms;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use session::{SESSION_COOKIE, Session, Sessions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Login attempts per second per source address, and the burst allowed.
const LOGIN_RATE: Rate = Rate { per_second: 0.2, burst: 10.0 };
/// Forms are a few fields; anything larger is not ours.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub struct Console {
    app: Arc<App>,
    sessions: Sessions,
    login_tokens: login_token::LoginTokens,
    /// limits.rs's token buckets in an instance of their own, every kind at
    /// the login rate; only the per-address kind is used.
    login_limits: Limiter,
}

impl Console {
    pub fn new(app: Arc<App>) -> Arc<Console> {
        let login_limits = Limiter::new(LimitSettings::uniform(LOGIN_RATE));
        let sessions = Sessions::new(app.settings.console_sessions);
        let login_tokens = login_token::LoginTokens::new(session::LOGIN_FORM_TTL);
        Arc::new(Console { app, sessions, login_tokens, login_limits })
    }
}

/// Runs [`serve`] in the background, logging how it ended.
pub fn spawn(app: Arc<App>, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match listener.local_addr() {
            Ok(local) => tracing::info!(%local, "tether console listening"),
            Err(e) => tracing::warn!(error = %e, "the console listener has no local address"),
        }
        if let Err(e) = serve(app, listener).await {
            tracing::error!(error = %e, "the web console stopped");
        }
    })
}

/// Serves the console until the service starts shutting down (`app.stopping`).
pub async fn serve(app: Arc<App>, listener: TcpListener) -> anyhow::Result<()> {
    let mut stopping = app.stopping.subscribe();
    let service = router(Console::new(app)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/farms") }))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/farms", get(farms::farms))
        .route("/flags", get(flags::list))
        .route("/flags/{id}/review", post(flags::review))
        .route("/devices/{id}", get(device::device))
        .route("/clusters", get(device::clusters))
        .route("/presence", get(views::presence))
        .route("/audit", get(views::audit))
        .route("/integrations", get(views::integrations))
        .route("/console.css", get(stylesheet))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { failure(StatusCode::NOT_FOUND, "There is no such page.") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("console.css")).into_response()
}

/// Headers on every response: no framing, no inline or foreign content, no caching of tenant data.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    crate::transport::security_headers::apply(
        response.headers_mut(),
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    response
}

/// A signed-in analyst or admin; anyone else is sent to the login page.
pub struct Analyst {
    pub session_id: String,
    pub session: Session,
}

impl Analyst {
    pub fn caller(&self) -> &Caller {
        &self.session.caller
    }

    pub fn nav(&self) -> html::Nav<'_> {
        let caller = self.caller();
        html::Nav {
            principal: &caller.principal,
            role: caller.role.as_str(),
            tenant_id: &caller.tenant_id,
            csrf: &self.session.csrf,
        }
    }

    /// The refusal of a form whose CSRF token is not this session's.
    pub fn csrf_refusal(&self, form: &HashMap<String, String>) -> Option<Response> {
        let presented = form.get("csrf").map(String::as_str).unwrap_or_default();
        if session::same_token(&self.session.csrf, presented) {
            return None;
        }
        Some(failure(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale; reload the page and retry.",
        ))
    }
}

impl FromRequestParts<Arc<Console>> for Analyst {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Analyst, Response> {
        let to_login = || Redirect::to("/login").into_response();
        let session_id = session::cookie(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?;
        let session = console.sessions.get(&session_id).ok_or_else(to_login)?;
        // The key may have been revoked or expired since the login.
        let key = keys::get(&console.app.store, &session.key_id).await.map_err(|e| api_failure(e.into()))?;
        let live = key.is_some_and(|k| {
            k.revoked_at_ms.is_none()
                && k.expires_at_ms.is_none_or(|t| t > now_ms())
                && Role::parse(&k.role).is_some_and(|r| r == session.caller.role)
        });
        if !live {
            console.sessions.remove(&session_id);
            return Err(to_login());
        }
        Ok(Analyst { session_id, session })
    }
}

/// Parses an `application/x-www-form-urlencoded` body or query string.
pub fn form(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// An error page (no navigation: the error may be that there is no session).
pub fn failure(status: StatusCode, message: &str) -> Response {
    let body = maud::html! {
        p.error { (message) }
        p { a href="/farms" { "Back to the console" } }
    };
    html::page(status, "Something went wrong", None, body)
}

/// Maps a domain error as gRPC would (storage details stay in the server log).
pub fn api_failure(error: ApiError) -> Response {
    let status = tonic::Status::from(error);
    let code = match status.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => StatusCode::CONFLICT,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure(code, status.message())
}
