//! The device timeline and the shared-egress clusters table, over the
//! `reports` domain functions the gRPC ReportService also uses.

use super::html::{self, url_part};
use super::{Analyst, Console, api_failure, form};
use crate::domain::reports::{self, PageRequest, SummaryRequest, TimeWindow};
use crate::util::now_ms;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use std::sync::Arc;

/// Timeline entries per page.
const TIMELINE_PAGE: i64 = 200;

pub async fn device(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Path(device_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = form(query.unwrap_or_default().as_bytes());
    let token = query.get("page").map(String::as_str).unwrap_or_default();
    let page = match PageRequest::parse(TIMELINE_PAGE as u32, token) {
        Ok(page) => page,
        Err(e) => return api_failure(e),
    };
    let tenant = &analyst.caller().tenant_id;
    let timeline =
        match reports::device_timeline(&console.app.store, tenant, &device_id, &TimeWindow::all(), &page).await {
            Ok(timeline) => timeline,
            Err(e) => return api_failure(e),
        };
    let d = &timeline.device;
    let rows: Vec<Vec<Markup>> = timeline
        .entries
        .iter()
        .map(|entry| {
            // Each detail serializes as {"type": ..., fields...}: show the type, then the fields.
            let mut detail = serde_json::to_value(&entry.detail).unwrap_or_default();
            let kind = detail
                .as_object_mut()
                .and_then(|m| m.remove("type"))
                .and_then(|t| t.as_str().map(str::to_string))
                .unwrap_or_default();
            // Monitor mode's would-deny sessions were allowed: the marker keeps them from
            // reading as ordinary allows while an employer rolls a stricter tier policy out.
            let would_deny = detail["would_deny"].as_array().is_some_and(|r| !r.is_empty());
            vec![
                html! { (html::time(entry.at_ms)) },
                html! { code { (kind) } @if would_deny { " " strong.would-deny { "would deny" } } },
                html! { (entry.source_ip) },
                html::evidence(&detail, "details"),
            ]
        })
        .collect();
    let status =
        if d.revoked_at_ms == 0 { "active".to_string() } else { format!("revoked {}", html::time(d.revoked_at_ms)) };
    let body = html! {
        dl.facts {
            dt { "Device" } dd { code { (d.id) } }
            dt { "Serial" } dd { (d.serial_number) }
            dt { "Model" } dd { (d.model) }
            dt { "Asset tag" } dd { (d.asset_tag) }
            dt { "Worker" } dd { (d.worker_external_id) }
            dt { "Registered" } dd { (html::time(d.registered_at_ms)) }
            dt { "Status" } dd { (status) }
        }
        (html::table(&["Time", "Event", "Source IP", "Details"], &rows, "Nothing has happened yet."))
        @if !timeline.next_page_token.is_empty() {
            p {
                a href={ "/devices/" (url_part(&d.id)) "?page=" (url_part(&timeline.next_page_token)) } { "Older events" }
            }
        }
    };
    html::page(StatusCode::OK, &format!("Device {}", d.serial_number), Some(&analyst.nav()), body)
}

/// The clusters page looks back this far.
const CLUSTER_WINDOW_MS: i64 = 30 * 86_400_000;

pub async fn clusters(State(console): State<Arc<Console>>, analyst: Analyst) -> Response {
    let tenant = &analyst.caller().tenant_id;
    let window = TimeWindow { since_ms: (now_ms() - CLUSTER_WINDOW_MS).max(0), until_ms: 0 };
    let request = SummaryRequest { window, top_clusters: 100, min_failures: 0 };
    let summary = match reports::summary(&console.app.store, tenant, &request).await {
        Ok(summary) => summary,
        Err(e) => return api_failure(e),
    };
    let rows: Vec<Vec<Markup>> = summary
        .clusters
        .iter()
        .map(|c| {
            vec![
                html! { code { (c.egress) } },
                html! { span class={ "sev " (c.highest_severity) } { (c.highest_severity) } },
                html! { (c.devices) },
                html! { (c.workers) },
                html! { (c.tenants) },
                html! {
                    @for (i, m) in c.own_devices.iter().enumerate() {
                        @if i > 0 { br; }
                        a href={ "/devices/" (url_part(&m.device_id)) } { (m.device_id) } " (" (m.worker_external_id) ")"
                    }
                },
                html! { (html::time(c.last_seen_ms)) },
            ]
        })
        .collect();
    let body = html! {
        p {
            "Egress addresses (or LAN fingerprints) that several workers' devices shared in the last 30 days, from "
            code { "shared_egress" } " flags. Other employers' devices are counted, never named."
        }
        (html::table(
            &["Egress", "Highest severity", "Devices", "Workers", "Employers", "Our devices", "Last seen"],
            &rows,
            "No shared-egress clusters in the last 30 days.",
        ))
    };
    html::page(StatusCode::OK, "Shared egress clusters", Some(&analyst.nav()), body)
}
