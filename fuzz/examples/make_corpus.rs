//! Regenerates fuzz/corpus/ and the soft-authenticator fixtures in fuzz/fixtures/ with the
//! project's own code: the soft authenticator (packed with a CA, self and none
//! attestation, assertions), its rcgen PKI, ring keys for COSE, and the swtpm recordings in
//! fuzz/fixtures/tpm/. Crash inputs under fuzz/corpus/<target>/crash-* are kept.
//!
//! cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example make_corpus

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use tether_attestation::authdata::AuthenticatorData;
use tether_attestation::json::{AuthenticationResponseJson, RegistrationResponseJson};
use tether_attestation::tpm::TpmPublic;
use tether_attestation::tpm::credential::make_credential;
use tether_attestation::tpm::pcr::PcrValues;
use tether_attestation::{b64url_decode, b64url_encode};
use tether_fuzz::fixtures::{CHALLENGE, ORIGIN, RP_ID, tpm as fx};
use tether_fuzz::frame::{frame, frame_all};
use tether_fuzz::tpm::FuzzRng;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use time::macros::datetime;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Out {
    root: PathBuf,
    tbs: Vec<String>,
    signed: Vec<String>,
}

impl Out {
    fn seed(&self, target: &str, name: &str, data: &[u8]) -> Result<()> {
        let dir = self.root.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), data)?;
        Ok(())
    }

    fn fixture(&self, name: &str, data: &[u8]) -> Result<()> {
        std::fs::write(self.root.join("fixtures").join(name), data)?;
        Ok(())
    }

    fn known_cert(&mut self, der: &[u8]) {
        let digest = ring::digest::digest(&ring::digest::SHA256, &tether_fuzz::x509::tbs(der));
        self.tbs.push(hex::encode(digest));
    }
}

fn pem_der(pem: &str) -> Result<Vec<u8>> {
    Ok(x509_parser::pem::parse_x509_pem(pem.as_bytes())?.1.contents)
}

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    clear_generated(&root.join("corpus"))?;
    let mut out = Out { root, tbs: Vec::new(), signed: Vec::new() };
    webauthn(&mut out)?;
    cose(&out)?;
    tpm(&mut out)?;
    analyze(&out)?;
    access_tokens(&out)?;
    openvpn(&out)?;
    out.fixture("known-tbs.txt", (out.tbs.join("\n") + "\n").as_bytes())?;
    out.fixture("assertion-signed.txt", (out.signed.join("\n") + "\n").as_bytes())?;
    Ok(())
}

/// Removes generated seeds, keeping crash reproducers (crash-*, oom-*, timeout-*).
fn clear_generated(corpus: &Path) -> Result<()> {
    let Ok(dirs) = std::fs::read_dir(corpus) else { return Ok(()) };
    for dir in dirs.filter_map(std::result::Result::ok) {
        for file in std::fs::read_dir(dir.path())?.filter_map(std::result::Result::ok) {
            let name = file.file_name().to_string_lossy().into_owned();
            if !["crash-", "oom-", "timeout-", "leak-", "slow-"].iter().any(|p| name.starts_with(p)) {
                std::fs::remove_file(file.path())?;
            }
        }
    }
    Ok(())
}

fn creation_options() -> String {
    serde_json::json!({
        "rp": {"id": RP_ID, "name": "Fuzz"},
        "user": {"id": b64url_encode(b"worker-1"), "name": "w1", "displayName": "Worker One"},
        "challenge": b64url_encode(&CHALLENGE),
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "attestation": "direct",
    })
    .to_string()
}

fn request_options() -> String {
    serde_json::json!({"rpId": RP_ID, "challenge": b64url_encode(&CHALLENGE), "userVerification": "required"})
        .to_string()
}

fn webauthn(out: &mut Out) -> Result<()> {
    let pki =
        TestPki::generate_with_validity("Tether Fuzz", datetime!(2026-01-01 0:00 UTC), datetime!(2036-01-01 0:00 UTC))?;
    out.fixture("softkey-root.pem", pki.root_cert_pem.as_bytes())?;
    let root_der = pem_der(&pki.root_cert_pem)?;
    let intermediate_der = pem_der(&pki.intermediate_cert_pem)?;
    out.known_cert(&root_der);
    out.known_cert(&intermediate_der);
    out.seed("trust_store", "softkey-root.pem", pki.root_cert_pem.as_bytes())?;
    out.seed("trust_store", "softkey-root.der", &root_der)?;
    let bundle = format!("{}{}", pki.intermediate_cert_pem, pki.root_cert_pem);
    out.seed("trust_store", "softkey-bundle.pem", bundle.as_bytes())?;

    let packed = AttestationMode::Packed {
        ca_cert_pem: pki.intermediate_cert_pem.clone(),
        ca_key_pem: pki.intermediate_key_pem.clone(),
    };
    let aaguid = tether_attestation::uuid::Uuid::from_bytes([0x7e; 16]);
    for (name, mode) in
        [("packed", packed), ("self", AttestationMode::SelfAttestation), ("none", AttestationMode::None)]
    {
        let mut auth = SoftAuthenticator::new(mode, aaguid)?;
        let json = auth.make_credential(&creation_options(), ORIGIN)?;
        out.seed("registration_json", &format!("softkey-{name}"), json.as_bytes())?;
        let response = RegistrationResponseJson::from_json(&json)?;
        let client_data = b64url_decode(&response.response.client_data_json)?;
        let object = b64url_decode(&response.response.attestation_object)?;
        out.seed("attestation_object", &format!("softkey-{name}"), &frame(&[&client_data, &object]))?;
        let decoded: ciborium::Value = ciborium::de::from_reader(object.as_slice())?;
        let field = |map: &ciborium::Value, key: &str| {
            map.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v.clone()))
        };
        let auth_data = field(&decoded, "authData").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
        out.seed("authenticator_data", &format!("softkey-create-{name}"), &auth_data)?;
        if name == "packed" {
            out.seed("client_data", "softkey-create", &client_data)?;
            out.seed("client_data", "softkey-create.b64", response.response.client_data_json.as_bytes())?;
            let x5c: Vec<Vec<u8>> = field(&decoded, "attStmt")
                .and_then(|s| field(&s, "x5c"))
                .and_then(|a| a.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_bytes().cloned())
                .collect();
            let leaf = x5c.first().cloned().unwrap_or_default();
            out.known_cert(&leaf);
            out.seed("chain", "softkey-packed", &frame_all(&[&leaf, &intermediate_der]))?;
            out.seed("chain", "softkey-with-root", &frame_all(&[&leaf, &intermediate_der, &root_der]))?;
            out.seed("chain", "softkey-wrong-order", &frame_all(&[&intermediate_der, &leaf]))?;
            out.seed("trust_store", "softkey-leaf.der", &leaf)?;
        }
        if name == "self" {
            assertions(out, &mut auth, &auth_data)?;
        }
    }
    Ok(())
}

/// Two assertions by the self-attested credential, whose key and id become fixtures.
fn assertions(out: &mut Out, auth: &mut SoftAuthenticator, registration_auth_data: &[u8]) -> Result<()> {
    let credential = AuthenticatorData::parse(registration_auth_data)?.attested.ok_or("no credential")?;
    out.fixture("assertion-key.cose", &credential.public_key.to_cose())?;
    out.fixture("assertion-credential-id.bin", &credential.credential_id)?;
    out.seed("cose_key", "softkey-es256", &frame(&[&credential.public_key.to_cose(), b"", b""]))?;
    for n in 1..=2 {
        let json = auth.get_assertion(&request_options(), ORIGIN)?;
        out.seed("assertion_json", &format!("softkey-{n}"), json.as_bytes())?;
        let response = AuthenticationResponseJson::from_json(&json)?;
        let auth_data = b64url_decode(&response.response.authenticator_data)?;
        let client_data = b64url_decode(&response.response.client_data_json)?;
        let signature = b64url_decode(&response.response.signature)?;
        out.seed("assertion", &format!("softkey-{n}"), &frame(&[&auth_data, &client_data, &signature]))?;
        out.seed("authenticator_data", &format!("softkey-get-{n}"), &auth_data)?;
        out.seed("client_data", &format!("softkey-get-{n}"), &client_data)?;
        let hash = ring::digest::digest(&ring::digest::SHA256, &client_data);
        let signed = [auth_data.as_slice(), hash.as_ref()].concat();
        out.signed.push(hex::encode(ring::digest::digest(&ring::digest::SHA256, &signed)));
    }
    Ok(())
}

/// COSE keys with a valid signature over a message: ES256 and Ed25519 from ring.
fn cose(out: &Out) -> Result<()> {
    let rng = SystemRandom::new();
    let message = b"tether fuzz message";
    let pkcs8 = ring_ok(EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng))?;
    let key = ring_ok(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng))?;
    let point = key.public_key().as_ref();
    let ec2 = ciborium::Value::Map(vec![
        (1.into(), 2.into()),
        (3.into(), (-7).into()),
        ((-1).into(), 1.into()),
        ((-2).into(), ciborium::Value::Bytes(point[1..33].to_vec())),
        ((-3).into(), ciborium::Value::Bytes(point[33..].to_vec())),
    ]);
    let signature = ring_ok(key.sign(&rng, message))?;
    out.seed("cose_key", "es256-signed", &frame(&[&cbor(&ec2)?, signature.as_ref(), message]))?;

    let pkcs8 = ring_ok(Ed25519KeyPair::generate_pkcs8(&rng))?;
    let key = ring_ok(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()))?;
    let okp = ciborium::Value::Map(vec![
        (1.into(), 1.into()),
        (3.into(), (-8).into()),
        ((-1).into(), 6.into()),
        ((-2).into(), ciborium::Value::Bytes(key.public_key().as_ref().to_vec())),
    ]);
    out.seed("cose_key", "ed25519-signed", &frame(&[&cbor(&okp)?, key.sign(message).as_ref(), message]))?;
    Ok(())
}

fn ring_ok<T, E: std::fmt::Debug>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| format!("ring: {e:?}").into())
}

fn cbor(value: &ciborium::Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out)?;
    Ok(out)
}

/// The swtpm recordings (fixtures/tpm/) as seeds for every TPM target.
fn tpm(out: &mut Out) -> Result<()> {
    for (name, data) in
        [("rsa-ak", fx::RSA_AK_PUB), ("ecc-ak", fx::ECC_AK_PUB), ("rsa-ek", fx::RSA_EK_PUB), ("ecc-ek", fx::ECC_EK_PUB)]
    {
        out.seed("tpm_public", name, data)?;
    }
    let ecc_tpmt = TpmPublic::parse(fx::ECC_AK_PUB)?.tpmt_bytes().to_vec();
    out.seed("tpm_public", "ecc-ak-tpmt", &ecc_tpmt)?;
    for (name, data) in [
        ("rsa-quote", fx::RSA_QUOTE_MSG),
        ("ecc-quote", fx::ECC_QUOTE_MSG),
        ("rsa-certify", fx::RSA_CERTIFY_MSG),
        ("plain", fx::PLAIN_MSG),
    ] {
        out.seed("tpm_attest", name, data)?;
    }
    for (name, data) in [
        ("rsa-quote", fx::RSA_QUOTE_SIG),
        ("ecc-quote", fx::ECC_QUOTE_SIG),
        ("rsa-certify", fx::RSA_CERTIFY_SIG),
        ("plain", fx::PLAIN_SIG),
    ] {
        out.seed("tpm_signature", name, data)?;
    }
    let quote = |selector: u8, parts: &[&[u8]]| [&[selector][..], &frame(parts)].concat();
    out.seed("tpm_quote", "rsa-pcrs", &quote(0, &[fx::RSA_QUOTE_MSG, fx::RSA_QUOTE_SIG, fx::RSA_QUOTE_PCRS]))?;
    out.seed("tpm_quote", "rsa-no-pcrs", &quote(0, &[fx::RSA_QUOTE_MSG, fx::RSA_QUOTE_SIG, b""]))?;
    out.seed("tpm_quote", "ecc-pcrs", &quote(1, &[fx::ECC_QUOTE_MSG, fx::ECC_QUOTE_SIG, fx::ECC_QUOTE_PCRS]))?;
    out.seed("tpm_quote", "rsa-certify", &quote(0, &[fx::RSA_CERTIFY_MSG, fx::RSA_CERTIFY_SIG, b""]))?;
    out.seed("tpm_pcr", "rsa-quote-pcrs", fx::RSA_QUOTE_PCRS)?;
    out.seed("tpm_pcr", "ecc-quote-pcrs", fx::ECC_QUOTE_PCRS)?;
    // The same values as `tpm2_pcrread -o` output after a wire-format selection.
    let values = PcrValues::from_tpm2_tools(fx::RSA_QUOTE_PCRS)?;
    let concatenated: Vec<u8> = values.values.iter().flat_map(|v| v.value.clone()).collect();
    let mut selection = Vec::new();
    let mut banks: Vec<(u16, [u8; 3])> = Vec::new();
    for v in &values.values {
        let id = v.bank.id();
        if banks.last().is_none_or(|(b, _)| *b != id) {
            banks.push((id, [0; 3]));
        }
        if let Some((_, bitmap)) = banks.last_mut() {
            bitmap[(v.index / 8) as usize] |= 1 << (v.index % 8);
        }
    }
    for (id, bitmap) in banks {
        selection.extend_from_slice(&id.to_be_bytes());
        selection.push(3);
        selection.extend_from_slice(&bitmap);
    }
    out.seed("tpm_pcr", "pcrread", &frame(&[&selection, &concatenated]))?;

    let issuer = pem_der(fx::LOCALCA_ISSUER_PEM)?;
    let root = pem_der(fx::LOCALCA_ROOT_PEM)?;
    for der in [fx::RSA_EK_CERT, fx::ECC_EK_CERT, &issuer, &root] {
        out.known_cert(der);
    }
    out.seed("tpm_ek", "rsa-ek.der", fx::RSA_EK_CERT)?;
    out.seed("tpm_ek", "ecc-ek.der", fx::ECC_EK_CERT)?;
    out.seed("tpm_ek", "rsa-ek-nv-padded.der", &[fx::RSA_EK_CERT, &[0xff; 64]].concat())?;
    let pem = |der: &[u8]| {
        let b64 = base64_std(der);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
    };
    out.seed("tpm_ek", "ecc-ek-chain.pem", format!("{}{}", pem(fx::ECC_EK_CERT), fx::LOCALCA_ISSUER_PEM).as_bytes())?;
    out.seed("chain", "swtpm-rsa-ek", &frame_all(&[fx::RSA_EK_CERT, &issuer]))?;
    out.seed(
        "trust_store",
        "swtpm-localca.pem",
        format!("{}{}", fx::LOCALCA_ISSUER_PEM, fx::LOCALCA_ROOT_PEM).as_bytes(),
    )?;

    for (name, ek) in [("rsa", fx::RSA_EK_PUB), ("ecc", fx::ECC_EK_PUB)] {
        let secret = b"0123456789abcdef";
        let credential = make_credential(&TpmPublic::parse(ek)?, fx::RSA_AK_NAME, secret, &mut FuzzRng::new(ek))?;
        let file = credential.to_tpm2_tools()?;
        out.seed("tpm_credential", name, &frame(&[ek, fx::RSA_AK_NAME, secret, &file]))?;
    }
    Ok(())
}

fn base64_std(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Event logs in the `tether analyze` format: every event type and optional member, a farm
/// (four devices answering from one address), malformed lines and extreme values.
fn analyze(out: &Out) -> Result<()> {
    let log = [
        r#"{"type":"enrollment","at":"2026-01-05T09:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"203.0.113.7","attested":true,"format":"packed","home":{"lat":52.37,"lon":4.89,"country":"NL"}}"#,
        r#"{"type":"presence","at":"2026-01-05T10:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"203.0.113.7","outcome":"ok","issued_at":"2026-01-05T09:59:00Z","answered_at":"2026-01-05T10:00:00Z","sign_count":3,"geo":{"lat":52.37,"lon":4.89,"country":"NL","asn":1136},"tpm":{"clock":1000,"reset_count":2,"restart_count":0}}"#,
        r#"{"type":"presence","at":"2026-01-05T11:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"::ffff:198.51.100.9","outcome":"ok","answered_at":"2026-01-05T11:00:00Z","sign_count":2,"geo":{"lat":40.71,"lon":-74.0,"country":"US"},"tpm":{"clock":10,"reset_count":1},"posture":{"usb":[{"vid":"0x1d6b","pid":2,"product":"PiKVM"}],"processes":["anydesk"],"timezone":"Asia/Shanghai","displays":["Virtual"],"lan":{"gateway_mac_hash":"aa","wifi_bssid_hash":"bb"}}}"#,
        r#"{"type":"presence","at":"2026-01-05T12:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"203.0.113.7","outcome":"missed","issued_at":"2026-01-05T11:55:00Z"}"#,
        r#"{"type":"session","at":"2026-01-05T12:30:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"203.0.113.7","gateway":"vpn-1"}"#,
        r#"{"type":"presence","at":"2026-01-05T13:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"203.0.113.7","outcome":"failed"}"#,
        "not json",
        r#"{"type":"presence","at":"9999-12-31T23:59:59.999999999Z","tenant":"acme","worker":"w1","device":"d1","ip":"0.0.0.0","outcome":"ok","answered_at":"0000-01-01T00:00:00Z","sign_count":18446744073709551615,"geo":{"lat":1e308,"lon":-1e308,"accuracy_km":0}}"#,
    ];
    out.seed("analyze_events", "timeline.jsonl", (log.join("\n") + "\n").as_bytes())?;
    let mut farm = Vec::new();
    for (i, device) in ["f1", "f2", "f3", "f4"].iter().enumerate() {
        farm.push(format!(
            r#"{{"type":"enrollment","at":"2026-02-01T08:0{i}:00Z","tenant":"t{}","worker":"w{i}","device":"{device}","ip":"192.0.2.10","attested":false,"format":"none"}}"#,
            i % 2
        ));
        farm.push(format!(
            r#"{{"type":"presence","at":"2026-02-01T09:0{i}:00Z","tenant":"t{}","worker":"w{i}","device":"{device}","ip":"192.0.2.10","outcome":"ok","issued_at":"2026-02-01T09:00:00Z","answered_at":"2026-02-01T09:0{i}:00Z","posture":{{"lan":{{"gateway_mac_hash":"same"}}}}}}"#,
            i % 2
        ));
    }
    out.seed("analyze_events", "farm.jsonl", farm.join("\n").as_bytes())?;
    Ok(())
}

/// Tokens signed by the fuzz signing key, each with a time inside its lifetime and its address.
fn access_tokens(out: &Out) -> Result<()> {
    use tether_attestation::access_token::{AccessTokenClaims, pkcs8_to_pem};
    let signer = tether_fuzz::access_token::signer();
    let claims = |ip: &str, iat: i64| AccessTokenClaims {
        issuer: tether_fuzz::access_token::ISSUER.into(),
        tenant_id: tether_fuzz::access_token::TENANT.into(),
        worker_external_id: "alice".into(),
        device_id: "dev_1".into(),
        credential_id: "cred_1".into(),
        source_ip: ip.into(),
        issued_at_ms: iat,
        expires_at_ms: iat + 300_000,
        token_id: "jti_1".into(),
        key_id: String::new(),
    };
    for (name, ip, presented) in [
        ("v4", "192.0.2.7", "192.0.2.7"),
        ("v6", "2001:db8::1", "[2001:db8::1]"),
        ("mapped", "::ffff:198.51.100.2", ""),
    ] {
        let iat = 1_767_225_600_000;
        let token = signer.sign(&claims(ip, iat))?;
        let now = (iat + 1000).to_be_bytes();
        out.seed("access_token", &format!("token-{name}"), &frame(&[&now, presented.as_bytes(), token.as_bytes()]))?;
    }
    let keys = tether_fuzz::access_token::key_set(tether_fuzz::access_token::TENANT);
    out.seed("access_token", "key-set.json", &frame(&[b"", b"", keys.to_json().as_bytes()]))?;
    let jwks = tether_attestation::access_token::jwks_json(keys.keys());
    out.seed("access_token", "jwks.json", &frame(&[b"", b"", jwks.as_bytes()]))?;
    let pem = pkcs8_to_pem(&tether_fuzz::access_token::signer_pkcs8());
    out.seed("access_token", "signing-key.pem", &frame(&[b"", b"", pem.as_bytes()]))?;
    Ok(())
}

/// What OpenVPN hands `tether gateway openvpn-verify|openvpn-connect`.
fn openvpn(out: &Out) -> Result<()> {
    let env = |vars: &[&str]| vars.join("\0").into_bytes();
    let verify = env(&[
        "script_type=user-pass-verify",
        "common_name=dev_123",
        "untrusted_ip=192.0.2.7",
        "untrusted_port=50000",
        "IV_PLAT=linux",
        "UV_TETHER_TOKEN=tt1.0123456789abcdef.e30.c2ln",
    ]);
    out.seed("openvpn", "user-pass-verify", &frame(&[b"w-alice\ntt1.0123456789abcdef.e30.c2ln\n", &verify]))?;
    let connect = env(&[
        "script_type=client-connect",
        "common_name=dev_123",
        "username=w-alice",
        "trusted_ip6=2001:db8::1",
        "untrusted_ip6=2001:db8::1",
    ]);
    out.seed("openvpn", "client-connect", &frame(&[b"w-alice\n-\n", &connect]))?;
    out.seed(
        "openvpn",
        "conflict",
        &frame(&[b"w-bob\nsecret", &env(&["trusted_ip=192.0.2.1", "untrusted_ip=192.0.2.2"])]),
    )?;
    Ok(())
}
