//! RFC 4180 CSV for `tether report --output csv`: a header row, CRLF line
//! ends, and fields quoted when they hold a comma, quote, CR or LF (quotes
//! doubled). Values are written as the server sent them; spreadsheet users
//! importing untrusted text should disable formula evaluation.

use crate::views::{FlagView, GeoView, PresenceEventView, SessionView, SummaryView, TimelineEntryView};

/// One field, quoted when needed.
pub fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// A document: header row then rows.
pub fn document(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
    out
}

fn time(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

pub fn flags(flags: &[FlagView]) -> String {
    let header = [
        "raised_at",
        "severity",
        "status",
        "kind",
        "worker_external_id",
        "device_id",
        "id",
        "credential_id",
        "session_id",
        "note",
        "updated_at",
        "updated_by",
        "evidence",
    ];
    document(
        &header,
        flags.iter().map(|f| {
            vec![
                time(&f.raised_at),
                f.severity.clone(),
                f.status.clone(),
                f.kind.clone(),
                f.worker_external_id.clone(),
                f.device_id.clone(),
                f.id.clone(),
                f.credential_id.clone(),
                f.session_id.clone(),
                f.note.clone().unwrap_or_default(),
                time(&f.updated_at),
                f.updated_by.clone().unwrap_or_default(),
                if f.evidence.is_null() { String::new() } else { f.evidence.to_string() },
            ]
        }),
    )
}

pub fn failures(events: &[PresenceEventView]) -> String {
    let header = [
        "at",
        "outcome",
        "worker_external_id",
        "device_id",
        "credential_id",
        "challenge_id",
        "source_ip",
        "detail",
        "id",
    ];
    document(
        &header,
        events.iter().map(|e| {
            vec![
                time(&e.at),
                e.outcome.clone(),
                e.worker_external_id.clone(),
                e.device_id.clone(),
                e.credential_id.clone(),
                e.challenge_id.clone(),
                e.source_ip.clone(),
                e.detail.clone(),
                e.id.clone(),
            ]
        }),
    )
}

pub fn sessions(sessions: &[SessionView]) -> String {
    let header = [
        "at",
        "decision",
        "worker_external_id",
        "device_id",
        "source_ip",
        "gateway_id",
        "reasons",
        "flags",
        "id",
        "would_deny",
    ];
    document(
        &header,
        sessions.iter().map(|s| {
            let reasons: Vec<&str> = s.reasons.iter().map(|r| r.code.as_str()).collect();
            let flags: Vec<String> = s.flags.iter().map(|f| format!("{}:{}:{}", f.id, f.kind, f.severity)).collect();
            vec![
                time(&s.at),
                s.decision.clone(),
                s.worker_external_id.clone(),
                s.device_id.clone(),
                s.source_ip.clone(),
                s.gateway_id.clone(),
                reasons.join(";"),
                flags.join(";"),
                s.id.clone(),
                s.would_deny_reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(";"),
            ]
        }),
    )
}

pub fn timeline(entries: &[TimelineEntryView]) -> String {
    let header = ["at", "type", "source_ip", "geo", "summary", "id"];
    document(
        &header,
        entries.iter().map(|e| {
            vec![
                time(&e.at),
                e.kind.clone(),
                e.source_ip.clone(),
                GeoView::cell(&e.geo),
                e.summary.clone(),
                e.id.clone(),
            ]
        }),
    )
}

/// The summary's three tables in one: `section` says which row is which.
pub fn summary(s: &SummaryView) -> String {
    let header = ["section", "name", "severity", "count", "devices", "workers", "tenants", "last_at", "detail"];
    let counts = s.flag_counts.iter().map(|c| {
        vec![
            "flag_count".into(),
            c.kind.clone(),
            c.severity.clone(),
            c.count.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]
    });
    let clusters = s.clusters.iter().map(|c| {
        vec![
            "cluster".into(),
            c.egress.clone(),
            c.highest_severity.clone(),
            String::new(),
            c.devices.to_string(),
            c.workers.to_string(),
            c.tenants.to_string(),
            time(&c.last_seen),
            c.own_cell(),
        ]
    });
    let failing = s.repeated_failures.iter().map(|d| {
        vec![
            "repeated_failures".into(),
            d.device_id.clone(),
            String::new(),
            d.failures.to_string(),
            String::new(),
            String::new(),
            String::new(),
            time(&d.last_at),
            format!("worker={} {}", d.worker_external_id, d.outcomes_cell()),
        ]
    });
    document(&header, counts.chain(clusters).chain(failing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(document(&["a", "b"], [vec!["1".into(), "x,y".into()]]), "a,b\r\n1,\"x,y\"\r\n");
    }
}
