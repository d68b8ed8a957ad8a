//! The login form's CSRF token. It must be one this process issued (an HMAC
//! under a per-process key over a nonce and an expiry) and it is good for one
//! POST, so every login needs its own GET of the form: a script cannot log in
//! blind with a made-up cookie and field. Besides the token, the form's cookie
//! must carry the same value (double submit), which a cross-site POST cannot set.

use crate::util::{now_ms, random_bytes};
use ring::hmac;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Redeemed nonces are kept until their token expires; beyond this many the
/// login is refused rather than memory grown (logins are rate-limited per address).
const MAX_SPENT: usize = 100_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not issued by this process, altered, expired or already used.
    Invalid,
    /// Too many tokens redeemed within their lifetime.
    Busy,
}

pub struct LoginTokens {
    key: hmac::Key,
    ttl: Duration,
    /// Nonce → expiry (Unix ms) of the tokens already used.
    spent: Mutex<HashMap<[u8; 16], i64>>,
}

impl LoginTokens {
    pub fn new(ttl: Duration) -> LoginTokens {
        LoginTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()),
            ttl,
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// `NONCE.EXPIRES_MS.TAG`, hex and decimal: safe in a cookie and a form field.
    pub fn issue(&self) -> String {
        let expires = now_ms().saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX));
        let body = format!("{}.{expires}", hex::encode(random_bytes::<16>()));
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", hex::encode(tag.as_ref()))
    }

    /// Accepts a token this process issued, unexpired and not used before, and spends it.
    pub fn redeem(&self, token: &str) -> Result<(), Refusal> {
        let (body, tag) = token.rsplit_once('.').ok_or(Refusal::Invalid)?;
        let tag = hex::decode(tag).map_err(|_| Refusal::Invalid)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| Refusal::Invalid)?;
        let (nonce, expires) = body.split_once('.').ok_or(Refusal::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| Refusal::Invalid)?;
        let nonce: [u8; 16] = hex::decode(nonce).ok().and_then(|n| n.try_into().ok()).ok_or(Refusal::Invalid)?;
        let now = now_ms();
        if expires <= now {
            return Err(Refusal::Invalid);
        }
        let mut spent = match self.spent.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if spent.contains_key(&nonce) {
            return Err(Refusal::Invalid);
        }
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, until| *until > now);
            if spent.len() >= MAX_SPENT {
                return Err(Refusal::Busy);
            }
        }
        spent.insert(nonce, expires);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_is_good_once() {
        let tokens = LoginTokens::new(Duration::from_secs(60));
        let token = tokens.issue();
        assert_eq!(tokens.redeem(&token), Ok(()));
        assert_eq!(tokens.redeem(&token), Err(Refusal::Invalid), "a second use");
    }

    #[test]
    fn made_up_altered_foreign_and_expired_tokens_are_refused() {
        let tokens = LoginTokens::new(Duration::from_secs(60));
        let token = tokens.issue();
        for made_up in ["", "abc", "x.y.z", &"0".repeat(64), &format!("{token}0")] {
            assert_eq!(tokens.redeem(made_up), Err(Refusal::Invalid), "{made_up:?}");
        }
        // A longer life under the same tag.
        let (nonce, rest) = token.split_once('.').unwrap();
        let (expires, tag) = rest.split_once('.').unwrap();
        let later = expires.parse::<i64>().unwrap() + 3_600_000;
        assert_eq!(tokens.redeem(&format!("{nonce}.{later}.{tag}")), Err(Refusal::Invalid));
        // Issued by another process (another key).
        assert_eq!(tokens.redeem(&LoginTokens::new(Duration::from_secs(60)).issue()), Err(Refusal::Invalid));
        let expired = LoginTokens::new(Duration::ZERO);
        assert_eq!(expired.redeem(&expired.issue()), Err(Refusal::Invalid));
    }
}
