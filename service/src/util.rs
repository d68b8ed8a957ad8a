//! Identifiers, secrets, hashing and the clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Fills `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // SystemRandom only fails when the OS has no entropy source at all; there
    // is no safe way to continue issuing secrets then.
    #[allow(clippy::expect_used)]
    SystemRandom::new().fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// A random, URL-safe identifier such as `dev_3q2...`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<12>()))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Parses an address as a gateway reports it, folding IPv4-mapped IPv6
/// (`::ffff:192.0.2.1`) to IPv4 so one client has one canonical form.
pub fn canonical_ip(text: &str) -> Option<IpAddr> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = new_id("dev");
        let b = new_id("dev");
        assert!(a.starts_with("dev_"));
        assert_ne!(a, b);
    }

    #[test]
    fn mapped_ipv6_is_folded_to_ipv4() {
        assert_eq!(canonical_ip("::ffff:127.0.0.1"), "127.0.0.1".parse().ok());
        assert_eq!(canonical_ip("[::1]"), "::1".parse().ok());
        assert_eq!(canonical_ip("not an ip"), None);
    }
}
