//! The JSON shapes of `--output json` and their table forms.
//!
//! Each view mirrors a proto message: the same snake_case field names, with
//! three systematic changes so scripts get usable values:
//! * `*_ms` times become RFC 3339 strings without the `_ms` suffix
//!   (`created_at_ms` -> `created_at`), `null` when the API sends 0;
//! * enums become lowercase strings without the type prefix
//!   (`DECISION_ALLOW` -> `"allow"`, `PRESENCE_OUTCOME_CLONE_SUSPECTED` -> `"clone_suspected"`);
//! * `evidence_json` becomes `evidence` (the parsed object), bytes become base64url.
//!
//! List responses keep the proto's wrapper object (`{"devices": [...],
//! "next_page_token": null}`), so paging state is never lost.
mod decisions;
mod integrations;
mod inventory;
mod mds;
mod policy;
mod reports;
#[cfg(test)]
mod tests;

pub use decisions::*;
pub use integrations::*;
pub use inventory::*;
pub use mds::*;
pub use policy::*;
pub use reports::*;

use tether_proto::v1 as pb;

use crate::output::enum_name;

// ---------------------------------------------------------------- enums

fn name_or_unknown<E>(value: i32, name: impl Fn(E) -> &'static str, prefix: &str) -> String
where
    E: TryFrom<i32>,
{
    match E::try_from(value) {
        Ok(known) => enum_name(name(known), prefix),
        Err(_) => format!("unknown({value})"),
    }
}

pub fn role(value: i32) -> String {
    name_or_unknown(value, |e: pb::Role| e.as_str_name(), "ROLE_")
}

pub fn attestation_state(value: i32) -> String {
    name_or_unknown(value, |e: pb::AttestationState| e.as_str_name(), "ATTESTATION_STATE_")
}

/// `hardware_attested`, `hardware_unverified` or `self_or_none`, as the policy and docs name them.
pub fn attestation_tier(value: i32) -> String {
    name_or_unknown(value, |e: pb::AttestationTier| e.as_str_name(), "ATTESTATION_TIER_")
}

pub fn decision(value: i32) -> String {
    name_or_unknown(value, |e: pb::Decision| e.as_str_name(), "DECISION_")
}

pub fn deny_reason(value: i32) -> String {
    name_or_unknown(value, |e: pb::DenyReason| e.as_str_name(), "DENY_REASON_")
}

pub fn presence_outcome(value: i32) -> String {
    name_or_unknown(value, |e: pb::PresenceOutcome| e.as_str_name(), "PRESENCE_OUTCOME_")
}

pub fn flag_severity(value: i32) -> String {
    name_or_unknown(value, |e: pb::FlagSeverity| e.as_str_name(), "FLAG_SEVERITY_")
}

pub fn flag_status(value: i32) -> String {
    name_or_unknown(value, |e: pb::FlagStatus| e.as_str_name(), "FLAG_STATUS_")
}

/// A response's next_page_token: `None` when there are no more pages.
pub fn page_token(token: String) -> Option<String> {
    if token.is_empty() { None } else { Some(token) }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A hint printed under a table when more pages exist.
fn more_hint(out: &mut String, next_page_token: &Option<String>) {
    if let Some(token) = next_page_token {
        out.push_str(&format!("(more results: --page-token {token}, or --all)\n"));
    }
}
