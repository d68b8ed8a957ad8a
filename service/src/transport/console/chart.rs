//! A stacked bar chart as inline SVG: presence failures per time bucket,
//! one colour per outcome. No scripts; a `<title>` per bar segment gives
//! the exact count on hover, and the page also shows the numbers as a table.

use maud::{Markup, html};

/// Outcome names in stacking order, with their colours.
pub const OUTCOMES: &[(&str, &str)] = &[
    ("missed", "#d97706"),
    ("failed", "#dc2626"),
    ("replayed", "#7c3aed"),
    ("late", "#2563eb"),
    ("clone_suspected", "#111827"),
];

/// One bar: a label (e.g. the day) and a count per entry of [`OUTCOMES`].
pub struct Bar {
    pub label: String,
    pub counts: [u64; 5],
}

const WIDTH: u64 = 900;
const HEIGHT: u64 = 260;
const LEFT: u64 = 40;
const BOTTOM: u64 = 40;
const TOP: u64 = 10;

pub fn outcome_index(outcome: &str) -> Option<usize> {
    OUTCOMES.iter().position(|(name, _)| *name == outcome)
}

pub fn stacked_bars(bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|b| b.counts.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / (bars.len().max(1) as u64);
    let bar_w = (slot * 3 / 4).max(1);
    let base = HEIGHT - BOTTOM;
    // Label at most ~16 bars so the axis stays legible.
    let label_every = bars.len().div_ceil(16).max(1);
    // Each bar's segments, bottom up: (x, y, height, colour, name, count).
    let segments = |i: usize, bar: &Bar| {
        let x = LEFT + (i as u64) * slot + (slot - bar_w) / 2;
        let mut y = base;
        let mut out = Vec::new();
        for (count, (name, colour)) in bar.counts.iter().zip(OUTCOMES) {
            if *count == 0 {
                continue;
            }
            let h = (count * plot_h).div_ceil(max);
            y = y.saturating_sub(h);
            out.push((y, h, *colour, *name, *count));
        }
        (x, out)
    };
    html! {
        svg.chart role="img" aria-label="presence failures over time" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            width=(WIDTH) height=(HEIGHT) xmlns="http://www.w3.org/2000/svg" {
            line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(base) stroke="#9ca3af" {}
            line x1=(LEFT) y1=(base) x2=(WIDTH) y2=(base) stroke="#9ca3af" {}
            text x=(LEFT - 4) y=(TOP + 10) font-size="11" text-anchor="end" { (max) }
            text x=(LEFT - 4) y=(base) font-size="11" text-anchor="end" { "0" }
            @for (i, bar) in bars.iter().enumerate() {
                @let (x, parts) = segments(i, bar);
                @for (y, h, colour, name, count) in parts {
                    rect x=(x) y=(y) width=(bar_w) height=(h) fill=(colour) {
                        title { (bar.label) ": " (count) " " (name) }
                    }
                }
                @if i % label_every == 0 {
                    text x=(x + bar_w / 2) y=(base + 14) font-size="10" text-anchor="middle" { (bar.label) }
                }
            }
            @for (i, (name, colour)) in OUTCOMES.iter().enumerate() {
                @let x = LEFT + 10 + (i as u64) * 150;
                rect x=(x) y=(HEIGHT - 14) width="10" height="10" fill=(colour) {}
                text x=(x + 14) y=(HEIGHT - 5) font-size="11" { (name) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_tallest_and_labels_are_escaped() {
        let bars = vec![
            Bar { label: "<d1>".into(), counts: [1, 0, 0, 0, 0] },
            Bar { label: "d2".into(), counts: [2, 2, 0, 0, 0] },
        ];
        let svg = stacked_bars(&bars).into_string();
        assert!(svg.contains("&lt;d1&gt;") && !svg.contains("<d1>"));
        assert_eq!(svg.matches("<rect").count(), 3 + OUTCOMES.len());
        assert!(svg.contains(">4</text>"), "the axis shows the tallest total");
    }

    #[test]
    fn an_empty_chart_still_renders() {
        assert!(stacked_bars(&[]).into_string().ends_with("</svg>"));
    }
}
