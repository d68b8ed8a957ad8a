//! Seeds taken at run time from the real-device WebAuthn vectors in
//! `../shared/conformance/webauthn` (the folder attestation/tests/conformance.rs reads). They
//! are never copied into the repository: the regression test reads them in place and
//! `run.sh` writes them to fuzz/target/seeds/ for libFuzzer.

use std::path::{Path, PathBuf};

use ciborium::Value;
use serde_json::Value as Json;
use tether_attestation::authdata::AuthenticatorData;
use tether_attestation::b64url_decode;

use crate::frame::{frame, frame_all};

/// One seed: the target it is for, a file name, and the bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

/// `$TETHER_SHARED_VECTORS`, or ../shared/conformance/webauthn beside the repository.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("TETHER_SHARED_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/webauthn"),
    };
    dir.is_dir().then_some(dir)
}

/// Every seed the vectors in `dir` yield. Unreadable files are skipped: seeds are a help, and
/// the conformance test is what checks the vectors themselves.
pub fn shared_seeds(dir: &Path) -> Vec<Seed> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("vector").to_owned();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                if let Ok(vector) = serde_json::from_str::<Json>(&text) {
                    vector_seeds(&stem, &vector, &mut out);
                }
            }
            Some("pem") => out.push(Seed { target: "trust_store", name: stem, data: text.into_bytes() }),
            _ => {}
        }
    }
    if let Ok(roots) = std::fs::read_dir(dir.join("roots")) {
        for root in roots.filter_map(Result::ok).map(|e| e.path()) {
            if root.extension().is_some_and(|e| e == "pem")
                && let Ok(pem) = std::fs::read(&root)
            {
                let name = root.file_stem().and_then(|s| s.to_str()).unwrap_or("root").to_owned();
                out.push(Seed { target: "trust_store", name, data: pem });
            }
        }
    }
    out
}

fn b64_field(value: &Json, field: &str) -> Option<Vec<u8>> {
    b64url_decode(value.get(field)?.as_str()?).ok()
}

fn cbor_entry<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

fn vector_seeds(stem: &str, vector: &Json, out: &mut Vec<Seed>) {
    let mut push = |target: &'static str, suffix: &str, data: Vec<u8>| {
        out.push(Seed { target, name: format!("{stem}{suffix}"), data });
    };
    let mut public_key = None;
    if let Some(registration) = vector.get("registration_response") {
        push("registration_json", "", registration.to_string().into_bytes());
        let response = registration.get("response").cloned().unwrap_or_default();
        let client_data = b64_field(&response, "clientDataJSON").unwrap_or_default();
        let object = b64_field(&response, "attestationObject").unwrap_or_default();
        push("attestation_object", "", frame(&[&client_data, &object]));
        push("client_data", "-create", client_data);
        let decoded: Option<Value> = ciborium::de::from_reader(object.as_slice()).ok();
        let statement = decoded.as_ref().and_then(|o| cbor_entry(o, "attStmt"));
        if let Some(auth_data) = decoded.as_ref().and_then(|o| cbor_entry(o, "authData")).and_then(Value::as_bytes) {
            public_key = AuthenticatorData::parse(auth_data).ok().and_then(|a| a.attested).map(|c| c.public_key);
            push("authenticator_data", "-create", auth_data.clone());
        }
        let x5c: Vec<&[u8]> = statement
            .and_then(|s| cbor_entry(s, "x5c"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_bytes).map(Vec::as_slice).collect())
            .unwrap_or_default();
        if !x5c.is_empty() {
            push("chain", "", frame_all(&x5c));
            for (i, der) in x5c.iter().enumerate() {
                push("trust_store", &format!("-x5c{i}"), der.to_vec());
                push("tpm_ek", &format!("-x5c{i}"), der.to_vec());
            }
        }
        let bytes = |key: &str| statement.and_then(|s| cbor_entry(s, key)).and_then(Value::as_bytes).cloned();
        if let Some(public_area) = bytes("pubArea") {
            push("tpm_public", "", public_area);
        }
        if let Some(cert_info) = bytes("certInfo") {
            push("tpm_attest", "", cert_info);
        }
    }
    if let Some(assertion) = vector.get("assertion_response") {
        push("assertion_json", "", assertion.to_string().into_bytes());
        let response = assertion.get("response").cloned().unwrap_or_default();
        let auth_data = b64_field(&response, "authenticatorData").unwrap_or_default();
        let client_data = b64_field(&response, "clientDataJSON").unwrap_or_default();
        let signature = b64_field(&response, "signature").unwrap_or_default();
        push("assertion", "", frame(&[&auth_data, &client_data, &signature]));
        if let Some(key) = &public_key {
            // A real signature by a real key: the "one signature, one message" check bites.
            let hash = ring::digest::digest(&ring::digest::SHA256, &client_data);
            let message = [auth_data.as_slice(), hash.as_ref()].concat();
            push("cose_key", "-signed", frame(&[&key.to_cose(), &signature, &message]));
        }
        push("authenticator_data", "-get", auth_data);
        push("client_data", "-get", client_data);
    }
    if let Some(key) = public_key {
        push("cose_key", "", frame(&[&key.to_cose(), b"", b""]));
    }
}
