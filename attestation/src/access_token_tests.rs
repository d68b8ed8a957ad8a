use super::*;
use ring::rand::SystemRandom;

const NOW: i64 = 1_700_000_000_000;

fn new_signer() -> AccessTokenSigner {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    AccessTokenSigner::from_pkcs8(pkcs8.as_ref()).unwrap()
}

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        tenant_id: "ten_1".into(),
        worker_external_id: "alice".into(),
        device_id: "dev_1".into(),
        credential_id: "cred_1".into(),
        source_ip: "::ffff:192.0.2.7".into(),
        issued_at_ms: NOW,
        expires_at_ms: NOW + 300_000,
        token_id: "att_1".into(),
        key_id: String::new(),
    }
}

/// The signer's key, accepting tenant `ten_1` (the tenant of [`claims`]).
fn keys(signer: &AccessTokenSigner) -> KeySet {
    KeySet::new("ten_1", vec![signer.verifying_key().clone()]).unwrap()
}

#[test]
fn a_signed_token_verifies_with_its_claims() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    assert!(token.starts_with(&format!("tt1.{}.", signer.key_id())));
    let got = verify(&token, &keys(&signer), NOW + 1000, Some("192.0.2.7")).unwrap();
    assert_eq!(got.worker_external_id, "alice");
    assert_eq!(got.source_ip, "192.0.2.7", "IPv4-mapped IPv6 is folded");
    assert_eq!(got.key_id, signer.key_id());
    assert_eq!(got.expires_at_ms, NOW + 300_000);
    // Presented as mapped IPv6 matches too.
    assert!(verify(&token, &keys(&signer), NOW, Some("::ffff:192.0.2.7")).is_ok());
    // Without an address to compare, only the signature and times are checked.
    assert!(verify(&token, &keys(&signer), NOW, None).is_ok());
}

#[test]
fn key_id_is_derived_from_the_public_key() {
    let signer = new_signer();
    assert_eq!(signer.key_id(), key_id_for(&signer.verifying_key().public_key));
    assert_eq!(signer.key_id().len(), 16);
    let other = new_signer();
    assert_ne!(signer.key_id(), other.key_id());
}

#[test]
fn pem_and_der_keys_load_alike() {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let der = AccessTokenSigner::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pem = AccessTokenSigner::from_pkcs8(pkcs8_to_pem(pkcs8.as_ref()).as_bytes()).unwrap();
    assert_eq!(der.key_id(), pem.key_id());
    assert!(matches!(AccessTokenSigner::from_pkcs8(b"not a key"), Err(AccessTokenError::InvalidKey(_))));
    let rsa_pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    assert!(matches!(AccessTokenSigner::from_pkcs8(rsa_pem.as_bytes()), Err(AccessTokenError::InvalidKey(_))));
}

#[test]
fn a_token_from_another_key_with_the_same_id_is_a_bad_signature() {
    let signer = new_signer();
    let forger = new_signer();
    let forged = forger.sign(&claims()).unwrap();
    // Re-label the forger's token with the real key id.
    let relabeled = forged.replacen(forger.key_id(), signer.key_id(), 1);
    assert_eq!(verify(&relabeled, &keys(&signer), NOW, None).unwrap_err().code(), "bad_signature");
    assert_eq!(verify(&forged, &keys(&signer), NOW, None).unwrap_err().code(), "unknown_key_id");
}

#[test]
fn an_altered_payload_is_a_bad_signature() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut other = claims();
    other.worker_external_id = "mallory".into();
    let other_token = signer.sign(&other).unwrap();
    let other_payload = other_token.split('.').nth(2).unwrap();
    let spliced = format!("{}.{}.{}.{}", parts[0], parts[1], other_payload, parts[3]);
    assert_eq!(verify(&spliced, &keys(&signer), NOW, None).unwrap_err().code(), "bad_signature");
}

#[test]
fn time_bounds_are_enforced() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let k = keys(&signer);
    assert_eq!(verify(&token, &k, NOW + 300_000, None).unwrap_err().code(), "expired");
    assert!(verify(&token, &k, NOW + 299_999, None).is_ok());
    assert!(verify(&token, &k, NOW - CLOCK_SKEW_MS, None).is_ok(), "a lagging verifier clock is tolerated");
    assert_eq!(verify(&token, &k, NOW - CLOCK_SKEW_MS - 1, None).unwrap_err().code(), "not_yet_valid");
}

#[test]
fn the_signer_refuses_bad_claims() {
    let signer = new_signer();
    let mut c = claims();
    c.expires_at_ms = c.issued_at_ms + MAX_LIFETIME_MS + 1;
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.expires_at_ms = c.issued_at_ms;
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.source_ip = "gateway.example".into();
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.device_id = "d".repeat(MAX_FIELD_LEN + 1);
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
}

#[test]
fn source_address_binding() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let err = verify(&token, &keys(&signer), NOW, Some("198.51.100.9")).unwrap_err();
    assert_eq!(err.code(), "wrong_source_ip");
    assert!(err.to_string().contains("192.0.2.7") && err.to_string().contains("198.51.100.9"));
    assert_eq!(verify(&token, &keys(&signer), NOW, Some("nope")).unwrap_err().code(), "invalid_source_ip");
}

#[test]
fn garbage_is_malformed_never_accepted() {
    let signer = new_signer();
    let k = keys(&signer);
    let token = signer.sign(&claims()).unwrap();
    let kid = signer.key_id();
    for garbage in [
        String::new(),
        "tt1".into(),
        "tt1...".into(),
        format!("tt2.{kid}.e30.AAAA"),
        format!("tt1.{}.e30.AAAA", kid.to_uppercase()),
        format!("tt1.{kid}.e30"),
        format!("{token}.extra"),
        format!("{token} "),
        format!("tt1.{kid}.e30.AA+A"),
        "tt1.short.e30.AAAA".into(),
        "ünïcödé".into(),
    ] {
        let err = verify(&garbage, &k, NOW, None).unwrap_err();
        assert!(
            matches!(err, AccessTokenError::Malformed(_) | AccessTokenError::BadSignature(_)),
            "{garbage:?}: {err}"
        );
    }
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(verify(&long, &k, NOW, None).unwrap_err().code(), "too_long");
}

#[test]
fn signed_but_malformed_payloads_are_refused() {
    // A payload the real key signed but with extra members or missing ones:
    // sign by hand with the key pair to bypass the signer's checks.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let signer = AccessTokenSigner::from_pkcs8(pkcs8.as_ref()).unwrap();
    let sign_raw = |json: &str| {
        let signed = format!("tt1.{}.{}", signer.key_id(), URL_SAFE_NO_PAD.encode(json));
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(pair.sign(signed.as_bytes()).as_ref()))
    };
    let k = keys(&signer);
    let base = r#""ten":"ten_1","wrk":"w","dev":"d","cred":"c","ip":"127.0.0.1","iat":1700000000000,"jti":"j""#;
    let ok = sign_raw(&format!("{{{base},\"exp\":1700000060000}}"));
    assert!(verify(&ok, &k, NOW, Some("127.0.0.1")).is_ok());
    let extra = sign_raw(&format!("{{{base},\"exp\":1700000060000,\"admin\":true}}"));
    assert_eq!(verify(&extra, &k, NOW, None).unwrap_err().code(), "malformed");
    let missing = sign_raw(&format!("{{{base}}}"));
    assert_eq!(verify(&missing, &k, NOW, None).unwrap_err().code(), "malformed");
    let long_life = sign_raw(&format!("{{{base},\"exp\":{}}}", NOW + MAX_LIFETIME_MS + 1));
    assert_eq!(verify(&long_life, &k, NOW, None).unwrap_err().code(), "lifetime_too_long");
    let bad_ip = sign_raw(&format!("{{{},\"exp\":1700000060000}}", base.replace("127.0.0.1", "localhost")));
    assert_eq!(verify(&bad_ip, &k, NOW, None).unwrap_err().code(), "malformed");
}

#[test]
fn key_sets_round_trip_and_reject_mismatched_ids() {
    let a = new_signer();
    let b = new_signer();
    let set = KeySetJson {
        tenant_id: "ten_1".into(),
        keys: vec![
            PublishedKeyJson {
                key_id: a.key_id().into(),
                public_key: a.verifying_key().public_key_b64(),
                active: false,
            },
            PublishedKeyJson {
                key_id: b.key_id().into(),
                public_key: b.verifying_key().public_key_b64(),
                active: true,
            },
        ],
    };
    let parsed = parse_key_set(&serde_json::to_string(&set).unwrap()).unwrap();
    assert_eq!(parsed.keys(), [a.verifying_key().clone(), b.verifying_key().clone()]);
    assert_eq!(parsed.tenant_id(), "ten_1");
    let token = a.sign(&claims()).unwrap();
    assert!(verify(&token, &parsed, NOW, None).is_ok());

    let lying = format!(
        r#"{{"tenant_id":"ten_1","keys":[{{"key_id":"{}","public_key":"{}"}}]}}"#,
        a.key_id(),
        b.verifying_key().public_key_b64()
    );
    assert_eq!(parse_key_set(&lying).unwrap_err().code(), "invalid_key");
    assert_eq!(parse_key_set("[]").unwrap_err().code(), "invalid_key");
}

#[test]
fn a_token_of_another_tenant_is_refused_even_under_the_right_key() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let other_tenant = KeySet::new("ten_2", vec![signer.verifying_key().clone()]).unwrap();
    let err = verify(&token, &other_tenant, NOW, Some("192.0.2.7")).unwrap_err();
    assert_eq!(err, AccessTokenError::WrongTenant { token_tenant: "ten_1".into(), expected: "ten_2".into() });
    assert_eq!(err.code(), "wrong_tenant");
    assert!(err.to_string().contains("ten_1") && err.to_string().contains("ten_2"), "{err}");
    // Tenant ids compare exactly: no prefix, case or padding games.
    for near in ["ten_", "ten_10", "TEN_1"] {
        let set = KeySet::new(near, vec![signer.verifying_key().clone()]).unwrap();
        assert_eq!(verify(&token, &set, NOW, None).unwrap_err().code(), "wrong_tenant", "{near}");
    }
    assert!(verify(&token, &keys(&signer), NOW, Some("192.0.2.7")).is_ok());
}

#[test]
fn a_key_set_must_name_its_tenant() {
    let key = new_signer().verifying_key().clone();
    for bad in ["", "   ", &"t".repeat(MAX_FIELD_LEN + 1)] {
        assert_eq!(KeySet::new(bad, vec![key.clone()]).unwrap_err().code(), "invalid_key", "{bad:?}");
    }
    let published = format!(r#"{{"key_id":"{}","public_key":"{}"}}"#, key.key_id, key.public_key_b64());
    for json in [format!(r#"{{"keys":[{published}]}}"#), format!(r#"{{"tenant_id":" ","keys":[{published}]}}"#)] {
        let err = parse_key_set(&json).unwrap_err();
        assert!(err.to_string().contains("names no tenant"), "{err}");
    }
    let set = parse_key_set(&format!(r#"{{"tenant_id":"ten_9","keys":[{published}]}}"#)).unwrap();
    assert_eq!((set.tenant_id(), set.keys()), ("ten_9", &[key][..]));
}
