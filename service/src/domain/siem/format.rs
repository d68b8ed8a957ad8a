//! What a receiver gets for one outbox row: the JSON document, or a CEF line.
//! Both are a pure function of the row, so a redelivery under the same
//! idempotency key carries the same bytes.

use crate::store::outbox::OutboxRow;
use serde_json::{Map, Value, json};

/// The event's idempotency key: unique per tenant and outbox row.
pub fn key(row: &OutboxRow) -> String {
    format!("{}.{}", row.tenant_id, row.seq)
}

fn payload(row: &OutboxRow) -> Map<String, Value> {
    match serde_json::from_str::<Value>(&row.payload_json) {
        Ok(Value::Object(map)) => map,
        // Only the service writes payloads; keep anything else whole rather than drop it.
        _ => Map::from_iter([("raw".to_string(), Value::String(row.payload_json.clone()))]),
    }
}

pub fn json(row: &OutboxRow) -> String {
    let mut doc = Map::from_iter([
        ("id".to_string(), json!(key(row))),
        ("event".to_string(), json!(row.kind)),
        ("tenant".to_string(), json!(row.tenant_id)),
        ("at_ms".to_string(), json!(row.at_ms)),
    ]);
    doc.extend(payload(row));
    Value::Object(doc).to_string()
}

/// CEF header fields escape `\` and `|` (ArcSight CEF 25, "Header").
fn header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// CEF extension values escape `\`, `=` and line breaks ("Extension").
fn value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// CEF severity 0–10 and the event's name.
fn severity_and_name(row: &OutboxRow, p: &Map<String, Value>) -> (u8, String) {
    if let Some(flag) = p.get("flag") {
        let severity = match text(flag.get("severity")).as_str() {
            "high" => 9,
            "review" => 6,
            _ => 3,
        };
        let verb = if row.kind == "flag.reviewed" { "flag reviewed" } else { "flag raised" };
        return (severity, format!("{verb}: {}", text(flag.get("kind"))));
    }
    let presence = p.get("presence");
    let outcome = text(presence.and_then(|e| e.get("outcome")));
    let severity = if outcome == "clone_suspected" { 9 } else { 6 };
    (severity, format!("presence {outcome}"))
}

pub fn cef(row: &OutboxRow) -> String {
    let p = payload(row);
    let (severity, name) = severity_and_name(row, &p);
    let subject = p.get("flag").or_else(|| p.get("presence"));
    let field = |k: &str| text(subject.and_then(|s| s.get(k)));
    let mut ext = vec![
        ("rt", row.at_ms.to_string()),
        ("externalId", key(row)),
        ("cs1Label", "tenant".to_string()),
        ("cs1", row.tenant_id.clone()),
        ("duser", field("worker")),
        ("dvchost", field("device")),
        ("cs2Label", "credential".to_string()),
        ("cs2", field("credential")),
    ];
    if p.contains_key("flag") {
        ext.push(("cs3Label", "flag".to_string()));
        ext.push(("cs3", field("id")));
        ext.push(("cs4Label", "status".to_string()));
        ext.push(("cs4", field("status")));
        ext.push(("msg", text(subject.and_then(|s| s.get("evidence")))));
    } else {
        ext.push(("cs3Label", "challenge".to_string()));
        ext.push(("cs3", field("challenge")));
        ext.push(("cs4Label", "source address".to_string()));
        ext.push(("cs4", field("source_ip")));
        ext.push(("msg", field("detail")));
    }
    let extension: Vec<String> =
        ext.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", value(&v))).collect();
    format!(
        "CEF:0|Tether|tetherd|{}|{}|{}|{severity}|{}",
        header(env!("CARGO_PKG_VERSION")),
        header(&row.kind),
        header(&name),
        extension.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload: Value) -> OutboxRow {
        OutboxRow {
            seq: 7,
            txn: 0,
            tenant_id: "acme".into(),
            kind: "flag.raised".into(),
            at_ms: 1_700_000_000_000,
            payload_json: payload.to_string(),
        }
    }

    #[test]
    fn cef_escapes_header_and_extension_per_spec() {
        let r = row(json!({"flag": {"kind": "geo|jump", "severity": "high", "worker": "a=b\\c", "device": "d\nx"}}));
        let line = cef(&r);
        assert!(line.starts_with("CEF:0|Tether|tetherd|"), "{line}");
        assert!(line.contains("|flag.raised|flag raised: geo\\|jump|9|"), "{line}");
        assert!(line.contains("duser=a\\=b\\\\c"), "{line}");
        assert!(line.contains("dvchost=d\\nx"), "{line}");
        assert!(!line.contains('\n'));
        assert!(line.contains("externalId=acme.7"));
    }

    #[test]
    fn json_carries_key_and_payload_and_is_stable() {
        let r = row(json!({"flag": {"id": "flg_1"}}));
        let doc: Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(doc["id"], "acme.7");
        assert_eq!(doc["event"], "flag.raised");
        assert_eq!(doc["flag"]["id"], "flg_1");
        assert_eq!(json(&r), json(&r));
    }
}
