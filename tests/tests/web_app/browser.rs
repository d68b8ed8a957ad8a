//! The whole worker flow in Debian's Chromium with its virtual authenticators,
//! driven by tests/console/web_app.mjs; administrator and gateway steps are
//! the script's `REQUEST` lines, answered here.

use super::client::Tenant;
use super::{port, web_server};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tether_e2e::authed;
use tether_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The artifacts directory for screenshots: TETHER_TEST_ARTIFACTS, else target/tmp/test-artifacts.
fn artifacts_dir() -> PathBuf {
    match std::env::var("TETHER_TEST_ARTIFACTS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts"),
    }
}

/// The leaf certificate of a WebAuthn attestation object's x5c, as PEM.
fn attestation_leaf_pem(attestation_object_b64url: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(attestation_object_b64url).unwrap();
    let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
    let field = |map: &ciborium::Value, name: &str| {
        map.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v.clone()).unwrap()
    };
    let statement = field(&value, "attStmt");
    let x5c = field(&statement, "x5c");
    let der = x5c.as_array().unwrap()[0].as_bytes().unwrap().clone();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[tokio::test]
async fn a_worker_enrolls_and_answers_presence_in_chromium_with_virtual_authenticators() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some("chromium (apt-get install chromium)"),
        (!node_ok).then_some("node"),
        (!script_dir.join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in tests/console)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        println!("SKIPPED: the browser test needs {}", missing.join(", "));
        return;
    }

    let server = web_server(&[]);
    let origin_a = format!("http://localhost:{}", port(&server));
    let origin_b = format!("http://tenant-b.localhost:{}", port(&server));
    let a = Tenant::create(&server, "acme", &origin_a).await;
    let b = Tenant::create(&server, "globex", &origin_b).await;
    // Tenant B takes unattested keys, so its token works there whatever the browser's attestation.
    let mut admin = server.admin().await;
    let policy = pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() };
    admin.update_policy(authed(&b.keys.admin_key, policy)).await.unwrap();
    let (device, token) = a.device(&server, "w-ann", 0).await;
    let (_, token_uv) = a.device(&server, "w-uv", 0).await;
    let (_, token_expired) = a.device(&server, "w-exp", 1).await;
    let (_, token_b) = b.device(&server, "w-bea", 0).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let shots = artifacts_dir();
    let mut child = tokio::process::Command::new("node")
        .arg(script_dir.join("web_app.mjs"))
        .current_dir(&script_dir)
        .envs(HashMap::from([
            ("ORIGIN_A", origin_a.as_str()),
            ("ORIGIN_B", origin_b.as_str()),
            ("TOKEN", token.as_str()),
            ("TOKEN_UV", token_uv.as_str()),
            ("TOKEN_EXPIRED", token_expired.as_str()),
            ("TOKEN_B", token_b.as_str()),
            ("CHROMIUM", chromium.as_str()),
        ]))
        .env("SCREENSHOT_DIR", &shots)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut to_node = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    // The script asks for what only an administrator or gateway can do, one JSON line each.
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            log.push(line.clone());
            let Some(request) = line.strip_prefix("REQUEST ") else { continue };
            let request: Value = serde_json::from_str(request).unwrap();
            let reply = match request["action"].as_str().unwrap() {
                "trust" => {
                    let pem = attestation_leaf_pem(request["attestation_object"].as_str().unwrap());
                    let anchors = pb::AddTrustAnchorsRequest { pem, name: "Chromium virtual authenticators".into() };
                    let added = admin.add_trust_anchors(authed(&a.keys.admin_key, anchors)).await.unwrap();
                    json!({"subject": added.into_inner().anchors[0].subject})
                }
                "challenge" => {
                    let deadline = request["deadline_seconds"].as_u64().unwrap();
                    let id = a.challenge(&server, &device, deadline).await;
                    let mut presence = server.presence().await;
                    let credential_id = request["credential_id"].as_str().unwrap_or_default().to_string();
                    let options = if credential_id.is_empty() {
                        String::new()
                    } else {
                        let poll = pb::PollChallengesRequest { credential_id };
                        let open = presence.poll_challenges(poll).await.unwrap().into_inner().challenges;
                        open.into_iter().find(|c| c.challenge_id == id).unwrap().request_options_json
                    };
                    json!({"challenge_id": id, "request_options_json": options})
                }
                "check" => {
                    let decision = a.check(&server, "w-ann", &device).await;
                    json!({"allow": decision.decision == pb::Decision::Allow as i32, "decision": format!("{decision:?}")})
                }
                other => panic!("unknown request {other}"),
            };
            to_node.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(240), run).await.expect("the browser flow finished in time");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the browser flow failed (output above)");
    for name in ["web-enroll.png", "web-presence.png"] {
        let line = format!("screenshot: {}", shots.join(name).display());
        assert!(log.contains(&line), "{line} missing");
    }
    // What the browser did is what the service recorded.
    let enrolled = a.audit(&server, "device.enrolled").await;
    assert_eq!(enrolled.len(), 1, "only the first laptop enrolled with tenant A");
    assert_eq!(b.audit(&server, "device.enrolled").await.len(), 1, "tenant B's token worked on its own site");
}
