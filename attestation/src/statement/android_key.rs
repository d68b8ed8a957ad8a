//! The "android-key" format (WebAuthn §8.4): an Android Keystore attestation whose leaf
//! certificate carries the KeyDescription extension describing the attested key.

use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};

use super::{Context, Outcome, StatementError};
use crate::cbor::Map;
use crate::registration::AttestationType;
use crate::x509;

const OID_KEY_DESCRIPTION: &str = "1.3.6.1.4.1.11129.2.1.17";
const TAG_PURPOSE: u32 = 1;
const TAG_ALL_APPLICATIONS: u32 = 600;
const TAG_ORIGIN: u32 = 702;
const KM_PURPOSE_SIGN: i64 = 2;
const KM_ORIGIN_GENERATED: i64 = 0;

pub(super) fn verify(map: &Map<'_>, ctx: &Context<'_>) -> Result<Outcome, StatementError> {
    let alg = super::alg(map)?;
    let sig = super::sig(map)?;
    let x5c = super::required_x5c(map)?;
    let leaf = super::parse_leaf(x5c.first().copied().unwrap_or_default())?;
    x509::verify_statement_signature(leaf.public_key(), alg, false, &ctx.signed_data(), sig)
        .map_err(|e| StatementError::BadSignature(e.to_string()))?;
    if !ctx.credential.public_key.matches_spki(leaf.public_key()) {
        return Err(StatementError::KeyMismatch);
    }
    let ext = x509::find_extension(&leaf, OID_KEY_DESCRIPTION)
        .map_err(StatementError::CertificateRequirement)?
        .ok_or_else(|| {
            StatementError::CertificateRequirement(
                "the leaf certificate lacks the Android KeyDescription extension".to_owned(),
            )
        })?;
    let description = parse_key_description(ext.value).map_err(|e| {
        StatementError::CertificateRequirement(format!("the KeyDescription extension is malformed: {e}"))
    })?;
    if description.challenge != ctx.client_data_hash.as_slice() {
        return Err(StatementError::ChallengeMismatch);
    }
    for (name, list) in [("softwareEnforced", &description.software), ("teeEnforced", &description.tee)] {
        check_authorizations(name, list)?;
    }
    Ok(Outcome { attestation_type: AttestationType::Basic, trust: super::chain_trust(&x5c, ctx) })
}

/// WebAuthn §8.4.1: the key must be bound to this app (no allApplications), generated
/// inside the keystore and usable for signing.
fn check_authorizations(name: &str, list: &AuthorizationList) -> Result<(), StatementError> {
    if list.all_applications {
        return Err(StatementError::Authorization(format!(
            "{name} contains allApplications, so the key is not bound to this relying party"
        )));
    }
    if let Some(origin) = list.origin
        && origin != KM_ORIGIN_GENERATED
    {
        return Err(StatementError::Authorization(format!(
            "{name} says the key origin is {origin}, not generated inside the keystore (0)"
        )));
    }
    if let Some(purposes) = &list.purposes
        && !purposes.contains(&KM_PURPOSE_SIGN)
    {
        return Err(StatementError::Authorization(format!(
            "{name} lists key purposes {purposes:?}, which do not include SIGN (2)"
        )));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct AuthorizationList {
    purposes: Option<Vec<i64>>,
    all_applications: bool,
    origin: Option<i64>,
}

struct KeyDescription<'a> {
    challenge: &'a [u8],
    software: AuthorizationList,
    tee: AuthorizationList,
}

fn parse_any(input: &[u8]) -> Result<(&[u8], Any<'_>), String> {
    Any::from_der(input).map_err(|e| format!("invalid DER ({e})"))
}

/// The elements of a DER SEQUENCE or SET, each checked to be well-formed.
fn elements<'a>(container: &Any<'a>) -> Result<Vec<Any<'a>>, String> {
    let mut rest = container.data;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (after, item) = parse_any(rest)?;
        items.push(item);
        rest = after;
    }
    Ok(items)
}

/// KeyDescription ::= SEQUENCE { attestationVersion, attestationSecurityLevel,
/// keyMintVersion, keyMintSecurityLevel, attestationChallenge OCTET STRING, uniqueId,
/// softwareEnforced AuthorizationList, hardwareEnforced AuthorizationList }
fn parse_key_description(value: &[u8]) -> Result<KeyDescription<'_>, String> {
    let (rest, seq) = parse_any(value)?;
    if !rest.is_empty() || seq.tag() != Tag::Sequence {
        return Err("it is not a single SEQUENCE".to_owned());
    }
    let items = elements(&seq)?;
    let [_, _, _, _, challenge, _, software, tee, ..] = items.as_slice() else {
        return Err(format!("it has {} fields, fewer than the 8 required", items.len()));
    };
    if challenge.tag() != Tag::OctetString {
        return Err("attestationChallenge is not an OCTET STRING".to_owned());
    }
    Ok(KeyDescription {
        challenge: challenge.data,
        software: parse_authorization_list(software)?,
        tee: parse_authorization_list(tee)?,
    })
}

fn parse_authorization_list(list: &Any<'_>) -> Result<AuthorizationList, String> {
    if list.tag() != Tag::Sequence {
        return Err("an AuthorizationList is not a SEQUENCE".to_owned());
    }
    let mut parsed = AuthorizationList::default();
    let mut seen = Vec::new();
    for entry in elements(list)? {
        if entry.class() != Class::ContextSpecific {
            return Err("an AuthorizationList entry is not context-tagged".to_owned());
        }
        let tag = entry.tag().0;
        // A repeated tag would let two readers of the same certificate disagree.
        if seen.contains(&tag) {
            return Err(format!("the AuthorizationList repeats tag [{tag}]"));
        }
        seen.push(tag);
        match tag {
            TAG_PURPOSE => {
                let set = single(entry.data)?;
                if set.tag() != Tag::Set {
                    return Err("purpose is not a SET OF INTEGER".to_owned());
                }
                let purposes = elements(&set)?
                    .iter()
                    .map(|i| i.as_i64().map_err(|_| "a purpose is not an INTEGER".to_owned()))
                    .collect::<Result<Vec<_>, _>>()?;
                parsed.purposes = Some(purposes);
            }
            TAG_ALL_APPLICATIONS => parsed.all_applications = true,
            TAG_ORIGIN => {
                let origin = single(entry.data)?;
                parsed.origin = Some(origin.as_i64().map_err(|_| "origin is not an INTEGER".to_owned())?);
            }
            _ => {}
        }
    }
    Ok(parsed)
}

/// The single element inside an EXPLICIT tag.
fn single(data: &[u8]) -> Result<Any<'_>, String> {
    let (rest, inner) = parse_any(data)?;
    if !rest.is_empty() {
        return Err("an explicitly tagged field holds more than one element".to_owned());
    }
    Ok(inner)
}
