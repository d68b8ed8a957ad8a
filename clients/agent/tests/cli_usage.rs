//! The `tether-agent` binary: help, usage errors, and failing closed (exit 2,
//! nothing written) when the server cannot be reached. Loopback only.

use std::path::Path;
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether-agent"))
        .args(args)
        .env_remove("TETHER_SERVER")
        .env_remove("TETHER_AGENT_STATE")
        .env_remove("TETHER_ENROLLMENT_TOKEN")
        .env("RUST_LOG", "off")
        .output()
        .expect("run tether-agent")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A loopback port nobody listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn help_lists_the_commands() {
    let output = agent(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["enroll", "run", "status"] {
        assert!(text.contains(command), "{text}");
    }
    let output = agent(&["run", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--poll-interval"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(agent(&[]).status.code(), Some(2));
    assert_eq!(agent(&["enroll"]).status.code(), Some(2), "--token is required");
    assert_eq!(agent(&["run", "--poll-interval", "1s"]).status.code(), Some(2));
    assert_eq!(agent(&["run", "--poll", "--poll-interval", "0s"]).status.code(), Some(2));
    assert_eq!(agent(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn enroll_against_a_closed_port_fails_closed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    let output = agent(&[
        "--server",
        &closed_port_url(),
        "--state",
        path_arg(&state),
        "enroll",
        "--token",
        "tok",
        "--self-attestation",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("error: "), "{}", stderr(&output));
    assert!(!state.exists());
}

#[test]
fn enroll_refuses_to_replace_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    std::fs::write(&state, "{}").unwrap();
    let output = agent(&["--server", &closed_port_url(), "--state", path_arg(&state), "enroll", "--token", "tok"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "{}");
}

#[test]
fn missing_state_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("absent.json");
    for command in [&["status"][..], &["run", "--once"][..]] {
        let mut args = vec!["--state", path_arg(&state)];
        args.extend_from_slice(command);
        let output = agent(&args);
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        assert!(stderr(&output).contains("cannot read"), "{}", stderr(&output));
    }
}

fn write_state(path: &Path, server: &str) {
    use tether_softkey::{AttestationMode, SoftAuthenticator};
    let auth = SoftAuthenticator::new(AttestationMode::SelfAttestation, uuid::Uuid::nil()).expect("soft authenticator");
    let state = tether_agent::AgentState {
        server: server.to_string(),
        device_id: "dev_test".into(),
        credential_id: "Y3JlZA".into(),
        backend: tether_agent::SOFTKEY_BACKEND.into(),
        authenticator_state: serde_json::from_str(&auth.to_state_json()).unwrap(),
    };
    state.save(path).unwrap();
}

#[test]
fn run_once_against_a_closed_port_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    write_state(&state, &closed_port_url());
    let output = agent(&["--state", path_arg(&state), "run", "--once"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("error: "), "{}", stderr(&output));
}

#[test]
fn status_shows_the_state_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    write_state(&state, "http://127.0.0.1:50051");
    let output = agent(&["--state", path_arg(&state), "--output", "json", "status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["device_id"], "dev_test");
    assert_eq!(value["credential_id"], "Y3JlZA");
    assert_eq!(value["backend"], "softkey");
    assert!(value.get("authenticator_state").is_none());
    let output = agent(&["--state", path_arg(&state), "status"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("dev_test"));
}
