//! The tetherd binary's own command line.

use std::process::Command;

fn tetherd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tetherd"));
    command.env("RUST_LOG", "warn");
    command
}

#[test]
fn init_prints_the_admin_key_once_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let args =
        ["init", "--tenant", "acme", "--rp-id", "acme.example", "--origin", "https://acme.example", "--output", "json"];
    let out = tetherd().args(args).args(["--database-url", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["admin_api_key"].as_str().unwrap().starts_with("tk."));
    assert!(v["tenant_id"].as_str().unwrap().starts_with("ten_"));

    let again = tetherd().args(args).args(["--database-url", &url]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn init_rejects_an_origin_outside_the_rp_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = tetherd()
        .args(["init", "--tenant", "x", "--rp-id", "acme.example", "--origin", "https://evil.example"])
        .args(["--database-url", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not rp_id"));
}

#[test]
fn serve_refuses_an_unsupported_database_url() {
    let out = tetherd().args(["serve", "--listen", "127.0.0.1:0", "--database-url", "mysql://x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}
