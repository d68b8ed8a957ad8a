//! HTML building blocks, with maud: every value interpolated into markup is
//! escaped unless it is itself markup, so evidence (attacker-influenced IP
//! addresses, device names, posture strings) cannot reach the page raw by
//! omission.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use std::fmt::Write;
use time::OffsetDateTime;
use time::macros::format_description;

/// Percent-encodes one URL path segment or query value (RFC 3986 unreserved kept).
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `2025-01-31 14:05:09Z`, or the raw number when out of range.
pub fn time(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Shortens long attacker-supplied strings for table cells.
pub fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars).collect();
    cut.push('…');
    cut
}

/// Who is signed in, for the navigation bar.
pub struct Nav<'a> {
    pub principal: &'a str,
    pub role: &'a str,
    pub tenant_id: &'a str,
    pub csrf: &'a str,
}

const LINKS: &[(&str, &str)] = &[
    ("/farms", "Farms"),
    ("/flags", "Flags"),
    ("/clusters", "Shared egress"),
    ("/presence", "Presence failures"),
    ("/audit", "Audit log"),
    ("/integrations", "SIEM"),
];

/// A whole page.
pub fn page(status: StatusCode, title: &str, nav: Option<&Nav<'_>>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tether console" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    span.brand { "Tether" }
                    @if let Some(nav) = nav {
                        nav {
                            @for (href, label) in LINKS {
                                a href=(href) { (label) }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            span.who { (nav.principal) " (" (nav.role) ") · tenant " (nav.tenant_id) }
                            input type="hidden" name="csrf" value=(nav.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A table from header labels and rows of cells.
pub fn table(headers: &[&str], rows: &[Vec<Markup>], empty: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { (empty) }
        } @else {
            table {
                thead { tr { @for h in headers { th { (h) } } } }
                tbody {
                    @for row in rows {
                        tr { @for cell in row { td { (cell) } } }
                    }
                }
            }
        }
    }
}

/// A compact rendering of JSON evidence: scalar fields inline, the whole
/// document in a collapsible block.
pub fn evidence(json: &serde_json::Value, label: &str) -> Markup {
    let mut summary = Vec::new();
    if let Some(map) = json.as_object() {
        for (key, value) in map.iter().take(8) {
            let shown = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => clip(s, 60),
                serde_json::Value::Array(items) => format!("[{} items]", items.len()),
                serde_json::Value::Object(_) => "{…}".to_string(),
                other => other.to_string(),
            };
            summary.push((key.clone(), shown));
        }
    }
    let full = serde_json::to_string_pretty(json).unwrap_or_default();
    html! {
        @for (i, (key, shown)) in summary.iter().enumerate() {
            @if i > 0 { " " }
            span.ev { b { (key) } " " (shown) }
        }
        details { summary { (label) } pre { (full) } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        let out = table(&["<h>"], &[vec![html! { ("<script>alert('x')</script>&\"") }]], "").into_string();
        assert!(out.contains("&lt;script&gt;alert(") && out.contains("&lt;/script&gt;&amp;&quot;"), "{out}");
        assert!(out.contains("&lt;h&gt;") && !out.contains("<script"), "{out}");
    }

    #[test]
    fn evidence_never_carries_raw_markup() {
        let json = serde_json::json!({"device": "<img src=x onerror=alert(1)>", "nested": {"a": "<b>"}});
        let out = evidence(&json, "evidence").into_string();
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("&lt;img") && out.contains("&quot;&lt;b&gt;&quot;"), "{out}");
    }

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(url_part("flg_1"), "flg_1");
        assert_eq!(url_part("a/b c\"<"), "a%2Fb%20c%22%3C");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
    }
}
