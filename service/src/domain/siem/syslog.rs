//! Syslog delivery: RFC 5424 messages over TCP (optionally TLS, RFC 5425),
//! framed by octet counting (RFC 6587 3.4.1), the message JSON or CEF.
//!
//! TCP syslog has no application acknowledgement: a message counts as sent
//! once the stream accepted it, so a receiver that crashes with unread bytes
//! loses them. docs/siem.md says so and points to webhooks for that case.

use super::net;
use crate::store::outbox::OutboxRow;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The private enterprise number in structured data: 32473 is reserved for
/// documentation and examples (RFC 5612); Tether has none registered.
const SD_ID: &str = "tether@32473";
/// Facility 13, "log audit".
const FACILITY: u8 = 13;

/// Parses `host:port` (IPv6 in brackets); the error is a sentence for the admin.
pub fn parse(target: &str) -> Result<(String, u16), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} must be host:port (for example siem.example.com:6514)"))?;
    let port: u16 = port.parse().map_err(|_| format!("{port:?} in {target:?} is not a port number"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("{target:?} must be host:port with a non-zero port"));
    }
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>()
        && let Some(why) = net::refused(ip)
    {
        return Err(format!("{ip} is {why}: refused"));
    }
    Ok((host.to_string(), port))
}

/// SD-PARAM values escape `"`, `\` and `]` (RFC 5424 6.3.3).
fn sd_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn severity(row: &OutboxRow) -> u8 {
    let v: serde_json::Value = serde_json::from_str(&row.payload_json).unwrap_or_default();
    if v["flag"]["severity"] == "high" || v["presence"]["outcome"] == "clone_suspected" {
        2 // critical
    } else {
        4 // warning
    }
}

/// One framed message: `LEN SP <PRI>1 TIMESTAMP HOST APP - MSGID [SD] BOM MSG`.
pub fn frame(row: &OutboxRow, key: &str, body: &str) -> Vec<u8> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".to_string());
    let message = format!(
        "<{}>1 {at} - tetherd - {} [{SD_ID} key=\"{}\" tenant=\"{}\"] \u{feff}{body}",
        FACILITY * 8 + severity(row),
        row.kind,
        sd_value(key),
        sd_value(&row.tenant_id),
    );
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message.as_bytes());
    framed
}

/// Opens one connection for a run of messages.
pub async fn open(host: &str, port: u16, tls: bool, timeout: Duration) -> Result<Box<dyn net::Io>, String> {
    net::connect(host, port, tls, false, timeout).await
}

pub async fn send(io: &mut Box<dyn net::Io>, framed: &[u8], timeout: Duration) -> Result<(), String> {
    let write = async {
        io.write_all(framed).await?;
        io.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("syslog write: {e}")),
        Err(_) => Err("syslog write timed out".to_string()),
    }
}

/// Ends a run's connection so the receiver keeps what it was sent. Closing a
/// socket with unread input (a TLS 1.3 server's session tickets) makes the
/// kernel send a reset, and a reset discards what the receiver had not read
/// yet: messages this side already counted as delivered. So: close_notify
/// and FIN, then read until the receiver closes too (bounded in time and size).
pub async fn close(mut io: Box<dyn net::Io>, timeout: Duration) {
    let drain = async {
        io.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_octets_and_escapes_structured_data() {
        let row = OutboxRow {
            seq: 3,
            txn: 0,
            tenant_id: "a\"]b".into(),
            kind: "presence.failure".into(),
            at_ms: 0,
            payload_json: "{}".into(),
        };
        let framed = String::from_utf8(frame(&row, "k", "héllo")).unwrap();
        let (len, msg) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<108>1 1970-01-01T00:00:00Z - tetherd - presence.failure [tether@32473 key=\"k\" tenant=\"a\\\"\\]b\"] "), "{msg}");
    }

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(parse("siem.example.com:6514").unwrap(), ("siem.example.com".into(), 6514));
        assert_eq!(parse("[::1]:514").unwrap(), ("[::1]".into(), 514));
        assert!(parse("siem.example.com").is_err());
        assert!(parse("169.254.169.254:514").is_err());
        assert!(parse("host:0").is_err());
    }
}
