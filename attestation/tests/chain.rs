//! Certificate path validation, with chains generated per test.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use tether_attestation::chain::{ChainError, validate_chain};
use tether_attestation::trust::TrustStore;
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
    pem: String,
}

fn params(cn: &str, is_ca: IsCa, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    if matches!(is_ca, IsCa::Ca(_)) {
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    }
    params.is_ca = is_ca;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key")
}

fn self_signed(cn: &str, key: KeyPair, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Ca {
    let params = params(cn, IsCa::Ca(BasicConstraints::Unconstrained), not_before, not_after);
    let cert = params.self_signed(&key).expect("root");
    Ca { der: cert.der().to_vec(), pem: cert.pem(), issuer: Issuer::new(params, key) }
}

fn root(cn: &str) -> Ca {
    self_signed(cn, key(), now() - Duration::days(10), now() + Duration::days(1000))
}

fn issue(parent: &Ca, params: CertificateParams) -> Ca {
    let key = key();
    let cert = params.signed_by(&key, &parent.issuer).expect("issue");
    Ca { der: cert.der().to_vec(), pem: cert.pem(), issuer: Issuer::new(params, key) }
}

fn intermediate(parent: &Ca, cn: &str, constraints: BasicConstraints) -> Ca {
    issue(parent, params(cn, IsCa::Ca(constraints), now() - Duration::days(5), now() + Duration::days(500)))
}

fn leaf(parent: &Ca) -> Vec<u8> {
    issue(parent, params("Leaf", IsCa::ExplicitNoCa, now() - Duration::days(1), now() + Duration::days(100))).der
}

fn store(pems: &[&str]) -> TrustStore {
    let mut store = TrustStore::new();
    for pem in pems {
        store.add_pem(pem).expect("pem");
    }
    store
}

#[test]
fn three_level_chain_reaches_its_root() {
    let root = root("Root");
    let inter = intermediate(&root, "Inter", BasicConstraints::Constrained(0));
    let anchor = validate_chain(&[leaf(&inter), inter.der.clone()], &store(&[&root.pem]), now()).expect("valid");
    assert_eq!(anchor, "CN=Root");
    // The root may also travel in x5c.
    let anchor = validate_chain(&[leaf(&inter), inter.der.clone(), root.der.clone()], &store(&[&root.pem]), now());
    assert_eq!(anchor.as_deref(), Ok("CN=Root"));
    // Intermediates may come in any order.
    let deeper = intermediate(&inter, "Deeper", BasicConstraints::Unconstrained);
    let result = validate_chain(&[leaf(&deeper), inter.der.clone(), deeper.der.clone()], &store(&[&root.pem]), now());
    assert!(matches!(result, Err(ChainError::PathLenExceeded { .. })), "{result:?}");
}

#[test]
fn a_root_with_the_right_name_but_another_key_is_refused() {
    let genuine = root("Root");
    let impostor = root("Root");
    let inter = intermediate(&genuine, "Inter", BasicConstraints::Unconstrained);
    let result = validate_chain(&[leaf(&inter), inter.der.clone()], &store(&[&impostor.pem]), now());
    match result {
        Err(e @ ChainError::BadSignature { .. }) => assert!(e.to_string().contains("x5c[1]"), "{e}"),
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

#[test]
fn an_intermediate_that_is_not_a_ca_cannot_issue() {
    let root = root("Root");
    let not_ca =
        issue(&root, params("Not A CA", IsCa::ExplicitNoCa, now() - Duration::days(1), now() + Duration::days(10)));
    let result = validate_chain(&[leaf(&not_ca), not_ca.der.clone()], &store(&[&root.pem]), now());
    match result {
        Err(ChainError::NotCa { cert }) => assert_eq!(cert.index, Some(1)),
        other => panic!("expected NotCa, got {other:?}"),
    }
}

#[test]
fn path_length_constraints_are_enforced() {
    let root = root("Root");
    let inter = intermediate(&root, "Inter", BasicConstraints::Constrained(0));
    let below = intermediate(&inter, "Below", BasicConstraints::Unconstrained);
    let result = validate_chain(&[leaf(&below), below.der.clone(), inter.der.clone()], &store(&[&root.pem]), now());
    match result {
        Err(e @ ChainError::PathLenExceeded { .. }) => assert!(e.to_string().contains("Inter"), "{e}"),
        other => panic!("expected PathLenExceeded, got {other:?}"),
    }
}

#[test]
fn a_ca_without_key_cert_sign_cannot_issue() {
    let root = root("Root");
    let mut p = params(
        "Signing Only",
        IsCa::Ca(BasicConstraints::Unconstrained),
        now() - Duration::days(1),
        now() + Duration::days(10),
    );
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let inter = issue(&root, p);
    let result = validate_chain(&[leaf(&inter), inter.der.clone()], &store(&[&root.pem]), now());
    assert!(matches!(result, Err(ChainError::KeyUsage { .. })), "{result:?}");
}

#[test]
fn validity_is_checked_for_every_certificate_including_the_anchor() {
    let old_root = self_signed("Old Root", key(), now() - Duration::days(100), now() - Duration::days(1));
    let inter = issue(
        &old_root,
        params(
            "Inter",
            IsCa::Ca(BasicConstraints::Unconstrained),
            now() - Duration::days(50),
            now() + Duration::days(50),
        ),
    );
    let leaf =
        issue(&inter, params("Leaf", IsCa::ExplicitNoCa, now() - Duration::days(40), now() + Duration::days(40)));
    let chain = [leaf.der, inter.der.clone()];
    let result = validate_chain(&chain, &store(&[&old_root.pem]), now());
    match result {
        Err(e @ ChainError::Expired { .. }) => assert!(e.to_string().contains("trust anchor"), "{e}"),
        other => panic!("expected the anchor to be expired, got {other:?}"),
    }
    assert!(validate_chain(&chain, &store(&[&old_root.pem]), now() - Duration::days(10)).is_ok());
    let result = validate_chain(&chain, &store(&[&old_root.pem]), now() - Duration::days(45));
    match result {
        Err(ChainError::NotYetValid { cert, .. }) => assert_eq!(cert.index, Some(0), "the leaf"),
        other => panic!("expected NotYetValid, got {other:?}"),
    }
}

#[test]
fn an_expired_root_copy_is_bypassed_by_a_reissued_root_with_the_same_key() {
    // Google's hardware attestation roots 1-3 share subject and key; devices still carry the
    // expired root 1 as the last x5c element.
    let shared_key_pem = key().serialize_pem();
    let expired = self_signed(
        "Shared Root",
        KeyPair::from_pem(&shared_key_pem).expect("key"),
        now() - Duration::days(1000),
        now() - Duration::days(10),
    );
    let current = self_signed(
        "Shared Root",
        KeyPair::from_pem(&shared_key_pem).expect("key"),
        now() - Duration::days(500),
        now() + Duration::days(5000),
    );
    let inter = issue(
        &expired,
        params(
            "Inter",
            IsCa::Ca(BasicConstraints::Unconstrained),
            now() - Duration::days(900),
            now() + Duration::days(900),
        ),
    );
    let chain = [leaf(&inter), inter.der.clone(), expired.der.clone()];
    assert_eq!(validate_chain(&chain, &store(&[&expired.pem, &current.pem]), now()).as_deref(), Ok("CN=Shared Root"));
    let result = validate_chain(&chain, &store(&[&expired.pem]), now());
    assert!(matches!(result, Err(ChainError::Expired { .. })), "{result:?}");
}

#[test]
fn a_leaf_that_is_itself_an_anchor_is_accepted() {
    let root = root("Root");
    let der = leaf(&root);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    assert_eq!(validate_chain(&[der], &store(&[&pem]), now()).as_deref(), Ok("CN=Leaf"));
}

#[test]
fn unknown_roots_and_missing_issuers_are_reported() {
    let root = root("Root");
    let other = root_named_other();
    let inter = intermediate(&root, "Inter", BasicConstraints::Unconstrained);
    let result = validate_chain(&[leaf(&inter)], &store(&[&other.pem]), now());
    match result {
        Err(e @ ChainError::NoIssuer { .. }) => {
            assert!(e.to_string().contains("x5c[0]") && e.to_string().contains("Inter"), "{e}")
        }
        other => panic!("expected NoIssuer, got {other:?}"),
    }
    let result = validate_chain(&[leaf(&inter), inter.der.clone(), root.der.clone()], &store(&[&other.pem]), now());
    assert!(matches!(result, Err(ChainError::UntrustedRoot { .. })), "{result:?}");
    assert_eq!(validate_chain(&[leaf(&inter)], &TrustStore::new(), now()), Err(ChainError::NoAnchors));
    assert_eq!(validate_chain::<Vec<u8>>(&[], &store(&[&root.pem]), now()), Err(ChainError::Empty));
}

fn root_named_other() -> Ca {
    root("Other Root")
}

#[test]
fn long_chains_and_name_loops_terminate() {
    let anchor = root("Root");
    let nine: Vec<Vec<u8>> = (0..9).map(|_| leaf(&anchor)).collect();
    assert_eq!(validate_chain(&nine, &store(&[&anchor.pem]), now()), Err(ChainError::TooLong(9)));

    // Eight unrelated CAs all named "Loop", each claiming to be issued by "Loop": every
    // ordering matches by name, none by signature.
    let loops: Vec<Ca> = (0..8).map(|_| root("Loop")).collect();
    let mut chain = vec![leaf(&loops[0])];
    chain.extend(loops.iter().skip(1).map(|ca| ca.der.clone()));
    let started = std::time::Instant::now();
    let result = validate_chain(&chain, &store(&[&anchor.pem]), now());
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn unknown_critical_extensions_are_refused() {
    let root = root("Root");
    let mut p = params("Leaf", IsCa::ExplicitNoCa, now() - Duration::days(1), now() + Duration::days(10));
    let mut ext = CustomExtension::from_oid_content(&[1, 2, 3, 4, 5], vec![0x05, 0x00]);
    ext.set_criticality(true);
    p.custom_extensions = vec![ext];
    let leaf = issue(&root, p).der;
    let result = validate_chain(&[leaf], &store(&[&root.pem]), now());
    assert!(matches!(result, Err(ChainError::UnknownCriticalExtension { .. })), "{result:?}");
}

#[test]
fn anchor_summaries_describe_the_store() {
    let root = root("Summary Root");
    let store = store(&[&root.pem]);
    let anchors: Vec<_> = store.anchors().collect();
    assert_eq!(anchors.len(), 1);
    assert_eq!(anchors[0].subject, "CN=Summary Root");
    assert_eq!(anchors[0].sha256_fingerprint.len(), 64);
    assert!(anchors[0].not_before < anchors[0].not_after);
    let (_, der) = store.anchors_with_der().next().expect("one");
    assert_eq!(der, root.der.as_slice());
}

#[test]
fn a_self_signed_leaf_reissued_with_an_anchors_name_and_key_is_that_anchor() {
    // As Chromium's virtual authenticator does: one key, a fresh self-signed batch certificate
    // (not a CA) with every registration.
    let key = key();
    let batch = |days: i64| {
        let p =
            params("Batch Certificate", IsCa::ExplicitNoCa, now() - Duration::days(1), now() + Duration::days(days));
        p.self_signed(&key).expect("batch")
    };
    let first = batch(100);
    let second = batch(200);
    assert_ne!(first.der().to_vec(), second.der().to_vec());
    let trust = store(&[&first.pem()]);
    assert_eq!(validate_chain(&[second.der().to_vec()], &trust, now()).as_deref(), Ok("CN=Batch Certificate"));
    // Same name, another key: not the anchor, and the anchor is no CA to issue it either.
    let p = params("Batch Certificate", IsCa::ExplicitNoCa, now() - Duration::days(1), now() + Duration::days(100));
    let impostor = p.self_signed(&self::key()).expect("impostor");
    assert!(validate_chain(&[impostor.der().to_vec()], &trust, now()).is_err());
    // An expired re-issue is still refused.
    let p = params("Batch Certificate", IsCa::ExplicitNoCa, now() - Duration::days(10), now() - Duration::days(1));
    let expired = p.self_signed(&key).expect("expired");
    assert!(matches!(validate_chain(&[expired.der().to_vec()], &trust, now()), Err(ChainError::Expired { .. })));
}
