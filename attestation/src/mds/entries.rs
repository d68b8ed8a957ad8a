//! Lenient reading of MDS3 entries. Real BLOBs carry string booleans, certificates with
//! impossible dates, non-positive serials and status reports out of date order; one such entry
//! must never cost the whole BLOB, so each problem is recorded and the rest is read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use time::Date;
use time::macros::format_description;

use crate::x509;

/// No real entry lists more roots; beyond this the entry is read without its roots.
const MAX_ROOTS_PER_ENTRY: usize = 32;
/// No real entry has more reports; beyond this the entry is skipped.
const MAX_STATUS_REPORTS: usize = 256;
/// U2F entries list a handful of batch key identifiers.
const MAX_KEY_IDS: usize = 1024;

/// Statuses that mean an authenticator model's keys can no longer be trusted.
pub const COMPROMISE_STATUSES: [&str; 4] =
    ["ATTESTATION_KEY_COMPROMISE", "USER_KEY_REMOTE_COMPROMISE", "USER_KEY_PHYSICAL_COMPROMISE", "REVOKED"];
pub const UV_BYPASS_STATUS: &str = "USER_VERIFICATION_BYPASS";

/// A status string as MDS3 writes it, e.g. "FIDO_CERTIFIED_L1" or "REVOKED".
pub type AuthenticatorStatus = String;

/// One `statusReports` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub status: AuthenticatorStatus,
    /// `effectiveDate` as written.
    pub effective_date: Option<String>,
    /// The date parsed; `None` when absent or not a real date.
    pub date: Option<Date>,
    /// The firmware version (`authenticatorVersion`) the report is about, when given.
    pub authenticator_version: Option<u64>,
}

impl StatusReport {
    pub fn is_compromise(&self) -> bool {
        COMPROMISE_STATUSES.contains(&self.status.as_str())
    }

    pub fn is_uv_bypass(&self) -> bool {
        self.status == UV_BYPASS_STATUS
    }
}

/// One authenticator model of the BLOB.
#[derive(Debug, Clone)]
pub struct MdsEntry {
    /// Position in the BLOB's `entries`.
    pub index: usize,
    pub aaguid: Option<uuid::Uuid>,
    /// UAF authenticators are named by AAID ("FFFF#FC01").
    pub aaid: Option<String>,
    /// U2F batch attestation key identifiers (lowercase hex SHA-1 of the public key).
    pub key_ids: Vec<String>,
    pub description: Option<String>,
    /// Firmware version of the metadata statement, when given.
    pub authenticator_version: Option<u64>,
    /// The readable `attestationRootCertificates`, DER.
    pub attestation_roots: Vec<Vec<u8>>,
    pub status_reports: Vec<StatusReport>,
}

impl MdsEntry {
    /// A readable name for messages: the AAGUID, else the AAID, else the first key id.
    pub fn id(&self) -> String {
        entry_id(self.aaguid.as_ref(), self.aaid.as_deref(), &self.key_ids)
    }

    /// The current status: the report with the latest `effectiveDate` (the array is not in
    /// date order in real BLOBs). Undated reports count as older than dated ones; among equal
    /// dates the later array element wins.
    pub fn current_status(&self) -> Option<&StatusReport> {
        self.status_reports.iter().enumerate().max_by_key(|(i, r)| (r.date, *i)).map(|(_, r)| r)
    }

    /// The latest compromise or revocation report. Any such report counts, whatever came
    /// after it: a leaked key does not become secret again with a later certification.
    pub fn compromise(&self) -> Option<&StatusReport> {
        self.status_reports.iter().filter(|r| r.is_compromise()).max_by_key(|r| r.date)
    }

    /// The latest user-verification-bypass report.
    pub fn uv_bypass(&self) -> Option<&StatusReport> {
        self.status_reports.iter().filter(|r| r.is_uv_bypass()).max_by_key(|r| r.date)
    }
}

/// An entry, or a part of one, that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedItem {
    pub index: usize,
    /// The entry's identifier when it could be read.
    pub id: Option<String>,
    /// "entry" when the whole entry was dropped; otherwise the part left out.
    pub part: String,
    pub reason: String,
}

fn entry_id(aaguid: Option<&uuid::Uuid>, aaid: Option<&str>, key_ids: &[String]) -> String {
    match (aaguid, aaid, key_ids.first()) {
        (Some(id), _, _) => id.to_string(),
        (None, Some(aaid), _) => aaid.to_owned(),
        (None, None, Some(key)) => key.clone(),
        _ => "(no identifier)".to_owned(),
    }
}

pub(super) fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).ok()
}

pub(super) fn read_entries(list: &[Value]) -> (Vec<MdsEntry>, Vec<SkippedItem>) {
    let mut entries = Vec::with_capacity(list.len());
    let mut skipped = Vec::new();
    for (index, value) in list.iter().enumerate() {
        match read_entry(index, value, &mut skipped) {
            Ok(entry) => entries.push(entry),
            Err((id, reason)) => skipped.push(SkippedItem { index, id, part: "entry".to_owned(), reason }),
        }
    }
    (entries, skipped)
}

type EntryError = (Option<String>, String);

fn read_entry(index: usize, value: &Value, skipped: &mut Vec<SkippedItem>) -> Result<MdsEntry, EntryError> {
    let object = value.as_object().ok_or((None, "the entry is not a JSON object".to_owned()))?;
    let aaguid = match object.get("aaguid") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            uuid::Uuid::parse_str(text).map_err(|e| (Some(text.clone()), format!("its aaguid is not a UUID ({e})")))?,
        ),
        Some(_) => return Err((None, "its aaguid is not a string".to_owned())),
    };
    let aaid = object.get("aaid").and_then(Value::as_str).map(str::to_owned);
    let key_ids = read_key_ids(object.get("attestationCertificateKeyIdentifiers"))
        .map_err(|reason| (aaguid.map(|u| u.to_string()).or(aaid.clone()), reason))?;
    if aaguid.is_none() && aaid.is_none() && key_ids.is_empty() {
        return Err((None, "it names no aaguid, aaid or attestationCertificateKeyIdentifiers".to_owned()));
    }
    let id = entry_id(aaguid.as_ref(), aaid.as_deref(), &key_ids);
    let status_reports = read_status_reports(object.get("statusReports")).map_err(|r| (Some(id.clone()), r))?;
    for report in &status_reports {
        if report.date.is_none() {
            let written = report.effective_date.as_deref().unwrap_or("(none)");
            skipped.push(SkippedItem {
                index,
                id: Some(id.clone()),
                part: "status report date".to_owned(),
                reason: format!(
                    "the {} report's effectiveDate {written} is not a date; it counts as the oldest report",
                    report.status
                ),
            });
        }
    }
    let statement = object.get("metadataStatement");
    let description = statement.and_then(|s| s.get("description")).and_then(Value::as_str).map(str::to_owned);
    let authenticator_version = statement.and_then(|s| s.get("authenticatorVersion")).and_then(Value::as_u64);
    let roots = statement.and_then(|s| s.get("attestationRootCertificates"));
    let attestation_roots = read_roots(index, &id, roots, skipped);
    Ok(MdsEntry { index, aaguid, aaid, key_ids, description, authenticator_version, attestation_roots, status_reports })
}

fn read_key_ids(value: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = value.as_array().ok_or("its attestationCertificateKeyIdentifiers is not a list")?;
    if list.len() > MAX_KEY_IDS {
        return Err(format!("it lists {} key identifiers, more than {MAX_KEY_IDS}", list.len()));
    }
    list.iter()
        .map(|item| {
            let text = item.as_str().ok_or("a key identifier is not a string")?;
            if text.is_empty() || hex::decode(text).is_err() {
                return Err(format!("the key identifier \"{text}\" is not hex"));
            }
            Ok(text.to_ascii_lowercase())
        })
        .collect()
}

fn read_status_reports(value: Option<&Value>) -> Result<Vec<StatusReport>, String> {
    let list = value.and_then(Value::as_array).ok_or("it has no statusReports list")?;
    if list.is_empty() {
        return Err("its statusReports list is empty, so its status is unknown".to_owned());
    }
    if list.len() > MAX_STATUS_REPORTS {
        return Err(format!("it has {} status reports, more than {MAX_STATUS_REPORTS}", list.len()));
    }
    list.iter()
        .map(|report| {
            let status = report.get("status").and_then(Value::as_str).ok_or("a status report has no status string")?;
            let effective_date = report.get("effectiveDate").and_then(Value::as_str).map(str::to_owned);
            Ok(StatusReport {
                status: status.to_owned(),
                date: effective_date.as_deref().and_then(parse_date),
                effective_date,
                authenticator_version: report.get("authenticatorVersion").and_then(Value::as_u64),
            })
        })
        .collect()
}

fn read_roots(index: usize, id: &str, value: Option<&Value>, skipped: &mut Vec<SkippedItem>) -> Vec<Vec<u8>> {
    let mut note = |reason: String| {
        skipped.push(SkippedItem {
            index,
            id: Some(id.to_owned()),
            part: "attestation root certificate".to_owned(),
            reason,
        })
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(list) = value.as_array() else {
        note("attestationRootCertificates is not a list".to_owned());
        return Vec::new();
    };
    if list.len() > MAX_ROOTS_PER_ENTRY {
        note(format!("it lists {} roots, more than {MAX_ROOTS_PER_ENTRY}; none is used", list.len()));
        return Vec::new();
    }
    let mut roots = Vec::new();
    for (position, item) in list.iter().enumerate() {
        let der = match item.as_str().map(|text| STANDARD.decode(text)) {
            Some(Ok(der)) => der,
            Some(Err(e)) => {
                note(format!("root {position} is not base64 ({e})"));
                continue;
            }
            None => {
                note(format!("root {position} is not a string"));
                continue;
            }
        };
        match x509::parse_certificate(&der) {
            Ok(_) => roots.push(der),
            Err(e) => note(format!("root {position} cannot be parsed ({e}); the entry is kept without it")),
        }
    }
    roots
}
