//! The `tether` binary: help, usage errors, and failing closed when the
//! server cannot be reached. Loopback only.

use std::process::{Command, Output};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env_remove("TETHER_SERVER")
        .env_remove("TETHER_API_KEY")
        .env_remove("TETHER_TIMEOUT")
        .output()
        .expect("run tether")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
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

#[test]
fn help_lists_every_command_group() {
    let output = tether(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for command in [
        "tenant",
        "keys",
        "workers",
        "devices",
        "credentials",
        "tokens",
        "trust",
        "policy",
        "challenge",
        "gateway",
        "report",
        "dev-ca",
        "verify-attestation",
        "demo",
    ] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
    for flag in ["--server", "--api-key", "--output"] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn subcommand_help_works() {
    for args in [
        &["gateway", "check", "--help"][..],
        &["report", "presence-failures", "--help"][..],
        &["policy", "set", "--help"][..],
        &["devices", "add", "--help"][..],
    ] {
        let output = tether(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
    }
    let text = stdout(&tether(&["report", "presence-failures", "--help"]));
    assert!(text.contains("clone-suspected"), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["keys", "create"][..],
        &["keys", "create", "--role", "root"][..],
        &["--output", "yaml", "tenant"][..],
        &["gateway", "check", "--worker", "w", "--source-ip", "127.0.0.1", "--gateway", "g"][..],
        &["tokens", "create", "--device", "d", "--ttl", "tomorrow"][..],
        &["report", "sessions", "--since", "last tuesday"][..],
        &["report", "presence-failures", "--outcome", "ok"][..],
        &["policy", "set"][..],
    ] {
        let output = tether(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn gateway_check_against_a_closed_port_fails_closed() {
    let output = tether(&[
        "--server",
        &closed_port_url(),
        "--api-key",
        "tk.key_x.secret",
        "gateway",
        "check",
        "--worker",
        "w1",
        "--device",
        "dev_1",
        "--source-ip",
        "127.0.0.1",
        "--gateway",
        "vpn-1",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "nothing that looks like a decision: {}", stdout(&output));
    let err = stderr(&output);
    assert!(err.starts_with("error: cannot connect to http://127.0.0.1:"), "{err}");
}

#[test]
fn other_commands_against_a_closed_port_exit_2() {
    let output = tether(&["--server", &closed_port_url(), "--output", "json", "tenant"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("error: "), "{}", stderr(&output));
}

#[test]
fn a_bad_server_url_exits_2() {
    let output = tether(&["--server", "not a url", "tenant"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("error: "), "{}", stderr(&output));
}

#[test]
fn trust_add_with_a_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    // Checked before connecting: the error is about the file, not the server.
    let output = tether(&["--server", &closed_port_url(), "trust", "add", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("error: cannot read"), "{}", stderr(&output));
}
