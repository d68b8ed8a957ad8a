//! `tether verify-attestation` run as a real process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tether_attestation::b64url_encode;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use time::{Duration, OffsetDateTime};

const RP_ID: &str = "tether.example";
const ORIGIN: &str = "https://tether.example";
const CHALLENGE: &[u8] = b"offline-verification-challenge!!";
const AAGUID: &str = "3b6c1a3e-0d0b-4a8e-9f49-4b4a4fdfd8b1";

struct Run {
    code: i32,
    json: Value,
    stderr: String,
}

fn tether(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("verify-attestation")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tether");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("tether runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "exactly one JSON object on stdout, got: {stdout}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
    };
    Run { code: output.status.code().unwrap_or(-1), json, stderr: String::from_utf8_lossy(&output.stderr).to_string() }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

fn creation_options() -> String {
    serde_json::json!({
        "rp": { "id": RP_ID, "name": "Tether" },
        "user": { "id": b64url_encode(b"worker-7"), "name": "grace", "displayName": "Grace" },
        "challenge": b64url_encode(CHALLENGE),
        "pubKeyCredParams": [{ "type": "public-key", "alg": -7 }],
        "attestation": "direct",
    })
    .to_string()
}

/// A packed registration from the soft authenticator under `pki`, written to `dir`.
fn softkey_registration(dir: &Path, pki: &TestPki) -> PathBuf {
    let mode = AttestationMode::Packed {
        ca_cert_pem: pki.intermediate_cert_pem.clone(),
        ca_key_pem: pki.intermediate_key_pem.clone(),
    };
    let aaguid = tether_attestation::uuid::Uuid::parse_str(AAGUID).expect("uuid");
    let mut authenticator = SoftAuthenticator::new(mode, aaguid).expect("authenticator");
    let json = authenticator.make_credential(&creation_options(), ORIGIN).expect("registration");
    write(dir, "registration.json", &json)
}

fn base_args<'a>(challenge: &'a str, anchors: &'a Path) -> Vec<&'a str> {
    vec![
        "--rp-id",
        RP_ID,
        "--origin",
        ORIGIN,
        "--challenge",
        challenge,
        "--trust-anchors",
        anchors.to_str().expect("utf8 path"),
    ]
}

fn assert_all_keys(json: &Value) {
    for key in
        ["verified", "format", "attestation_type", "aaguid", "credential_id", "trust_anchor", "user_verified", "error"]
    {
        assert!(json.get(key).is_some(), "missing key {key} in {json}");
    }
}

#[test]
fn softkey_packed_registration_is_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate("Acme Laptops").expect("pki");
    let file = softkey_registration(dir.path(), &pki);
    let anchors = write(dir.path(), "root.pem", &pki.root_cert_pem);
    let challenge = b64url_encode(CHALLENGE);
    let mut args = base_args(&challenge, &anchors);
    args.push(file.to_str().expect("path"));
    let run = tether(&args, None);
    assert_eq!(run.code, 0, "{} {}", run.json, run.stderr);
    assert_all_keys(&run.json);
    assert_eq!(run.json["verified"], true);
    assert_eq!(run.json["format"], "packed");
    assert_eq!(run.json["attestation_type"], "basic");
    assert_eq!(run.json["aaguid"], AAGUID);
    assert_eq!(run.json["user_verified"], true);
    assert!(run.json["error"].is_null());
    assert!(run.json["trust_anchor"].as_str().is_some_and(|s| s.contains("Acme Laptops Attestation Root CA")));
    let registration: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    assert_eq!(run.json["credential_id"], registration["rawId"]);

    // The same file through standard input.
    let input = std::fs::read_to_string(&file).expect("read");
    let mut args = base_args(&challenge, &anchors);
    args.push("-");
    assert_eq!(tether(&args, Some(&input)).code, 0);

    // An allow-list containing its AAGUID passes; one without it does not.
    let mut args = base_args(&challenge, &anchors);
    args.extend(["--allow-aaguid", AAGUID, file.to_str().expect("path")]);
    assert_eq!(tether(&args, None).code, 0);
}

#[test]
fn allow_aaguid_mismatch_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate("Acme Laptops").expect("pki");
    let file = softkey_registration(dir.path(), &pki);
    let anchors = write(dir.path(), "root.pem", &pki.root_cert_pem);
    let challenge = b64url_encode(CHALLENGE);
    let mut args = base_args(&challenge, &anchors);
    args.extend(["--allow-aaguid", "00000000-0000-0000-0000-0000000000aa", file.to_str().expect("path")]);
    let run = tether(&args, None);
    assert_eq!(run.code, 1, "{}", run.json);
    assert_eq!(run.json["verified"], false);
    assert_eq!(run.json["aaguid"], AAGUID);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains(AAGUID)), "{}", run.json);
}

#[test]
fn wrong_root_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate("Acme Laptops").expect("pki");
    let stranger = TestPki::generate("Someone Else").expect("pki");
    let file = softkey_registration(dir.path(), &pki);
    let anchors = write(dir.path(), "other-root.pem", &stranger.root_cert_pem);
    let challenge = b64url_encode(CHALLENGE);
    let mut args = base_args(&challenge, &anchors);
    args.push(file.to_str().expect("path"));
    let run = tether(&args, None);
    assert_eq!(run.code, 1, "{}", run.json);
    assert_all_keys(&run.json);
    assert_eq!(run.json["verified"], false);
    assert_eq!(run.json["format"], "packed");
    assert!(run.json["trust_anchor"].is_null());
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("not trusted")), "{}", run.json);
}

#[test]
fn wrong_challenge_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate("Acme Laptops").expect("pki");
    let file = softkey_registration(dir.path(), &pki);
    let anchors = write(dir.path(), "root.pem", &pki.root_cert_pem);
    let challenge = b64url_encode(b"a different challenge");
    let mut args = base_args(&challenge, &anchors);
    args.push(file.to_str().expect("path"));
    let run = tether(&args, None);
    assert_eq!(run.code, 1, "{}", run.json);
    assert_eq!(run.json["verified"], false);
    assert!(run.json["format"].is_null(), "undetermined fields are null: {}", run.json);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("challenge")), "{}", run.json);
}

#[test]
fn expired_certificate_is_rejected_now_and_verified_with_at() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_before = OffsetDateTime::now_utc() - Duration::days(800);
    let not_after = OffsetDateTime::now_utc() - Duration::days(100);
    let pki = TestPki::generate_with_validity("Retired Laptops", not_before, not_after).expect("pki");
    let file = softkey_registration(dir.path(), &pki);
    let anchors = write(dir.path(), "root.pem", &pki.root_cert_pem);
    let challenge = b64url_encode(CHALLENGE);
    let mut args = base_args(&challenge, &anchors);
    args.push(file.to_str().expect("path"));
    let run = tether(&args, None);
    assert_eq!(run.code, 1, "{}", run.json);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("expired")), "{}", run.json);

    let inside =
        (not_before + Duration::days(300)).format(&time::format_description::well_known::Rfc3339).expect("format");
    let mut args = base_args(&challenge, &anchors);
    args.extend(["--at", inside.as_str(), file.to_str().expect("path")]);
    let run = tether(&args, None);
    assert_eq!(run.code, 0, "{}", run.json);
    assert_eq!(run.json["verified"], true);
}

#[test]
fn unreadable_input_exits_2_with_a_json_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate("Acme Laptops").expect("pki");
    let anchors = write(dir.path(), "root.pem", &pki.root_cert_pem);
    let challenge = b64url_encode(CHALLENGE);

    let garbage = write(dir.path(), "garbage.json", "\u{1}this is not JSON at all");
    let mut args = base_args(&challenge, &anchors);
    args.push(garbage.to_str().expect("path"));
    let run = tether(&args, None);
    assert_eq!(run.code, 2, "{}", run.json);
    assert_all_keys(&run.json);
    assert_eq!(run.json["verified"], false);
    assert!(run.json["error"].as_str().is_some_and(|e| !e.is_empty()));

    let missing = dir.path().join("does-not-exist.json");
    let mut args = base_args(&challenge, &anchors);
    args.push(missing.to_str().expect("path"));
    assert_eq!(tether(&args, None).code, 2);

    let file = softkey_registration(dir.path(), &pki);
    let bad_pem = write(dir.path(), "bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let mut args = base_args(&challenge, &bad_pem);
    args.push(file.to_str().expect("path"));
    let run = tether(&args, None);
    assert_eq!(run.code, 2, "{}", run.json);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("bad.pem")), "{}", run.json);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tether(&["--rp-id", RP_ID], None).code, 2);
    let run = tether(
        &["--rp-id", RP_ID, "--origin", ORIGIN, "--challenge", "not base64!", "--trust-anchors", "x.pem", "f.json"],
        None,
    );
    assert_eq!(run.code, 2);
    let run = tether(
        &[
            "--rp-id",
            RP_ID,
            "--origin",
            ORIGIN,
            "--challenge",
            "AAAA",
            "--trust-anchors",
            "x.pem",
            "--at",
            "yesterday",
            "f",
        ],
        None,
    );
    assert_eq!(run.code, 2);
}

fn shared_vectors() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/webauthn");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("NOTICE: {} is absent; skipping the real-device vector test", dir.display());
        None
    }
}

#[test]
fn real_device_vectors_are_verified() {
    let Some(vectors) = shared_vectors() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // (vector, --at or none, expected aaguid, anchors: a file or the whole roots directory)
    let cases = [
        (
            "packed-yubikey5nfc",
            None,
            "fa2b99dc-9e39-4257-8f92-4a30d23c4118",
            "roots/yubico-u2f-root-ca-serial-457200631.pem",
        ),
        ("android-key-pixel8a-2025", Some("2025-02-02T10:00:00Z"), "b93fd961-f2e6-462f-b122-82002247de78", "roots"),
    ];
    for (name, at, aaguid, anchors) in cases {
        let raw: Value =
            serde_json::from_str(&std::fs::read_to_string(vectors.join(format!("{name}.json"))).expect("read vector"))
                .expect("vector JSON");
        let file = write(dir.path(), &format!("{name}.json"), &raw["registration_response"].to_string());
        let anchors = vectors.join(anchors);
        let mut args = vec![
            "--rp-id",
            raw["rp_id"].as_str().expect("rp_id"),
            "--origin",
            raw["expected_origin"].as_str().expect("origin"),
            "--challenge",
            raw["expected_challenge_b64url"].as_str().expect("challenge"),
            "--trust-anchors",
            anchors.to_str().expect("path"),
        ];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        args.push(file.to_str().expect("path"));
        let run = tether(&args, None);
        assert_eq!(run.code, 0, "{name}: {} {}", run.json, run.stderr);
        assert_eq!(run.json["verified"], true);
        assert_eq!(run.json["aaguid"], aaguid);
        assert_eq!(run.json["format"], raw["format"]);
        assert_eq!(run.json["attestation_type"], "basic");
        assert_eq!(run.json["credential_id"], raw["registration_response"]["rawId"]);
        assert_eq!(run.json["user_verified"], raw["parsed"]["flags"]["UV"]);
        assert!(run.json["trust_anchor"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(run.json["error"].is_null());
    }
}
