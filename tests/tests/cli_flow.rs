//! The walkthrough as a person runs it: the `tether` and `tether-agent`
//! binaries against a real tetherd process.

use std::time::Duration;
use tether_e2e::{Server, run_bin};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn admin_agent_and_gateway_binaries_drive_a_whole_enrollment() {
    let server = Server::start();
    let keys = server.init_tenant("acme", "acme.example", "https://acme.example");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("dev-ca");
    let state = dir.path().join("agent.json");
    let (ca, state) = (ca_dir.to_str().unwrap(), state.to_str().unwrap());
    let admin = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", keys.admin_key.as_str())];
    let tether = |args: &[&str]| run_bin("tether", &[&["--output", "json"], args].concat(), &admin);

    assert!(run_bin("tether", &["dev-ca", "--dir", ca], &[]).status.success());
    json(&tether(&["trust", "add", &format!("{ca}/root.pem"), "--name", "dev"]));
    let device = json(&tether(&[
        "devices",
        "add",
        "--serial",
        "PF3ZK9",
        "--model",
        "T14",
        "--worker",
        "alice",
        "--worker-name",
        "Alice",
    ]));
    let device_id = device["id"].as_str().unwrap().to_string();
    let token = json(&tether(&["tokens", "create", "--device", &device_id]))["secret"].as_str().unwrap().to_string();
    let gateway_key = json(&tether(&["keys", "create", "--role", "gateway"]))["secret"].as_str().unwrap().to_string();

    let agent_env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_AGENT_STATE", state)];
    let enrolled = run_bin(
        "tether-agent",
        &[
            "--output",
            "json",
            "enroll",
            "--token",
            &token,
            "--attestation-ca-cert",
            &format!("{ca}/vendor-ca.pem"),
            "--attestation-ca-key",
            &format!("{ca}/vendor-ca.key"),
        ],
        &agent_env,
    );
    let enrolled = json(&enrolled);
    assert_eq!(enrolled["attested"], true, "{enrolled}");
    assert_eq!(enrolled["device_id"], device_id.as_str());

    // The token is single-use, also from the command line.
    let again = run_bin("tether-agent", &["enroll", "--token", &token, "--force"], &agent_env);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already used"));

    let gateway = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", gateway_key.as_str())];
    let check = |worker: &str| {
        run_bin(
            "tether",
            &[
                "gateway",
                "check",
                "--worker",
                worker,
                "--device",
                &device_id,
                "--source-ip",
                "127.0.0.1",
                "--gateway",
                "vpn-1",
            ],
            &gateway,
        )
    };
    // Enrolled but never present: deny (exit 1).
    assert_eq!(check("alice").status.code(), Some(1));

    // The scheduler issues the first challenge within a tick of enrollment.
    std::thread::sleep(Duration::from_millis(800));
    let answered = run_bin("tether-agent", &["run", "--once"], &agent_env);
    assert!(answered.status.success(), "{}", String::from_utf8_lossy(&answered.stderr));
    let allowed = check("alice");
    assert_eq!(allowed.status.code(), Some(0), "{}", String::from_utf8_lossy(&allowed.stdout));
    assert_eq!(check("mallory").status.code(), Some(1));

    json(&tether(&["devices", "revoke", &device_id, "--reason", "stolen"]));
    let denied = check("alice");
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stdout).contains("revoked"), "{}", String::from_utf8_lossy(&denied.stdout));

    let analyst_key = json(&tether(&["keys", "create", "--role", "analyst"]))["secret"].as_str().unwrap().to_string();
    let analyst = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", analyst_key.as_str())];
    let sessions =
        json(&run_bin("tether", &["--output", "json", "report", "sessions", "--decision", "deny"], &analyst));
    let listed = sessions["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{sessions}");
    assert_eq!(listed[0]["decision"], "deny");

    // A gateway key cannot administer.
    let refused = run_bin("tether", &["devices", "list"], &gateway);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn tether_integrations_shows_the_secret_once_and_refuses_plain_http_off_loopback() {
    let server = Server::start();
    let keys = server.init_tenant("acme", "acme.example", "https://acme.example");
    let admin = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", keys.admin_key.as_str())];
    let tether = |args: &[&str]| run_bin("tether", &[&["--output", "json"], args].concat(), &admin);

    let added = json(&tether(&[
        "integrations",
        "add",
        "--kind",
        "webhook",
        "--name",
        "splunk",
        "--target",
        "http://127.0.0.1:9/hook",
    ]));
    let secret = added["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    let id = added["integration"]["id"].as_str().unwrap().to_string();
    let syslog = json(&tether(&[
        "integrations",
        "add",
        "--kind",
        "syslog",
        "--name",
        "qradar",
        "--target",
        "127.0.0.1:6514",
        "--format",
        "cef",
        "--tls",
    ]));
    assert_eq!(syslog["secret"], "");
    assert_eq!(syslog["integration"]["tls"], true);

    let listed = tether(&["integrations", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(json(&listed)["integrations"].as_array().unwrap().len(), 2);
    assert!(!text.contains(&secret), "the secret is shown only once");

    let refused =
        tether(&["integrations", "add", "--kind", "webhook", "--name", "x", "--target", "http://203.0.113.9/"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("https://"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    assert_eq!(json(&tether(&["integrations", "remove", &id]))["id"], id.as_str());
    assert_eq!(json(&tether(&["integrations", "list"]))["integrations"].as_array().unwrap().len(), 1);
    assert_eq!(tether(&["integrations", "remove", &id]).status.code(), Some(2), "already removed");
}
