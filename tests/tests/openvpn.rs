//! Debian's real `openvpn` admits workers through Tether: a server on
//! loopback (`--dev tun --ifconfig-noexec --route-noexec`) runs `tether
//! gateway openvpn-verify` and `openvpn-connect`; `--dev null` clients with a
//! certificate whose CN is their device id connect or are refused, and the
//! reason is in the server's log.
//!
//! Without `openvpn` or an openable `/dev/net/tun` the OpenVPN tests print
//! "SKIPPED: …" and write the reason to `openvpn-test-skipped.txt` in
//! `CARGO_TARGET_TMPDIR`, which `.ci/run` prints. The tests that run the
//! command directly (garbage input, tetherd unreachable) always run.

#[path = "openvpn/harness.rs"]
mod harness;

use harness::{Pki, Vpn, skip_reason};
use std::time::Duration;
use tether_e2e::fixtures::{
    EnrolledDevice, Org, answer_json, challenge_now, enroll, prove_presence, sign, test_aaguid,
};
use tether_e2e::{Server, bin, run_bin};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};

/// alice: attested and present. bob: unattested (enrolled while policy allowed
/// it, then tightened) and present. carol: attested, present, and a clone of
/// her key answered a challenge (an open high `clone_suspected` flag).
struct Workers {
    alice: EnrolledDevice,
    bob: EnrolledDevice,
    carol: EnrolledDevice,
}

async fn workers(server: &Server, org: &Org) -> Workers {
    let mut alice = org.enrolled_device(server, "w-alice").await;
    prove_presence(server, &mut alice).await;

    org.update_policy(server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(server, "w-bob", "SN-BOB").await;
    let token = org.token(server, &device_id).await;
    let mut auth = SoftAuthenticator::new(AttestationMode::SelfAttestation, test_aaguid()).unwrap();
    let done = enroll(server, &token, &mut auth).await.unwrap();
    assert!(!done.attested);
    let mut bob = EnrolledDevice { device_id, credential_id: done.credential_id, worker: "w-bob".into(), auth };
    prove_presence(server, &mut bob).await;
    org.update_policy(server, pb::UpdatePolicyRequest { allow_unattested: Some(false), ..Default::default() }).await;

    let mut carol = org.enrolled_device(server, "w-carol").await;
    let mut clone = SoftAuthenticator::from_state_json(&carol.auth.to_state_json()).unwrap();
    prove_presence(server, &mut carol).await;
    let challenge = challenge_now(server, org, &carol, 60).await;
    assert!(answer_json(server, &challenge.challenge_id, sign(&challenge, &mut clone)).await.is_err());

    let codes = |r: &pb::CheckAccessResponse| tether_e2e::fixtures::deny_codes(r);
    assert!(tether_e2e::fixtures::is_allow(&org.check(server, "w-alice", &alice.device_id).await));
    assert_eq!(codes(&org.check(server, "w-bob", &bob.device_id).await), vec![pb::DenyReason::Unattested]);
    assert_eq!(
        codes(&org.check(server, "w-carol", &carol.device_id).await),
        vec![pb::DenyReason::OpenHighSeverityFlags]
    );
    Workers { alice, bob, carol }
}

/// A tetherd access-token signing key, made by `tether gateway new-token-key`.
fn token_signing_key(dir: &std::path::Path) -> String {
    let path = dir.join("token-signing.pem").display().to_string();
    let out = run_bin("tether", &["gateway", "new-token-key", "--out", &path], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// Answers a challenge now, asking for an access token (issued to 127.0.0.1).
async fn access_token(server: &Server, org: &Org, device: &mut EnrolledDevice) -> String {
    let challenge = challenge_now(server, org, device, 60).await;
    let json = sign(&challenge, &mut device.auth);
    let answered = server
        .presence()
        .await
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: challenge.challenge_id,
            assertion_response_json: json,
            request_access_token: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answered.access_token.split('.').count(), 3, "no token (a JWT) issued");
    answered.access_token
}

/// A JWT naming a key id nobody holds, with an empty claims set and a junk signature.
const FORGED_TOKEN: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6IjAxMjM0NTY3ODlhYmNkZWYifQ.e30.c2ln";

#[tokio::test]
async fn openvpn_admits_attested_present_workers_and_refuses_the_rest() {
    if let Some(reason) = skip_reason() {
        harness::skip(&reason);
        return;
    }
    harness::clear_skip();
    let keys = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(&["--access-token-key", &token_signing_key(keys.path())]);
    let org = Org::create(&server, "acme").await;
    let mut w = workers(&server, &org).await;
    let pki = Pki::generate();
    let vpn = Vpn::start(&pki, &server.url, &org.gateway_key, harness::Hooks::Both);

    // Admitted: both hooks ALLOW and the tunnel comes up.
    let mut client = vpn.client(&pki, "alice", &w.alice.device_id, "w-alice", "-");
    client.expect_connected();
    client.expect_server_log(&format!(
        "tether openvpn-verify: ALLOW worker \"w-alice\" device \"{}\" from 127.0.0.1",
        w.alice.device_id
    ));
    client.expect_server_log("tether openvpn-connect: ALLOW worker \"w-alice\"");
    drop(client);

    // Unattested: refused, with Tether's reason in the server log.
    let mut client = vpn.client(&pki, "bob", &w.bob.device_id, "w-bob", "-");
    client.expect_refused();
    client.expect_server_log(&format!(
        "tether openvpn-verify: DENY worker \"w-bob\" device \"{}\" from 127.0.0.1: unattested: no credential on \
         the device is hardware-attested",
        w.bob.device_id
    ));

    // Flagged: refused.
    let mut client = vpn.client(&pki, "carol", &w.carol.device_id, "w-carol", "-");
    client.expect_refused();
    client.expect_server_log(
        "tether openvpn-verify: DENY worker \"w-carol\" device \"%ID\" from 127.0.0.1: open_high_severity_flags: \
         open high-severity flags: clone_suspected"
            .replace("%ID", &w.carol.device_id)
            .as_str(),
    );

    // Alice's worker id on carol's laptop: not her device.
    let mut client = vpn.client(&pki, "alice-on-carol", &w.carol.device_id, "w-alice", "-");
    client.expect_refused();
    client.expect_server_log("device_not_assigned_to_worker");

    // An unknown worker, a username tetherd would never accept, a forged token.
    let mut client = vpn.client(&pki, "nobody", &w.alice.device_id, "w-nobody", "-");
    client.expect_refused();
    client.expect_server_log("DENY worker \"w-nobody\"");
    client.expect_server_log("worker_unknown: no worker \"w-nobody\"");
    let mut client = vpn.client(&pki, "long", &w.alice.device_id, &"x".repeat(300), "-");
    client.expect_refused();
    client.expect_server_log("tether openvpn-verify: REFUSED (bad client input): the username has 300 bytes");
    let mut client = vpn.client(&pki, "forged", &w.alice.device_id, "w-alice", FORGED_TOKEN);
    client.expect_refused();
    client.expect_server_log("tether openvpn-verify: DENY worker \"w-alice\"");
    client.expect_server_log("access_token_invalid");

    // An access token as the password: alice's admits her, and only her.
    let token = access_token(&server, &org, &mut w.alice).await;
    let mut client = vpn.client(&pki, "alice-token", &w.alice.device_id, "w-alice", &token);
    client.expect_connected();
    client.expect_server_log("tether openvpn-verify: ALLOW worker \"w-alice\"");
    let mut client = vpn.client(&pki, "carol-token", &w.carol.device_id, "w-carol", &token);
    client.expect_refused();
    client.expect_server_log("access_token_mismatch");
    assert!(!vpn.log().contains(&token), "the password must never reach OpenVPN's log");

    // After all that, alice still connects.
    vpn.client(&pki, "alice-again", &w.alice.device_id, "w-alice", "-").expect_connected();
    assert!(!vpn.log().contains("panicked"), "a script crashed:\n{}", vpn.log());
}

/// `client-connect` on its own decides too: the verify hook admits anyone
/// (`/bin/true`), Tether's connect hook refuses the flagged worker and a
/// token sent as peer info.
#[tokio::test]
async fn openvpn_connect_hook_refuses_on_its_own() {
    if let Some(reason) = skip_reason() {
        harness::skip(&reason);
        return;
    }
    harness::clear_skip();
    let keys = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(&["--access-token-key", &token_signing_key(keys.path())]);
    let org = Org::create(&server, "acme").await;
    let mut w = workers(&server, &org).await;
    let pki = Pki::generate();
    let vpn = Vpn::start(&pki, &server.url, &org.gateway_key, harness::Hooks::ConnectOnly);
    let mut client = vpn.client(&pki, "alice", &w.alice.device_id, "w-alice", "-");
    client.expect_connected();
    client.expect_server_log("tether openvpn-connect: ALLOW worker \"w-alice\"");
    let mut client = vpn.client(&pki, "carol", &w.carol.device_id, "w-carol", "-");
    client.expect_refused();
    client.expect_server_log("tether openvpn-connect: DENY worker \"w-carol\"");
    client.expect_server_log("clone_suspected");

    // A token pushed as peer info arrives cut to 239 bytes (OpenVPN's
    // 255-byte peer-info lines): refused with that reason, never half-checked.
    let token = access_token(&server, &org, &mut w.alice).await;
    assert!(token.len() > 239);
    let mut client = vpn.client_with_peer_token(&pki, "alice-peer", &w.alice.device_id, "w-alice", &token);
    client.expect_refused();
    client.expect_server_log(&format!("UV_TETHER_TOKEN={}\n", &token[..239]));
    client.expect_server_log(
        "tether openvpn-connect: REFUSED (bad client input): $UV_TETHER_TOKEN was pushed as peer info, which OpenVPN \
         truncates to 255 bytes",
    );
}

/// `tether gateway token-keys --out DIR/<name>.json` with `org`'s gateway key.
fn fetch_keys(server: &Server, org: &Org, dir: &std::path::Path, name: &str) -> String {
    let keys = dir.join(format!("{name}.json")).display().to_string();
    let out = run_bin(
        "tether",
        &["gateway", "token-keys", "--out", &keys],
        &[("TETHER_SERVER", &server.url), ("TETHER_API_KEY", &org.gateway_key)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    keys
}

/// The reported attack: signing keys are server-wide, so globex makes its own
/// worker `w-alice`, gets a token from a device it controls, and presents it
/// to acme's OpenVPN deciding offline with `--ignore-common-name`. The key
/// set acme's gateway fetched names acme, so the token is refused with the
/// reason in the log; acme's own alice is still admitted.
#[tokio::test]
async fn offline_openvpn_refuses_another_tenants_token_for_a_namesake_worker() {
    if let Some(reason) = skip_reason() {
        harness::skip(&reason);
        return;
    }
    harness::clear_skip();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(&["--access-token-key", &token_signing_key(dir.path())]);
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let mut acme_alice = acme.enrolled_device(&server, "w-alice").await;
    let mut globex_alice = globex.enrolled_device(&server, "w-alice").await;
    let ours = access_token(&server, &acme, &mut acme_alice).await;
    let theirs = access_token(&server, &globex, &mut globex_alice).await;
    let keys = fetch_keys(&server, &acme, dir.path(), "acme-keys");
    let server_url = server.url.clone();
    // Offline: tetherd is not asked.
    drop(server);
    let pki = Pki::generate();
    let vpn = Vpn::start(&pki, &server_url, &acme.gateway_key, harness::Hooks::VerifyOffline { keys });

    let mut client = vpn.client(&pki, "globex-alice", &globex_alice.device_id, "w-alice", &theirs);
    client.expect_refused();
    client.expect_server_log(&format!(
        "tether openvpn-verify: DENY (offline) worker \"w-alice\" device (named by the token) from 127.0.0.1: \
         access token wrong_tenant: the token was issued in tenant {:?}; this verifier accepts only tenant {:?}",
        globex.keys.tenant_id, acme.keys.tenant_id
    ));
    let mut client = vpn.client(&pki, "acme-alice", &acme_alice.device_id, "w-alice", &ours);
    client.expect_connected();
    client.expect_server_log(
        "tether openvpn-verify: ALLOW (offline) worker \"w-alice\" device (named by the token) from 127.0.0.1: \
         token att_",
    );
    client.expect_server_log(&format!("for device {:?}", acme_alice.device_id));
    let log = vpn.log();
    assert!(!log.contains(&ours) && !log.contains(&theirs), "a token reached OpenVPN's log");
    assert!(!log.contains("panicked"), "a script crashed:\n{log}");
}

/// Runs `tether gateway openvpn-verify` as OpenVPN would, with only the
/// given environment (OpenVPN passes scripts nothing else).
fn run_verify(server_url: &str, key_file: &str, file: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = std::process::Command::new(bin("tether"));
    command
        .env_clear()
        .args(["gateway", "openvpn-verify", "--server", server_url, "--api-key-file", key_file])
        .args(["--check-timeout", "2s", "--gateway", "vpn-test"])
        .arg(file)
        .envs(env.iter().copied());
    let started = std::time::Instant::now();
    let out = command.output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the script must stay fast");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

const OPENVPN_ENV: [(&str, &str); 3] =
    [("script_type", "user-pass-verify"), ("common_name", "dev_x"), ("untrusted_ip", "127.0.0.1")];

#[tokio::test]
async fn garbage_from_openvpn_is_refused_without_asking_tetherd() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("gateway.key");
    std::fs::write(&key_file, &org.gateway_key).unwrap();
    let key_file = key_file.display().to_string();
    let file = dir.path().join("up");
    let cases: [&[u8]; 7] =
        [b"", b"only-one-line\n", b"a\nb\nc\n", b"\xff\xfe\n-\n", b"w-alice\np\x00ss\n", b"\n-\n", &[b'A'; 100_000]];
    for bytes in cases {
        std::fs::write(&file, bytes).unwrap();
        let (code, stderr) = run_verify(&server.url, &key_file, &file, &OPENVPN_ENV);
        assert_eq!(code, 1, "{bytes:?}: {stderr}");
        assert!(stderr.starts_with("tether openvpn-verify: REFUSED (bad client input): "), "{stderr}");
    }
    std::fs::write(&file, "w-alice\n-\n").unwrap();
    for env in [
        [("script_type", "user-pass-verify"), ("common_name", "dev_x"), ("untrusted_ip", "not-an-address")],
        [("script_type", "user-pass-verify"), ("common_name", "dev\u{1b}[2J"), ("untrusted_ip", "127.0.0.1")],
        [("script_type", "user-pass-verify"), ("common_name", ""), ("untrusted_ip", "127.0.0.1")],
    ] {
        let (code, stderr) = run_verify(&server.url, &key_file, &file, &env);
        assert_eq!(code, 1, "{env:?}: {stderr}");
        assert!(stderr.contains("REFUSED (bad client input)"), "{stderr}");
    }
    // Well-formed input for an unknown device reaches tetherd and is denied.
    let (code, stderr) = run_verify(&server.url, &key_file, &file, &OPENVPN_ENV);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("DENY worker \"w-alice\" device \"dev_x\" from 127.0.0.1: worker_unknown"), "{stderr}");
    // Wired to the wrong hook: a configuration error, still exit 1 (OpenVPN reads 2 as "deferred").
    let wrong = [("script_type", "client-connect"), ("common_name", "dev_x"), ("untrusted_ip", "127.0.0.1")];
    let (code, stderr) = run_verify(&server.url, &key_file, &file, &wrong);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("REFUSED (no decision, failing closed): this command is for OpenVPN's"), "{stderr}");
    // Not run by OpenVPN at all (no $script_type): refused, for either hook, before tetherd is asked.
    let (code, stderr) = run_verify(&server.url, &key_file, &file, &OPENVPN_ENV[1..]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("openvpn-verify: REFUSED (no decision, failing closed): no $script_type"), "{stderr}");
    let out = std::process::Command::new(bin("tether"))
        .env_clear()
        .args(["gateway", "openvpn-connect", "--server", &server.url, "--api-key-file", &key_file])
        .envs([("common_name", "dev_x"), ("username", "w-alice"), ("untrusted_ip", "127.0.0.1")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("openvpn-connect: REFUSED (no decision, failing closed): no $script_type"), "{stderr}");
    // So is a usage error on the command line OpenVPN runs.
    let out = std::process::Command::new(bin("tether"))
        .env_clear()
        .args(["gateway", "openvpn-verify", "--check-timeout", "soon"])
        .arg(&file)
        .envs(OPENVPN_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn an_unreachable_or_silent_tetherd_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("gateway.key");
    std::fs::write(&key_file, "tk.nothing.here").unwrap();
    let key_file = key_file.display().to_string();
    let file = dir.path().join("up");
    std::fs::write(&file, "w-alice\n-\n").unwrap();

    // Nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, stderr) = run_verify(&closed_url, &key_file, &file, &OPENVPN_ENV);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("REFUSED (no decision, failing closed)"), "{stderr}");

    // Accepts connections and never answers: the deadline refuses.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let (code, stderr) = run_verify(&silent_url, &key_file, &file, &OPENVPN_ENV);
    assert_eq!(code, 1, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(stderr.contains("failing closed"), "{stderr}");
    drop(silent);

    // No API key at all.
    let out = std::process::Command::new(bin("tether"))
        .env_clear()
        .args(["gateway", "openvpn-verify", "--server", &closed_url])
        .arg(&file)
        .envs(OPENVPN_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gateway API key"));
}

/// `--keys`: admit on a valid access token alone, without asking tetherd.
#[tokio::test]
async fn offline_mode_admits_only_on_a_valid_token_for_this_worker_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(&["--access-token-key", &token_signing_key(dir.path())]);
    let org = Org::create(&server, "acme").await;
    let mut alice = org.enrolled_device(&server, "w-alice").await;
    prove_presence(&server, &mut alice).await;
    let token = access_token(&server, &org, &mut alice).await;
    let keys = fetch_keys(&server, &org, dir.path(), "keys");
    let file = dir.path().join("up");
    // The server is gone: offline mode must not need it.
    drop(server);
    let verify = |creds: &str, common_name: &str, ip: &str| {
        std::fs::write(&file, creds).unwrap();
        let out = std::process::Command::new(bin("tether"))
            .env_clear()
            .args(["gateway", "openvpn-verify", "--keys", &keys])
            .arg(&file)
            .envs([("script_type", "user-pass-verify"), ("common_name", common_name), ("untrusted_ip", ip)])
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let device = alice.device_id.as_str();
    let (code, stderr) = verify(&format!("w-alice\n{token}\n"), device, "127.0.0.1");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("ALLOW (offline) worker \"w-alice\""), "{stderr}");
    for (creds, common_name, ip, why) in [
        (format!("w-alice\n{token}\n"), device, "127.0.0.2", "wrong_source_ip"),
        (format!("w-bob\n{token}\n"), device, "127.0.0.1", "issued to worker"),
        (format!("w-alice\n{token}\n"), "dev_other", "127.0.0.1", "issued to device"),
        ("w-alice\n-\n".to_string(), device, "127.0.0.1", "no access token"),
        (format!("w-alice\n{token}x\n"), device, "127.0.0.1", "access token"),
    ] {
        let (code, stderr) = verify(&creds, common_name, ip);
        assert_eq!(code, 1, "{why}: {stderr}");
        assert!(stderr.contains("DENY (offline)") && stderr.contains(why), "{why}: {stderr}");
    }
}
