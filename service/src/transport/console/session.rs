//! Server-side console sessions. The browser holds only a random 256-bit id
//! in an HttpOnly, SameSite=Strict cookie; the API key itself is never
//! stored. Each request re-reads the key, so revoking or expiring it ends
//! its sessions at once. Sessions live in this process's memory: a restart
//! signs everyone out, and replicas behind one address need sticky routing.
//!
//! Memory is bounded by caps per key, per tenant and in total. A login past
//! its key's or tenant's cap ends that key's or tenant's own oldest session;
//! at the total cap logins are refused, so one tenant can never sign another out.

use crate::domain::app::SessionLimits;
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

#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The API key the analyst logged in with, re-checked on every request.
    pub key_id: String,
    /// Must come back in every POST form of this session.
    pub csrf: String,
    expires: Instant,
}

pub struct Sessions {
    limits: SessionLimits,
    live: Mutex<HashMap<String, Session>>,
}

/// The process already holds its most sessions (`--console-sessions-max`).
#[derive(Debug)]
pub struct Full(pub usize);

/// 256 random bits from ring's system CSPRNG, hex.
pub fn new_secret() -> String {
    hex::encode(random_bytes::<32>())
}

/// The id of the oldest of the sessions `matches` selects.
fn oldest(live: &HashMap<String, Session>, matches: impl Fn(&Session) -> bool) -> Option<String> {
    live.iter().filter(|(_, s)| matches(s)).min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone())
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions { limits, live: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.live.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts a session and returns its id (the cookie value). Logins are
    /// rate-limited, so the scans over at most `limits.total` sessions are cheap.
    pub fn create(&self, caller: Caller, key_id: String) -> Result<(String, Session), Full> {
        let mut live = self.lock();
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        let of_key = live.values().filter(|s| s.key_id == key_id).count();
        let of_tenant = live.values().filter(|s| s.caller.tenant_id == caller.tenant_id).count();
        let evict = if of_key >= self.limits.per_key {
            oldest(&live, |s| s.key_id == key_id)
        } else if of_tenant >= self.limits.per_tenant {
            oldest(&live, |s| s.caller.tenant_id == caller.tenant_id)
        } else {
            None
        };
        match evict {
            Some(id) => {
                live.remove(&id);
            }
            None if live.len() >= self.limits.total => return Err(Full(self.limits.total)),
            None => {}
        }
        let id = new_secret();
        let session = Session { caller, key_id, csrf: new_secret(), expires: now + SESSION_TTL };
        live.insert(id.clone(), session.clone());
        Ok((id, session))
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
        caller_of("ten_1", "key_1")
    }

    fn caller_of(tenant: &str, key: &str) -> Caller {
        Caller { tenant_id: tenant.into(), role: Role::Analyst, principal: format!("key:{key}") }
    }

    fn login(sessions: &Sessions, tenant: &str, key: &str) -> Result<String, Full> {
        sessions.create(caller_of(tenant, key), key.into()).map(|(id, _)| id)
    }

    #[test]
    fn sessions_are_found_by_id_and_removed() {
        let sessions = Sessions::new(SessionLimits::default());
        let (id, session) = sessions.create(caller(), "key_1".into()).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(sessions.get(&id).map(|s| s.csrf), Some(session.csrf));
        assert!(sessions.get("not-a-session").is_none());
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn a_key_or_tenant_at_its_cap_ends_only_its_own_oldest_session() {
        let sessions = Sessions::new(SessionLimits { total: 6, per_tenant: 3, per_key: 2 });
        let other = login(&sessions, "ten_b", "key_b").unwrap();
        let first = login(&sessions, "ten_a", "key_a1").unwrap();
        let second = login(&sessions, "ten_a", "key_a1").unwrap();
        let third = login(&sessions, "ten_a", "key_a1").unwrap();
        assert!(sessions.get(&first).is_none(), "the key's oldest session made room");
        assert!(sessions.get(&second).is_some() && sessions.get(&third).is_some());
        let admin = login(&sessions, "ten_a", "key_a2").unwrap();
        for _ in 0..50 {
            login(&sessions, "ten_a", "key_a2").unwrap();
            login(&sessions, "ten_a", "key_a3").unwrap();
        }
        assert!(sessions.get(&admin).is_none());
        assert!(sessions.get(&other).is_some(), "another tenant's session survives");
        assert_eq!(sessions.lock().values().filter(|s| s.caller.tenant_id == "ten_a").count(), 3);
    }

    #[test]
    fn at_the_total_cap_logins_are_refused_not_others_signed_out() {
        let sessions = Sessions::new(SessionLimits { total: 4, per_tenant: 2, per_key: 2 });
        let held: Vec<String> = ["ten_a", "ten_a", "ten_b", "ten_b"]
            .iter()
            .map(|t| login(&sessions, t, &format!("k_{t}")).unwrap())
            .collect();
        assert!(matches!(login(&sessions, "ten_c", "k_c"), Err(Full(4))));
        // A tenant at its own cap still logs in, in place of its own oldest.
        login(&sessions, "ten_a", "k_ten_a").unwrap();
        assert!(sessions.get(&held[0]).is_none());
        assert!(held[2..].iter().all(|id| sessions.get(id).is_some()));
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
