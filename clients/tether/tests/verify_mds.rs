//! `tether verify-mds` run as a real process against the public MDS3 BLOBs in
//! ../shared/conformance/mds (skipped with a notice when that folder is absent).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const COMPROMISE: [&str; 4] =
    ["ATTESTATION_KEY_COMPROMISE", "USER_KEY_REMOTE_COMPROMISE", "USER_KEY_PHYSICAL_COMPROMISE", "REVOKED"];
/// After every BLOB signer here expired (the latest leaf ends 2031-04-17).
const AFTER_EXPIRY: &str = "2032-01-01T00:00:00Z";

struct Run {
    code: i32,
    json: Value,
}

fn verify_mds(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_tether")).arg("verify-mds").args(args).output().expect("run tether");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one JSON object on stdout, got: {stdout}");
    let json = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    Run { code: output.status.code().unwrap_or(-1), json }
}

fn shared_mds() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/mds");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("NOTICE: {} is absent; skipping the MDS3 BLOB tests", dir.display());
        None
    }
}

struct Case {
    name: String,
    blob: PathBuf,
    expected: Value,
    roots: Vec<String>,
    at: String,
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read mds dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".expected.json").map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "the five BLOBs of the README");
    names
        .into_iter()
        .map(|name| {
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).expect("read"),
            )
            .expect("expected JSON");
            let roots = expected["root_files"]
                .as_array()
                .expect("root_files")
                .iter()
                .map(|r| dir.join(r.as_str().expect("root file")).display().to_string())
                .collect();
            let at = expected["verify_at"].as_str().expect("verify_at").to_owned();
            Case { blob: dir.join(format!("{name}.jwt")), name, expected, roots, at }
        })
        .collect()
}

fn args_with_roots<'a>(case: &'a Case, at: &'a str, blob: &'a str) -> Vec<&'a str> {
    let mut args = Vec::new();
    for root in &case.roots {
        args.extend(["--roots", root.as_str()]);
    }
    args.extend(["--at", at, blob]);
    args
}

/// Identifiers with a compromise status, as the measured expectation lists them.
fn expected_compromised(expected: &Value) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for entry in expected["payload"]["entries"].as_array().expect("entries") {
        let bad = entry["bad"].as_array().expect("bad");
        if !bad.iter().any(|b| COMPROMISE.contains(&b.as_str().unwrap_or_default())) {
            continue;
        }
        match &entry["id"] {
            Value::Array(list) => ids.extend(list.iter().map(|v| v.as_str().expect("id").to_owned())),
            id => {
                ids.insert(id.as_str().expect("id").to_owned());
            }
        }
    }
    ids
}

fn expected_bypass(expected: &Value) -> BTreeSet<String> {
    let entries = expected["payload"]["entries"].as_array().expect("entries");
    entries
        .iter()
        .filter(|e| e["bad"].as_array().expect("bad").iter().any(|b| b == "USER_VERIFICATION_BYPASS"))
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn listed_ids(json: &Value, field: &str) -> BTreeSet<String> {
    json[field].as_array().expect(field).iter().map(|l| l["id"].as_str().expect("id").to_owned()).collect()
}

#[test]
fn every_shared_blob_is_valid_with_its_root_at_its_instant() {
    let Some(dir) = shared_mds() else { return };
    for case in cases(&dir) {
        let blob = case.blob.display().to_string();
        let run = verify_mds(&args_with_roots(&case, &case.at, &blob));
        assert_eq!(run.code, 0, "{}: {}", case.name, run.json);
        let json = &run.json;
        let payload = &case.expected["payload"];
        assert_eq!(json["verified"], true, "{}", case.name);
        assert_eq!(json["no"], payload["no"], "{}", case.name);
        assert_eq!(json["next_update"], payload["nextUpdate"], "{}", case.name);
        assert_eq!(json["fresh"], case.expected["fresh_at_verify_at"], "{}: nextUpdate vs verify_at", case.name);
        assert_eq!(json["alg"], case.expected["header"]["alg"], "{}", case.name);
        assert_eq!(json["entries"], payload["entry_count"], "{}: no entry is lost", case.name);
        let aaguids = payload["id_kinds"]["aaguid"].as_u64().unwrap_or(0);
        assert_eq!(json["aaguids"].as_array().expect("aaguids").len() as u64, aaguids, "{}", case.name);
        assert_eq!(listed_ids(json, "compromised"), expected_compromised(&case.expected), "{}", case.name);
        assert_eq!(listed_ids(json, "uv_bypass"), expected_bypass(&case.expected), "{}", case.name);
        assert_eq!(json["error"], Value::Null);
    }
}

#[test]
fn the_conformance_blobs_report_their_malformed_entry_roots_without_failing() {
    let Some(dir) = shared_mds() else { return };
    let case = cases(&dir).into_iter().find(|c| c.name.starts_with("conformance-simplewebauthn")).expect("case");
    let blob = case.blob.display().to_string();
    let run = verify_mds(&args_with_roots(&case, &case.at, &blob));
    assert_eq!(run.code, 0, "{}", run.json);
    let skipped = run.json["skipped"].as_array().expect("skipped");
    // Each UAF entry's root has the impossible notBefore 2017-02-29: reported, entry kept.
    let bad_roots = skipped.iter().filter(|s| s["part"] == "attestation root certificate").count();
    assert_eq!(bad_roots, 100, "{skipped:?}");
    assert!(skipped.iter().all(|s| s["part"] != "entry"));
}

#[test]
fn every_shared_blob_is_refused_with_the_production_roots_unless_it_chains_to_them() {
    let Some(dir) = shared_mds() else { return };
    for case in cases(&dir) {
        let blob = case.blob.display().to_string();
        let run = verify_mds(&["--at", &case.at, &blob]);
        if case.name.starts_with("production") {
            // The 2022 production BLOB chains to R3; with R46 alone it is untrusted.
            assert_eq!(run.code, 0, "{}: {}", case.name, run.json);
            let r46 = dir.join("roots/globalsign-root-r46.pem").display().to_string();
            let run = verify_mds(&["--roots", &r46, "--at", &case.at, &blob]);
            assert_eq!(run.code, 1, "{}: {}", case.name, run.json);
        } else {
            assert_eq!(run.code, 1, "{}: {}", case.name, run.json);
            assert_eq!(run.json["verified"], false);
            assert!(run.json["error"].as_str().expect("error").contains("not trusted"), "{}", run.json);
        }
    }
}

#[test]
fn every_shared_blob_is_refused_after_its_chain_expired() {
    let Some(dir) = shared_mds() else { return };
    for case in cases(&dir) {
        let blob = case.blob.display().to_string();
        let run = verify_mds(&args_with_roots(&case, AFTER_EXPIRY, &blob));
        assert_eq!(run.code, 1, "{}: {}", case.name, run.json);
        assert!(run.json["error"].as_str().expect("error").contains("expired"), "{}: {}", case.name, run.json);
    }
}

/// Changes one base64url character in the middle of part `part` of the JWS.
fn flip(jws: &str, part: usize) -> String {
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let target = &mut parts[part];
    let middle = target.len() / 2;
    let replacement = if &target[middle..=middle] == "A" { "B" } else { "A" };
    target.replace_range(middle..=middle, replacement);
    parts.join(".")
}

fn with_alg(jws: &str, alg: &str, signature: &str) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header")).expect("json");
    header["alg"] = Value::String(alg.to_owned());
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    format!("{header}.{}.{signature}", parts[1])
}

#[test]
fn tampered_and_re_encoded_blobs_are_refused() {
    let Some(dir) = shared_mds() else { return };
    let temp = tempfile::tempdir().expect("tempdir");
    for case in cases(&dir) {
        let jws = std::fs::read_to_string(&case.blob).expect("read blob");
        let signature = jws.rsplit('.').next().expect("signature").to_owned();
        let variants = [
            ("signature", flip(&jws, 2), "signature"),
            ("payload", flip(&jws, 1), "signature"),
            ("alg-none", with_alg(&jws, "none", ""), "\"none\" is refused"),
            ("alg-hs256", with_alg(&jws, "HS256", &signature), "symmetric"),
        ];
        for (label, text, why) in variants {
            let path = temp.path().join(format!("{}-{label}.jwt", case.name));
            std::fs::write(&path, text).expect("write");
            let path = path.display().to_string();
            let run = verify_mds(&args_with_roots(&case, &case.at, &path));
            assert_eq!(run.code, 1, "{} {label}: {}", case.name, run.json);
            assert!(run.json["error"].as_str().expect("error").contains(why), "{} {label}: {}", case.name, run.json);
        }
    }
}

#[test]
fn unusable_input_exits_2() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("not-a-blob.jwt");
    std::fs::write(&path, "just text").expect("write");
    let run = verify_mds(&[path.to_str().expect("path")]);
    assert_eq!(run.code, 2, "{}", run.json);
    let run = verify_mds(&[temp.path().join("missing.jwt").to_str().expect("path")]);
    assert_eq!(run.code, 2, "{}", run.json);
    let run = verify_mds(&["--roots", path.to_str().expect("path"), path.to_str().expect("path")]);
    assert_eq!(run.code, 2, "roots without certificates: {}", run.json);
}
