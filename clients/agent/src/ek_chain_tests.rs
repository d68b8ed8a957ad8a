//! Splitting NV contents into certificates, walking issuers, and the bounds of what is sent.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair, PublicKeyData};

/// A CA named `name`, self-signed when `issuer` is None; (DER, issuer for the next level).
pub(crate) fn ca(
    name: &str,
    issuer: Option<&Issuer<'static, KeyPair>>,
    aia: Option<&str>,
) -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    if let Some(url) = aia {
        params.custom_extensions.push(tether_softkey::ek_cert::aia_extension(url));
    }
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.der().to_vec(), Issuer::new(params, key))
}

/// An EK certificate issued by the CA `issuer_der` / `issuer`, with an optional caIssuers URL.
pub(crate) fn ek(issuer_der: &[u8], issuer: &Issuer<'static, KeyPair>, aia: Option<&str>) -> Vec<u8> {
    let ek_key = KeyPair::generate().unwrap();
    let issuer_key = issuer.key().serialize_pem();
    tether_softkey::ek_cert::ek_certificate(&ek_key.subject_public_key_info(), &to_pem(issuer_der), &issuer_key, aia)
        .unwrap()
}

struct Pki {
    root: Vec<u8>,
    intermediate: Vec<u8>,
    ek: Vec<u8>,
}

fn pki() -> Pki {
    let (root, root_issuer) = ca("Test TPM Root", None, None);
    let (intermediate, int_issuer) = ca("Test TPM Intermediate", Some(&root_issuer), None);
    let ek = ek(&intermediate, &int_issuer, Some("http://127.0.0.1:9/int.der"));
    Pki { root, intermediate, ek }
}

fn candidate(der: &[u8]) -> Candidate {
    Candidate { der: der.to_vec(), source: "test".into() }
}

#[test]
fn an_index_with_several_certificates_and_padding_splits_into_each() {
    let p = pki();
    let mut nv = [p.intermediate.clone(), p.root.clone()].concat();
    nv.extend([0xff; 40]);
    nv.extend([0x00; 8]);
    let (certs, notes) = split_der_certificates(&nv, MAX_NV_CERTIFICATES).unwrap();
    assert_eq!(certs, vec![p.intermediate, p.root]);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(split_der_certificates(&[], 16).unwrap().0.len(), 0);
    assert_eq!(split_der_certificates(&[0xff; 64], 16).unwrap().0.len(), 0);
}

#[test]
fn malformed_and_truncated_indices_are_refused_whole() {
    let p = pki();
    // Garbage first, garbage after a good certificate, a SEQUENCE that is no certificate.
    assert!(split_der_certificates(b"\x04\x03abc", 16).unwrap_err().contains("no DER certificate at byte 0"));
    let mut trailing = p.root.clone();
    trailing.extend(b"\x01\x02\x03");
    assert!(split_der_certificates(&trailing, 16).is_err());
    assert!(split_der_certificates(b"\x30\x03\x02\x01\x05", 16).unwrap_err().contains("not an X.509 certificate"));
    // Indefinite and over-long length forms.
    assert!(split_der_certificates(b"\x30\x80\x00\x00", 16).is_err());
    assert!(split_der_certificates(b"\x30\x85\x01\x02\x03\x04\x05", 16).is_err());
    // The second certificate cut short.
    let both = [p.root.clone(), p.intermediate.clone()].concat();
    let err = split_der_certificates(&both[..both.len() - 1], 16).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn too_many_and_too_large_certificates_are_left_out_with_a_reason() {
    let p = pki();
    let nv = [p.root.clone(), p.intermediate.clone(), p.ek.clone()].concat();
    let (certs, notes) = split_der_certificates(&nv, 2).unwrap();
    assert_eq!(certs, vec![p.root.clone(), p.intermediate.clone()]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("at most"), "{notes:?}");

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "Huge");
    params.custom_extensions.push(CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x04; 9000]));
    let huge = params.self_signed(&key).unwrap().der().to_vec();
    assert!(huge.len() > MAX_CERTIFICATE_BYTES);
    let (certs, notes) = split_der_certificates(&[huge, p.root.clone()].concat(), 16).unwrap();
    assert_eq!(certs, vec![p.root]);
    assert!(notes[0].contains("over the 8192-byte limit"), "{notes:?}");
}

#[test]
fn the_walk_orders_issuers_and_reports_what_is_missing() {
    let p = pki();
    let (path, end) = walk(&p.ek, &[candidate(&p.root), candidate(&p.intermediate)]);
    assert_eq!(path, vec![1, 0]);
    assert_eq!(end, WalkEnd::SelfSigned);
    let (path, end) = walk(&p.ek, &[candidate(&p.root)]);
    assert!(path.is_empty());
    match end {
        WalkEnd::IssuerMissing { subject, ca_issuers } => {
            assert!(subject.contains("Test TPM EK"), "{subject}");
            assert_eq!(ca_issuers, vec!["http://127.0.0.1:9/int.der".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(walk(b"junk", &[]).1, WalkEnd::Stopped(_)));
}

#[test]
fn what_is_sent_puts_the_path_first_and_stays_within_tetherds_limits() {
    let p = pki();
    let strangers: Vec<Candidate> = (0..10).map(|i| candidate(&ca(&format!("Other {i}"), None, None).0)).collect();
    let mut candidates = strangers.clone();
    candidates.push(candidate(&p.intermediate));
    candidates.push(candidate(&p.root));
    candidates.push(candidate(&p.root));
    let (sent, left_out) = select(&p.ek, &candidates);
    assert_eq!(sent.len(), MAX_SENT_CERTIFICATES - 1);
    assert_eq!(sent[..2], [p.intermediate.clone(), p.root.clone()]);
    assert_eq!(left_out.len(), 10 - (MAX_SENT_CERTIFICATES - 3), "{left_out:?}");
    assert!(left_out[0].contains("at most 8 certificates"), "{left_out:?}");
    let pem: usize = pem_len(p.ek.len()) + sent.iter().map(|d| pem_len(d.len())).sum::<usize>();
    assert!(pem <= MAX_SENT_BYTES);
    assert_eq!(pem_len(p.root.len()), to_pem(&p.root).len());
}
