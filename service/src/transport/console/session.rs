//! Server-side console sessions. The browser holds only a random 256-bit id
//! in an HttpOnly, SameSite=Strict cookie; the API key itself is never
//! stored. Each request re-reads the key, so revoking or expiring it ends
//! its sessions at once. Sessions live in this process's memory: a restart
//! signs everyone out, and replicas behind one address need sticky routing.

use crate::domain::tenancy::auth::Caller;
use crate::util::random_bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "tether_console";
/// Double-submit token of the login form, which has no session yet.
pub const LOGIN_COOKIE: &str = "tether_console_login";
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
pub const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);
/// Beyond this many live sessions the oldest are dropped, so memory stays bounded.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The API key the analyst logged in with, re-checked on every request.
    pub key_id: String,
    /// Must come back in every POST form of this session.
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

/// 256 random bits from ring's system CSPRNG, hex.
pub fn new_secret() -> String {
    hex::encode(random_bytes::<32>())
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.live.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts a session and returns its id (the cookie value).
    pub fn create(&self, caller: Caller, key_id: String) -> (String, Session) {
        let id = new_secret();
        let session = Session { caller, key_id, csrf: new_secret(), expires: Instant::now() + SESSION_TTL };
        let mut live = self.lock();
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with this id; an expired one is removed.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.lock();
        match live.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a console cookie; `max_age` zero deletes it. No
/// `Secure`: the console serves plain HTTP (see the notes on TLS).
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", max_age.as_secs());
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Constant-time comparison of a presented CSRF token with the expected one.
pub fn same_token(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tenancy::auth::Role;

    fn caller() -> Caller {
        Caller { tenant_id: "ten_1".into(), role: Role::Analyst, principal: "key:key_1".into() }
    }

    #[test]
    fn sessions_are_found_by_id_and_removed() {
        let sessions = Sessions::default();
        let (id, session) = sessions.create(caller(), "key_1".into());
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(sessions.get(&id).map(|s| s.csrf), Some(session.csrf));
        assert!(sessions.get("not-a-session").is_none());
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn cookies_are_parsed_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("x_tether_console=evil; tether_console=abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), None);
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", ""));
        assert!(!same_token("", ""));
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let value = set_cookie(SESSION_COOKIE, "abc", SESSION_TTL);
        let text = value.to_str().unwrap_or_default();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict") && text.contains("Max-Age=28800"));
    }
}
