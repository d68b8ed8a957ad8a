//! The operator's FIDO metadata (`tetherd serve --mds-file`): which authenticator models the
//! verified MDS3 BLOB marks as compromised or revoked. It is global, not per tenant: the BLOB
//! is the FIDO Alliance's, the same for every employer, and only the operator names the file
//! and the roots it must chain to, so no tenant can feed another tenant's decisions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tether_attestation::mds::MdsBlob;
use tether_attestation::trust::TrustStore;

use tether_attestation::uuid::Uuid;
use time::{Date, OffsetDateTime};

/// A model's status as the BLOB reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub status: String,
    pub effective_date: Option<String>,
    pub description: Option<String>,
}

/// What enrollment needs from one verified BLOB.
#[derive(Debug, Clone)]
pub struct MdsIndex {
    pub no: u64,
    pub next_update: String,
    next_update_date: Option<Date>,
    pub sha256: String,
    pub entries: usize,
    compromised: HashMap<Uuid, Listing>,
    uv_bypass: HashMap<Uuid, Listing>,
    /// Each model's attestation roots (DER): anchors for that AAGUID only.
    roots: HashMap<Uuid, Vec<Vec<u8>>>,
}

impl MdsIndex {
    pub fn from_blob(blob: &MdsBlob) -> MdsIndex {
        let listing = |entry: &tether_attestation::mds::MdsEntry, report: &tether_attestation::mds::StatusReport| {
            entry.aaguid.map(|aaguid| {
                let listing = Listing {
                    status: report.status.clone(),
                    effective_date: report.effective_date.clone(),
                    description: entry.description.clone(),
                };
                (aaguid, listing)
            })
        };
        MdsIndex {
            no: blob.no,
            next_update: blob.next_update.clone(),
            next_update_date: blob.next_update_date,
            sha256: blob.sha256.clone(),
            entries: blob.entries.len(),
            compromised: blob.compromised().filter_map(|(e, r)| listing(e, r)).collect(),
            uv_bypass: blob.uv_bypass().filter_map(|(e, r)| listing(e, r)).collect(),
            // A compromised model's roots must not vouch for anything, even by another AAGUID.
            roots: blob
                .entries
                .iter()
                .filter(|e| e.compromise().is_none() && !e.attestation_roots.is_empty())
                .filter_map(|e| e.aaguid.map(|a| (a, e.attestation_roots.clone())))
                .collect(),
        }
    }

    pub fn compromised_count(&self) -> usize {
        self.compromised.len()
    }

    pub fn uv_bypass_count(&self) -> usize {
        self.uv_bypass.len()
    }

    /// `nextUpdate` parsed, when it is a real date.
    pub fn next_update_date(&self) -> Option<Date> {
        self.next_update_date
    }

    /// Models marked compromised or revoked, by AAGUID.
    pub fn compromised_models(&self) -> &HashMap<Uuid, Listing> {
        &self.compromised
    }

    /// Models whose user verification can be bypassed, by AAGUID.
    pub fn uv_bypass_models(&self) -> &HashMap<Uuid, Listing> {
        &self.uv_bypass
    }

    /// Whether `nextUpdate` has passed at `now`: the BLOB is stale and should be refreshed.
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.next_update_date.is_none_or(|d| d < now.date())
    }
}

/// What installing a BLOB did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    First,
    Newer { previous: u64 },
    Unchanged,
}

/// The BLOB in force, replaced as the file changes. Reads take a short lock and clone an Arc.
#[derive(Debug, Default)]
pub struct MdsCatalog {
    current: RwLock<Option<Arc<MdsIndex>>>,
}

impl MdsCatalog {
    /// Puts `index` in force unless its `no` goes backwards (a replayed older BLOB would
    /// bring back models since marked compromised), or reuses a `no` with other contents.
    pub fn install(&self, index: MdsIndex) -> Result<Installed, String> {
        let mut current = self.current.write().map_err(|_| "the MDS catalog lock is poisoned".to_owned())?;
        let outcome = match current.as_ref() {
            None => Installed::First,
            Some(old) if index.no < old.no => {
                return Err(format!(
                    "the BLOB's no {} is older than the one in force ({}); an MDS BLOB must not go backwards",
                    index.no, old.no
                ));
            }
            Some(old) if index.no == old.no && index.sha256 == old.sha256 => return Ok(Installed::Unchanged),
            Some(old) if index.no == old.no => {
                return Err(format!("the BLOB reuses no {} with different contents; refused", index.no));
            }
            Some(old) => Installed::Newer { previous: old.no },
        };
        *current = Some(Arc::new(index));
        Ok(outcome)
    }

    pub fn current(&self) -> Option<Arc<MdsIndex>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// The attestation roots the BLOB in force lists for `aaguid` (empty when none): a trust
    /// store that admits only that model's attestations.
    pub fn roots_for(&self, aaguid: &Uuid) -> TrustStore {
        let mut store = TrustStore::new();
        if let Some(index) = self.current()
            && let Some(roots) = index.roots.get(aaguid)
        {
            for der in roots {
                // Every root parsed when the BLOB was read; one that no longer does is left out.
                let _ = store.add_der(der);
            }
        }
        store
    }

    /// The compromise or revocation the BLOB in force reports for `aaguid`, if any.
    pub fn compromised(&self, aaguid: &Uuid) -> Option<Listing> {
        self.current().and_then(|index| index.compromised.get(aaguid).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(no: u64, sha256: &str, compromised: &[(Uuid, &str)]) -> MdsIndex {
        MdsIndex {
            no,
            next_update: "2027-01-01".into(),
            next_update_date: Date::from_calendar_date(2027, time::Month::January, 1).ok(),
            sha256: sha256.into(),
            entries: compromised.len(),
            compromised: compromised
                .iter()
                .map(|(id, status)| {
                    (*id, Listing { status: (*status).into(), effective_date: None, description: None })
                })
                .collect(),
            uv_bypass: HashMap::new(),
            roots: HashMap::new(),
        }
    }

    #[test]
    fn a_blob_never_goes_backwards_and_a_newer_one_replaces_the_old() {
        let leaky = Uuid::from_u128(7);
        let catalog = MdsCatalog::default();
        assert_eq!(catalog.compromised(&leaky), None, "no BLOB, no verdict");
        assert_eq!(catalog.install(index(10, "a", &[(leaky, "REVOKED")])), Ok(Installed::First));
        assert_eq!(catalog.compromised(&leaky).map(|l| l.status), Some("REVOKED".to_owned()));
        assert_eq!(catalog.install(index(10, "a", &[])), Ok(Installed::Unchanged));
        assert!(catalog.install(index(10, "b", &[])).unwrap_err().contains("reuses no 10"));
        assert!(catalog.install(index(9, "c", &[])).unwrap_err().contains("must not go backwards"));
        assert!(catalog.compromised(&leaky).is_some(), "a refused BLOB changes nothing");
        assert_eq!(catalog.install(index(11, "d", &[])), Ok(Installed::Newer { previous: 10 }));
        assert_eq!(catalog.compromised(&leaky), None);
    }

    #[test]
    fn staleness_follows_next_update() {
        let index = index(1, "a", &[]);
        assert!(!index.is_stale(time::macros::datetime!(2027-01-01 12:00 UTC)));
        assert!(index.is_stale(time::macros::datetime!(2027-01-02 00:00 UTC)));
    }
}
