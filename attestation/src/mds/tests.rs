use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use ring::digest;
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::b64url_encode;

const NOW: OffsetDateTime = datetime!(2026-12-07 00:00 UTC);

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "MDS Test");
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    params.not_before = NOW - Duration::days(30);
    params.not_after = NOW + Duration::days(365);
    params
}

/// Old root ("R3"), new root ("R46") both self-signed and cross-signed by the old one, an
/// issuing CA under the new root and the BLOB signer: the production layout since 2026-08.
struct Pki {
    old_root: Certificate,
    new_root: Certificate,
    new_root_cross: Certificate,
    ca: Certificate,
    signer: Certificate,
    signer_key: KeyPair,
}

fn pki() -> Pki {
    let old_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let old_params = params("Old Root", true);
    let old_root = old_params.self_signed(&old_key).expect("old root");
    let old_issuer = Issuer::from_params(&old_params, &old_key);
    let new_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let new_params = params("New Root", true);
    let new_root = new_params.self_signed(&new_key).expect("new root");
    let new_root_cross = new_params.signed_by(&new_key, &old_issuer).expect("cross");
    let new_issuer = Issuer::from_params(&new_params, &new_key);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let ca_params = params("Issuing CA", true);
    let ca = ca_params.signed_by(&ca_key, &new_issuer).expect("ca");
    let ca_issuer = Issuer::from_params(&ca_params, &ca_key);
    let signer_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let signer = params("mds.example", false).signed_by(&signer_key, &ca_issuer).expect("signer");
    Pki { old_root, new_root, new_root_cross, ca, signer, signer_key }
}

fn store(certs: &[&Certificate]) -> TrustStore {
    let mut store = TrustStore::new();
    for cert in certs {
        store.add_der(cert.der()).expect("anchor");
    }
    store
}

fn x5c(certs: &[&Certificate]) -> Vec<String> {
    certs.iter().map(|c| STANDARD.encode(c.der())).collect()
}

fn sign(pki: &Pki, chain: &[&Certificate], payload: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = Some(x5c(chain));
    let key = EncodingKey::from_ec_der(&pki.signer_key.serialize_der());
    jsonwebtoken::encode(&header, payload, &key).expect("sign")
}

fn root_b64(cert: &Certificate) -> String {
    STANDARD.encode(cert.der())
}

fn payload(pki: &Pki) -> serde_json::Value {
    json!({
        "legalHeader": "test",
        "no": 7,
        "nextUpdate": "2027-01-01",
        "entries": [
            {
                "aaguid": "71bf3f7f-ad51-432a-aaf0-4783108d5620",
                "metadataStatement": { "description": "Leaky key", "attestationRootCertificates": [root_b64(&pki.ca)] },
                "statusReports": [
                    { "status": "FIDO_CERTIFIED_L1", "effectiveDate": "2020-01-01" },
                    { "status": "ATTESTATION_KEY_COMPROMISE", "effectiveDate": "2019-07-22" }
                ]
            },
            {
                "aaguid": "8cfa178e-b1f5-40ce-8f5f-8273e8109940",
                "metadataStatement": {
                    "description": "Bypass",
                    "authenticatorGetInfo": { "options": { "rk": "true", "uv": "false" } }
                },
                "statusReports": [{ "status": "USER_VERIFICATION_BYPASS", "effectiveDate": "2019-04-02", "authenticatorVersion": 5 }]
            },
            {
                "attestationCertificateKeyIdentifiers": ["F4B64A68C334E901B8E23C6E66E6866C31931F5D"],
                "statusReports": [{ "status": "REVOKED", "effectiveDate": "2021-02-30" }]
            },
            {
                "aaguid": "a14eb40d-3b89-4f3b-8d46-13cdf3de625c",
                "metadataStatement": { "attestationRootCertificates": ["bm90IGEgY2VydA==", 12] },
                "statusReports": [
                    { "status": "FIDO_CERTIFIED_L2", "effectiveDate": "2020-07-17" },
                    { "status": "NOT_FIDO_CERTIFIED", "effectiveDate": "2019-07-29" },
                    { "status": "FIDO_CERTIFIED_L1", "effectiveDate": "2019-08-08" }
                ]
            },
            { "aaguid": "not-a-uuid", "statusReports": [{ "status": "FIDO_CERTIFIED" }] },
            { "aaguid": "26b9cbdd-44e8-46ef-a6d1-7d2b083ff58b", "statusReports": [] },
            "not an object"
        ]
    })
}

#[test]
fn shipped_production_roots_match_their_pins() {
    let store = production_roots().expect("roots");
    assert_eq!(store.len(), 2);
    for (summary, der) in store.anchors_with_der() {
        let fingerprint = hex::encode(digest::digest(&digest::SHA256, der).as_ref());
        let pinned = PRODUCTION_ROOT_PINS.iter().find(|(_, pin)| *pin == fingerprint);
        assert!(pinned.is_some(), "{} is pinned", summary.subject);
        assert!(summary.subject.contains(pinned.map(|(name, _)| &name[name.len() - 3..]).unwrap_or("?")));
    }
}

#[test]
fn a_signed_blob_verifies_and_its_entries_are_read_leniently() {
    let pki = pki();
    let jws = sign(&pki, &[&pki.signer, &pki.ca], &payload(&pki));
    let blob = verify_blob(&jws, &store(&[&pki.new_root]), NOW).expect("valid");
    assert_eq!(blob.no, 7);
    assert_eq!(blob.alg, "ES256");
    assert!(blob.anchor.contains("New Root"));
    assert!(blob.is_fresh(NOW));
    assert!(!blob.is_fresh(datetime!(2027-01-02 00:00 UTC)));
    assert_eq!(blob.entries.len(), 4, "two malformed entries and one non-object are skipped");
    let dropped: Vec<_> = blob.skipped.iter().filter(|s| s.part == "entry").map(|s| s.index).collect();
    assert_eq!(dropped, vec![4, 5, 6]);

    let compromised: Vec<_> = blob.compromised().map(|(e, r)| (e.id(), r.status.clone())).collect();
    assert_eq!(
        compromised,
        vec![
            ("71bf3f7f-ad51-432a-aaf0-4783108d5620".to_owned(), "ATTESTATION_KEY_COMPROMISE".to_owned()),
            ("f4b64a68c334e901b8e23c6e66e6866c31931f5d".to_owned(), "REVOKED".to_owned()),
        ],
        "a later certification does not lift a compromise; an impossible date does not hide a revocation"
    );
    let bypass: Vec<_> = blob.uv_bypass().map(|(e, r)| (e.id(), r.authenticator_version)).collect();
    assert_eq!(bypass, vec![("8cfa178e-b1f5-40ce-8f5f-8273e8109940".to_owned(), Some(5))]);

    let mixed = blob.entries.iter().find(|e| e.id().starts_with("a14eb40d")).expect("entry");
    assert_eq!(mixed.current_status().map(|r| r.status.as_str()), Some("FIDO_CERTIFIED_L2"), "latest date wins");
    assert!(mixed.attestation_roots.is_empty());
    let root_notes = blob.skipped.iter().filter(|s| s.part == "attestation root certificate").count();
    assert_eq!(root_notes, 2, "a bad root and a non-string root are reported, the entry is kept");
    assert!(blob.skipped.iter().any(|s| s.part == "status report date" && s.reason.contains("2021-02-30")));
    let leaky = blob.entries.iter().find(|e| e.id().starts_with("71bf")).expect("entry");
    assert_eq!(leaky.attestation_roots, vec![pki.ca.der().to_vec()]);
    assert_eq!(blob.aaguids().len(), 3);
}

#[test]
fn path_building_accepts_either_root_when_x5c_carries_the_cross_certificate() {
    let pki = pki();
    let jws = sign(&pki, &[&pki.signer, &pki.ca, &pki.new_root_cross], &payload(&pki));
    let by_new = verify_blob(&jws, &store(&[&pki.new_root]), NOW).expect("anchored at the new root");
    assert!(by_new.anchor.contains("New Root"));
    let by_old = verify_blob(&jws, &store(&[&pki.old_root]), NOW).expect("anchored at the old root");
    assert!(by_old.anchor.contains("Old Root"));
}

#[test]
fn untrusted_roots_expired_chains_and_production_roots_are_refused() {
    let pki = pki();
    let jws = sign(&pki, &[&pki.signer, &pki.ca], &payload(&pki));
    let other = pki_other_root();
    assert!(
        matches!(verify_blob(&jws, &store(&[&other]), NOW), Err(MdsError::Invalid(e)) if e.contains("not trusted"))
    );
    let production = production_roots().expect("roots");
    assert!(matches!(verify_blob(&jws, &production, NOW), Err(MdsError::Invalid(_))));
    let later = NOW + Duration::days(400);
    assert!(
        matches!(verify_blob(&jws, &store(&[&pki.new_root]), later), Err(MdsError::Invalid(e)) if e.contains("expired"))
    );
}

fn pki_other_root() -> Certificate {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    params("New Root", true).self_signed(&key).expect("root")
}

fn flip(jws: &str, part: usize) -> String {
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let target = &mut parts[part];
    let middle = target.len() / 2;
    let replacement = if &target[middle..=middle] == "A" { "B" } else { "A" };
    target.replace_range(middle..=middle, replacement);
    parts.join(".")
}

#[test]
fn a_changed_signature_or_payload_is_refused() {
    let pki = pki();
    let roots = store(&[&pki.new_root]);
    let jws = sign(&pki, &[&pki.signer, &pki.ca], &payload(&pki));
    for part in [1, 2] {
        let tampered = flip(&jws, part);
        assert!(matches!(verify_blob(&tampered, &roots, NOW), Err(MdsError::Invalid(e)) if e.contains("signature")));
    }
}

fn reencode(jws: &str, alg: &str, signature: &str) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&crate::b64url_decode(parts[0]).expect("header")).expect("json");
    let mut header = header.as_object().expect("object").clone();
    header.insert("alg".to_owned(), json!(alg));
    let header = b64url_encode(serde_json::to_string(&header).expect("json").as_bytes());
    format!("{header}.{}.{signature}", parts[1])
}

#[test]
fn alg_none_and_symmetric_algorithms_are_refused() {
    let pki = pki();
    let roots = store(&[&pki.new_root]);
    let jws = sign(&pki, &[&pki.signer, &pki.ca], &payload(&pki));
    let none = reencode(&jws, "none", "");
    assert!(matches!(verify_blob(&none, &roots, NOW), Err(MdsError::Invalid(e)) if e.contains("\"none\" is refused")));
    // An HS256 tag keyed with the signer's public key: the classic key-confusion forgery.
    let unsigned = reencode(&jws, "HS256", "");
    let message = unsigned.trim_end_matches('.');
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pki.signer.der());
    let tag = b64url_encode(ring::hmac::sign(&key, message.as_bytes()).as_ref());
    let hs256 = format!("{message}.{tag}");
    assert!(matches!(verify_blob(&hs256, &roots, NOW), Err(MdsError::Invalid(e)) if e.contains("symmetric")));
}

#[test]
fn a_mismatched_key_type_and_unusable_input_are_told_apart() {
    let pki = pki();
    let roots = store(&[&pki.new_root]);
    let jws = sign(&pki, &[&pki.signer, &pki.ca], &payload(&pki));
    let rs = reencode(&jws, "RS256", jws.rsplit('.').next().expect("sig"));
    assert!(matches!(verify_blob(&rs, &roots, NOW), Err(MdsError::Invalid(e)) if e.contains("needs a RSA")));
    assert!(matches!(verify_blob("not a jws", &roots, NOW), Err(MdsError::Unusable(_))));
    assert!(matches!(verify_blob("a.b", &roots, NOW), Err(MdsError::Unusable(_))));
    let no_number = sign(&pki, &[&pki.signer, &pki.ca], &json!({ "nextUpdate": "2027-01-01", "entries": [] }));
    assert!(matches!(verify_blob(&no_number, &roots, NOW), Err(MdsError::Unusable(e)) if e.contains("\"no\"")));
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = None;
    let key = EncodingKey::from_ec_der(&pki.signer_key.serialize_der());
    let bare = jsonwebtoken::encode(&header, &payload(&pki), &key).expect("sign");
    assert!(matches!(verify_blob(&bare, &roots, NOW), Err(MdsError::Invalid(e)) if e.contains("x5c")));
}
