//! `tether analyze`: the offline analyzer's contract, driven through the binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn tether(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tether runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("tether exits")
}

const LOG: &str = r#"{"type":"enrollment","at":"2026-01-05T09:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"198.51.100.7","attested":false,"format":"none","home":{"lat":40.71,"lon":-74.01,"country":"US"},"geo":{"lat":40.71,"lon":-74.01,"accuracy_km":10,"country":"US"}}
this is not json
{"type":"presence","at":"2026-01-05T10:00:10Z","tenant":"acme","worker":"w1","device":"d1","ip":"198.51.100.7","outcome":"ok","issued_at":"2026-01-05T10:00:00Z","answered_at":"2026-01-05T10:00:10Z","posture":{"usb":[{"vid":"3346","pid":"1009","manufacturer":"sipeed","product":"NanoKVM"}]}}
{"type":"session","at":"2026-01-05T11:00:00Z","tenant":"globex","worker":"w2","device":"d2","ip":"203.0.113.9","gateway":"vpn-1","geo":{"lat":51.5,"lon":-0.1,"country":"GB","network_class":"anonymizer"}}
{"type":"presence","at":"2026-01-05T12:00:00Z","tenant":"acme","worker":"w1","device":"d1","ip":"198.51.100.7"}
"#;

#[test]
fn prints_flags_then_summaries_and_reports_bad_lines() {
    let out = tether(&["analyze", "--events", "-"], LOG);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON Lines")).collect();
    let flags: Vec<&Value> = lines.iter().filter(|l| l.get("kind").is_some()).collect();
    let summaries: Vec<&Value> = lines.iter().filter(|l| l.get("farm_suspected").is_some()).collect();
    assert_eq!(flags.len() + summaries.len(), lines.len());
    let kinds: Vec<&str> = flags.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds, ["unattested_hardware", "remote_control", "anonymized_egress"]);
    for f in &flags {
        let keys: Vec<&String> = f.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 8, "{f}");
        for k in ["kind", "severity", "score", "tenant", "worker", "device", "at", "evidence"] {
            assert!(f.get(k).is_some(), "{k} missing in {f}");
        }
    }
    // Flags first, then one summary per device.
    assert!(
        lines.iter().position(|l| l.get("farm_suspected").is_some())
            > lines.iter().rposition(|l| l.get("kind").is_some())
    );
    assert_eq!(summaries.len(), 2);
    let d1 = summaries.iter().find(|s| s["device"] == "d1").expect("d1");
    assert_eq!(d1["tenant"], "acme");
    assert_eq!(d1["worker"], "w1");
    assert_eq!(d1["farm_suspected"], true, "NanoKVM attached");
    assert!(d1["risk"].as_u64().is_some_and(|r| (80..=100).contains(&r)));
    assert_eq!(d1["flags"], serde_json::json!(["unattested_hardware", "remote_control"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2:"), "{stderr}");
    assert!(stderr.contains("line 5:") && stderr.contains("outcome"), "{stderr}");
}

#[test]
fn unreadable_inputs_exit_2() {
    let out = tether(&["analyze", "--events", "/nonexistent/events.jsonl"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/events.jsonl"));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("risk.toml");
    std::fs::write(&config, "[shared_egress]\nreview_device = 3\n").expect("write");
    let out = tether(&["analyze", "--events", "-", "--config", config.to_str().expect("utf-8")], LOG);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("review_device"));
    assert!(out.stdout.is_empty());

    let out = tether(&["analyze", "--events", "-", "--config", "/nonexistent/risk.toml"], LOG);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_valid_config_changes_thresholds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("risk.json");
    std::fs::write(&config, r#"{"remote_control": {"use_defaults": false}}"#).expect("write");
    let out = tether(&["analyze", "--events", "-", "--config", config.to_str().expect("utf-8")], LOG);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"remote_control\""));
}
