//! The worker pages, rendered with maud (every interpolated value escaped).
//! They carry no script of their own: /web.js reads `body[data-page]` and the
//! CSRF token from a meta tag.

use super::Web;
use super::site::{CSRF_COOKIE, Site, cookie, is_token_like};
use crate::util::{b64url, random_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use std::sync::Arc;

fn layout(title: &str, page: &str, csrf: &str, tenant: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="tether-csrf" content=(csrf);
                title { (title) " · " (tenant) }
                link rel="stylesheet" href="/web.css";
                script src="/web.js" defer {}
            }
            body data-page=(page) {
                header { span.brand { "Tether" } " · " (tenant) }
                main { (body) }
            }
        }
    }
}

/// The page with the CSRF cookie it needs (kept when the browser already has one,
/// so two open pages share it).
fn with_csrf(headers: &HeaderMap, render: impl FnOnce(&str) -> Markup) -> Response {
    let existing = cookie(headers, CSRF_COOKIE).filter(|c| is_token_like(c));
    let csrf = existing.clone().unwrap_or_else(|| b64url(&random_bytes::<32>()));
    let mut response = Html(render(&csrf).into_string()).into_response();
    if existing.is_none() {
        let value = format!("{CSRF_COOKIE}={csrf}; Path=/; HttpOnly; Secure; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub async fn enroll(State(_web): State<Arc<Web>>, site: Site, headers: HeaderMap) -> Response {
    let tenant = site.tenant.name.clone();
    with_csrf(&headers, |csrf| {
        let body = html! {
            h1 { "Enroll this device" }
            p {
                "Your administrator at " strong { (tenant) } " sent you an enrollment link. "
                "Enrolling registers this laptop's security hardware (Windows Hello, Touch ID or a security key) "
                "so you can later confirm, with a touch or your PIN, that you are working from it."
            }
            label for="token" { "Enrollment token (filled in from your link, or paste it)" }
            input #token type="password" autocomplete="off" spellcheck="false";
            button #enroll type="button" { "Enroll this device" }
            p #status data-state="idle" role="status" aria-live="polite" {}
            p.hint { "After enrolling, keep " a href="/presence" { "the presence page" } " open in this browser." }
        };
        layout("Enroll", "enroll", csrf, &tenant, body)
    })
}

pub async fn presence(State(_web): State<Arc<Web>>, site: Site, headers: HeaderMap) -> Response {
    let tenant = site.tenant.name.clone();
    with_csrf(&headers, |csrf| {
        let body = html! {
            h1 { "Presence" }
            p {
                "From time to time " strong { (tenant) } " asks this device to confirm that you are at it. "
                "Keep this page open; when a request appears, answer it with your security hardware."
            }
            p #device {}
            ul #challenges {}
            button #answer type="button" disabled { "Answer the request" }
            button #notify type="button" { "Notify me of requests" }
            p #status data-state="idle" role="status" aria-live="polite" {}
        };
        layout("Presence", "presence", csrf, &tenant, body)
    })
}

/// An error page (the site may not even have a tenant).
pub fn failure(status: StatusCode, message: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Tether" }
                link rel="stylesheet" href="/web.css";
            }
            body {
                main {
                    h1 { "Something went wrong" }
                    p.error { (message) }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}
