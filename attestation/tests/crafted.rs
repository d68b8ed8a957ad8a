//! Hand-built attestation statements for the format rules that real vectors only exercise
//! on their happy path: packed certificate requirements, android-key KeyDescription
//! checks and Apple's nonce.

use ciborium::Value;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SigningKey,
};
use ring::digest::{SHA256, digest};
use tether_attestation::b64url_encode;
use tether_attestation::json::{AttestationResponseJson, RegistrationResponseJson};
use tether_attestation::registration::{
    AttestationTrust, RegistrationError, RegistrationExpectation, StatementError, VerifiedRegistration,
    verify_registration,
};
use tether_attestation::trust::TrustStore;
use time::OffsetDateTime;

const RP_ID: &str = "crafted.example";
const ORIGIN: &str = "https://crafted.example";
const CHALLENGE: &[u8] = b"crafted-challenge";
const AAGUID: [u8; 16] = *b"crafted-aaguid!!";

/// A root CA that signs attestation certificates directly.
struct Root {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn root() -> Root {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Crafted Root");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).expect("root");
    Root { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

fn leaf(
    root: &Root,
    key: &KeyPair,
    subject: &[(DnType, &str)],
    is_ca: IsCa,
    extensions: Vec<CustomExtension>,
) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    for (kind, value) in subject {
        name.push(kind.clone(), *value);
    }
    params.distinguished_name = name;
    params.is_ca = is_ca;
    params.custom_extensions = extensions;
    params.signed_by(key, &root.issuer).expect("leaf").der().to_vec()
}

/// The credential: its key, authenticator data and client data.
struct Credential {
    key: KeyPair,
    auth_data: Vec<u8>,
    client_data_json: Vec<u8>,
}

impl Credential {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let point = key.public_key_raw();
        let mut cose = Vec::new();
        let map = Value::Map(vec![
            (Value::from(1), Value::from(2)),
            (Value::from(3), Value::from(-7)),
            (Value::from(-1), Value::from(1)),
            (Value::from(-2), Value::Bytes(point[1..33].to_vec())),
            (Value::from(-3), Value::Bytes(point[33..65].to_vec())),
        ]);
        ciborium::ser::into_writer(&map, &mut cose).expect("cose");
        let mut auth_data = digest(&SHA256, RP_ID.as_bytes()).as_ref().to_vec();
        auth_data.push(0x45);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&AAGUID);
        auth_data.extend_from_slice(&32u16.to_be_bytes());
        auth_data.extend_from_slice(&[7u8; 32]);
        auth_data.extend_from_slice(&cose);
        let client_data_json = serde_json::json!({
            "type": "webauthn.create",
            "challenge": b64url_encode(CHALLENGE),
            "origin": ORIGIN,
        })
        .to_string()
        .into_bytes();
        Self { key, auth_data, client_data_json }
    }

    fn client_data_hash(&self) -> Vec<u8> {
        digest(&SHA256, &self.client_data_json).as_ref().to_vec()
    }

    fn signed_data(&self) -> Vec<u8> {
        [self.auth_data.clone(), self.client_data_hash()].concat()
    }

    fn verify(&self, fmt: &str, att_stmt: Value, root: &Root) -> Result<VerifiedRegistration, RegistrationError> {
        let mut object = Vec::new();
        let map = Value::Map(vec![
            (Value::from("fmt"), Value::from(fmt)),
            (Value::from("attStmt"), att_stmt),
            (Value::from("authData"), Value::Bytes(self.auth_data.clone())),
        ]);
        ciborium::ser::into_writer(&map, &mut object).expect("object");
        let response = RegistrationResponseJson {
            id: b64url_encode(&[7u8; 32]),
            raw_id: b64url_encode(&[7u8; 32]),
            type_: "public-key".to_owned(),
            response: AttestationResponseJson {
                client_data_json: b64url_encode(&self.client_data_json),
                attestation_object: b64url_encode(&object),
                transports: None,
            },
            authenticator_attachment: None,
            client_extension_results: None,
        };
        let mut trust = TrustStore::new();
        trust.add_pem(&root.pem).expect("root");
        let expect = RegistrationExpectation { rp_id: RP_ID, origin: ORIGIN, challenge: CHALLENGE };
        verify_registration(&response, &expect, &trust, OffsetDateTime::now_utc())
    }
}

fn statement(sig: Vec<u8>, x5c: Vec<Vec<u8>>, alg: Option<i64>) -> Value {
    let mut entries = Vec::new();
    if let Some(alg) = alg {
        entries.push((Value::from("alg"), Value::from(alg)));
    }
    if !sig.is_empty() {
        entries.push((Value::from("sig"), Value::Bytes(sig)));
    }
    entries.push((Value::from("x5c"), Value::Array(x5c.into_iter().map(Value::Bytes).collect())));
    Value::Map(entries)
}

fn statement_error(result: Result<VerifiedRegistration, RegistrationError>) -> StatementError {
    match result {
        Err(RegistrationError::InvalidStatement { source, .. }) => source,
        other => panic!("expected an invalid statement, got {other:?}"),
    }
}

// ---- packed ----------------------------------------------------------------------------

const GOOD_SUBJECT: &[(DnType, &str)] = &[
    (DnType::CountryName, "SE"),
    (DnType::OrganizationName, "Crafted AB"),
    (DnType::OrganizationalUnitName, "Authenticator Attestation"),
    (DnType::CommonName, "Crafted EE"),
];

fn aaguid_extension(aaguid: &[u8; 16], critical: bool) -> CustomExtension {
    let mut ext =
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4], [&[0x04, 0x10][..], aaguid].concat());
    ext.set_criticality(critical);
    ext
}

fn packed(
    subject: &[(DnType, &str)],
    is_ca: IsCa,
    extensions: Vec<CustomExtension>,
) -> Result<VerifiedRegistration, RegistrationError> {
    let root = root();
    let credential = Credential::new();
    let attestation_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = leaf(&root, &attestation_key, subject, is_ca, extensions);
    let sig = attestation_key.sign(&credential.signed_data()).expect("sign");
    credential.verify("packed", statement(sig, vec![cert], Some(-7)), &root)
}

#[test]
fn packed_with_a_conforming_leaf_is_trusted() {
    let verified = packed(GOOD_SUBJECT, IsCa::ExplicitNoCa, vec![aaguid_extension(&AAGUID, false)]).expect("valid");
    assert!(matches!(verified.trust, AttestationTrust::Trusted { .. }), "{:?}", verified.trust);
}

#[test]
fn packed_leaf_without_the_attestation_ou_is_an_error() {
    let subject = &GOOD_SUBJECT[..2].iter().chain(&GOOD_SUBJECT[3..]).cloned().collect::<Vec<_>>();
    let err = statement_error(packed(subject, IsCa::ExplicitNoCa, vec![]));
    assert!(matches!(&err, StatementError::CertificateRequirement(m) if m.contains("OU")), "{err}");
    let mut wrong = GOOD_SUBJECT.to_vec();
    wrong[2] = (DnType::OrganizationalUnitName, "Something Else");
    assert!(matches!(
        statement_error(packed(&wrong, IsCa::ExplicitNoCa, vec![])),
        StatementError::CertificateRequirement(_)
    ));
}

#[test]
fn packed_leaf_that_is_a_ca_is_an_error() {
    let err = statement_error(packed(GOOD_SUBJECT, IsCa::Ca(BasicConstraints::Unconstrained), vec![]));
    assert!(matches!(&err, StatementError::CertificateRequirement(m) if m.contains("CA")), "{err}");
}

#[test]
fn packed_leaf_naming_another_aaguid_is_an_error() {
    let err =
        statement_error(packed(GOOD_SUBJECT, IsCa::ExplicitNoCa, vec![aaguid_extension(b"another-aaguid!!", false)]));
    assert!(matches!(err, StatementError::AaguidMismatch { .. }), "{err}");
    let err = statement_error(packed(GOOD_SUBJECT, IsCa::ExplicitNoCa, vec![aaguid_extension(&AAGUID, true)]));
    assert!(matches!(err, StatementError::CertificateRequirement(_)), "{err}");
}

#[test]
fn packed_with_an_unsupported_algorithm_is_an_error() {
    let root = root();
    let credential = Credential::new();
    let attestation_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = leaf(&root, &attestation_key, GOOD_SUBJECT, IsCa::ExplicitNoCa, vec![]);
    let sig = attestation_key.sign(&credential.signed_data()).expect("sign");
    for alg in [-36, -65535, 0] {
        let err =
            statement_error(credential.verify("packed", statement(sig.clone(), vec![cert.clone()], Some(alg)), &root));
        assert!(matches!(err, StatementError::BadSignature(_)), "{alg}: {err}");
    }
}

// ---- android-key -----------------------------------------------------------------------

fn der(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = tag.to_vec();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    der(&[0x30], &items.concat())
}

fn int(value: u8) -> Vec<u8> {
    der(&[0x02], &[value])
}

fn purpose(values: &[u8]) -> Vec<u8> {
    der(&[0xa1], &der(&[0x31], &values.iter().map(|v| int(*v)).collect::<Vec<_>>().concat()))
}

fn all_applications() -> Vec<u8> {
    der(&[0xbf, 0x84, 0x58], &der(&[0x05], &[])) // [600] EXPLICIT NULL
}

fn origin(value: u8) -> Vec<u8> {
    der(&[0xbf, 0x85, 0x3e], &int(value)) // [702] EXPLICIT INTEGER
}

fn key_description(challenge: &[u8], software: &[Vec<u8>], tee: &[Vec<u8>]) -> CustomExtension {
    let value = seq(&[
        int(3),
        der(&[0x0a], &[1]),
        int(4),
        der(&[0x0a], &[1]),
        der(&[0x04], challenge),
        der(&[0x04], &[]),
        seq(software),
        seq(tee),
    ]);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17], value)
}

fn android(
    description: impl FnOnce(&[u8]) -> CustomExtension,
    separate_leaf_key: bool,
) -> Result<VerifiedRegistration, RegistrationError> {
    let root = root();
    let credential = Credential::new();
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let signer = if separate_leaf_key { &other } else { &credential.key };
    let ext = description(&credential.client_data_hash());
    let cert = leaf(&root, signer, &[(DnType::CommonName, "Android Keystore Key")], IsCa::NoCa, vec![ext]);
    let sig = signer.sign(&credential.signed_data()).expect("sign");
    credential.verify("android-key", statement(sig, vec![cert], Some(-7)), &root)
}

#[test]
fn android_key_with_a_bound_signing_key_is_trusted() {
    let verified = android(|cdh| key_description(cdh, &[], &[purpose(&[2, 3]), origin(0)]), false).expect("valid");
    assert!(verified.trust.is_trusted(), "{:?}", verified.trust);
    assert_eq!(verified.attestation_type.as_str(), "basic");
}

#[test]
fn android_key_challenge_must_be_the_client_data_hash() {
    let err = statement_error(android(|_| key_description(&[0u8; 32], &[], &[purpose(&[2]), origin(0)]), false));
    assert_eq!(err, StatementError::ChallengeMismatch);
}

#[test]
fn android_key_all_applications_is_an_error_in_either_list() {
    let err = statement_error(android(|cdh| key_description(cdh, &[all_applications()], &[purpose(&[2])]), false));
    assert!(matches!(&err, StatementError::Authorization(m) if m.contains("allApplications")), "{err}");
    let err = statement_error(android(|cdh| key_description(cdh, &[], &[purpose(&[2]), all_applications()]), false));
    assert!(matches!(err, StatementError::Authorization(_)), "{err}");
}

#[test]
fn android_key_must_be_generated_and_able_to_sign() {
    let err = statement_error(android(|cdh| key_description(cdh, &[], &[purpose(&[2]), origin(2)]), false));
    assert!(matches!(&err, StatementError::Authorization(m) if m.contains("origin")), "{err}");
    let err = statement_error(android(|cdh| key_description(cdh, &[], &[purpose(&[3]), origin(0)]), false));
    assert!(matches!(&err, StatementError::Authorization(m) if m.contains("SIGN")), "{err}");
}

#[test]
fn android_key_leaf_must_hold_the_credential_key() {
    let err = statement_error(android(|cdh| key_description(cdh, &[], &[purpose(&[2])]), true));
    assert_eq!(err, StatementError::KeyMismatch);
}

#[test]
fn android_key_without_or_with_a_broken_key_description_is_an_error() {
    let err = statement_error(android(|_| CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]), false));
    assert!(matches!(err, StatementError::CertificateRequirement(_)), "{err}");
    let err = statement_error(android(
        |_| CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17], seq(&[int(3)])),
        false,
    ));
    assert!(matches!(err, StatementError::CertificateRequirement(_)), "{err}");
}

// ---- apple -----------------------------------------------------------------------------

fn nonce_extension(nonce: &[u8]) -> CustomExtension {
    let value = seq(&[der(&[0xa1], &der(&[0x04], nonce))]);
    CustomExtension::from_oid_content(&[1, 2, 840, 113635, 100, 8, 2], value)
}

fn apple(
    nonce: impl FnOnce(&[u8]) -> Vec<u8>,
    separate_leaf_key: bool,
) -> Result<VerifiedRegistration, RegistrationError> {
    let root = root();
    let credential = Credential::new();
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let key = if separate_leaf_key { &other } else { &credential.key };
    let expected = digest(&SHA256, &credential.signed_data());
    let ext = nonce_extension(&nonce(expected.as_ref()));
    let cert = leaf(&root, key, &[(DnType::CommonName, "Apple leaf")], IsCa::NoCa, vec![ext]);
    credential.verify("apple", statement(Vec::new(), vec![cert], None), &root)
}

#[test]
fn apple_with_the_right_nonce_is_anonca_and_trusted() {
    let verified = apple(|n| n.to_vec(), false).expect("valid");
    assert_eq!(verified.attestation_type.as_str(), "anonca");
    assert!(verified.trust.is_trusted(), "{:?}", verified.trust);
}

#[test]
fn apple_with_a_wrong_nonce_or_key_is_an_error() {
    let err = statement_error(apple(
        |n| {
            let mut n = n.to_vec();
            n[0] ^= 1;
            n
        },
        false,
    ));
    assert_eq!(err, StatementError::NonceMismatch);
    assert_eq!(statement_error(apple(|n| n.to_vec(), true)), StatementError::KeyMismatch);
}

#[test]
fn public_key_data_of_rcgen_matches_the_cose_key() {
    // Guards the helper above: the COSE key built from rcgen's raw point must equal the SPKI.
    let credential = Credential::new();
    let cose_start = 37 + 16 + 2 + 32;
    let key =
        tether_attestation::cose::CredentialPublicKey::from_cose(&credential.auth_data[cose_start..]).expect("cose");
    assert!(key.matches_spki_der(&credential.key.subject_public_key_info()));
}
