//! The FIDO metadata an enrollment is checked against: the operator's BLOB (`--mds-file`, the
//! same for every tenant) and the enrolling tenant's own import (`tether trust import-mds`),
//! which only ever applies to that tenant. Either one can refuse a model; a root either lists
//! anchors only its own model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tether_attestation::trust::TrustStore;

use super::mds::{Listing, MdsIndex, Model};
use crate::store::{Store, StoreError, StoreResult, mds as mds_store};

/// What installing a BLOB did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    First,
    Newer { previous: u64 },
    Unchanged,
}

/// The operator's BLOB in force, replaced as the file changes. Reads take a short lock and
/// clone an Arc.
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
}

/// How many tenants' imported indexes are kept in memory; a miss costs one read of the row.
pub const TENANT_CACHE_LIMIT: usize = 256;

/// Tenants' imported indexes, read from the database and kept while their SHA-256 is current.
#[derive(Debug, Default)]
pub struct TenantMdsCache {
    entries: Mutex<HashMap<String, Arc<MdsIndex>>>,
}

impl TenantMdsCache {
    /// The index `tenant_id` imported, current as of this call (one indexed read of its
    /// version on every call, so an import on another replica counts at once).
    pub async fn get(&self, store: &Store, tenant_id: &str) -> StoreResult<Option<Arc<MdsIndex>>> {
        let Some((_, sha256)) = mds_store::version(store, tenant_id).await? else { return Ok(None) };
        if let Some(hit) = self.lookup(tenant_id).filter(|i| i.sha256 == sha256) {
            return Ok(Some(hit));
        }
        let Some(row) = mds_store::get(store, tenant_id).await? else { return Ok(None) };
        let index = Arc::new(
            MdsIndex::from_json(&row.index_json)
                .map_err(|e| StoreError::Corrupt(format!("tenant {tenant_id}: {e}")))?,
        );
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= TENANT_CACHE_LIMIT && !entries.contains_key(tenant_id) {
                // Any entry will do: a miss only costs a read, never a wrong answer.
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
            entries.insert(tenant_id.to_owned(), Arc::clone(&index));
        }
        Ok(Some(index))
    }

    fn lookup(&self, tenant_id: &str) -> Option<Arc<MdsIndex>> {
        self.entries.lock().ok().and_then(|e| e.get(tenant_id).cloned())
    }
}

/// Where a verdict came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Operator,
    Tenant,
}

/// The metadata in force for one enrollment.
#[derive(Debug, Clone, Default)]
pub struct MdsView {
    pub operator: Option<Arc<MdsIndex>>,
    pub tenant: Option<Arc<MdsIndex>>,
}

impl MdsView {
    fn indexes(&self) -> impl Iterator<Item = (Source, &MdsIndex)> {
        let operator = self.operator.as_deref().map(|i| (Source::Operator, i));
        let tenant = self.tenant.as_deref().map(|i| (Source::Tenant, i));
        operator.into_iter().chain(tenant)
    }

    /// The first compromise or revocation either BLOB reports for any of `models`.
    pub fn compromised(&self, models: &[Model]) -> Option<(Model, Listing, Source)> {
        self.indexes().find_map(|(source, index)| {
            models.iter().find_map(|m| index.compromised(m).map(|l| (m.clone(), l.clone(), source)))
        })
    }

    /// The attestation roots either BLOB lists for `model`: a trust store that admits only
    /// that model's attestations (empty when none).
    pub fn roots_for(&self, model: &Model) -> TrustStore {
        let mut store = TrustStore::new();
        for (_, index) in self.indexes() {
            for der in index.roots(model) {
                // Every root parsed when the BLOB was read; one that no longer does is left out.
                let _ = store.add_der(der);
            }
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::super::mds::tests::index;
    use super::*;
    use tether_attestation::uuid::Uuid;

    #[test]
    fn a_blob_never_goes_backwards_and_a_newer_one_replaces_the_old() {
        let leaky = Model::Aaguid(Uuid::from_u128(7));
        let catalog = MdsCatalog::default();
        let view = |c: &MdsCatalog| MdsView { operator: c.current(), tenant: None };
        assert_eq!(view(&catalog).compromised(std::slice::from_ref(&leaky)), None, "no BLOB, no verdict");
        assert_eq!(catalog.install(index(10, "a", &[(leaky.clone(), "REVOKED")])), Ok(Installed::First));
        let found = view(&catalog).compromised(std::slice::from_ref(&leaky)).map(|(_, l, s)| (l.status, s));
        assert_eq!(found, Some(("REVOKED".to_owned(), Source::Operator)));
        assert_eq!(catalog.install(index(10, "a", &[])), Ok(Installed::Unchanged));
        assert!(catalog.install(index(10, "b", &[])).unwrap_err().contains("reuses no 10"));
        assert!(catalog.install(index(9, "c", &[])).unwrap_err().contains("must not go backwards"));
        assert!(view(&catalog).compromised(std::slice::from_ref(&leaky)).is_some(), "a refused BLOB changes nothing");
        assert_eq!(catalog.install(index(11, "d", &[])), Ok(Installed::Newer { previous: 10 }));
        assert_eq!(view(&catalog).compromised(&[leaky]), None);
    }

    #[test]
    fn either_blob_refuses_and_a_key_id_names_a_u2f_model() {
        let key = Model::KeyId("f4b64a68c334e901b8e23c6e66e6866c31931f5d".into());
        let other = Model::Aaguid(Uuid::from_u128(1));
        let view = MdsView {
            operator: Some(Arc::new(index(1, "a", &[]))),
            tenant: Some(Arc::new(index(2, "b", &[(key.clone(), "ATTESTATION_KEY_COMPROMISE")]))),
        };
        let (model, listing, source) = view.compromised(&[other.clone(), key.clone()]).expect("the tenant's BLOB");
        assert_eq!((model, listing.status.as_str(), source), (key, "ATTESTATION_KEY_COMPROMISE", Source::Tenant));
        assert_eq!(view.compromised(&[other]), None);
    }
}
