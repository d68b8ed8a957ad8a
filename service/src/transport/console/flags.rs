//! The flags page and the acknowledge / resolve / reopen forms.

use super::html::{self, url_part};
use super::{Analyst, Console, api_failure, failure, form};
use crate::domain::flags::review::{self, MAX_NOTE_CHARS, Review};
use crate::domain::reports::{self, FlagFilter, FlagItem, FlagStatus, PageRequest};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use std::sync::Arc;

/// Flags per page.
const PAGE: u32 = 200;

/// Which flags the page lists: unresolved by default.
const VIEWS: &[(&str, &str, &[FlagStatus])] = &[
    ("unresolved", "Unresolved", &[FlagStatus::Open, FlagStatus::Acknowledged]),
    ("open", "Open", &[FlagStatus::Open]),
    ("acknowledged", "Acknowledged", &[FlagStatus::Acknowledged]),
    ("resolved", "Resolved", &[FlagStatus::Resolved]),
];

pub async fn list(State(console): State<Arc<Console>>, analyst: Analyst, RawQuery(query): RawQuery) -> Response {
    let query = form(query.unwrap_or_default().as_bytes());
    let view = query.get("status").map(String::as_str).unwrap_or("unresolved");
    let Some((view, _, statuses)) = VIEWS.iter().find(|(name, _, _)| *name == view) else {
        return failure(StatusCode::BAD_REQUEST, "status must be unresolved, open, acknowledged or resolved");
    };
    let token = query.get("page").map(String::as_str).unwrap_or_default();
    let page = match PageRequest::parse(PAGE, token) {
        Ok(page) => page,
        Err(e) => return api_failure(e),
    };
    // Evidence comes back with other tenants' cluster members removed.
    let filter = FlagFilter { statuses: statuses.to_vec(), ..FlagFilter::default() };
    let shown = match reports::list_flags(&console.app.store, &analyst.caller().tenant_id, &filter, &page).await {
        Ok(shown) => shown,
        Err(e) => return api_failure(e),
    };

    let rows: Vec<Vec<Markup>> = shown.items.iter().map(|f| row(f, &analyst.session.csrf)).collect();
    let body = html! {
        p.tabs {
            @for (name, label, _) in VIEWS {
                a.current[name == view] href={ "/flags?status=" (name) } { (label) }
                " "
            }
        }
        (html::table(
            &["Raised", "Kind", "Severity", "Status", "Device", "Worker", "Score", "Evidence", "Review"],
            &rows,
            "No flags here.",
        ))
        @if !shown.next_page_token.is_empty() {
            p { a href={ "/flags?status=" (view) "&page=" (url_part(&shown.next_page_token)) } { "Older flags" } }
        }
    };
    html::page(StatusCode::OK, "Flags", Some(&analyst.nav()), body)
}

fn row(f: &FlagItem, csrf: &str) -> Vec<Markup> {
    let score = f.evidence.get("score").map(|s| s.to_string()).unwrap_or_else(|| "—".into());
    vec![
        html! { (html::time(f.raised_at_ms)) },
        html! { code { (f.kind) } },
        html! { span class={ "sev " (f.severity) } { (f.severity) } },
        html! {
            span class={ "status " (f.status) } { (f.status) }
            @if !f.note.is_empty() {
                div.note { "“" (html::clip(&f.note, 200)) "” — " (f.updated_by) ", " (html::time(f.updated_at_ms)) }
            }
        },
        html! {
            @if f.device_id.is_empty() { "—" }
            @else { a href={ "/devices/" (url_part(&f.device_id)) } { (f.device_id) } }
        },
        html! { (f.worker_external_id) },
        html! { (score) },
        html::evidence(&f.evidence, "evidence"),
        review_form(&f.id, &f.status, csrf),
    ]
}

/// The review buttons this flag's status allows, with a required note.
fn review_form(flag_id: &str, status: &str, csrf: &str) -> Markup {
    let buttons: &[(&str, &str)] = match status {
        "open" => &[("acknowledged", "Acknowledge"), ("resolved", "Resolve")],
        "acknowledged" => &[("resolved", "Resolve")],
        _ => &[("open", "Reopen")],
    };
    html! {
        form.review method="post" action={ "/flags/" (url_part(flag_id)) "/review" } {
            input type="hidden" name="csrf" value=(csrf);
            input name="note" required maxlength=(MAX_NOTE_CHARS) placeholder="note (required)"
                aria-label={ "note for " (flag_id) };
            @for (value, label) in buttons {
                button type="submit" name="status" value=(value) { (label) }
            }
        }
    }
}

pub async fn review(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Path(flag_id): Path<String>,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    if let Some(refused) = analyst.csrf_refusal(&fields) {
        return refused;
    }
    let review = match fields.get("status").map(String::as_str) {
        Some("acknowledged") => Review::Acknowledge,
        Some("resolved") => Review::Resolve,
        Some("open") => Review::Reopen,
        _ => return failure(StatusCode::BAD_REQUEST, "status must be acknowledged, resolved or open"),
    };
    let note = fields.get("note").map(String::as_str).unwrap_or_default();
    match review::review(&console.app, analyst.caller(), &flag_id, review, note).await {
        Ok(_) => Redirect::to("/flags").into_response(),
        Err(e) => api_failure(e),
    }
}
