//! Gateway access tokens (attestation/src/access_token.rs): `verify`, the published key
//! set a gateway loads, and the signer's key material.

use std::sync::OnceLock;

use tether_attestation::access_token::{
    AccessTokenSigner, CLOCK_SKEW_MS, EXPIRY_LEEWAY_MS, Jwk, KeyAlgorithm, KeySet, MAX_LIFETIME_MS, VerifyingKey,
    canonical_ip, key_id_for, parse_jwks, parse_key_set, peek_key_id, verify,
};

use crate::frame::split;

/// PKCS#8 v1 DER of an Ed25519 key: this prefix, then the 32-byte seed.
const PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// The fuzz signing key's seed (a fixed test key: the seeds' tokens are signed with it).
const SEED: [u8; 32] = [0x42; 32];
/// The tenant the fuzz verifier accepts (the seeds' tokens are issued in it).
pub const TENANT: &str = "ten_1";
/// The issuer the fuzz verifier accepts (the seeds' tokens name it).
pub const ISSUER: &str = "https://tether.fuzz.example";

/// The PKCS#8 material of the fuzz signing key.
pub fn signer_pkcs8() -> Vec<u8> {
    [&PKCS8_V1_PREFIX[..], &SEED].concat()
}

pub fn signer() -> &'static AccessTokenSigner {
    static SIGNER: OnceLock<AccessTokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| match AccessTokenSigner::from_pkcs8(&signer_pkcs8()) {
        Ok(signer) => signer,
        Err(e) => panic!("the fuzz signing key does not load: {e}"),
    })
}

/// The fuzz key and a key nobody holds, accepting [`TENANT`]'s tokens from [`ISSUER`].
pub fn key_set(tenant: &str) -> KeySet {
    let nobodys = match VerifyingKey::new(KeyAlgorithm::EdDsa, &[7; 32]) {
        Ok(key) => key,
        Err(e) => panic!("the fuzz key set does not build: {e}"),
    };
    match KeySet::new(tenant, ISSUER, vec![signer().verifying_key().clone(), nobodys]) {
        Ok(set) => set,
        Err(e) => panic!("the fuzz key set does not build: {e}"),
    }
}

/// Input = frame(now_ms as up to 8 big-endian bytes, presented address) ‖ token (a JWT). A
/// token verifies only if it is exactly what the fuzz key signs for its claims (Ed25519 is
/// deterministic and the JWT header and claims serialize one way), from [`ISSUER`], in
/// [`TENANT`], at a time inside its lifetime, from its own address. The same bytes are also
/// tried as a key set file, as a JWKS document and as signing key material.
pub fn access_token(data: &[u8]) {
    let parts = split(data, 3);
    let now_ms = parts[0].iter().take(8).fold(0i64, |acc, &b| (acc << 8) | i64::from(b));
    let presented = std::str::from_utf8(parts[1]).ok().filter(|s| !s.is_empty());
    let keys = key_set(TENANT);
    if let Ok(token) = std::str::from_utf8(parts[2]) {
        check_token(token, &keys, now_ms, presented);
        published_key_set(token);
        jwks(token);
    }
    let _ = AccessTokenSigner::from_pkcs8(parts[2]);
}

fn check_token(token: &str, keys: &KeySet, now_ms: i64, presented: Option<&str>) {
    let Ok(claims) = verify(token, keys, now_ms, presented) else { return };
    assert_eq!(signer().sign(&claims).as_deref(), Ok(token), "forged or non-canonical token accepted");
    assert_eq!(claims.tenant_id, keys.tenant_id(), "another tenant's token accepted");
    assert_eq!(claims.issuer, keys.issuer(), "another issuer's token accepted");
    assert_eq!(peek_key_id(token).as_deref(), Ok(claims.key_id.as_str()));
    let lifetime = claims.expires_at_ms - claims.issued_at_ms;
    assert!(lifetime > 0 && lifetime <= MAX_LIFETIME_MS, "lifetime {lifetime}");
    assert!(now_ms < claims.expires_at_ms.saturating_add(EXPIRY_LEEWAY_MS));
    assert!(claims.issued_at_ms <= now_ms.saturating_add(CLOCK_SKEW_MS));
    let token_ip = canonical_ip(&claims.source_ip);
    assert!(token_ip.is_some_and(|ip| ip.to_string() == claims.source_ip), "source address is canonical");
    if let Some(presented) = presented {
        assert_eq!(canonical_ip(presented), token_ip, "presented from another address");
    }
    let past_leeway = claims.expires_at_ms.saturating_add(EXPIRY_LEEWAY_MS);
    assert!(verify(token, keys, past_leeway, None).is_err(), "valid past its expiry and the leeway");
    let without_its_key = KeySet::new(keys.tenant_id(), keys.issuer(), keys.keys()[1..].to_vec());
    assert!(without_its_key.is_ok_and(|k| verify(token, &k, now_ms, None).is_err()), "valid without its key");
    let elsewhere = key_set(&format!("{}x", keys.tenant_id()));
    assert!(verify(token, &elsewhere, now_ms, presented).is_err(), "valid in another tenant");
}

fn published_key_set(text: &str) {
    let Ok(set) = parse_key_set(text) else { return };
    assert!(!set.tenant_id().trim().is_empty(), "a key set without a tenant accepted");
    assert!(!set.issuer().trim().is_empty(), "a key set without an issuer accepted");
    assert_eq!(parse_key_set(&set.to_json()).as_ref(), Ok(&set), "a key set does not round-trip");
    check_keys(set.keys());
}

fn jwks(text: &str) {
    let Ok(keys) = parse_jwks(text) else { return };
    check_keys(&keys);
}

fn check_keys(keys: &[VerifyingKey]) {
    for key in keys {
        assert_eq!(key.key_id, key_id_for(&key.public_key), "a key published under another key's id");
        let jwk: Result<Jwk, _> = serde_json::from_value(key.to_jwk());
        assert!(jwk.is_ok_and(|jwk| VerifyingKey::from_jwk(&jwk).as_ref() == Ok(key)), "a JWK does not round-trip");
    }
}
