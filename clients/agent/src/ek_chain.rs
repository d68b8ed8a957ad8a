//! The EK certificate chain the agent sends at TPM enrollment: the certificates a TPM carries
//! in its NV chain indices (TCG EK Credential Profile: 0x01C00100–0x01C001FF, each holding one
//! or more concatenated DER certificates, as Intel's on-die CA chain does), the operator's
//! `--ek-intermediates`, and issuers fetched by AIA (`aia.rs`), put in issuer order after the
//! EK certificate.
//!
//! Everything here is bounded, because NV contents are whatever was written there: an index
//! that does not split into certificates is skipped whole, and the chain sent never exceeds
//! what tetherd accepts (so a crowded NV cannot make enrollment fail on size).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// At most this many certificates are taken from the NV chain indices together.
pub const MAX_NV_CERTIFICATES: usize = 16;
/// A certificate larger than this (DER) is skipped: real EK CA certificates are ~1 KiB.
pub const MAX_CERTIFICATE_BYTES: usize = 8 * 1024;
/// An NV index larger than this is not read at all (TPMs keep indices to a few KiB, and NV
/// read offsets are 16-bit).
pub const MAX_NV_INDEX_BYTES: usize = 16 * 1024;
/// tetherd verifies at most this many certificates (EK certificate included) per chain.
pub const MAX_SENT_CERTIFICATES: usize = tether_attestation::chain::MAX_CHAIN_LEN;
/// tetherd refuses an `ek_certificate` field larger than this (PEM, EK certificate included).
pub const MAX_SENT_BYTES: usize = 32 * 1024;
/// id-ad-caIssuers.
const OID_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";

/// A certificate the agent has at hand, with where it came from (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub der: Vec<u8>,
    pub source: String,
}

/// Splits the contents of one NV chain index into DER certificates. Trailing 0x00/0xFF
/// padding is allowed; anything else that is not a whole, parseable certificate makes the
/// index malformed (`Err` with the reason), so one bad byte never yields half a chain.
/// Certificates over [`MAX_CERTIFICATE_BYTES`] or past `room` are left out, each with a
/// reason in the returned notes.
pub fn split_der_certificates(bytes: &[u8], room: usize) -> Result<(Vec<Vec<u8>>, Vec<String>), String> {
    let mut certificates = Vec::new();
    let mut notes = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() && !rest.iter().all(|&b| b == 0 || b == 0xff) {
        let offset = bytes.len() - rest.len();
        let len = tether_attestation::der_sequence_length(rest)
            .ok_or_else(|| format!("no DER certificate at byte {offset}"))?;
        let (der, after) = rest
            .split_at_checked(len)
            .ok_or_else(|| format!("the certificate at byte {offset} is truncated ({len} bytes announced)"))?;
        rest = after;
        if der.len() > MAX_CERTIFICATE_BYTES {
            notes.push(format!(
                "skipped the {}-byte certificate at byte {offset}: over the {MAX_CERTIFICATE_BYTES}-byte limit",
                der.len()
            ));
            continue;
        }
        match X509Certificate::from_der(der) {
            Ok(([], _)) => {}
            Ok(_) | Err(_) => return Err(format!("the DER at byte {offset} is not an X.509 certificate")),
        }
        if certificates.len() >= room {
            notes.push(format!("skipped the certificate at byte {offset}: at most {MAX_NV_CERTIFICATES} are read"));
            continue;
        }
        certificates.push(der.to_vec());
    }
    Ok((certificates, notes))
}

/// The first certificate of an NV EK certificate index, without its padding.
pub fn first_certificate(nv: &[u8]) -> Option<&[u8]> {
    nv.get(..tether_attestation::der_sequence_length(nv)?)
}

/// How the walk from the EK certificate up through the candidates ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkEnd {
    /// The last certificate is self-signed: nothing more to find.
    SelfSigned,
    /// No candidate issued the last certificate; its caIssuers URLs (possibly none).
    IssuerMissing { subject: String, ca_issuers: Vec<String> },
    /// A certificate on the way cannot be parsed, or the path reached the length limit.
    Stopped(String),
}

/// The path from `ek` through `candidates` by issuer name: indices into `candidates` in
/// issuer order, and how the walk ended. Names only locate the next certificate; tetherd
/// checks the signatures.
pub fn walk(ek: &[u8], candidates: &[Candidate]) -> (Vec<usize>, WalkEnd) {
    let parsed: Vec<Option<X509Certificate<'_>>> = candidates.iter().map(|c| parse(&c.der)).collect();
    let Some(mut current) = parse(ek) else {
        return (Vec::new(), WalkEnd::Stopped("the EK certificate cannot be parsed".into()));
    };
    let mut path = Vec::new();
    while path.len() < MAX_SENT_CERTIFICATES {
        if same_name(current.subject(), current.issuer()) {
            return (path, WalkEnd::SelfSigned);
        }
        let next = parsed.iter().enumerate().find_map(|(i, c)| {
            let c = c.as_ref()?;
            (!path.contains(&i) && same_name(c.subject(), current.issuer())).then(|| (i, c.clone()))
        });
        match next {
            Some((i, cert)) => {
                path.push(i);
                current = cert;
            }
            None => {
                return (
                    path,
                    WalkEnd::IssuerMissing { subject: current.subject().to_string(), ca_issuers: ca_issuers(&current) },
                );
            }
        }
    }
    (path, WalkEnd::Stopped(format!("the chain reached {MAX_SENT_CERTIFICATES} certificates")))
}

fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

/// Byte-identical names, or the same text ignoring case (issuers re-encode names sometimes).
fn same_name(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    a.as_raw() == b.as_raw() || a.to_string().to_lowercase() == b.to_string().to_lowercase()
}

/// The http:// and https:// caIssuers URLs of a certificate's authorityInfoAccess.
fn ca_issuers(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for desc in &aia.accessdescs {
                if desc.access_method.to_id_string() == OID_CA_ISSUERS
                    && let GeneralName::URI(uri) = desc.access_location
                    && (uri.starts_with("http://") || uri.starts_with("https://"))
                {
                    urls.push(uri.to_string());
                }
            }
        }
    }
    urls
}

/// Whether `der` names `subject_of`'s issuer as its subject (a fetched certificate must).
pub fn issues(der: &[u8], subject_of: &[u8]) -> bool {
    match (parse(der), parse(subject_of)) {
        (Some(issuer), Some(cert)) => same_name(issuer.subject(), cert.issuer()),
        _ => false,
    }
}

/// The subject of a certificate, for the log.
pub fn subject(der: &[u8]) -> String {
    parse(der).map(|c| c.subject().to_string()).unwrap_or_else(|| "(unparsable certificate)".into())
}

/// The intermediates to send after `ek`: the issuer path first, then the other candidates (a
/// name the walk could not match may still let tetherd build a path), within tetherd's limits.
/// Returns the DER certificates and what was left out, and why.
pub fn select(ek: &[u8], candidates: &[Candidate]) -> (Vec<Vec<u8>>, Vec<String>) {
    let (path, _) = walk(ek, candidates);
    let order = path.iter().copied().chain((0..candidates.len()).filter(|i| !path.contains(i)));
    let mut bytes = pem_len(ek.len());
    let mut chosen: Vec<Vec<u8>> = Vec::new();
    let mut left_out = Vec::new();
    for i in order {
        let Some(c) = candidates.get(i) else { continue };
        if chosen.contains(&c.der) || c.der == ek {
            continue;
        }
        let reason = if chosen.len() + 1 >= MAX_SENT_CERTIFICATES {
            format!("tetherd takes at most {MAX_SENT_CERTIFICATES} certificates per EK chain")
        } else if bytes + pem_len(c.der.len()) > MAX_SENT_BYTES {
            format!("tetherd takes at most {MAX_SENT_BYTES} bytes of EK chain")
        } else {
            bytes += pem_len(c.der.len());
            chosen.push(c.der.clone());
            continue;
        };
        left_out.push(format!("{} ({}): not sent, {reason}", subject(&c.der), c.source));
    }
    (chosen, left_out)
}

/// The size of one PEM CERTIFICATE block for `der_len` DER bytes.
fn pem_len(der_len: usize) -> usize {
    let b64 = der_len.div_ceil(3) * 4;
    "-----BEGIN CERTIFICATE-----\n".len() + b64 + b64.div_ceil(64) + "-----END CERTIFICATE-----\n".len()
}

/// One PEM CERTIFICATE block.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The CERTIFICATE blocks of a PEM text (the operator's `--ek-intermediates`).
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("malformed PEM ({e})"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "ek_chain_tests.rs"]
pub(crate) mod tests;
