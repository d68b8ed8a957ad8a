//! A challenge as it is created, before any capability stores it: scheduled,
//! on demand, or as one of a probe round.

use crate::store::credentials::Credential;
use crate::store::presence::Challenge;
use crate::util::{new_id, random_bytes};

/// A fresh challenge for the credential, not stored yet.
pub fn new_challenge(credential: &Credential, deadline_s: i64, reason: &str, now: i64) -> Challenge {
    Challenge {
        id: new_id("chl"),
        tenant_id: credential.tenant_id.clone(),
        credential_id: credential.id.clone(),
        device_id: credential.device_id.clone(),
        nonce: random_bytes::<32>().to_vec(),
        reason: reason.to_string(),
        issued_at_ms: now,
        deadline_ms: now.saturating_add(deadline_s.saturating_mul(1000)),
        consumed_at_ms: None,
        missed_at_ms: None,
    }
}
