//! HTML building blocks. Every value that comes from the database or the
//! request passes through [`esc`]: evidence is attacker-influenced (IP
//! addresses, device names, posture strings).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use time::OffsetDateTime;
use time::macros::format_description;

/// Escapes text for element content and double-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

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
    ("/flags", "Flags"),
    ("/clusters", "Shared egress"),
    ("/presence", "Presence failures"),
    ("/audit", "Audit log"),
    ("/integrations", "SIEM"),
];

/// A whole page. `body` must already be escaped HTML.
pub fn page(status: StatusCode, title: &str, nav: Option<&Nav<'_>>, body: &str) -> Response {
    let mut html = String::with_capacity(body.len() + 1024);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Tether console</title><link rel=\"stylesheet\" href=\"/console.css\"></head><body>",
        esc(title)
    );
    html.push_str("<header><span class=\"brand\">Tether</span>");
    if let Some(nav) = nav {
        html.push_str("<nav>");
        for (href, label) in LINKS {
            let _ = write!(html, "<a href=\"{href}\">{label}</a>");
        }
        let _ = write!(
            html,
            "</nav><form class=\"logout\" method=\"post\" action=\"/logout\">\
             <span class=\"who\">{} ({}) · tenant {}</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
            esc(nav.principal),
            esc(nav.role),
            esc(nav.tenant_id),
            esc(nav.csrf)
        );
    }
    let _ = write!(html, "</header><main><h1>{}</h1>{body}</main></body></html>", esc(title));
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// A table from header labels and rows of already-escaped cells.
pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(empty));
    }
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A compact, escaped rendering of JSON evidence: scalar fields inline, the
/// whole document in a collapsible block.
pub fn evidence(json: &serde_json::Value, label: &str) -> String {
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
            summary.push(format!("<span class=\"ev\"><b>{}</b> {}</span>", esc(key), esc(&shown)));
        }
    }
    let full = serde_json::to_string_pretty(json).unwrap_or_default();
    format!("{}<details><summary>{}</summary><pre>{}</pre></details>", summary.join(" "), esc(label), esc(&full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }

    #[test]
    fn evidence_never_carries_raw_markup() {
        let json = serde_json::json!({"device": "<img src=x onerror=alert(1)>", "nested": {"a": "<b>"}});
        let out = evidence(&json, "evidence");
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
