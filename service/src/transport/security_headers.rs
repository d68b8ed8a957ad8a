//! The headers every HTML surface (the console and the workers' web app) sends on every
//! response; each surface brings its own Content-Security-Policy.

use axum::http::{HeaderMap, HeaderValue, header};

/// Sets `csp`, no framing, no MIME sniffing, no Referer and no caching.
pub fn apply(headers: &mut HeaderMap, csp: &'static str) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}
