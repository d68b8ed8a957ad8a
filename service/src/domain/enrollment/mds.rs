//! FIDO metadata as enrollment needs it: which authenticator models a verified MDS3 BLOB marks
//! compromised, revoked or bypassable, and which attestation roots it lists for which model.
//! Models are named by AAGUID (FIDO2) or by attestation key identifier (U2F batch keys). The
//! index is kept in the database (`mds_blobs.index_json`) so every replica enforces the same one.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tether_attestation::mds::{MdsBlob, MdsEntry, StatusReport};
use tether_attestation::uuid::Uuid;
use time::{Date, OffsetDateTime};

/// A model's status as the BLOB reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub status: String,
    pub effective_date: Option<String>,
    pub description: Option<String>,
}

/// An authenticator model as the metadata names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Model {
    Aaguid(Uuid),
    /// Lowercase hex SHA-1 of an attestation certificate's public key.
    KeyId(String),
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Aaguid(aaguid) => write!(f, "AAGUID {aaguid}"),
            Model::KeyId(key_id) => write!(f, "attestation key {key_id}"),
        }
    }
}

fn models(entry: &MdsEntry) -> Vec<Model> {
    let mut models: Vec<Model> = entry.aaguid.map(Model::Aaguid).into_iter().collect();
    models.extend(entry.key_ids.iter().map(|k| Model::KeyId(k.to_ascii_lowercase())));
    models
}

/// What enrollment needs from one verified BLOB.
#[derive(Debug, Clone)]
pub struct MdsIndex {
    pub no: u64,
    pub next_update: String,
    next_update_date: Option<Date>,
    pub sha256: String,
    pub entries: usize,
    compromised: HashMap<Model, Listing>,
    uv_bypass: HashMap<Model, Listing>,
    /// Each model's attestation roots (DER): anchors for that model only.
    roots: HashMap<Model, Vec<Vec<u8>>>,
}

impl MdsIndex {
    pub fn from_blob(blob: &MdsBlob) -> MdsIndex {
        let listings = |found: &mut dyn Iterator<Item = (&MdsEntry, &StatusReport)>| {
            let mut map = HashMap::new();
            for (entry, report) in found {
                let listing = Listing {
                    status: report.status.clone(),
                    effective_date: report.effective_date.clone(),
                    description: entry.description.clone(),
                };
                for model in models(entry) {
                    map.insert(model, listing.clone());
                }
            }
            map
        };
        let mut roots = HashMap::new();
        // A compromised model's roots must not vouch for anything, even by another name.
        for entry in blob.entries.iter().filter(|e| e.compromise().is_none() && !e.attestation_roots.is_empty()) {
            for model in models(entry) {
                roots.insert(model, entry.attestation_roots.clone());
            }
        }
        MdsIndex {
            no: blob.no,
            next_update: blob.next_update.clone(),
            next_update_date: blob.next_update_date,
            sha256: blob.sha256.clone(),
            entries: blob.entries.len(),
            compromised: listings(&mut blob.compromised()),
            uv_bypass: listings(&mut blob.uv_bypass()),
            roots,
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

    /// Models marked compromised or revoked.
    pub fn compromised_models(&self) -> &HashMap<Model, Listing> {
        &self.compromised
    }

    /// Models whose user verification can be bypassed.
    pub fn uv_bypass_models(&self) -> &HashMap<Model, Listing> {
        &self.uv_bypass
    }

    pub fn compromised(&self, model: &Model) -> Option<&Listing> {
        self.compromised.get(model)
    }

    /// The attestation roots (DER) listed for `model`; empty when none.
    pub fn roots(&self, model: &Model) -> &[Vec<u8>] {
        self.roots.get(model).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether `nextUpdate` has passed at `now`: the BLOB is stale and should be refreshed.
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.next_update_date.is_none_or(|d| d < now.date())
    }

    /// The form kept in `mds_blobs.index_json`.
    pub fn to_json(&self) -> String {
        let listings = |map: &HashMap<Model, Listing>| -> Vec<StoredListing> {
            map.iter().map(|(model, listing)| StoredListing { model: model.into(), listing: listing.clone() }).collect()
        };
        let stored = StoredIndex {
            no: self.no,
            next_update: self.next_update.clone(),
            sha256: self.sha256.clone(),
            entries: self.entries,
            compromised: listings(&self.compromised),
            uv_bypass: listings(&self.uv_bypass),
            roots: self
                .roots
                .iter()
                .map(|(model, ders)| StoredRoots {
                    model: model.into(),
                    der_base64: ders.iter().map(|der| STANDARD.encode(der)).collect(),
                })
                .collect(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads what [`MdsIndex::to_json`] wrote; the error names what is wrong.
    pub fn from_json(json: &str) -> Result<MdsIndex, String> {
        let stored: StoredIndex = serde_json::from_str(json).map_err(|e| format!("stored MDS index: {e}"))?;
        let listings = |list: Vec<StoredListing>| -> Result<HashMap<Model, Listing>, String> {
            list.into_iter().map(|s| Ok((Model::try_from(&s.model)?, s.listing))).collect()
        };
        let mut roots = HashMap::new();
        for entry in stored.roots {
            let ders = entry
                .der_base64
                .iter()
                .map(|b| STANDARD.decode(b).map_err(|e| format!("stored MDS root: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            roots.insert(Model::try_from(&entry.model)?, ders);
        }
        let next_update_date =
            Date::parse(&stored.next_update, time::macros::format_description!("[year]-[month]-[day]")).ok();
        Ok(MdsIndex {
            no: stored.no,
            next_update: stored.next_update,
            next_update_date,
            sha256: stored.sha256,
            entries: stored.entries,
            compromised: listings(stored.compromised)?,
            uv_bypass: listings(stored.uv_bypass)?,
            roots,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredIndex {
    no: u64,
    next_update: String,
    sha256: String,
    entries: usize,
    compromised: Vec<StoredListing>,
    uv_bypass: Vec<StoredListing>,
    roots: Vec<StoredRoots>,
}

#[derive(Serialize, Deserialize)]
struct StoredListing {
    model: StoredModel,
    listing: Listing,
}

#[derive(Serialize, Deserialize)]
struct StoredRoots {
    model: StoredModel,
    der_base64: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aaguid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

impl From<&Model> for StoredModel {
    fn from(model: &Model) -> StoredModel {
        match model {
            Model::Aaguid(a) => StoredModel { aaguid: Some(a.to_string()), key_id: None },
            Model::KeyId(k) => StoredModel { aaguid: None, key_id: Some(k.clone()) },
        }
    }
}

impl TryFrom<&StoredModel> for Model {
    type Error = String;
    fn try_from(stored: &StoredModel) -> Result<Model, String> {
        match (&stored.aaguid, &stored.key_id) {
            (Some(a), None) => a.parse().map(Model::Aaguid).map_err(|e| format!("stored MDS AAGUID {a:?}: {e}")),
            (None, Some(k)) => Ok(Model::KeyId(k.clone())),
            _ => Err("a stored MDS model names neither or both of an AAGUID and a key id".to_owned()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn index(no: u64, sha256: &str, compromised: &[(Model, &str)]) -> MdsIndex {
        MdsIndex {
            no,
            next_update: "2027-01-01".into(),
            next_update_date: Date::from_calendar_date(2027, time::Month::January, 1).ok(),
            sha256: sha256.into(),
            entries: compromised.len(),
            compromised: compromised
                .iter()
                .map(|(model, status)| {
                    (model.clone(), Listing { status: (*status).into(), effective_date: None, description: None })
                })
                .collect(),
            uv_bypass: HashMap::new(),
            roots: HashMap::new(),
        }
    }

    #[test]
    fn staleness_follows_next_update() {
        let index = index(1, "a", &[]);
        assert!(!index.is_stale(time::macros::datetime!(2027-01-01 12:00 UTC)));
        assert!(index.is_stale(time::macros::datetime!(2027-01-02 00:00 UTC)));
    }

    #[test]
    fn the_stored_form_reads_back_the_same_index() {
        let mut original = index(
            7,
            "abc",
            &[
                (Model::Aaguid(Uuid::from_u128(9)), "REVOKED"),
                (Model::KeyId("f4b6".into()), "ATTESTATION_KEY_COMPROMISE"),
            ],
        );
        original.roots.insert(Model::KeyId("0a0b".into()), vec![vec![1, 2, 3]]);
        let read = MdsIndex::from_json(&original.to_json()).expect("reads back");
        assert_eq!(read.no, 7);
        assert_eq!(read.compromised, original.compromised);
        assert_eq!(read.roots(&Model::KeyId("0a0b".into())), &[vec![1u8, 2, 3]]);
        assert_eq!(read.next_update_date(), original.next_update_date());
        assert!(MdsIndex::from_json("{\"no\": 1}").unwrap_err().contains("stored MDS index"));
    }
}
