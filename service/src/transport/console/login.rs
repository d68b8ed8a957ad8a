//! Login with an analyst or admin API key, and logout.

use super::login_token::Refusal;
use super::session::{self, LOGIN_COOKIE, LOGIN_FORM_TTL, SESSION_COOKIE, SESSION_TTL};
use super::{Analyst, Console, failure, form, html};
use crate::domain::limits::Kind;
use crate::domain::tenancy::auth::{Role, authenticate};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const CONSOLE_ROLES: &[Role] = &[Role::Analyst, Role::Admin];

fn login_page(console: &Console, status: StatusCode, error: Option<&str>) -> Response {
    let token = console.login_tokens.issue();
    let body = maud::html! {
        @if let Some(error) = error { p.error { (error) } }
        form.login method="post" action="/login" {
            input type="hidden" name="csrf" value=(token);
            label for="api_key" { "Analyst API key" }
            input #api_key name="api_key" type="password" autocomplete="off" required placeholder="tk.key_….…";
            button type="submit" { "Log in" }
        }
        p.hint {
            "Use an " code { "analyst" } " (or " code { "admin" } ") key: " code { "tether keys create --role analyst" } "."
        }
    };
    let mut response = html::page(status, "Log in", None, body);
    response.headers_mut().append(header::SET_COOKIE, session::set_cookie(LOGIN_COOKIE, &token, LOGIN_FORM_TTL));
    response
}

pub async fn page(State(console): State<Arc<Console>>) -> Response {
    login_page(&console, StatusCode::OK, None)
}

pub async fn submit(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let address = peer.ip().to_canonical().to_string();
    if console.login_limits.check(Kind::EnrollmentPerAddress, &address).is_err() {
        tracing::warn!(%address, "console login rate limit reached");
        return login_page(
            &console,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many login attempts; wait a minute and retry."),
        );
    }
    let fields = super::form(&body);
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let presented = fields.get("csrf").map(String::as_str).unwrap_or_default();
    let stale = || login_page(&console, StatusCode::FORBIDDEN, Some("The login form expired; enter the key again."));
    if !session::same_token(&expected, presented) {
        return stale();
    }
    match console.login_tokens.redeem(presented) {
        Ok(()) => {}
        Err(Refusal::Invalid) => {
            tracing::warn!(%address, "console login with a token this server did not issue, or a used one");
            return stale();
        }
        Err(Refusal::Busy) => {
            tracing::warn!(%address, "console login refused: too many logins within a form's lifetime");
            return login_page(
                &console,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("Too many logins right now; wait a minute and retry."),
            );
        }
    }
    let key = fields.get("api_key").map(|k| k.trim()).unwrap_or_default();
    // The same verification as every gRPC call.
    let authorization = format!("Bearer {key}");
    let caller = match authenticate(&console.app, Some(authorization.as_bytes()), None, CONSOLE_ROLES).await {
        Ok(caller) => caller,
        Err(crate::domain::error::ApiError::PermissionDenied(_)) => {
            tracing::warn!(%address, "console login with a key of the wrong role");
            return login_page(
                &console,
                StatusCode::FORBIDDEN,
                Some("This key's role cannot use the console; use an analyst or admin key."),
            );
        }
        Err(crate::domain::error::ApiError::Unauthenticated(message)) => {
            tracing::warn!(%address, "console login with a bad key");
            return login_page(&console, StatusCode::UNAUTHORIZED, Some(&message));
        }
        Err(other) => return super::api_failure(other),
    };
    let Some(key_id) = caller.principal.strip_prefix("key:").map(str::to_string) else {
        return failure(StatusCode::FORBIDDEN, "Only API keys can sign in to the console.");
    };
    let (tenant, principal) = (caller.tenant_id.clone(), caller.principal.clone());
    let (id, _) = match console.sessions.create(caller, key_id) {
        Ok(created) => created,
        Err(session::Full(total)) => {
            tracing::warn!(%tenant, %address, total, "console login refused: --console-sessions-max reached");
            return login_page(
                &console,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The console holds as many sessions as it may (--console-sessions-max); retry later."),
            );
        }
    };
    tracing::info!(%tenant, %principal, %address, "console login");
    let mut response = Redirect::to("/farms").into_response();
    let cookies = response.headers_mut();
    cookies.append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, &id, SESSION_TTL));
    cookies.append(header::SET_COOKIE, session::set_cookie(LOGIN_COOKIE, "", Duration::ZERO));
    response
}

pub async fn logout(State(console): State<Arc<Console>>, analyst: Analyst, body: Bytes) -> Response {
    if let Some(refused) = analyst.csrf_refusal(&form(&body)) {
        return refused;
    }
    console.sessions.remove(&analyst.session_id);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, "", Duration::ZERO));
    response
}
