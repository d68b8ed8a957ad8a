//! PCR policy through tetherd and swtpm: expected values per model or per device, a mismatch
//! flagged (the answer counts), a policy PCR the quote leaves out refused.

use super::{answer, audit_actions, challenge_now, enroll, evidence, failures, flags, register, trust_tpm_root};
use tether_attestation::tpm::HashAlg;
use tether_attestation::tpm::pcr::PcrValues;
use tether_e2e::fixtures::{Org, is_allow, next_challenge};
use tether_e2e::swtpm::{EK_ECC, EK_ECC_CERT, Swtpm, hex, tools_missing};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1::{self as pb, pcr_policy_scope::Target};
use tonic::Code;

const MODEL: &str = "ThinkPad T14 (TPM)";

fn scope(target: Target) -> Option<pb::PcrPolicyScope> {
    Some(pb::PcrPolicyScope { target: Some(target) })
}

fn pcr(index: u32, value: &[u8]) -> pb::PcrExpectation {
    pb::PcrExpectation { bank: "sha256".into(), index, value_hex: hex(value) }
}

async fn set(
    server: &Server,
    key: &str,
    target: Target,
    pcrs: Vec<pb::PcrExpectation>,
) -> Result<pb::PcrPolicy, tonic::Status> {
    let mut admin = server.admin().await;
    admin
        .set_pcr_policy(authed(key, pb::SetPcrPolicyRequest { scope: scope(target), pcrs }))
        .await
        .map(|r| r.into_inner())
}

/// The sha256 value of PCR `index` as the quote helper (PCRs 0, 1, 2, 16) reports it.
fn value(pcrs: &[u8], index: u32) -> Vec<u8> {
    PcrValues::from_tpm2_tools(pcrs).unwrap().get(HashAlg::Sha256, index).unwrap().to_vec()
}

/// The detail of the presence event recorded for a challenge.
async fn event_detail(server: &Server, challenge_id: &str) -> String {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let row = sqlx::query("SELECT detail FROM presence_events WHERE challenge_id = $1 AND outcome = 'ok'")
        .bind(challenge_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    row.try_get("detail").unwrap()
}

#[tokio::test]
async fn pcr_policy_flags_mismatches_refuses_missing_pcrs_and_prefers_the_device_policy() {
    if tools_missing("the PCR policy test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-pcr").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-pcr", "").await;
    let token = org.token(&server, &device_id).await;
    tpm.create_ak(EK_ECC, "ak");
    let e = evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak");
    let credential_id = enroll(&server, &tpm, &token, EK_ECC, &e, "ak").await.unwrap().credential_id;
    let (_, _, measured) = tpm.quote("ak", b"read the PCRs");
    let (pcr0, pcr16) = (value(&measured, 0), value(&measured, 16));

    // Only admins set policies; bad values are refused.
    for key in [&org.analyst_key, &org.gateway_key] {
        let err = set(&server, key, Target::Model(MODEL.into()), vec![pcr(0, &pcr0)]).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    }
    let admin = org.keys.admin_key.as_str();
    let err = set(&server, admin, Target::Model(MODEL.into()), vec![pcr(0, &pcr0[..20])]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let err = set(&server, admin, Target::Model(MODEL.into()), vec![pcr(0, &pcr0), pcr(0, &pcr0)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let err = set(&server, admin, Target::DeviceId("no-such-device".into()), vec![pcr(0, &pcr0)]).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());

    // A matching model policy (set with the CLI): the answer counts, nothing is flagged.
    let env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", admin)];
    let (p0, p16) = (format!("sha256:0={}", hex(&pcr0)), format!("sha256:16={}", hex(&pcr16)));
    let out = run_bin("tether", &["policy", "pcr", "set", "--model", MODEL, "--pcr", &p0, "--pcr", &p16], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c1 = next_challenge(&server, &credential_id).await;
    let ok = answer(&server, &c1.challenge_id, tpm.quote("ak", &c1.nonce)).await.unwrap();
    assert_eq!(ok.outcome, pb::PresenceOutcome::Ok as i32);
    assert!(flags(&server, &org, &device_id).await.is_empty());
    let detail = event_detail(&server, &c1.challenge_id).await;
    assert!(detail.contains("PCR policy for model") && detail.contains("matches"), "{detail}");

    // PCR 16 extended: still the TPM (the answer counts), but flagged for review with evidence.
    tpm.ok("tpm2_pcrextend", &[&format!("16:sha256={}", hex(&[0x5a; 32]))]);
    let c2 = challenge_now(&server, &org, &device_id, &credential_id).await;
    let quote = tpm.quote("ak", &c2.nonce);
    let extended = value(&quote.2, 16);
    assert_ne!(extended, pcr16);
    let ok = answer(&server, &c2.challenge_id, quote).await.unwrap();
    assert_eq!(ok.outcome, pb::PresenceOutcome::Ok as i32);
    let raised = flags(&server, &org, &device_id).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let flag = &raised[0];
    assert_eq!(flag.kind, "pcr_policy_mismatch");
    assert_eq!(flag.severity, pb::FlagSeverity::Review as i32);
    let evidence: serde_json::Value = serde_json::from_str(&flag.evidence_json).unwrap();
    assert_eq!(evidence["scope"], "model");
    assert_eq!(evidence["target"], MODEL);
    let mismatches = evidence["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{evidence}");
    assert_eq!(mismatches[0]["index"], 16);
    assert_eq!(mismatches[0]["bank"], "sha256");
    assert_eq!(mismatches[0]["expected"], hex(&pcr16).as_str());
    assert_eq!(mismatches[0]["actual"], hex(&extended).as_str());
    assert_eq!(evidence["challenge_id"], c2.challenge_id.as_str());
    let detail = event_detail(&server, &c2.challenge_id).await;
    assert!(detail.contains("sha256:16") && detail.contains("pcr_policy_mismatch"), "{detail}");
    assert!(is_allow(&org.check(&server, "w-pcr", &device_id).await), "a review flag does not deny");
    let audit = audit_actions(&server, &org).await;
    assert!(audit.iter().any(|a| a.action == "flag.raised" && a.details_json.contains("pcr_policy_mismatch")));

    // The device's own policy replaces its model's: the extended value is what it expects.
    set(&server, admin, Target::DeviceId(device_id.clone()), vec![pcr(16, &extended)]).await.unwrap();
    let c3 = challenge_now(&server, &org, &device_id, &credential_id).await;
    answer(&server, &c3.challenge_id, tpm.quote("ak", &c3.nonce)).await.unwrap();
    assert_eq!(flags(&server, &org, &device_id).await.len(), 1, "no new flag under the device policy");
    assert!(event_detail(&server, &c3.challenge_id).await.contains("PCR policy for device"));

    // A policy PCR the quote does not select, and a quote without PCR values: refused, recorded.
    set(&server, admin, Target::DeviceId(device_id.clone()), vec![pcr(16, &extended), pcr(7, &[0; 32])]).await.unwrap();
    let c4 = challenge_now(&server, &org, &device_id, &credential_id).await;
    let err = answer(&server, &c4.challenge_id, tpm.quote("ak", &c4.nonce)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("sha256:7"), "{}", err.message());
    set(&server, admin, Target::DeviceId(device_id.clone()), vec![pcr(16, &extended)]).await.unwrap();
    let (attest, signature, _) = tpm.quote("ak", &c4.nonce);
    let err = answer(&server, &c4.challenge_id, (attest, signature, Vec::new())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("PCR values"), "{}", err.message());
    let recorded = failures(&server, &org, &device_id).await;
    assert!(recorded.iter().any(|(o, d)| *o == pb::PresenceOutcome::Failed && d.contains("sha256:7")), "{recorded:?}");

    // Listing (device policies first), clearing, and the audit trail.
    let mut client = server.admin().await;
    let listed = client
        .list_pcr_policies(authed(&org.analyst_key, pb::ListPcrPoliciesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .policies;
    let targets: Vec<_> = listed.iter().map(|p| p.scope.clone().and_then(|s| s.target)).collect();
    assert_eq!(targets, vec![Some(Target::DeviceId(device_id.clone())), Some(Target::Model(MODEL.into()))]);
    let out = run_bin("tether", &["--output", "json", "policy", "pcr", "list"], &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&hex(&pcr16)), "{}", String::from_utf8_lossy(&out.stderr));
    let err = client
        .clear_pcr_policy(authed(
            &org.analyst_key,
            pb::ClearPcrPolicyRequest { scope: scope(Target::Model(MODEL.into())) },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let out = run_bin("tether", &["policy", "pcr", "clear", "--device", &device_id], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = client
        .clear_pcr_policy(authed(
            admin,
            pb::ClearPcrPolicyRequest { scope: scope(Target::DeviceId(device_id.clone())) },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let audit = audit_actions(&server, &org).await;
    let count = |action: &str| audit.iter().filter(|a| a.action == action).count();
    assert_eq!((count("pcr_policy.set"), count("pcr_policy.cleared")), (4, 1));
}

/// tether-agent's own TPM backend (tss-esapi) under a model PCR policy: its quotes carry the
/// values of PCRs 0-7, so a matching policy passes unflagged, and after a policy PCR is
/// extended the next answer raises `pcr_policy_mismatch` and still counts.
#[cfg(feature = "tpm")]
#[tokio::test]
async fn the_agent_tpm_backend_sends_the_pcr_values_a_policy_checks() {
    use tether_agent::answer_challenge;
    use tether_agent::tpm::{TpmKey, enroll_tpm};
    use tether_attestation::tpm::PcrSelection;
    if tools_missing("the agent PCR policy test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-pcr-agent").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-pcr-agent", "").await;
    let token = org.token(&server, &device_id).await;
    let mut key = TpmKey::create(&tpm.tcti()).unwrap();
    let channel = tether_agent::connect(&server.url).await.unwrap();
    let enrolled = enroll_tpm(channel.clone(), &token, &mut key, &super::issuer_chain(&tpm)).await.unwrap();
    let credential_id = enrolled.credential_id;

    // The expected values as tpm2_pcrread reads them, independently of the agent.
    tpm.ok("tpm2_pcrread", &["sha256:0,7", "-o", "policy.pcrs"]);
    let selection = [PcrSelection { hash: HashAlg::Sha256.id(), select: vec![0x81, 0, 0] }];
    let read = PcrValues::from_concatenated(&tpm.read("policy.pcrs"), &selection).unwrap();
    let (pcr0, pcr7) = (read.get(HashAlg::Sha256, 0).unwrap().to_vec(), read.get(HashAlg::Sha256, 7).unwrap().to_vec());
    let admin = org.keys.admin_key.as_str();
    set(&server, admin, Target::Model(MODEL.into()), vec![pcr(0, &pcr0), pcr(7, &pcr7)]).await.unwrap();

    // The agent's quote carries PCRs 0-7 in the tpm2-tools file format.
    let quote = key.quote(b"read the PCRs").unwrap();
    let sent = PcrValues::from_tpm2_tools(&quote.pcrs).unwrap();
    assert_eq!(sent.values.iter().map(|v| v.index).collect::<Vec<_>>(), (0..8).collect::<Vec<u32>>());
    assert_eq!(sent.get(HashAlg::Sha256, 7), Some(pcr7.as_slice()));

    // A matching policy: allowed, nothing flagged.
    let c1 = next_challenge(&server, &credential_id).await;
    let ok = answer_challenge(channel.clone(), &c1, &mut key).await.unwrap();
    assert_eq!(ok.outcome, pb::PresenceOutcome::Ok as i32);
    assert!(flags(&server, &org, &device_id).await.is_empty());
    let detail = event_detail(&server, &c1.challenge_id).await;
    assert!(detail.contains("PCR policy for model") && detail.contains("matches"), "{detail}");
    assert!(is_allow(&org.check(&server, "w-pcr-agent", &device_id).await));

    // PCR 7 (Secure Boot policy) extended: the next answer counts but is flagged for review.
    tpm.ok("tpm2_pcrextend", &[&format!("7:sha256={}", hex(&[0xa5; 32]))]);
    let c2 = challenge_now(&server, &org, &device_id, &credential_id).await;
    let ok = answer_challenge(channel.clone(), &c2, &mut key).await.unwrap();
    assert_eq!(ok.outcome, pb::PresenceOutcome::Ok as i32);
    let raised = flags(&server, &org, &device_id).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].kind, "pcr_policy_mismatch");
    assert_eq!(raised[0].severity, pb::FlagSeverity::Review as i32);
    let evidence: serde_json::Value = serde_json::from_str(&raised[0].evidence_json).unwrap();
    let mismatches = evidence["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{evidence}");
    assert_eq!(mismatches[0]["index"], 7);
    assert_eq!(mismatches[0]["expected"], hex(&pcr7).as_str());
    assert_ne!(mismatches[0]["actual"], hex(&pcr7).as_str());
    assert_eq!(evidence["challenge_id"], c2.challenge_id.as_str());
    let detail = event_detail(&server, &c2.challenge_id).await;
    assert!(detail.contains("sha256:7") && detail.contains("pcr_policy_mismatch"), "{detail}");
    assert!(is_allow(&org.check(&server, "w-pcr-agent", &device_id).await), "a review flag does not deny");
}
