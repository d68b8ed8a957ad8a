//! The tamper-evident audit log. Every security-relevant action appends an
//! entry in the same transaction as the action itself, so an action and its
//! record commit or vanish together. Entries form a hash chain per tenant:
//! editing or deleting a past entry breaks every later link, which
//! [`tether_attestation::audit_chain::verify_chain`] reports by sequence number. Truncating the newest
//! entries is caught by comparing the head with one recorded earlier
//! (`tether audit verify --expect-head`).

use crate::store::audit as audit_store;
use crate::store::{StoreResult, Tx};
use crate::util::now_ms;
pub use tether_attestation::audit_chain::GENESIS_HASH;
use tether_attestation::audit_chain::{AuditRecord, entry_hash};

/// Who did it: `key:<api key id>`, `token:<enrollment token id>`, or `system`.
pub struct Actor(pub String);

impl Actor {
    pub fn key(key_id: &str) -> Actor {
        Actor(format!("key:{key_id}"))
    }

    pub fn system() -> Actor {
        Actor("system".into())
    }
}

/// Appends an entry to the tenant's chain inside the caller's transaction.
pub async fn append(
    tx: &mut Tx,
    tenant_id: &str,
    actor: &Actor,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> StoreResult<()> {
    let (seq, prev_hash) = audit_store::claim_next(tx, tenant_id).await?;
    let mut record = AuditRecord {
        tenant_id: tenant_id.to_string(),
        seq,
        at_ms: now_ms(),
        actor: actor.0.clone(),
        action: action.to_string(),
        target: target.to_string(),
        details_json: details.to_string(),
        prev_hash,
        hash: String::new(),
    };
    record.hash = entry_hash(&record);
    audit_store::append(tx, &record).await
}
