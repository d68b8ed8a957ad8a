//! Webhook delivery: one signed JSON POST per outbox event.
//!
//! `X-Tether-Signature: sha256=<hex HMAC-SHA256(secret, timestamp "." body)>`
//! with the timestamp (Unix seconds) in `X-Tether-Timestamp`, so a receiver
//! can refuse old or replayed requests; `Idempotency-Key` names the event, and
//! a redelivery carries the same key with the same body.

use super::net;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// A webhook URL as configured: https anywhere, http only to loopback.
#[derive(Debug, Clone)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
    pub authority: String,
}

/// Parses and checks a webhook URL; the error is a sentence for the admin.
pub fn parse(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?} must start with https:// (or http:// for a loopback receiver)")),
    };
    let authority = uri.authority().ok_or_else(|| format!("{url:?} names no host"))?;
    if authority.as_str().contains('@') {
        return Err("a webhook URL may not carry credentials (user@host); the HMAC secret authenticates".into());
    }
    let host = authority.host().to_string();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        if let Some(why) = net::refused(ip) {
            return Err(format!("{ip} is {why}: refused"));
        }
        if !https && !ip.is_loopback() {
            return Err(format!("http://{host} is not loopback: use https:// so events cross the network encrypted"));
        }
    } else if !https && bare != "localhost" {
        return Err(format!("http://{host} is not loopback: use https:// so events cross the network encrypted"));
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    Ok(Target { https, host, port, path_and_query, authority: authority.as_str().to_string() })
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// POSTs `body`; Ok only on a 2xx answer.
pub async fn post(
    target: &Target,
    secret: &str,
    key: &str,
    event: &str,
    body: String,
    now_s: i64,
    timeout: Duration,
) -> Result<(), String> {
    let io = net::connect(&target.host, target.port, target.https, !target.https, timeout).await?;
    let exchange = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
        let driver = tokio::spawn(conn);
        let request = Request::builder()
            .method(Method::POST)
            .uri(target.path_and_query.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "tetherd")
            .header("X-Tether-Timestamp", now_s.to_string())
            .header("X-Tether-Signature", signature(secret, now_s, &body))
            .header("X-Tether-Event", event)
            .header("Idempotency-Key", key)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"));
        driver.abort();
        let status = response?.status();
        if status.is_success() { Ok(()) } else { Err(format!("the receiver answered HTTP {}", status.as_u16())) }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| "the receiver did not answer in time".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        assert!(parse("https://siem.example.com/hook").is_ok());
        assert!(parse("http://127.0.0.1:9000/hook").is_ok());
        assert!(parse("http://[::1]:9000/").is_ok());
        assert!(parse("http://localhost:9000/").is_ok());
        assert!(parse("http://siem.example.com/hook").is_err());
        assert!(parse("http://10.0.0.5/hook").is_err());
        assert!(parse("https://169.254.169.254/latest").is_err());
        assert!(parse("https://[fe80::1]/").is_err());
        assert!(parse("https://user:pw@siem.example.com/").is_err());
        assert!(parse("ftp://siem.example.com/").is_err());
        assert!(parse("siem.example.com").is_err());
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        let s = signature("key", 1_700_000_000, "{}");
        assert_eq!(s, "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae");
        assert_ne!(s, signature("key", 1_700_000_001, "{}"));
        assert_ne!(s, signature("other", 1_700_000_000, "{}"));
    }
}
