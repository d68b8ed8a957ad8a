use super::*;

const DAY: i64 = 86_400_000;
/// 2026-12-07 00:00:00Z.
const MIDNIGHT: i64 = 1_796_601_600_000;

fn row(id: &str, times: &[i64]) -> Row {
    Row {
        id: id.into(),
        label: format!("w-{id}"),
        marks: times.iter().map(|t| (*t, Some(t - 500))).collect(),
        total: times.len(),
    }
}

fn marks_in(svg: &str, device: &str) -> usize {
    let start = svg.find(&format!("data-device=\"{device}\"")).expect("the row is drawn");
    let end = svg[start..].find("</g>").map_or(svg.len(), |e| start + e);
    svg[start..end].matches("class=\"answer\"").count()
}

#[test]
fn times_map_linearly_onto_the_plot_and_outside_the_span_is_not_drawn() {
    let day = Span { start_ms: MIDNIGHT, len_ms: DAY };
    assert_eq!(day.x(MIDNIGHT), Some(LEFT));
    assert_eq!(day.x(MIDNIGHT + DAY / 2), Some(LEFT + (WIDTH - LEFT - RIGHT) / 2));
    assert_eq!(day.x(MIDNIGHT + DAY - 1), Some(WIDTH - RIGHT - 1));
    assert_eq!((day.x(MIDNIGHT - 1), day.x(MIDNIGHT + DAY)), (None, None));
    assert_eq!(Span { start_ms: 0, len_ms: 0 }.x(0), None, "an empty span draws nothing");
    assert_eq!((y(0), y(1) - y(0)), (TOP + ROW_H / 2, ROW_H));
    let hours: Vec<String> = ticks(day).into_iter().map(|(_, l)| l).collect();
    assert_eq!(hours, ["00:00", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00"]);
    // The last 24 hours from 10:30 start their ticks at 12:00.
    let rolling = Span { start_ms: MIDNIGHT + 10 * 3_600_000 + 1_800_000, len_ms: DAY };
    assert_eq!(ticks(rolling)[0].1, "12:00");
    let close = Span { start_ms: MIDNIGHT, len_ms: 12_000 };
    let labels: Vec<String> = ticks(close).into_iter().map(|(_, l)| l).collect();
    assert_eq!(labels, ["+0 s", "+2 s", "+4 s", "+6 s", "+8 s", "+10 s"]);
}

#[test]
fn a_sweep_is_a_staircase_rows_ordered_by_first_answer() {
    let t = MIDNIGHT + 9 * 3_600_000;
    // Listed out of order; one hand answered c, a, b one second apart, twice.
    let mut rows =
        vec![row("a", &[t + 1_000, t + 60_000]), row("b", &[t + 2_000, t + 61_000]), row("c", &[t, t + 59_000])];
    let day = Span { start_ms: MIDNIGHT, len_ms: DAY };
    order(&mut rows, day);
    assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["c", "a", "b"]);
    let run = latest_run(&rows, 30_000).expect("a run of answers");
    assert!(run.start_ms < t + 59_000 && run.start_ms + run.len_ms > t + 61_000, "{run:?}");
    assert!(run.start_ms > t + 2_000, "the latest run, not the first: {run:?}");
    order(&mut rows, run);
    let firsts: Vec<i64> = rows.iter().map(|r| run.x(r.marks.iter().map(|m| m.0).max().unwrap()).unwrap()).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "each row's answer is right of the row above: {firsts:?}");
    assert!(firsts[1] - firsts[0] >= 20, "a second apart is visible in the close-up: {firsts:?}");
    // One device answering alone is no run.
    assert_eq!(latest_run(&[row("a", &[t, t + 1_000])], 30_000), None);
}

#[test]
fn rows_and_marks_are_cut_at_their_bounds_and_say_how_many_more() {
    let t = MIDNIGHT + 3_600_000;
    let busy: Vec<i64> = (0..600).map(|i| t + i * 1_000).collect();
    let mut rows = vec![Row { total: 700, ..row("busy", &busy) }];
    rows.extend((0..MAX_ROWS + 4).map(|i| row(&format!("d{i:02}"), &[t])));
    let svg = chart(&rows, Span { start_ms: MIDNIGHT, len_ms: DAY }, "day", "answers").into_string();
    assert_eq!(marks_in(&svg, "busy"), MAX_MARKS);
    assert!(svg.contains("+200 more</text>"), "100 cut here and 100 never read");
    assert_eq!(svg.matches("<g class=\"row\"").count(), MAX_ROWS);
    assert!(svg.contains("+5 more devices"));
    assert!(!svg.contains("data-device=\"d53\""));
}

#[test]
fn labels_are_escaped_and_no_style_or_script_is_emitted() {
    let mut evil = row("<d>", &[MIDNIGHT + 5_000]);
    evil.label = "<script>alert(1)</script>".into();
    let svg = chart(&[evil], Span { start_ms: MIDNIGHT, len_ms: DAY }, "day", "a \"label\"").into_string();
    assert!(!svg.contains("<script") && svg.contains("&lt;script&gt;"), "{svg}");
    assert!(svg.contains("data-device=\"&lt;d&gt;\""), "{svg}");
    assert!(svg.starts_with("<svg class=\"timeline day\" "), "one class attribute: {svg}");
    assert!(!svg.contains("style"), "the CSP forbids inline styles: {svg}");
    assert_eq!(svg.matches("class=\"issued\"").count(), 1, "a hollow mark at the issue time");
}
