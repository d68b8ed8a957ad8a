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

    // The default pepper lives beside the database file, private to its owner.
    let pepper = dir.path().join("t.db.pepper");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pepper).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read(&pepper).unwrap().len() >= 32);

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

#[test]
fn postgres_without_a_configured_pepper_refuses_to_start() {
    let out = tetherd()
        .env_remove("TETHER_API_KEY_PEPPER")
        .env_remove("TETHER_API_KEY_PEPPER_FILE")
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", "postgres://postgres@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TETHER_API_KEY_PEPPER_FILE"));
}

#[test]
fn an_explicit_pepper_file_must_exist_and_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let missing = dir.path().join("missing.pepper");
    let out = tetherd()
        .args([
            "init",
            "--tenant",
            "x",
            "--rp-id",
            "x.example",
            "--origin",
            "https://x.example",
            "--database-url",
            &url,
        ])
        .args(["--api-key-pepper-file", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!missing.exists(), "a mistyped pepper path must not silently create a new pepper");
    let short = dir.path().join("short.pepper");
    std::fs::write(&short, "too short").unwrap();
    let out = tetherd()
        .args([
            "init",
            "--tenant",
            "x",
            "--rp-id",
            "x.example",
            "--origin",
            "https://x.example",
            "--database-url",
            &url,
        ])
        .args(["--api-key-pepper-file", short.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
}

#[test]
fn migrate_applies_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = tetherd().args(["migrate", "--database-url", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema is current"));
    assert!(dir.path().join("t.db").exists());
    // A database that cannot be reached fails the job.
    let out = tetherd().args(["migrate", "--database-url", "postgres://postgres@127.0.0.1:1/none"]).output().unwrap();
    assert!(!out.status.success());
}
