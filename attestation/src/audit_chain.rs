//! The audit log's hash chain, verifiable by anyone who holds the entries:
//! tetherd computes each entry's hash as it appends it, and `tether audit
//! verify` and the console re-check the chain. Editing or deleting a past entry
//! breaks every later link, which [`verify_chain`] reports by sequence number.

use ring::digest;

/// One entry as stored and as exported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub tenant_id: String,
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details_json: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The `prev_hash` of every chain's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an entry: SHA-256 over a domain tag and every field,
/// each length-prefixed so no two field lists serialize alike.
pub fn entry_hash(r: &AuditRecord) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(b"tether-audit-v1");
    let seq = r.seq.to_string();
    let at = r.at_ms.to_string();
    for field in [&r.tenant_id, &seq, &at, &r.actor, &r.action, &r.target, &r.details_json, &r.prev_hash] {
        context.update(&(field.len() as u64).to_be_bytes());
        context.update(field.as_bytes());
    }
    hex::encode(context.finish().as_ref())
}

/// Where a chain stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq} is broken: {reason}")]
pub struct BrokenEntry {
    pub seq: i64,
    pub reason: String,
}

/// Checks entries given oldest first, continuing from `(prev_seq, prev_hash)`
/// (`(0, GENESIS_HASH)` for a whole chain). Returns the last (seq, hash).
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditRecord>,
    prev_seq: i64,
    prev_hash: &str,
) -> Result<(i64, String), BrokenEntry> {
    let (mut last_seq, mut last_hash) = (prev_seq, prev_hash.to_string());
    for entry in entries {
        let broken = |reason: String| BrokenEntry { seq: entry.seq, reason };
        if entry.seq != last_seq + 1 {
            return Err(BrokenEntry {
                seq: last_seq + 1,
                reason: format!("entry {} is missing (the next entry present is {})", last_seq + 1, entry.seq),
            });
        }
        if entry.prev_hash != last_hash {
            return Err(broken(format!(
                "it does not link to entry {last_seq} (previous hash {} ≠ {})",
                short(&entry.prev_hash),
                short(&last_hash)
            )));
        }
        let computed = entry_hash(entry);
        if computed != entry.hash {
            return Err(broken(format!(
                "its contents were changed after it was written (stored hash {}, computed {})",
                short(&entry.hash),
                short(&computed)
            )));
        }
        last_seq = entry.seq;
        last_hash = entry.hash.clone();
    }
    Ok((last_seq, last_hash))
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    tenant_id: "ten_1".into(),
                    seq,
                    at_ms: 1_700_000_000_000 + seq,
                    actor: "key:key_1".into(),
                    action: "device.revoked".into(),
                    target: format!("dev_{seq}"),
                    details_json: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = entry_hash(&r);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_to_its_head() {
        let entries = chain(5);
        let (seq, hash) = verify_chain(&entries, 0, GENESIS_HASH).unwrap();
        assert_eq!(seq, 5);
        assert_eq!(hash, entries[4].hash);
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut entries = chain(5);
        entries[2].target = "dev_other".into();
        assert_eq!(verify_chain(&entries, 0, GENESIS_HASH).unwrap_err().seq, 3);
    }

    #[test]
    fn an_edited_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let mut entries = chain(5);
        entries[2].details_json = "{\"forged\":true}".into();
        entries[2].hash = entry_hash(&entries[2]);
        let broken = verify_chain(&entries, 0, GENESIS_HASH).unwrap_err();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("does not link"));
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let mut entries = chain(5);
        entries.remove(1);
        let broken = verify_chain(&entries, 0, GENESIS_HASH).unwrap_err();
        assert_eq!(broken.seq, 2);
        assert!(broken.reason.contains("missing"));
    }

    #[test]
    fn fields_cannot_shift_between_each_other() {
        let entries = chain(1);
        let mut shifted = entries[0].clone();
        shifted.action = "device.revokeddev_1".into();
        shifted.target = String::new();
        assert_ne!(entry_hash(&shifted), entries[0].hash);
    }
}
