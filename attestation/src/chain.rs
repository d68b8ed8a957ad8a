//! Validation of an attestation certificate chain (`x5c`, leaf first) against a
//! [`TrustStore`] at a caller-given instant.
//!
//! Paths are built by issuer name and confirmed by signature, trying trust anchors before
//! the chain's own certificates. That order matters in practice: Google's hardware
//! attestation roots 1–3 share one subject and key, and devices still ship root 1 (expired)
//! as the last `x5c` element; the intermediate it signed verifies equally under root 2 or 3.

use std::cell::Cell;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;

use crate::trust::TrustStore;
use crate::x509::{self, SignatureError};

/// No real attestation chain is longer; longer input is refused before any work.
pub const MAX_CHAIN_LEN: usize = 8;
/// Bounds the path search: a chain of certificates with identical names could otherwise
/// make the builder try every ordering.
const MAX_SIGNATURE_CHECKS: usize = 64;

/// Extensions this validator understands or that carry no constraint on path validity.
const KNOWN_CRITICAL_EXTENSIONS: &[&str] = &[
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName (critical in TPM AIK certificates with empty subjects)
    "2.5.29.19", // basicConstraints
    "2.5.29.32", // certificatePolicies: attestation does not restrict policies
    "2.5.29.37", // extendedKeyUsage (checked per format where it matters)
];

/// Which certificate a [`ChainError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    /// Position in `x5c` (0 = leaf), or `None` for a trust anchor from the store.
    pub index: Option<usize>,
    pub subject: String,
}

impl std::fmt::Display for CertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "certificate x5c[{i}] \"{}\"", self.subject),
            None => write!(f, "trust anchor \"{}\"", self.subject),
        }
    }
}

/// Why an attestation chain does not lead to a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the attestation statement carries no certificates")]
    Empty,
    #[error("the chain has {0} certificates; at most {MAX_CHAIN_LEN} are accepted")]
    TooLong(usize),
    #[error("the trust store is empty, so no attestation can be trusted; configure trust anchors")]
    NoAnchors,
    #[error("certificate x5c[{index}] cannot be parsed: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("{cert} expired at {not_after}, before the verification time {at}")]
    Expired { cert: CertId, not_after: String, at: String },
    #[error("{cert} is not valid before {not_before}, after the verification time {at}")]
    NotYetValid { cert: CertId, not_before: String, at: String },
    #[error("the signature on {cert} is not valid under the key of {issuer}: {reason}")]
    BadSignature { cert: CertId, issuer: CertId, reason: SignatureError },
    #[error("{cert} was issued by \"{issuer}\", which is neither a trust anchor nor in the chain")]
    NoIssuer { cert: CertId, issuer: String },
    #[error("{cert} is a self-signed root that is not among the trust anchors")]
    UntrustedRoot { cert: CertId },
    #[error("{cert} signs other certificates but is not a CA (basicConstraints cA is not set)")]
    NotCa { cert: CertId },
    #[error("{cert} allows {path_len} intermediate CA(s) below it, but the chain has {below}")]
    PathLenExceeded { cert: CertId, path_len: u32, below: usize },
    #[error("{cert} signs other certificates but its key usage does not include keyCertSign")]
    KeyUsage { cert: CertId },
    #[error("{cert} has the critical extension {oid}, which this verifier does not process")]
    UnknownCriticalExtension { cert: CertId, oid: String },
    #[error("{cert} is malformed: {reason}")]
    BadExtension { cert: CertId, reason: String },
    #[error("no path within {MAX_CHAIN_LEN} certificates reaches a trust anchor")]
    PathTooLong,
    #[error("the chain offers too many candidate paths; gave up after {MAX_SIGNATURE_CHECKS} signature checks")]
    SearchLimit,
}

/// Validates `x5c` (leaf first) against `trust` at `at` and returns the subject of the
/// trust anchor the chain ends at.
pub fn validate_chain<C: AsRef<[u8]>>(x5c: &[C], trust: &TrustStore, at: OffsetDateTime) -> Result<String, ChainError> {
    if x5c.is_empty() {
        return Err(ChainError::Empty);
    }
    if x5c.len() > MAX_CHAIN_LEN {
        return Err(ChainError::TooLong(x5c.len()));
    }
    if trust.is_empty() {
        return Err(ChainError::NoAnchors);
    }
    let chain = x5c
        .iter()
        .enumerate()
        .map(|(index, der)| {
            x509::parse_certificate(der.as_ref()).map_err(|reason| ChainError::Malformed { index, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let anchors = trust
        .entries()
        .iter()
        .filter_map(|a| x509::parse_certificate(&a.der).ok().map(|cert| (a, cert)))
        .collect::<Vec<_>>();
    let builder = PathBuilder { chain: &chain, anchors: &anchors, at, checks_left: Cell::new(MAX_SIGNATURE_CHECKS) };
    let mut path = vec![0];
    let mut best: Option<(usize, ChainError)> = None;
    match builder.extend(&mut path, &mut best) {
        Some(subject) => Ok(subject),
        None => Err(best.map(|(_, e)| e).unwrap_or(ChainError::PathTooLong)),
    }
}

struct PathBuilder<'c> {
    chain: &'c [X509Certificate<'c>],
    anchors: &'c [(&'c crate::trust::Anchor, X509Certificate<'c>)],
    at: OffsetDateTime,
    checks_left: Cell<usize>,
}

/// Keeps the error found deepest in the path: it describes the attempt that got furthest.
fn record(best: &mut Option<(usize, ChainError)>, depth: usize, err: ChainError) {
    if best.as_ref().is_none_or(|(d, _)| depth > *d) {
        *best = Some((depth, err));
    }
}

impl<'c> PathBuilder<'c> {
    /// Tries to complete `path` (whose last element is the certificate to find an issuer
    /// for) up to a trust anchor. Returns the anchor subject on success.
    fn extend(&self, path: &mut Vec<usize>, best: &mut Option<(usize, ChainError)>) -> Option<String> {
        let depth = path.len() - 1;
        let index = *path.last()?;
        let cert = self.chain.get(index)?;
        let id = chain_id(index, cert);
        if let Err(e) = self.check_validity(cert, &id).and_then(|()| check_critical(cert, &id)) {
            record(best, depth, e);
            return None;
        }
        if let Some((anchor, _)) = self.anchors.iter().find(|(a, _)| a.der == cert.as_raw()) {
            return Some(anchor.summary.subject.clone());
        }
        // A self-signed certificate with a trust anchor's name and key is that anchor re-issued
        // (new validity, new signature): a trust anchor is a name and a key (RFC 5280 6.1.1 d),
        // not certificate bytes. Authenticators with one self-signed batch certificate, such as
        // Chromium's virtual authenticator, re-issue it with every registration. Only the same
        // key qualifies, so this never lets an anchor's key vouch for another key.
        if let Some((anchor, _)) = self.anchors.iter().find(|(_, a)| {
            x509::names_match(a.subject(), cert.subject())
                && x509::names_match(cert.subject(), cert.issuer())
                && a.public_key().raw == cert.public_key().raw
                && x509::verify_certificate_signature(cert, cert.public_key()).is_ok()
        }) {
            return Some(anchor.summary.subject.clone());
        }
        if path.len() >= MAX_CHAIN_LEN {
            record(best, depth, ChainError::PathTooLong);
            return None;
        }
        let below = path.len() - 1;
        let mut candidates = 0;
        for (anchor, issuer) in self.anchors {
            if !x509::names_match(issuer.subject(), cert.issuer()) {
                continue;
            }
            candidates += 1;
            let issuer_id = CertId { index: None, subject: anchor.summary.subject.clone() };
            let checked = self
                .check_link(cert, &id, issuer, &issuer_id, below)
                .and_then(|()| self.check_validity(issuer, &issuer_id));
            match checked {
                Ok(()) => return Some(anchor.summary.subject.clone()),
                Err(e) => record(best, depth + 1, e),
            }
        }
        for (next, issuer) in self.chain.iter().enumerate() {
            if path.contains(&next) || !x509::names_match(issuer.subject(), cert.issuer()) {
                continue;
            }
            candidates += 1;
            let issuer_id = chain_id(next, issuer);
            if let Err(e) = self.check_link(cert, &id, issuer, &issuer_id, below) {
                record(best, depth + 1, e);
                continue;
            }
            path.push(next);
            if let Some(subject) = self.extend(path, best) {
                return Some(subject);
            }
            path.pop();
        }
        if candidates == 0 {
            let self_signed = x509::names_match(cert.subject(), cert.issuer())
                && x509::verify_certificate_signature(cert, cert.public_key()).is_ok();
            let err = if self_signed {
                ChainError::UntrustedRoot { cert: id }
            } else {
                ChainError::NoIssuer { cert: id, issuer: x509::name_string(cert.issuer()) }
            };
            record(best, depth, err);
        }
        None
    }

    /// Checks that `issuer` signed `cert` and may issue certificates with `below`
    /// intermediate CAs between it and the leaf.
    fn check_link(
        &self,
        cert: &X509Certificate<'_>,
        id: &CertId,
        issuer: &X509Certificate<'_>,
        issuer_id: &CertId,
        below: usize,
    ) -> Result<(), ChainError> {
        let left = self.checks_left.get();
        if left == 0 {
            return Err(ChainError::SearchLimit);
        }
        self.checks_left.set(left - 1);
        x509::verify_certificate_signature(cert, issuer.public_key()).map_err(|reason| ChainError::BadSignature {
            cert: id.clone(),
            issuer: issuer_id.clone(),
            reason,
        })?;
        let bad = |reason: String| ChainError::BadExtension { cert: issuer_id.clone(), reason };
        let constraints =
            issuer.basic_constraints().map_err(|e| bad(format!("basicConstraints cannot be parsed ({e})")))?;
        let Some(constraints) = constraints.filter(|c| c.value.ca) else {
            return Err(ChainError::NotCa { cert: issuer_id.clone() });
        };
        if let Some(path_len) = constraints.value.path_len_constraint
            && below > path_len as usize
        {
            return Err(ChainError::PathLenExceeded { cert: issuer_id.clone(), path_len, below });
        }
        let key_usage = issuer.key_usage().map_err(|e| bad(format!("keyUsage cannot be parsed ({e})")))?;
        if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(ChainError::KeyUsage { cert: issuer_id.clone() });
        }
        Ok(())
    }

    fn check_validity(&self, cert: &X509Certificate<'_>, id: &CertId) -> Result<(), ChainError> {
        let not_before = x509::not_before(cert);
        let not_after = x509::not_after(cert);
        if self.at < not_before {
            return Err(ChainError::NotYetValid {
                cert: id.clone(),
                not_before: rfc3339(not_before),
                at: rfc3339(self.at),
            });
        }
        if self.at > not_after {
            return Err(ChainError::Expired { cert: id.clone(), not_after: rfc3339(not_after), at: rfc3339(self.at) });
        }
        Ok(())
    }
}

fn check_critical(cert: &X509Certificate<'_>, id: &CertId) -> Result<(), ChainError> {
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if ext.critical && !KNOWN_CRITICAL_EXTENSIONS.contains(&oid.as_str()) {
            return Err(ChainError::UnknownCriticalExtension { cert: id.clone(), oid });
        }
    }
    Ok(())
}

fn chain_id(index: usize, cert: &X509Certificate<'_>) -> CertId {
    CertId { index: Some(index), subject: x509::name_string(cert.subject()) }
}

/// Whole seconds are precise enough for validity messages and easier to read.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
