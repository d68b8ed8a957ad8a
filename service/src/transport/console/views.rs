//! Read-only pages: the audit log, presence failures over time, and SIEM delivery state.

use super::chart::{self, Bar};
use super::html;
use super::{Analyst, Console, api_failure, failure, form};
use crate::store::presence::{self, Cursor, EventFilter};
use crate::store::{audit, outbox};
use crate::util::now_ms;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use std::sync::Arc;
use tether_attestation::audit_chain::verify_chain;

/// Newest audit entries shown.
const AUDIT_PAGE: i64 = 100;

pub async fn audit(State(console): State<Arc<Console>>, analyst: Analyst) -> Response {
    let tenant = &analyst.caller().tenant_id;
    let store = &console.app.store;
    let (head_seq, head_hash) = match audit::head(store, tenant).await {
        Ok(head) => head,
        Err(e) => return api_failure(e.into()),
    };
    let entries = match audit::list(store, tenant, (head_seq - AUDIT_PAGE).max(0), AUDIT_PAGE).await {
        Ok(entries) => entries,
        Err(e) => return api_failure(e.into()),
    };
    // The shown entries must link to each other; `tether audit verify` checks the whole chain.
    let integrity = match entries.first() {
        None => html! {},
        Some(first) => match verify_chain(&entries, first.seq - 1, &first.prev_hash) {
            Ok(_) => html! { p.ok { "The entries below link into an intact hash chain." } },
            Err(broken) => html! { p.error { (broken.to_string()) } },
        },
    };
    let rows: Vec<Vec<Markup>> = entries
        .iter()
        .rev()
        .map(|e| {
            vec![
                html! { (e.seq) },
                html! { (html::time(e.at_ms)) },
                html! { (e.actor) },
                html! { code { (e.action) } },
                html! { (e.target) },
                html::evidence(&serde_json::from_str(&e.details_json).unwrap_or_default(), "details"),
            ]
        })
        .collect();
    let body = html! {
        p { "Chain head: entry " (head_seq) ", " code { (head_hash) } ". Newest " (AUDIT_PAGE) " entries, newest first." }
        (integrity)
        (html::table(&["#", "Time", "Actor", "Action", "Target", "Details"], &rows, "The audit log is empty."))
    };
    html::page(StatusCode::OK, "Audit log", Some(&analyst.nav()), body)
}

/// The tenant's SIEM integrations and how their deliveries go. Targets are
/// left out: a webhook URL may carry a collector's token, and analysts need
/// only whether events flow.
pub async fn integrations(State(console): State<Arc<Console>>, analyst: Analyst) -> Response {
    let all = match outbox::list_integrations(&console.app.store, &analyst.caller().tenant_id).await {
        Ok(all) => all,
        Err(e) => return api_failure(e.into()),
    };
    let rows: Vec<Vec<Markup>> = all
        .iter()
        .map(|i| {
            let next = if i.failures > 0 { html::time(i.next_attempt_ms) } else { String::new() };
            let last = if i.last_delivered_at_ms > 0 { html::time(i.last_delivered_at_ms) } else { "never".into() };
            vec![
                html! { (i.name) },
                html! { (i.kind) },
                html! { (i.delivered) },
                html! { (last) },
                html! { (i.failures) },
                html! { (i.last_error) },
                html! { (next) },
            ]
        })
        .collect();
    let body = html! {
        p { "Flags and presence failures sent to the tenant's SIEM; admins manage them with "
            code { "tether integrations" } "." }
        (html::table(
            &["Name", "Kind", "Delivered", "Last delivery", "Failures in a row", "Last error", "Next attempt"],
            &rows,
            "No SIEM integration is configured.",
        ))
    };
    html::page(StatusCode::OK, "SIEM delivery", Some(&analyst.nav()), body)
}

/// Chart ranges: name, label, bucket length, number of buckets.
const RANGES: &[(&str, &str, i64, usize)] = &[
    ("48h", "48 hours, hourly", 3_600_000, 48),
    ("14d", "14 days, daily", 86_400_000, 14),
    ("60d", "60 days, daily", 86_400_000, 60),
];
const FAILURE_OUTCOMES: &str = ",missed,failed,replayed,late,clone_suspected,";
/// Failures read for one chart, at most; a larger count is reported as truncated.
const MAX_EVENTS: usize = 50_000;

pub async fn presence(State(console): State<Arc<Console>>, analyst: Analyst, RawQuery(query): RawQuery) -> Response {
    let query = form(query.unwrap_or_default().as_bytes());
    let wanted = query.get("range").map(String::as_str).unwrap_or("14d");
    let Some(&(range, _, bucket_ms, buckets)) = RANGES.iter().find(|r| r.0 == wanted) else {
        return failure(StatusCode::BAD_REQUEST, "range must be 48h, 14d or 60d");
    };
    // Buckets end at the next bucket boundary after now (UTC days / hours).
    let end = (now_ms() / bucket_ms + 1) * bucket_ms;
    let start = end - bucket_ms * buckets as i64;
    let filter = EventFilter { since_ms: start, ..EventFilter::default() };
    let tenant = &analyst.caller().tenant_id;
    let mut bars: Vec<Bar> = (0..buckets)
        .map(|i| {
            let at = start + bucket_ms * i as i64;
            let time = html::time(at);
            // "MM-DD HH" for hourly buckets, "MM-DD" for daily ones.
            let part = if bucket_ms < 86_400_000 { time.get(5..13) } else { time.get(5..10) };
            Bar { label: part.unwrap_or(&time).to_string(), counts: [0; 5] }
        })
        .collect();
    let (mut cursor, mut seen, mut truncated) = (Cursor::start(), 0usize, false);
    loop {
        let page =
            match presence::list_events(&console.app.store, tenant, &filter, FAILURE_OUTCOMES, &cursor, 1000).await {
                Ok(page) => page,
                Err(e) => return api_failure(e.into()),
            };
        for event in &page {
            let bucket = usize::try_from((event.at_ms - start) / bucket_ms).ok();
            if let (Some(bar), Some(i)) = (bucket.and_then(|b| bars.get_mut(b)), chart::outcome_index(&event.outcome)) {
                bar.counts[i] += 1;
            }
        }
        seen += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 => {
                if seen >= MAX_EVENTS {
                    truncated = true;
                    break;
                }
                cursor = Cursor { at_ms: last.at_ms, id: last.id.clone() };
            }
            _ => break,
        }
    }
    let mut headers = vec!["Bucket"];
    headers.extend(chart::OUTCOMES.iter().map(|(name, _)| *name));
    let rows: Vec<Vec<Markup>> = bars
        .iter()
        .rev()
        .filter(|b| b.counts.iter().any(|c| *c > 0))
        .map(|b| std::iter::once(html! { (b.label) }).chain(b.counts.iter().map(|c| html! { (c) })).collect())
        .collect();
    let body = html! {
        p.tabs {
            @for (name, label, _, _) in RANGES {
                a.current[*name == range] href={ "/presence?range=" (name) } { (label) }
                " "
            }
        }
        p { (seen) " failures in the range (UTC buckets)." }
        @if truncated {
            p.error { "Only the newest " (MAX_EVENTS) " failures are counted." }
        }
        (chart::stacked_bars(&bars))
        (html::table(&headers, &rows, "No presence failures in this range."))
    };
    html::page(StatusCode::OK, "Presence failures", Some(&analyst.nav()), body)
}
