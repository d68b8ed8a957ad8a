use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;

/// Whole seconds, as JWTs carry times.
const NOW: i64 = 1_700_000_000_000;

fn signer_of(algorithm: KeyAlgorithm) -> AccessTokenSigner {
    AccessTokenSigner::from_pkcs8(&generate_pkcs8(algorithm).unwrap()).unwrap()
}

fn new_signer() -> AccessTokenSigner {
    signer_of(KeyAlgorithm::EdDsa)
}

fn both() -> [AccessTokenSigner; 2] {
    [signer_of(KeyAlgorithm::EdDsa), signer_of(KeyAlgorithm::Es256)]
}

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        issuer: "https://tether.example".into(),
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

/// The signer's key, accepting tenant `ten_1` from the issuer of [`claims`].
fn keys(signer: &AccessTokenSigner) -> KeySet {
    KeySet::new("ten_1", "https://tether.example", vec![signer.verifying_key().clone()]).unwrap()
}

fn b64_json(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn part(token: &str, n: usize) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(n).unwrap()).unwrap()).unwrap()
}

#[test]
fn a_signed_token_is_a_jwt_and_verifies_with_its_claims() {
    for signer in both() {
        let token = signer.sign(&claims()).unwrap();
        let alg = signer.verifying_key().algorithm.jws_name();
        assert_eq!(part(&token, 0), serde_json::json!({"alg": alg, "kid": signer.key_id()}));
        let payload = part(&token, 1);
        assert_eq!(payload["sub"], "alice");
        assert_eq!(payload["aud"], "ten_1");
        assert_eq!(payload["iss"], "https://tether.example");
        assert_eq!((payload["iat"].as_i64(), payload["exp"].as_i64()), (Some(NOW / 1000), Some(NOW / 1000 + 300)));
        assert_eq!(payload["ip"], "192.0.2.7");
        assert_eq!(
            (&payload["dev"], &payload["cred"], &payload["jti"]),
            (&"dev_1".into(), &"cred_1".into(), &"att_1".into())
        );
        let got = verify(&token, &keys(&signer), NOW + 1000, Some("192.0.2.7")).unwrap();
        assert_eq!(got.worker_external_id, "alice");
        assert_eq!(got.source_ip, "192.0.2.7", "IPv4-mapped IPv6 is folded");
        assert_eq!(got.key_id, signer.key_id());
        assert_eq!(got.expires_at_ms, NOW + 300_000);
        assert!(verify(&token, &keys(&signer), NOW, Some("::ffff:192.0.2.7")).is_ok());
        assert!(verify(&token, &keys(&signer), NOW, None).is_ok());
    }
}

#[test]
fn tokens_stay_small_enough_for_an_openvpn_password() {
    // OpenVPN hands the password to `auth-user-pass-verify` as a file line of at most 511 bytes:
    // a typical token (public IPv4 address, a 32-byte credential id) must fit. Longer ids and
    // IPv6 addresses can exceed it (docs/limitations.md).
    let mut c = claims();
    c.issuer = "tether".into();
    c.worker_external_id = "alice@corp.example".into();
    c.tenant_id = "ten_0123456789abcdef01234567".into();
    c.device_id = "dev_0123456789abcdef01234567".into();
    c.token_id = "att_0123456789abcdef01234567".into();
    c.credential_id = "c".repeat(43);
    c.source_ip = "203.0.113.200".into();
    for signer in both() {
        let token = signer.sign(&c).unwrap();
        assert!(token.len() <= 500, "{} bytes", token.len());
    }
}

#[test]
fn key_id_is_derived_from_the_public_key() {
    for signer in both() {
        assert_eq!(signer.key_id(), key_id_for(&signer.verifying_key().public_key));
        assert_eq!(signer.key_id().len(), 16);
    }
    assert_ne!(new_signer().key_id(), new_signer().key_id());
}

#[test]
fn pem_and_der_keys_load_alike() {
    for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
        let pkcs8 = generate_pkcs8(algorithm).unwrap();
        let der = AccessTokenSigner::from_pkcs8(&pkcs8).unwrap();
        let pem = AccessTokenSigner::from_pkcs8(pkcs8_to_pem(&pkcs8).as_bytes()).unwrap();
        assert_eq!(der.key_id(), pem.key_id());
        assert_eq!(der.verifying_key().algorithm, algorithm);
    }
    assert!(matches!(AccessTokenSigner::from_pkcs8(b"not a key"), Err(AccessTokenError::InvalidKey(_))));
    let rsa_pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    assert!(matches!(AccessTokenSigner::from_pkcs8(rsa_pem.as_bytes()), Err(AccessTokenError::InvalidKey(_))));
    // OpenSSL's `genpkey -algorithm ed25519` writes PKCS#8 v1.
    let v1 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    assert!(AccessTokenSigner::from_pkcs8(v1.as_ref()).is_ok());
}

#[test]
fn a_token_from_another_key_with_the_same_id_is_a_bad_signature() {
    for (signer, forger) in
        [(new_signer(), new_signer()), (signer_of(KeyAlgorithm::Es256), signer_of(KeyAlgorithm::Es256))]
    {
        let forged = forger.sign(&claims()).unwrap();
        let [_, body, sig] = <[&str; 3]>::try_from(forged.split('.').collect::<Vec<_>>()).unwrap();
        let alg = signer.verifying_key().algorithm.jws_name();
        let header = b64_json(&serde_json::json!({"typ": "JWT", "alg": alg, "kid": signer.key_id()}));
        let relabeled = format!("{header}.{body}.{sig}");
        assert_eq!(verify(&relabeled, &keys(&signer), NOW, None).unwrap_err().code(), "bad_signature");
        assert_eq!(verify(&forged, &keys(&signer), NOW, None).unwrap_err().code(), "unknown_key_id");
    }
}

#[test]
fn an_altered_payload_is_a_bad_signature() {
    for signer in both() {
        let token = signer.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims();
        other.worker_external_id = "mallory".into();
        let other_token = signer.sign(&other).unwrap();
        let spliced = format!("{}.{}.{}", parts[0], other_token.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(verify(&spliced, &keys(&signer), NOW, None).unwrap_err().code(), "bad_signature");
    }
}

#[test]
fn the_algorithm_is_pinned_by_the_key_never_by_the_token() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let [_, body, sig] = <[&str; 3]>::try_from(token.split('.').collect::<Vec<_>>()).unwrap();
    let k = keys(&signer);
    for alg in ["none", "HS256", "ES256", "RS256", "PS256"] {
        let header = b64_json(&serde_json::json!({"typ": "JWT", "alg": alg, "kid": signer.key_id()}));
        for forged in [format!("{header}.{body}.{sig}"), format!("{header}.{body}.")] {
            let err = verify(&forged, &k, NOW, None).unwrap_err();
            assert!(matches!(err.code(), "wrong_algorithm" | "malformed"), "{alg}: {err}");
        }
    }
    // HMAC keyed with the public key (the classic confusion) is refused before any MAC is computed.
    let header = b64_json(&serde_json::json!({"alg": "HS256", "kid": signer.key_id()}));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &signer.verifying_key().public_key),
        format!("{header}.{body}").as_bytes(),
    );
    let confused = format!("{header}.{body}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    assert_eq!(verify(&confused, &k, NOW, None).unwrap_err().code(), "wrong_algorithm");
    // A header without a kid names no key.
    let header = b64_json(&serde_json::json!({"alg": "EdDSA"}));
    assert_eq!(verify(&format!("{header}.{body}.{sig}"), &k, NOW, None).unwrap_err().code(), "malformed");
}

#[test]
fn time_bounds_are_enforced() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let k = keys(&signer);
    let exp = NOW + 300_000;
    assert_eq!(verify(&token, &k, exp + EXPIRY_LEEWAY_MS, None).unwrap_err().code(), "expired");
    assert!(verify(&token, &k, exp + EXPIRY_LEEWAY_MS - 1, None).is_ok(), "a small leeway after exp");
    assert!(verify(&token, &k, NOW - CLOCK_SKEW_MS, None).is_ok(), "a lagging verifier clock is tolerated");
    assert_eq!(verify(&token, &k, NOW - CLOCK_SKEW_MS - 1, None).unwrap_err().code(), "not_yet_valid");
}

#[test]
fn the_signer_refuses_bad_claims() {
    let signer = new_signer();
    let mut c = claims();
    c.expires_at_ms = c.issued_at_ms + MAX_LIFETIME_MS + 1000;
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.expires_at_ms = c.issued_at_ms;
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.expires_at_ms += 1;
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims", "JWT times are whole seconds");
    let mut c = claims();
    c.source_ip = "gateway.example".into();
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.device_id = "d".repeat(MAX_FIELD_LEN + 1);
    assert_eq!(signer.sign(&c).unwrap_err().code(), "invalid_claims");
    let mut c = claims();
    c.issuer = String::new();
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
    for garbage in [
        String::new(),
        "a.b".into(),
        "..".into(),
        "e30.e30.AAAA".into(),
        format!("{token}.extra"),
        format!("{token} "),
        format!("tt1.{}.e30.AAAA", signer.key_id()),
        format!("{}+", &token[..token.len() - 1]),
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
    // Claims the real key signed but that the signer would never write:
    // sign with the crate directly to bypass the signer's checks.
    let pkcs8 = generate_pkcs8(KeyAlgorithm::EdDsa).unwrap();
    let signer = AccessTokenSigner::from_pkcs8(&pkcs8).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(signer.key_id().into());
    let sign_raw = |mut extra: serde_json::Value| {
        let mut claims = serde_json::json!({
            "iss": "https://tether.example", "sub": "w", "aud": "ten_1", "dev": "d", "cred": "c",
            "ip": "127.0.0.1", "iat": NOW / 1000, "exp": NOW / 1000 + 60, "jti": "j",
        });
        for (name, value) in extra.as_object_mut().unwrap().iter() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap()
    };
    let k = keys(&signer);
    assert!(verify(&sign_raw(serde_json::json!({})), &k, NOW, Some("127.0.0.1")).is_ok());
    for (extra, code) in [
        (serde_json::json!({"admin": true}), "malformed"),
        (serde_json::json!({"exp": null}), "malformed"),
        (serde_json::json!({"aud": ["ten_1"]}), "malformed"),
        (serde_json::json!({"exp": NOW / 1000 + MAX_LIFETIME_MS / 1000 + 1}), "lifetime_too_long"),
        (serde_json::json!({"ip": "localhost"}), "malformed"),
        (serde_json::json!({"aud": "ten_2"}), "wrong_tenant"),
        (serde_json::json!({"tenant": "ten_1"}), "malformed"),
        (serde_json::json!({"iss": "https://evil.example"}), "wrong_issuer"),
    ] {
        assert_eq!(verify(&sign_raw(extra.clone()), &k, NOW, None).unwrap_err().code(), code, "{extra}");
    }
}

#[test]
fn key_sets_round_trip_as_jwks_and_reject_mismatched_ids() {
    let [a, b] = both();
    let set =
        KeySet::new("ten_1", "https://tether.example", vec![a.verifying_key().clone(), b.verifying_key().clone()])
            .unwrap();
    let parsed = parse_key_set(&set.to_json()).unwrap();
    assert_eq!(parsed, set);
    for signer in [&a, &b] {
        assert!(verify(&signer.sign(&claims()).unwrap(), &parsed, NOW, None).is_ok());
    }
    let jwks: serde_json::Value = serde_json::from_str(&jwks_json(set.keys())).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][1]["kty"], "EC");
    assert_eq!(jwks["keys"][1]["crv"], "P-256");
    assert_eq!(parse_jwks(&jwks.to_string()).unwrap(), set.keys());

    let mut lying = jwks.clone();
    lying["keys"][0]["kid"] = serde_json::json!(b.key_id());
    assert_eq!(parse_jwks(&lying.to_string()).unwrap_err().code(), "invalid_key");
    let mut wrong_alg = jwks.clone();
    wrong_alg["keys"][1]["alg"] = serde_json::json!("HS256");
    assert_eq!(parse_jwks(&wrong_alg.to_string()).unwrap_err().code(), "invalid_key");
    let mut off_curve = jwks.clone();
    off_curve["keys"][1]["y"] = jwks["keys"][1]["x"].clone();
    assert_eq!(parse_jwks(&off_curve.to_string()).unwrap_err().code(), "invalid_key");
    let rsa = r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"x"}]}"#;
    assert_eq!(parse_jwks(rsa).unwrap_err().code(), "invalid_key");
    assert_eq!(parse_key_set("[]").unwrap_err().code(), "invalid_key");
}

#[test]
fn a_token_of_another_tenant_or_issuer_is_refused_even_under_the_right_key() {
    let signer = new_signer();
    let token = signer.sign(&claims()).unwrap();
    let key = vec![signer.verifying_key().clone()];
    let other_tenant = KeySet::new("ten_2", "https://tether.example", key.clone()).unwrap();
    let err = verify(&token, &other_tenant, NOW, Some("192.0.2.7")).unwrap_err();
    assert_eq!(err, AccessTokenError::WrongTenant { token_tenant: "ten_1".into(), expected: "ten_2".into() });
    assert!(err.to_string().contains("ten_1") && err.to_string().contains("ten_2"), "{err}");
    // Tenant ids compare exactly: no prefix, case or padding games.
    for near in ["ten_", "ten_10", "TEN_1"] {
        let set = KeySet::new(near, "https://tether.example", key.clone()).unwrap();
        assert_eq!(verify(&token, &set, NOW, None).unwrap_err().code(), "wrong_tenant", "{near}");
    }
    let other_issuer = KeySet::new("ten_1", "https://tether.example/", key).unwrap();
    assert_eq!(verify(&token, &other_issuer, NOW, None).unwrap_err().code(), "wrong_issuer");
    assert!(verify(&token, &keys(&signer), NOW, Some("192.0.2.7")).is_ok());
}

#[test]
fn a_key_set_must_name_its_tenant_and_issuer() {
    let key = new_signer().verifying_key().clone();
    for bad in ["", "   ", &"t".repeat(MAX_FIELD_LEN + 1)] {
        assert_eq!(KeySet::new(bad, "iss", vec![key.clone()]).unwrap_err().code(), "invalid_key", "{bad:?}");
        assert_eq!(KeySet::new("ten_1", bad, vec![key.clone()]).unwrap_err().code(), "invalid_key", "{bad:?}");
    }
    let jwk = key.to_jwk();
    for json in [
        serde_json::json!({"keys": [jwk]}),
        serde_json::json!({"tenant_id": " ", "issuer": "tether", "keys": [jwk]}),
        serde_json::json!({"tenant_id": "ten_9", "keys": [jwk]}),
    ] {
        let err = parse_key_set(&json.to_string()).unwrap_err();
        assert!(err.to_string().contains("names no tenant"), "{err}");
    }
    let set = parse_key_set(&serde_json::json!({"tenant_id": "ten_9", "issuer": "tether", "keys": [jwk]}).to_string())
        .unwrap();
    assert_eq!((set.tenant_id(), set.issuer(), set.keys()), ("ten_9", "tether", &[key][..]));
}
