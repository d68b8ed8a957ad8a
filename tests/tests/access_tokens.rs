//! Short-lived access tokens against real tetherd processes: issuance with a
//! presence answer, online checks, offline verification with the `tether`
//! CLI, key rotation across restarts, and every way a token must be refused.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tether_attestation::access_token::{self, AccessTokenSigner};
use tether_e2e::fixtures::{EnrolledDevice, Org, deny_codes, is_allow, next_challenge, sign};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tonic::Code;

/// A new signing key written by the CLI (`tether gateway new-token-key`).
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = run_bin("tether", &["gateway", "new-token-key", "--out", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Never overwritten.
    let again = run_bin("tether", &["gateway", "new-token-key", "--out", path.to_str().unwrap()], &[]);
    assert_eq!(again.status.code(), Some(2));
    path
}

fn key_id(path: &Path) -> String {
    AccessTokenSigner::from_pkcs8(&std::fs::read(path).unwrap()).unwrap().key_id().to_string()
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    access_token::peek_key_id(token).unwrap()
}

/// The token with its header replaced by `header` (signature untouched).
fn with_header(token: &str, header: serde_json::Value) -> String {
    use base64::Engine;
    let rest = token.split_once('.').unwrap().1;
    format!("{}.{rest}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn key_args(active: &Path, previous: &[&Path]) -> Vec<String> {
    let mut args = vec!["--access-token-key".to_string(), active.display().to_string()];
    for p in previous {
        args.extend(["--access-token-previous-key".to_string(), p.display().to_string()]);
    }
    args
}

/// Answers the next challenge asking for a token.
async fn answer_for_token(
    server: &Server,
    device: &mut EnrolledDevice,
) -> Result<pb::AnswerChallengeResponse, tonic::Status> {
    let challenge = next_challenge(server, &device.credential_id).await;
    let json = sign(&challenge, &mut device.auth);
    let mut client = server.presence().await;
    client
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: challenge.challenge_id,
            assertion_response_json: json,
            request_access_token: true,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn token_for(server: &Server, device: &mut EnrolledDevice) -> String {
    let answered = answer_for_token(server, device).await.unwrap();
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);
    assert!(answered.access_token_expires_at_ms > answered.verified_at_ms);
    answered.access_token
}

async fn check_token(server: &Server, key: &str, token: &str, ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    let request = pb::CheckAccessRequest {
        access_token: token.into(),
        source_ip: ip.into(),
        gateway_id: "proxy-1".into(),
        ..Default::default()
    };
    access.check_access(authed(key, request)).await.unwrap().into_inner()
}

/// `tether gateway token-keys --out FILE` with the org's gateway key.
fn fetch_keys(server: &Server, org: &Org, out: &Path) -> serde_json::Value {
    let env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.gateway_key.as_str())];
    let done = run_bin("tether", &["gateway", "token-keys", "--out", out.to_str().unwrap()], &env);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// `tether gateway verify-token` (offline): exit code and stdout/stderr.
fn verify_offline(keys: &Path, token: &str, ip: Option<&str>) -> (i32, String) {
    let mut args = vec!["gateway", "verify-token", "--keys", keys.to_str().unwrap(), "--token", token];
    if let Some(ip) = ip {
        args.extend(["--source-ip", ip]);
    }
    let out = run_bin("tether", &args, &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn without_a_key_token_requests_fail_precondition_and_spend_nothing() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "alice").await;
    let refused = answer_for_token(&server, &mut device).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("--access-token-key"), "{}", refused.message());
    // The challenge was not spent: the plain answer still goes through.
    tether_e2e::fixtures::prove_presence(&server, &mut device).await;

    let mut access = server.access().await;
    let keys = access.get_access_token_keys(authed(&org.gateway_key, pb::GetAccessTokenKeysRequest {})).await;
    assert_eq!(keys.unwrap_err().code(), Code::FailedPrecondition);
    let check =
        pb::CheckAccessRequest { access_token: "x.y.z".into(), source_ip: "127.0.0.1".into(), ..Default::default() };
    assert_eq!(
        access.check_access(authed(&org.gateway_key, check)).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_the_old_key_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (new_key(dir.path(), "a.pem"), new_key(dir.path(), "b.pem"));
    let (kid_a, kid_b) = (key_id(&a), key_id(&b));
    let args = key_args(&a, &[]);
    let mut server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "alice").await;

    let token_a = token_for(&server, &mut device).await;
    assert_eq!(kid_of(&token_a), kid_a);
    let online = check_token(&server, &org.gateway_key, &token_a, "127.0.0.1").await;
    assert!(is_allow(&online), "{:?}", online.reasons);
    assert_eq!(online.device_id, device.device_id);
    let keys_file = dir.path().join("keys.json");
    let published = fetch_keys(&server, &org, &keys_file);
    assert_eq!(published["keys"].as_array().unwrap().len(), 1);
    assert_eq!(published["tenant_id"], org.keys.tenant_id.as_str(), "the key set names the fetching gateway's tenant");
    assert_eq!(published["issuer"], "tether");
    assert_eq!(published["keys"][0]["kid"], kid_a.as_str());
    let (code, claims) = verify_offline(&keys_file, &token_a, Some("127.0.0.1"));
    assert_eq!(code, 0, "{claims}");
    let claims: serde_json::Value = serde_json::from_str(&claims).unwrap();
    assert_eq!(claims["worker_external_id"], "alice");
    assert_eq!(claims["device_id"], device.device_id.as_str());
    assert_eq!(claims["credential_id"], device.credential_id.as_str());
    assert_eq!(claims["tenant_id"], org.keys.tenant_id.as_str());
    assert_eq!(claims["key_id"], kid_a.as_str());

    // Step 1: B signs, A still verifies.
    server.extra_args = key_args(&b, &[&a]);
    server.restart();
    let online = check_token(&server, &org.gateway_key, &token_a, "127.0.0.1").await;
    assert!(is_allow(&online), "an A token must still pass while A is a previous key: {:?}", online.reasons);
    let published = fetch_keys(&server, &org, &keys_file);
    let listed = published["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|k| k["kid"] == kid_b.as_str()) && listed.iter().any(|k| k["kid"] == kid_a.as_str()));
    let mut access = server.access().await;
    let keys = access.get_access_token_keys(authed(&org.gateway_key, pb::GetAccessTokenKeysRequest {})).await;
    let keys = keys.unwrap().into_inner().keys;
    assert!(keys.iter().any(|k| k.key_id == kid_b && k.active), "{keys:?}");
    assert!(keys.iter().any(|k| k.key_id == kid_a && !k.active), "{keys:?}");
    assert_eq!(verify_offline(&keys_file, &token_a, Some("127.0.0.1")).0, 0);
    let challenge = tether_e2e::fixtures::challenge_now(&server, &org, &device, 60).await;
    let json = sign(&challenge, &mut device.auth);
    let request = pb::AnswerChallengeRequest {
        challenge_id: challenge.challenge_id,
        assertion_response_json: json,
        request_access_token: true,
        ..Default::default()
    };
    let token_b = server.presence().await.answer_challenge(request).await.unwrap().into_inner().access_token;
    assert_eq!(kid_of(&token_b), kid_b, "new tokens are signed by B");
    assert_eq!(verify_offline(&keys_file, &token_b, Some("127.0.0.1")).0, 0);

    // Step 2: A is gone; its tokens are refused online and offline.
    server.extra_args = key_args(&b, &[]);
    server.restart();
    let online = check_token(&server, &org.gateway_key, &token_a, "127.0.0.1").await;
    assert!(!is_allow(&online));
    assert_eq!(deny_codes(&online), vec![pb::DenyReason::AccessTokenInvalid]);
    assert!(online.reasons[0].detail.contains(&kid_a), "{:?}", online.reasons);
    fetch_keys(&server, &org, &keys_file);
    let (code, why) = verify_offline(&keys_file, &token_a, Some("127.0.0.1"));
    assert_eq!(code, 1, "{why}");
    assert!(why.contains("unknown_key_id"), "{why}");
    assert!(is_allow(&check_token(&server, &org.gateway_key, &token_b, "127.0.0.1").await));
}

#[tokio::test]
async fn forged_replayed_mismatched_and_garbage_tokens_deny() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_key(dir.path(), "a.pem");
    let args = key_args(&a, &[]);
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let org = Org::create(&server, "acme").await;
    let other = Org::create(&server, "globex").await;
    let mut device = org.enrolled_device(&server, "alice").await;
    let token = token_for(&server, &mut device).await;
    let keys_file = dir.path().join("keys.json");
    fetch_keys(&server, &org, &keys_file);

    let denied = |response: &pb::CheckAccessResponse, code: pb::DenyReason| {
        assert!(!is_allow(response), "must deny: {response:?}");
        assert_eq!(deny_codes(response), vec![code], "{:?}", response.reasons);
        assert!(!response.session_id.is_empty(), "every decision is recorded");
    };

    // Replayed from another address.
    let replayed = check_token(&server, &org.gateway_key, &token, "127.0.0.2").await;
    denied(&replayed, pb::DenyReason::AccessTokenWrongSource);
    assert!(replayed.reasons[0].detail.contains("127.0.0.2"));
    let (code, why) = verify_offline(&keys_file, &token, Some("127.0.0.2"));
    assert_eq!((code, why.contains("wrong_source_ip")), (1, true), "{why}");
    // IPv4-mapped IPv6 is the same client.
    assert!(is_allow(&check_token(&server, &org.gateway_key, &token, "::ffff:127.0.0.1").await));

    // Forged: signed by another key relabeled with the server's key id, and an altered payload.
    let forger = AccessTokenSigner::from_pkcs8(&std::fs::read(new_key(dir.path(), "forger.pem")).unwrap()).unwrap();
    let forger_keys =
        access_token::KeySet::new(&org.keys.tenant_id, "tether", vec![forger.verifying_key().clone()]).unwrap();
    assert!(access_token::verify(&token, &forger_keys, 0, None).is_err());
    let real = access_token::verify(
        &token,
        &access_token::parse_key_set(&std::fs::read_to_string(&keys_file).unwrap()).unwrap(),
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap(),
        None,
    )
    .unwrap();
    let mut forged_claims = real.clone();
    forged_claims.worker_external_id = "mallory".into();
    let forged = with_header(
        &forger.sign(&forged_claims).unwrap(),
        serde_json::json!({"typ": "JWT", "alg": "EdDSA", "kid": real.key_id}),
    );
    denied(&check_token(&server, &org.gateway_key, &forged, "127.0.0.1").await, pb::DenyReason::AccessTokenInvalid);
    let (code, why) = verify_offline(&keys_file, &forged, Some("127.0.0.1"));
    assert_eq!((code, why.contains("bad_signature")), (1, true), "{why}");
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = forged.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    denied(&check_token(&server, &org.gateway_key, &spliced, "127.0.0.1").await, pb::DenyReason::AccessTokenInvalid);
    // Unknown key id.
    let unknown = forger.sign(&forged_claims).unwrap();
    let response = check_token(&server, &org.gateway_key, &unknown, "127.0.0.1").await;
    denied(&response, pb::DenyReason::AccessTokenInvalid);
    assert!(response.reasons[0].detail.contains("not among the accepted keys"), "{:?}", response.reasons);

    // Garbage.
    // No `none`, no HMAC keyed with the public key, no other algorithm than the key's.
    let none = format!(
        "{}.",
        with_header(&token, serde_json::json!({"alg": "none", "kid": real.key_id})).rsplit_once('.').unwrap().0
    );
    let hs256 = with_header(&token, serde_json::json!({"alg": "HS256", "kid": real.key_id}));
    let es256 = with_header(&token, serde_json::json!({"alg": "ES256", "kid": real.key_id}));
    for (bad, code) in [(&none, "malformed"), (&hs256, "wrong_algorithm"), (&es256, "wrong_algorithm")] {
        denied(&check_token(&server, &org.gateway_key, bad, "127.0.0.1").await, pb::DenyReason::AccessTokenInvalid);
        let (exit, why) = verify_offline(&keys_file, bad, Some("127.0.0.1"));
        assert_eq!((exit, why.contains(code)), (1, true), "{why}");
    }
    for garbage in ["x", "....", "e30.e30.AAAA", &"A".repeat(5000), "ÿ.ÿ.ÿ", "tt1.0123456789abcdef.e30.AAAA"] {
        denied(&check_token(&server, &org.gateway_key, garbage, "127.0.0.1").await, pb::DenyReason::AccessTokenInvalid);
    }
    // A valid token for another worker or device than the request names.
    let mut access = server.access().await;
    let request = pb::CheckAccessRequest {
        access_token: token.clone(),
        worker_external_id: "mallory".into(),
        source_ip: "127.0.0.1".into(),
        ..Default::default()
    };
    denied(
        &access.check_access(authed(&org.gateway_key, request)).await.unwrap().into_inner(),
        pb::DenyReason::AccessTokenMismatch,
    );
    // Another tenant's gateway cannot use it.
    denied(&check_token(&server, &other.gateway_key, &token, "127.0.0.1").await, pb::DenyReason::AccessTokenMismatch);
    // And the genuine token still works after all of that.
    assert!(is_allow(&check_token(&server, &org.gateway_key, &token, "127.0.0.1").await));
}

#[tokio::test]
async fn expired_tokens_deny_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_key(dir.path(), "a.pem");
    let mut args = key_args(&a, &[]);
    args.extend(["--access-token-ttl".into(), "1s".into()]);
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "alice").await;
    let token = token_for(&server, &mut device).await;
    let keys_file = dir.path().join("keys.json");
    assert_eq!(fetch_keys(&server, &org, &keys_file)["keys"].as_array().unwrap().len(), 1);
    // JWT times are whole seconds and verifiers allow a few seconds' leeway past `exp`.
    let leeway = Duration::from_millis(access_token::EXPIRY_LEEWAY_MS as u64);
    tokio::time::sleep(Duration::from_millis(1200) + leeway).await;
    let response = check_token(&server, &org.gateway_key, &token, "127.0.0.1").await;
    assert!(!is_allow(&response));
    assert_eq!(deny_codes(&response), vec![pb::DenyReason::AccessTokenExpired]);
    let (code, why) = verify_offline(&keys_file, &token, Some("127.0.0.1"));
    assert_eq!((code, why.contains("expired")), (1, true), "{why}");
}

#[tokio::test]
async fn revocation_denies_the_next_online_check_and_issuance_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_key(dir.path(), "a.pem");
    let args = key_args(&a, &[]);
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "alice").await;
    let token = token_for(&server, &mut device).await;
    assert!(is_allow(&check_token(&server, &org.gateway_key, &token, "127.0.0.1").await));

    let mut reports = server.reports().await;
    let log = reports
        .list_audit_log(authed(&org.keys.admin_key, pb::ListAuditLogRequest { after_seq: 0, page_size: 500 }))
        .await
        .unwrap()
        .into_inner();
    let issued: Vec<&pb::AuditEntry> = log.entries.iter().filter(|e| e.action == "access_token.issued").collect();
    assert_eq!(issued.len(), 1, "one entry per token");
    assert_eq!(issued[0].target, device.device_id);
    let details: serde_json::Value = serde_json::from_str(&issued[0].details_json).unwrap();
    assert_eq!(details["key_id"], key_id(&a).as_str());
    assert_eq!(details["source_ip"], "127.0.0.1");

    let mut admin = server.admin().await;
    admin
        .revoke_device(authed(
            &org.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: device.device_id.clone(), reason: "stolen".into() },
        ))
        .await
        .unwrap();
    let response = check_token(&server, &org.gateway_key, &token, "127.0.0.1").await;
    assert!(!is_allow(&response));
    assert!(deny_codes(&response).contains(&pb::DenyReason::DeviceRevoked), "{:?}", response.reasons);
}

#[tokio::test]
async fn no_token_is_issued_to_a_device_that_would_be_denied() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_key(dir.path(), "a.pem");
    let args = key_args(&a, &[]);
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let org = Org::create(&server, "acme").await;
    // Self-attested (untrusted) authenticator under the default policy: unattested.
    org.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(&server, "bob", "SN-SELF").await;
    let enrollment_token = org.token(&server, &device_id).await;
    let mut auth = tether_softkey::SoftAuthenticator::new(
        tether_softkey::AttestationMode::SelfAttestation,
        tether_e2e::fixtures::test_aaguid(),
    )
    .unwrap();
    let done = tether_e2e::fixtures::enroll(&server, &enrollment_token, &mut auth).await.unwrap();
    assert!(!done.attested);
    org.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(false), ..Default::default() }).await;
    let mut device = EnrolledDevice { device_id, credential_id: done.credential_id, worker: "bob".into(), auth };
    let refused = answer_for_token(&server, &mut device).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("no access token was issued"), "{}", refused.message());
    assert!(refused.message().contains("attested"), "{}", refused.message());
}

/// The agent binary's side: `tether-agent run --once --access-token-out FILE`
/// keeps the token issued with its answer (mode 0600), which a gateway then
/// verifies offline and tetherd accepts online; without a pending challenge
/// the agent writes nothing and fails rather than leave a stale token.
#[tokio::test]
async fn the_agent_binary_writes_the_token_issued_with_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "signing.pem");
    let args = key_args(&key, &[]);
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let org = Org::create(&server, "acme").await;
    let (ca, state) = (dir.path().join("dev-ca"), dir.path().join("agent.json"));
    let (ca, state) = (ca.to_str().unwrap(), state.to_str().unwrap());
    let admin = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.keys.admin_key.as_str())];
    let tether = |args: &[&str]| {
        let out = run_bin("tether", &[&["--output", "json"], args].concat(), &admin);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert!(run_bin("tether", &["dev-ca", "--dir", ca], &[]).status.success());
    tether(&["trust", "add", &format!("{ca}/root.pem"), "--name", "dev"]);
    let device =
        tether(&["devices", "add", "--serial", "AT1", "--model", "T14", "--worker", "w-tok", "--worker-name", "W"]);
    let device_id = device["id"].as_str().unwrap().to_string();
    let token = tether(&["tokens", "create", "--device", &device_id])["secret"].as_str().unwrap().to_string();
    let agent_env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_AGENT_STATE", state)];
    let (ca_cert, ca_key) = (format!("{ca}/vendor-ca.pem"), format!("{ca}/vendor-ca.key"));
    let enroll = ["enroll", "--token", &token, "--attestation-ca-cert", &ca_cert, "--attestation-ca-key", &ca_key];
    let enrolled = run_bin("tether-agent", &enroll, &agent_env);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));

    let out_file = dir.path().join("access-token");
    let out_arg = out_file.to_str().unwrap();
    let run = ["run", "--once", "--no-posture", "--access-token-out", out_arg];
    // Nothing pending yet, or already answered: no token is invented and no file is written.
    let mut written = false;
    for _ in 0..50 {
        let out = run_bin("tether-agent", &run, &agent_env);
        if out.status.success() {
            written = true;
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no access token was issued"), "{stderr}");
        assert!(!out_file.exists());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(written, "the agent never answered a challenge");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let issued = std::fs::read_to_string(&out_file).unwrap().trim().to_string();
    assert_eq!(kid_of(&issued), key_id(&key), "{issued}");
    // Its challenge answered, the next run has nothing to answer: it fails and writes no file.
    let second_file = dir.path().join("second-token");
    let second = ["run", "--once", "--no-posture", "--access-token-out", second_file.to_str().unwrap()];
    let out = run_bin("tether-agent", &second, &agent_env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no access token was issued"));
    assert!(!second_file.exists());

    let keys_file = dir.path().join("keys.json");
    fetch_keys(&server, &org, &keys_file);
    let (code, claims) = verify_offline(&keys_file, &issued, Some("127.0.0.1"));
    assert_eq!(code, 0, "{claims}");
    assert!(claims.contains(&device_id), "{claims}");
    let (code, why) = verify_offline(&keys_file, &issued, Some("127.0.0.2"));
    assert_eq!(code, 1, "a token used from another address: {why}");
    let online = check_token(&server, &org.gateway_key, &issued, "127.0.0.1").await;
    assert!(is_allow(&online), "{:?}", online.reasons);
    assert_eq!(online.device_id, device_id);
}

/// Signing keys are server-wide: a token another tenant's device obtained for
/// a worker with the same external id verifies under the same key, so the
/// offline verifier must compare the tenant. Online, `access_token_mismatch`.
#[tokio::test]
async fn another_tenants_token_for_a_namesake_worker_is_refused_offline() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_key(dir.path(), "a.pem");
    let args = key_args(&a, &[]);
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let mut acme_alice = acme.enrolled_device(&server, "alice").await;
    let mut globex_alice = globex.enrolled_device(&server, "alice").await;
    let ours = token_for(&server, &mut acme_alice).await;
    let theirs = token_for(&server, &mut globex_alice).await;
    let acme_keys = dir.path().join("acme-keys.json");
    let globex_keys = dir.path().join("globex-keys.json");
    assert_eq!(fetch_keys(&server, &acme, &acme_keys)["tenant_id"], acme.keys.tenant_id.as_str());
    assert_eq!(fetch_keys(&server, &globex, &globex_keys)["tenant_id"], globex.keys.tenant_id.as_str());

    let (code, why) = verify_offline(&acme_keys, &theirs, Some("127.0.0.1"));
    assert_eq!(code, 1, "acme's verifier must refuse globex's token: {why}");
    assert!(why.contains("invalid token (wrong_tenant)"), "{why}");
    assert!(why.contains(&globex.keys.tenant_id) && why.contains(&acme.keys.tenant_id), "{why}");
    let (code, claims) = verify_offline(&acme_keys, &ours, Some("127.0.0.1"));
    assert_eq!(code, 0, "acme's own token: {claims}");
    assert!(claims.contains(&acme_alice.device_id), "{claims}");
    // And the other way round.
    assert_eq!(verify_offline(&globex_keys, &ours, Some("127.0.0.1")).0, 1);
    assert_eq!(verify_offline(&globex_keys, &theirs, Some("127.0.0.1")).0, 0);
    // Online, as before: the gateway's own tenant decides.
    let online = check_token(&server, &acme.gateway_key, &theirs, "127.0.0.1").await;
    assert_eq!(deny_codes(&online), vec![pb::DenyReason::AccessTokenMismatch], "{:?}", online.reasons);
    assert!(!online.reasons[0].detail.contains(&globex.keys.tenant_id), "{:?}", online.reasons);
    assert!(is_allow(&check_token(&server, &acme.gateway_key, &ours, "127.0.0.1").await));

    // A key set without its tenant (written before sets named one, or edited) is unusable, not permissive.
    let mut untenanted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&acme_keys).unwrap()).unwrap();
    untenanted.as_object_mut().unwrap().remove("tenant_id");
    let old_file = dir.path().join("old-keys.json");
    std::fs::write(&old_file, untenanted.to_string()).unwrap();
    for token in [&ours, &theirs] {
        let (code, why) = verify_offline(&old_file, token, Some("127.0.0.1"));
        assert_eq!(code, 2, "{why}");
        assert!(why.contains("names no tenant") && why.contains("tether gateway token-keys"), "{why}");
    }
}
