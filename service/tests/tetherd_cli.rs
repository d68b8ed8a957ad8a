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

/// Runs `tetherd serve` that must refuse to start; returns its stderr. A
/// process still running after 30 s started when it should not have.
fn serve_refused(configure: impl FnOnce(&mut Command)) -> String {
    let mut command = tetherd();
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    command.env_remove("TETHER_API_KEY_PEPPER").env_remove("TETHER_API_KEY_PEPPER_PREVIOUS_FILE");
    configure(&mut command);
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("tetherd serve started despite a bad previous pepper");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_previous_pepper_must_exist_and_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let current = dir.path().join("current.pepper");
    std::fs::write(&current, "the current pepper, at least thirty-two bytes").unwrap();
    let good = dir.path().join("good.pepper");
    std::fs::write(&good, "a previous pepper, at least thirty-two bytes").unwrap();
    let short = dir.path().join("short.pepper");
    std::fs::write(&short, "too short\n").unwrap();
    let missing = dir.path().join("missing.pepper");
    let base = |command: &mut Command| {
        command.args(["--database-url", &url, "--api-key-pepper-file", current.to_str().unwrap()]);
    };

    // The flag.
    let stderr = serve_refused(|c| {
        base(c);
        c.args(["--api-key-pepper-previous-file", missing.to_str().unwrap()]);
    });
    assert!(stderr.contains("--api-key-pepper-previous-file"), "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()) && stderr.contains("cannot read"), "{stderr}");
    assert!(!missing.exists(), "a mistyped previous pepper path must not be created");

    // The environment variable, a comma-separated list.
    let stderr = serve_refused(|c| {
        base(c);
        c.env("TETHER_API_KEY_PEPPER_PREVIOUS_FILE", format!("{},{}", good.display(), short.display()));
    });
    assert!(stderr.contains("TETHER_API_KEY_PEPPER_PREVIOUS_FILE"), "{stderr}");
    assert!(stderr.contains(short.to_str().unwrap()) && stderr.contains("at least 32 bytes"), "{stderr}");

    // The configuration file's key.
    let config = dir.path().join("tether.toml");
    std::fs::write(&config, format!("api_key_pepper_previous_file = [{:?}]\n", short.display().to_string())).unwrap();
    let stderr = serve_refused(|c| {
        base(c);
        c.args(["--config", config.to_str().unwrap()]);
    });
    assert!(stderr.contains("api_key_pepper_previous_file"), "{stderr}");
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    // Nothing was opened: the check runs before the database.
    assert!(!dir.path().join("t.db").exists());
}
