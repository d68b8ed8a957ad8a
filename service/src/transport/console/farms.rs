//! The farm view, the analyst's first page: each suspected laptop farm or
//! device cluster with its members (this tenant's named, other employers'
//! counted), the signals that combined, and its devices' presence answers
//! over one day as an SVG timeline ([`super::timeline`]).

use super::html::{self, url_part};
use super::timeline::{self, Row, Span};
use super::{Analyst, Console, api_failure, failure, form};
use crate::domain::reports::{self, DAY_MS, FarmView, TimeWindow};
use crate::util::now_ms;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use std::sync::Arc;
use time::macros::format_description;

/// Answers closer than this belong to one run in the close-up: the risk
/// engine's default `presence_sweep.max_gap_secs`.
const RUN_GAP_MS: i64 = 20_000;

/// `?day=YYYY-MM-DD` (UTC) as its 24 hours; no value is the 24 hours before `now_ms`.
pub fn parse_day(value: Option<&str>, now_ms: i64) -> Result<TimeWindow, String> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(TimeWindow { since_ms: (now_ms - DAY_MS).max(0), until_ms: now_ms.max(1) });
    };
    let refuse = || format!("day must be a UTC date as YYYY-MM-DD, like 2026-12-07; not {:?}", html::clip(value, 40));
    if value.len() != 10 {
        return Err(refuse());
    }
    let date = time::Date::parse(value, format_description!("[year]-[month]-[day]")).map_err(|_| refuse())?;
    let since_ms = date.midnight().assume_utc().unix_timestamp() * 1000;
    if since_ms < 0 {
        return Err(format!("day {value} is before 1970"));
    }
    if since_ms > now_ms {
        return Err(format!("day {value} has not begun yet (UTC)"));
    }
    Ok(TimeWindow { since_ms, until_ms: since_ms + DAY_MS })
}

pub async fn farms(State(console): State<Arc<Console>>, analyst: Analyst, RawQuery(query): RawQuery) -> Response {
    let query = form(query.unwrap_or_default().as_bytes());
    let now = now_ms();
    let day_param = query.get("day").map(String::as_str);
    let day = match parse_day(day_param, now) {
        Ok(day) => day,
        Err(message) => return failure(StatusCode::BAD_REQUEST, &message),
    };
    let tenant = &analyst.caller().tenant_id;
    let view = match reports::farms(&console.app.store, tenant, now, day).await {
        Ok(view) => view,
        Err(e) => return api_failure(e),
    };
    let span = Span { start_ms: day.since_ms, len_ms: day.until_ms - day.since_ms };
    let day_name = match day_param.filter(|d| !d.is_empty()) {
        Some(d) => format!("{d} (UTC)"),
        None => format!("the last 24 hours, to {}", html::time(now)),
    };
    let body = html! {
        p {
            "Suspected laptop farms and device clusters in this tenant's unresolved flags of the last 30 days, "
            "suspected farms first, then by severity and recency. Other employers' devices are counted, never named, "
            "and their answers are not drawn."
        }
        form.day method="get" action="/farms" {
            label for="day" { "Answers on day (UTC) " }
            input #day type="date" name="day" value=(day_param.unwrap_or_default());
            " "
            button type="submit" { "Show" }
            " "
            a href="/farms" { "last 24 hours" }
        }
        @if view.flags_truncated {
            p.error { "Only the newest 20000 unresolved flags were read: older clusters may be missing." }
        }
        @if view.farms.is_empty() {
            p.empty { "No suspected farm or device cluster in the last 30 days." }
        }
        @for (i, farm) in view.farms.iter().enumerate() {
            (farm_section(i, farm, span, &day_name))
        }
        @if view.more > 0 {
            p.hint { "+" (view.more) " more clusters not shown (the least severe)." }
        }
    };
    html::page(StatusCode::OK, "Farms", Some(&analyst.nav()), body)
}

fn farm_section(index: usize, view: &FarmView, span: Span, day_name: &str) -> Markup {
    let farm = &view.farm;
    let mut rows: Vec<Row> = view
        .rows
        .iter()
        .map(|r| Row {
            id: r.member.device_id.clone(),
            label: if r.member.worker_external_id.is_empty() {
                r.member.device_id.clone()
            } else {
                r.member.worker_external_id.clone()
            },
            marks: r.answers.iter().map(|a| (a.answered_at_ms, a.issued_at_ms)).collect(),
            total: usize::try_from(r.total).unwrap_or(usize::MAX),
        })
        .collect();
    timeline::order(&mut rows, span);
    let run = timeline::latest_run(&rows, RUN_GAP_MS);
    let close_up: Option<(Span, Vec<Row>)> = run.map(|run| {
        let mut close: Vec<Row> = rows
            .iter()
            .filter_map(|r| {
                let marks: Vec<_> = r.marks.iter().copied().filter(|m| run.x(m.0).is_some()).collect();
                let total = marks.len();
                (total > 0).then(|| Row { id: r.id.clone(), label: r.label.clone(), marks, total })
            })
            .collect();
        timeline::order(&mut close, run);
        (run, close)
    });
    let title = if farm.key.is_empty() { "One laptop".to_string() } else { farm.key.clone() };
    html! {
        section.farm id={ "farm-" (index) } {
            h2 {
                code { (title) } " "
                @if farm.suspected { span.sev.high { "farm suspected" } " " }
                span class={ "sev " (farm.highest_severity) } { (farm.highest_severity) }
            }
            dl.facts {
                dt { "Egress / LAN" }
                dd { @if farm.key.is_empty() { "— (no shared address: suspected on its own)" } @else { code { (farm.key) } } }
                dt { "Signals combined" }
                dd {
                    @if farm.signals.is_empty() { span.hint { "none yet: a cluster, not (yet) a suspected farm" } }
                    @else { ul.signals { @for s in &farm.signals { li { (s) } } } }
                }
                dt { "Flags" }
                dd { @for (i, (kind, severity)) in farm.kinds.iter().enumerate() {
                    @if i > 0 { ", " } code { (kind) } " (" (severity) ")"
                } }
                dt { "Our devices" }
                dd.members {
                    @for (i, m) in farm.own.iter().enumerate() {
                        @if i > 0 { br; }
                        a href={ "/devices/" (url_part(&m.device_id)) } { (m.device_id) }
                        @if !m.worker_external_id.is_empty() { " (" (m.worker_external_id) ")" }
                    }
                }
                dt { "Other employers" }
                dd.others {
                    (count(farm.other_devices, "device")) " of " (count(farm.other_tenants, "other employer"))
                    " (counted, never named)"
                }
                dt { "First seen" } dd { (html::time(farm.first_seen_ms)) }
                dt { "Last seen" } dd { (html::time(farm.last_seen_ms)) }
            }
            h3 { "Presence answers, " (day_name) }
            p.hint { "Filled: an answer; hollow: its challenge's issue. Rows by first answer: one hand walking a room reads as a staircase." }
            (timeline::chart(&rows, span, "day", &format!("presence answers of {title}'s devices, {day_name}")))
            @if view.more_devices > 0 {
                p.hint { "+" (view.more_devices) " more of our devices not drawn." }
            }
            @if let Some((run, close)) = &close_up {
                h3 { "Close-up: the latest run of answers less than 20 s apart, from " (html::time(run.start_ms)) }
                (timeline::chart(close, *run, "run", &format!("the latest run of answers of {title}'s devices")))
            }
            (answers_table(&rows, span))
        }
    }
}

/// "1 device", "3 devices".
fn count(n: i64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The chart's numbers as a table, for readers who cannot see it.
fn answers_table(rows: &[Row], span: Span) -> Markup {
    let cells: Vec<Vec<Markup>> = rows
        .iter()
        .map(|r| {
            let times: Vec<i64> = r.marks.iter().map(|m| m.0).filter(|t| span.x(*t).is_some()).collect();
            let at = |t: Option<&i64>| t.map(|t| html::time(*t)).unwrap_or_default();
            vec![
                html! { a href={ "/devices/" (url_part(&r.id)) } { (r.id) } },
                html! { (r.label) },
                html! { (r.total) },
                html! { (at(times.first())) },
                html! { (at(times.last())) },
            ]
        })
        .collect();
    html::table(&["Device", "Worker", "Answers", "First", "Last"], &cells, "None of our devices to draw.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_650_000_000; // 2026-12-07 13:26:40Z

    #[test]
    fn no_day_is_the_last_24_hours() {
        assert_eq!(parse_day(None, NOW), Ok(TimeWindow { since_ms: NOW - DAY_MS, until_ms: NOW }));
        assert_eq!(parse_day(Some(""), NOW), parse_day(None, NOW));
    }

    #[test]
    fn a_day_is_its_utc_midnight_to_midnight() {
        let day = parse_day(Some("2026-12-06"), NOW).unwrap();
        assert_eq!((day.since_ms, day.until_ms), (1_796_515_200_000, 1_796_601_600_000));
        assert_eq!(parse_day(Some("2026-12-07"), NOW).unwrap().since_ms, 1_796_601_600_000, "today");
    }

    #[test]
    fn bad_days_are_refused_with_the_format() {
        for bad in ["2026-13-01", "2026-02-30", "26-12-07", "2026-12-7", "2026-12-07T00:00", "yesterday", "<b>"] {
            let message = parse_day(Some(bad), NOW).unwrap_err();
            assert!(message.starts_with("day must be a UTC date as YYYY-MM-DD"), "{bad}: {message}");
        }
        assert!(parse_day(Some("2026-12-08"), NOW).unwrap_err().contains("has not begun"));
        assert!(parse_day(Some("1969-12-31"), NOW).unwrap_err().contains("before 1970"));
    }
}
