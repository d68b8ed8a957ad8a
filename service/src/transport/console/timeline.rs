//! The answer timeline as inline SVG: one row per device, a filled mark at
//! each presence answer and a hollow one at its challenge's issue. Rows are
//! ordered by their first answer, so one hand walking a room — devices
//! answering a few seconds apart — draws a staircase down and to the right.
//! No scripts and no style attributes (the CSP allows neither); a `<title>`
//! per mark gives the exact time on hover, and the page repeats the numbers
//! as a table.

use super::html;
use maud::{Markup, html};

/// Rows drawn at most; the rest are counted under the chart.
pub const MAX_ROWS: usize = 50;
/// Marks drawn per row at most; the rest are counted at the row's end.
pub const MAX_MARKS: usize = 500;

const WIDTH: i64 = 900;
const LEFT: i64 = 170;
const RIGHT: i64 = 60;
const TOP: i64 = 8;
const ROW_H: i64 = 20;
const AXIS_H: i64 = 22;

/// One device's row: its label, answers (answered, issued), and how many
/// answers it has in all, `marks` being the first of them (the caller may
/// have read only some).
pub struct Row {
    pub id: String,
    pub label: String,
    pub marks: Vec<(i64, Option<i64>)>,
    pub total: usize,
}

/// The drawn stretch of time: `[start_ms, start_ms + len_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: i64,
    pub len_ms: i64,
}

impl Span {
    /// The x of instant `t`, or None outside the span.
    pub fn x(&self, t: i64) -> Option<i64> {
        if self.len_ms <= 0 || t < self.start_ms || t >= self.start_ms + self.len_ms {
            return None;
        }
        let plot = i128::from(WIDTH - LEFT - RIGHT);
        let offset = i128::from(t - self.start_ms) * plot / i128::from(self.len_ms);
        Some(LEFT + i64::try_from(offset).unwrap_or(0))
    }
}

/// The y of row `i`'s centre line.
pub fn y(i: usize) -> i64 {
    TOP + (i as i64) * ROW_H + ROW_H / 2
}

/// Rows by their first answer in the span (rows without one last), then id.
pub fn order(rows: &mut [Row], span: Span) {
    rows.sort_by(|a, b| {
        let first = |r: &Row| r.marks.iter().map(|m| m.0).filter(|t| span.x(*t).is_some()).min().unwrap_or(i64::MAX);
        first(a).cmp(&first(b)).then_with(|| a.id.cmp(&b.id))
    });
}

/// The latest run of answers from at least two rows, each within `max_gap_ms`
/// of the one before, widened a little on each side (and to at least 10 s).
pub fn latest_run(rows: &[Row], max_gap_ms: i64) -> Option<Span> {
    let mut answers: Vec<(i64, usize)> =
        rows.iter().enumerate().flat_map(|(i, r)| r.marks.iter().map(move |m| (m.0, i))).collect();
    answers.sort_unstable();
    let mut best = None;
    let mut start = 0;
    for end in 1..=answers.len() {
        let breaks = end == answers.len() || answers[end].0 - answers[end - 1].0 > max_gap_ms;
        if !breaks {
            continue;
        }
        let run = &answers[start..end];
        if run.iter().any(|(_, r)| *r != run[0].1) {
            best = Some((run[0].0, run[run.len() - 1].0));
        }
        start = end;
    }
    let (first, last) = best?;
    let width = last.saturating_sub(first);
    let pad = (width / 10).max(1_000);
    let len = width.saturating_add(pad.saturating_mul(2)).max(10_000);
    Some(Span { start_ms: first.saturating_sub(pad), len_ms: len })
}

/// Axis ticks: (x, label). Hours of the day for long spans, seconds from the start for short ones.
pub fn ticks(span: Span) -> Vec<(i64, String)> {
    const HOUR: i64 = 3_600_000;
    if span.len_ms >= 6 * HOUR {
        let step = 3 * HOUR;
        let first = span.start_ms.div_euclid(step) * step + if span.start_ms % step == 0 { 0 } else { step };
        return (0..)
            .map(|k| first + k * step)
            .take_while(|t| *t < span.start_ms + span.len_ms)
            .filter_map(|t| Some((span.x(t)?, html::time(t).get(11..16)?.to_string())))
            .collect();
    }
    let step = [1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 300_000, 900_000, HOUR]
        .into_iter()
        .find(|s| span.len_ms / s <= 10)
        .unwrap_or(HOUR);
    (0..)
        .map(|k| k * step)
        .take_while(|d| *d < span.len_ms)
        .filter_map(|d| Some((span.x(span.start_ms + d)?, format!("+{} s", d / 1000))))
        .collect()
}

/// Hours, minutes and seconds of an instant (UTC).
fn clock(ms: i64) -> String {
    let t = html::time(ms);
    t.get(11..19).map(str::to_string).unwrap_or(t)
}

/// The chart; `class` tells the day view from a close-up.
pub fn chart(rows: &[Row], span: Span, class: &str, label: &str) -> Markup {
    let shown = &rows[..rows.len().min(MAX_ROWS)];
    let base = TOP + (shown.len().max(1) as i64) * ROW_H;
    let height = base + AXIS_H + if rows.len() > shown.len() { ROW_H } else { 0 };
    html! {
        svg class={ "timeline " (class) } role="img" aria-label=(label) viewBox={ "0 0 " (WIDTH) " " (height) }
            width=(WIDTH) height=(height) xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            line x1=(LEFT) y1=(base) x2=(WIDTH - RIGHT) y2=(base) stroke="#9ca3af" {}
            @for (x, text) in ticks(span) {
                line x1=(x) y1=(TOP) x2=(x) y2=(base + 4) stroke="#e5e7eb" {}
                text x=(x) y=(base + 16) font-size="10" text-anchor="middle" fill="#4b5563" { (text) }
            }
            @for (i, row) in shown.iter().enumerate() {
                @let in_span = row.marks.iter().filter(|m| span.x(m.0).is_some()).count();
                @let marks: Vec<&(i64, Option<i64>)> =
                    row.marks.iter().filter(|m| span.x(m.0).is_some()).take(MAX_MARKS).collect();
                // Cut here, and cut before (answers the caller did not read).
                @let more = in_span - marks.len() + row.total.saturating_sub(row.marks.len());
                g.row data-device=(row.id) {
                    text x=(LEFT - 6) y=(y(i) + 4) font-size="11" text-anchor="end" fill="#111827" {
                        (html::clip(&row.label, 26))
                        title { (row.id) }
                    }
                    line x1=(LEFT) y1=(y(i)) x2=(WIDTH - RIGHT) y2=(y(i)) stroke="#f3f4f6" {}
                    @for (answered, issued) in &marks {
                        @if let Some((at, x)) = issued.and_then(|t| Some((t, span.x(t)?))) {
                            circle.issued cx=(x) cy=(y(i)) r="3" fill="none" stroke="#6b7280" {
                                title { "challenge issued " (clock(at)) }
                            }
                        }
                        @if let Some(x) = span.x(*answered) {
                            circle.answer cx=(x) cy=(y(i)) r="3.5" fill="#b91c1c" {
                                title { (row.label) " answered " (clock(*answered)) }
                            }
                        }
                    }
                    @if more > 0 {
                        text.more x=(WIDTH - RIGHT + 4) y=(y(i) + 4) font-size="10" fill="#6b7280" { "+" (more) " more" }
                    }
                }
            }
            @if rows.len() > shown.len() {
                text.more x=(LEFT) y=(height - 4) font-size="11" fill="#6b7280" {
                    "+" (rows.len() - shown.len()) " more devices"
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
