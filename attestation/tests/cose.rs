//! COSE_Key parsing, canonical encoding, signature verification and SPKI comparison.

use ciborium::Value;
use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use tether_attestation::cose::{CoseError, CredentialPublicKey};

fn encode(entries: Vec<(i64, Value)>) -> Vec<u8> {
    let map = Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
    let mut out = Vec::new();
    ciborium::ser::into_writer(&map, &mut out).expect("encode");
    out
}

fn ec2(alg: i64, crv: i64, point: &[u8]) -> Vec<u8> {
    let half = (point.len() - 1) / 2;
    encode(vec![
        (1, Value::from(2)),
        (3, Value::from(alg)),
        (-1, Value::from(crv)),
        (-2, Value::Bytes(point[1..=half].to_vec())),
        (-3, Value::Bytes(point[half + 1..].to_vec())),
    ])
}

fn rsa(alg: i64, bits: usize) -> Vec<u8> {
    let mut n = vec![0xc5u8; bits / 8];
    n[0] = 0x80 | 0x45;
    encode(vec![
        (1, Value::from(3)),
        (3, Value::from(alg)),
        (-1, Value::Bytes(n)),
        (-2, Value::Bytes(vec![0x01, 0x00, 0x01])),
    ])
}

#[test]
fn es256_key_round_trips_and_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("gen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
    let cose = ec2(-7, 1, pair.public_key().as_ref());
    let key = CredentialPublicKey::from_cose(&cose).expect("parse");
    assert_eq!(key.algorithm(), -7);
    assert_eq!(key.to_cose(), cose, "ciborium writes these maps canonically already");
    assert_eq!(&key.to_cose()[..7], &[0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01]);
    assert_eq!(CredentialPublicKey::from_cose(&key.to_cose()), Ok(key.clone()));
    let sig = pair.sign(&rng, b"message").expect("sign");
    assert_eq!(key.verify(b"message", sig.as_ref()), Ok(()));
    assert_eq!(key.verify(b"massage", sig.as_ref()), Err(CoseError::BadSignature));
}

#[test]
fn es384_and_ed25519_keys_verify() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng).expect("gen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
    let key = CredentialPublicKey::from_cose(&ec2(-35, 2, pair.public_key().as_ref())).expect("parse");
    let sig = pair.sign(&rng, b"m").expect("sign");
    assert_eq!(key.verify(b"m", sig.as_ref()), Ok(()));

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("gen");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let cose = encode(vec![
        (1, Value::from(1)),
        (3, Value::from(-8)),
        (-1, Value::from(6)),
        (-2, Value::Bytes(pair.public_key().as_ref().to_vec())),
    ]);
    let key = CredentialPublicKey::from_cose(&cose).expect("parse");
    assert_eq!(key.algorithm(), -8);
    assert_eq!(key.to_cose(), cose);
    assert_eq!(key.verify(b"m", pair.sign(b"m").as_ref()), Ok(()));
    assert!(key.verify(b"m", &[0u8; 64]).is_err());
}

#[test]
fn rsa_keys_parse_within_size_limits() {
    let key = CredentialPublicKey::from_cose(&rsa(-257, 2048)).expect("2048-bit");
    assert_eq!(key.algorithm(), -257);
    assert_eq!(CredentialPublicKey::from_cose(&key.to_cose()), Ok(key.clone()));
    assert!(key.verify(b"m", &[0u8; 256]).is_err());
    assert_eq!(CredentialPublicKey::from_cose(&rsa(-257, 1024)), Err(CoseError::RsaKeySize(1024)));
    assert!(CredentialPublicKey::from_cose(&rsa(-37, 3072)).is_ok());
}

#[test]
fn non_canonical_input_is_normalised() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("gen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
    let point = pair.public_key().as_ref();
    let shuffled = encode(vec![
        (-3, Value::Bytes(point[33..].to_vec())),
        (-1, Value::from(1)),
        (3, Value::from(-7)),
        (-2, Value::Bytes(point[1..33].to_vec())),
        (1, Value::from(2)),
    ]);
    let key = CredentialPublicKey::from_cose(&shuffled).expect("parse");
    assert_eq!(key.to_cose(), ec2(-7, 1, point));
}

#[test]
fn unusable_keys_are_refused() {
    let point = [4u8; 65];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (ec2(-7, 2, &[4u8; 97]), "ES256 on P-384"),
        (ec2(-36, 3, &[4u8; 133]), "P-521"),
        (ec2(-257, 1, &point), "RSA algorithm on an EC key"),
        (encode(vec![(1, Value::from(4)), (3, Value::from(-7))]), "symmetric key type"),
        (encode(vec![(1, Value::from(2)), (-1, Value::from(1))]), "no alg"),
        (
            encode(vec![
                (1, Value::from(2)),
                (3, Value::from(-7)),
                (-1, Value::from(1)),
                (-2, Value::Bytes(vec![1; 31])),
                (-3, Value::Bytes(vec![1; 32])),
            ]),
            "short x",
        ),
        (
            encode(vec![
                (1, Value::from(2)),
                (3, Value::from(-7)),
                (-1, Value::from(1)),
                (-2, Value::Bytes(vec![1; 32])),
                (-3, Value::Bytes(vec![1; 32])),
                (-4, Value::Bytes(vec![1; 32])),
            ]),
            "private key d",
        ),
        (encode(vec![(1, Value::from(2)), (1, Value::from(2)), (3, Value::from(-7))]), "duplicate kty"),
        (
            encode(vec![
                (1, Value::from(1)),
                (3, Value::from(-8)),
                (-1, Value::from(4)),
                (-2, Value::Bytes(vec![1; 32])),
            ]),
            "X25519 is not a signing curve",
        ),
        (
            encode(vec![
                (1, Value::from(3)),
                (3, Value::from(-65535)),
                (-1, Value::Bytes(vec![0xff; 256])),
                (-2, Value::Bytes(vec![1, 0, 1])),
            ]),
            "RS1 credential keys are insecure",
        ),
    ];
    for (bytes, why) in cases {
        assert!(CredentialPublicKey::from_cose(&bytes).is_err(), "{why} was accepted");
    }
    let mut with_trailer = ec2(-7, 1, &point);
    with_trailer.push(0);
    assert!(CredentialPublicKey::from_cose(&with_trailer).is_err());
}

#[test]
fn keys_compare_with_certificate_spkis() {
    let rcgen_key = rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let key = CredentialPublicKey::from_cose(&ec2(-7, 1, rcgen_key.public_key_raw())).expect("parse");
    assert!(key.matches_spki_der(&rcgen_key.subject_public_key_info()));
    let other = rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    assert!(!key.matches_spki_der(&other.subject_public_key_info()));
    assert!(!key.matches_spki_der(b"not DER"));
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let ed_key = CredentialPublicKey::from_cose(&encode(vec![
        (1, Value::from(1)),
        (3, Value::from(-8)),
        (-1, Value::from(6)),
        (-2, Value::Bytes(ed.public_key_raw().to_vec())),
    ]))
    .expect("parse");
    assert!(ed_key.matches_spki_der(&ed.subject_public_key_info()));
    assert!(!ed_key.matches_spki_der(&rcgen_key.subject_public_key_info()));
}

/// Found by fuzz/cose_key: with a small-order Ed25519 key (here the identity point) the
/// signature R = identity, S = 0 verifies for every message. Such keys are refused, in
/// every encoding (sign bit set, non-canonical y = p + 1).
#[test]
fn small_order_ed25519_keys_are_refused() {
    let okp = |x: Vec<u8>| {
        encode(vec![(1, Value::from(1)), (3, Value::from(-8)), (-1, Value::from(6)), (-2, Value::Bytes(x))])
    };
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    let mut signed_identity = identity.clone();
    signed_identity[31] = 0x80;
    let mut p_plus_1 = vec![0xffu8; 32];
    p_plus_1[0] = 0xee;
    p_plus_1[31] = 0x7f;
    let order_8 = hex::decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05").expect("hex");
    for x in [identity, signed_identity, p_plus_1, order_8, vec![0; 32]] {
        assert_eq!(CredentialPublicKey::from_cose(&okp(x)), Err(CoseError::WeakEd25519Key));
    }
    // An ordinary key whose encoding merely starts like a small-order one is accepted.
    let mut fine = vec![0u8; 32];
    fine[0] = 1;
    fine[5] = 9;
    assert!(!matches!(CredentialPublicKey::from_cose(&okp(fine)), Err(CoseError::WeakEd25519Key)));
}
