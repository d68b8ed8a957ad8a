//! The set of root certificates an attestation chain may end at.

use ring::digest;
use time::OffsetDateTime;

use crate::x509;

/// Why certificates could not be added to a trust store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the PEM input holds no CERTIFICATE block")]
    NoCertificates,
    #[error("PEM block {index} is malformed: {reason}")]
    Pem { index: usize, reason: String },
    #[error("certificate {index} in the input cannot be used as a trust anchor: {reason}")]
    Certificate { index: usize, reason: String },
}

/// What an operator needs to recognise a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSummary {
    /// The subject, e.g. "CN=Yubico U2F Root CA Serial 457200631".
    pub subject: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256_fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub der: Vec<u8>,
    pub summary: AnchorSummary,
}

/// Trust anchors (roots) for attestation chains. Anchors are kept as DER and parsed
/// again on use so that the store owns no borrowed data.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<Anchor>,
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every CERTIFICATE block of a PEM bundle; other block types (keys, CRLs) are
    /// ignored. Returns how many certificates were read (duplicates are stored once).
    /// Nothing is added unless every certificate block is valid.
    pub fn add_pem(&mut self, pem: &str) -> Result<usize, TrustError> {
        let mut ders = Vec::new();
        for (index, block) in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
            let block = block.map_err(|e| TrustError::Pem { index, reason: e.to_string() })?;
            if block.label == "CERTIFICATE" {
                ders.push(block.contents);
            }
        }
        if ders.is_empty() {
            return Err(TrustError::NoCertificates);
        }
        let anchors = ders
            .iter()
            .enumerate()
            .map(|(index, der)| summarise(der).map_err(|reason| TrustError::Certificate { index, reason }))
            .collect::<Result<Vec<_>, _>>()?;
        let count = anchors.len();
        for anchor in anchors {
            self.insert(anchor);
        }
        Ok(count)
    }

    /// Adds one DER certificate.
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), TrustError> {
        let anchor = summarise(der).map_err(|reason| TrustError::Certificate { index: 0, reason })?;
        self.insert(anchor);
        Ok(())
    }

    fn insert(&mut self, anchor: Anchor) {
        if !self.anchors.iter().any(|a| a.der == anchor.der) {
            self.anchors.push(anchor);
        }
    }

    pub fn anchors(&self) -> impl Iterator<Item = &AnchorSummary> {
        self.anchors.iter().map(|a| &a.summary)
    }

    /// Each anchor's summary with its DER encoding, e.g. to persist the store.
    pub fn anchors_with_der(&self) -> impl Iterator<Item = (&AnchorSummary, &[u8])> {
        self.anchors.iter().map(|a| (&a.summary, a.der.as_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub(crate) fn entries(&self) -> &[Anchor] {
        &self.anchors
    }
}

fn summarise(der: &[u8]) -> Result<Anchor, String> {
    let cert = x509::parse_certificate(der)?;
    let fingerprint = digest::digest(&digest::SHA256, der);
    Ok(Anchor {
        der: der.to_vec(),
        summary: AnchorSummary {
            subject: x509::name_string(cert.subject()),
            sha256_fingerprint: hex::encode(fingerprint.as_ref()),
            not_before: x509::not_before(&cert),
            not_after: x509::not_after(&cert),
        },
    })
}
