//! Quiet-farm signals live through tetherd (issue #15): a walked-room answer sweep
//! raises `presence_burst` with no probe round at all, and one TPM enrolled by two
//! employers' workers is `shared_hardware` in both employers' reports without
//! naming the other employer's worker. Loopback stands in for the shared address.

use std::time::{Duration, Instant};

use sqlx::Row;
use tether_e2e::fixtures::{Org, answer_json, challenge_now, sign};
use tether_e2e::swtpm::{EK_ECC, EK_ECC_CERT, Swtpm, tools_missing};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

async fn flags_of(server: &Server, org: &Org, kind: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let flags =
        reports.list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default())).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == kind).collect()
}

async fn probe_challenges(server: &Server) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM challenges WHERE reason = 'probe'").fetch_one(&pool).await.unwrap();
    pool.close().await;
    row.get::<i64, _>("n")
}

/// Time scaled down: answers 0.3–2 s apart are a sweep, three sweeps of three answers flag.
const SWEEP_CONFIG: &str = "[probes]\nenabled = false\n[presence_sweep]\nmin_gap_secs = 0.3\nmax_gap_secs = 2.0\n\
                            min_sweeps = 3\nmin_answers = 3\nmin_ratio = 0.6\n";

#[tokio::test]
async fn one_hand_answering_three_employers_laptops_in_turn_is_a_burst_without_probes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("risk.toml");
    std::fs::write(&config, SWEEP_CONFIG).unwrap();
    let server = Server::start_with_args(&["--risk-config", config.to_str().unwrap()]);
    let mut room = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let org = Org::create(&server, name).await;
        let device = org.enrolled_device(&server, &format!("{name}-w")).await;
        room.push((org, device));
    }
    for _ in 0..3 {
        // Each laptop is challenged at its own moment, more than the 2 s gap apart ...
        let mut pending = Vec::new();
        for (org, device) in &room {
            pending.push(challenge_now(&server, org, device, 0).await);
            tokio::time::sleep(Duration::from_millis(2_300)).await;
        }
        // ... and one person walks past and answers all three, a second apart.
        for ((_, device), challenge) in room.iter_mut().zip(&pending) {
            let json = sign(challenge, &mut device.auth);
            answer_json(&server, &challenge.challenge_id, json).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_000)).await;
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    // The last sweep is judged by the scheduler's clock once nobody could continue it.
    let start = Instant::now();
    for (org, device) in &room {
        let flags = loop {
            let flags = flags_of(&server, org, "presence_burst").await;
            if !flags.is_empty() || start.elapsed() > Duration::from_secs(20) {
                break flags;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(flags.len(), 1, "{}: {flags:?}", org.keys.tenant_id);
        let flag = &flags[0];
        assert_eq!(flag.device_id, device.device_id);
        assert_eq!(flag.severity, pb::FlagSeverity::High as i32);
        let evidence: serde_json::Value = serde_json::from_str(&flag.evidence_json).unwrap();
        assert!(evidence["pattern"].as_str().is_some_and(|p| p.starts_with("answer sweeps")), "{evidence}");
        assert!(evidence["answers_in_sweeps"].as_u64().is_some_and(|n| n >= 3), "{evidence}");
        // Other employers' laptops are counted, never named, in this employer's report.
        for (other, other_device) in &room {
            if other.keys.tenant_id != org.keys.tenant_id {
                assert!(!flag.evidence_json.contains(&other_device.device_id), "{}", flag.evidence_json);
                assert!(!flag.evidence_json.contains(&other.keys.tenant_id), "{}", flag.evidence_json);
            }
        }
        let denied = org.check(&server, &device.worker, &device.device_id).await;
        assert_ne!(denied.decision, pb::Decision::Allow as i32, "a high flag denies: {:?}", denied.reasons);
    }
    assert_eq!(probe_challenges(&server).await, 0, "no probe round was issued");
}

async fn enroll_tpm(server: &Server, org: &Org, tpm: &Swtpm, worker: &str, ak: &str) -> String {
    let mut admin = server.admin().await;
    admin
        .add_trust_anchors(authed(
            &org.keys.admin_key,
            pb::AddTrustAnchorsRequest { pem: tpm.root_pem(), name: "swtpm local CA".into() },
        ))
        .await
        .unwrap();
    let device_id = org.register_device(server, worker, &format!("TPM-{worker}")).await;
    let token = org.token(server, &device_id).await;
    tpm.create_ak(EK_ECC, ak);
    let mut client = server.enrollment().await;
    let begun = client
        .begin_tpm_enrollment(pb::BeginTpmEnrollmentRequest {
            token: token.clone(),
            ek_public: tpm.ek_public(EK_ECC),
            ek_certificate: tpm.ek_certificate_pem(EK_ECC_CERT),
            ak_public: tpm.read(&format!("{ak}.pub")),
        })
        .await
        .unwrap()
        .into_inner();
    let secret = tpm.activate(EK_ECC, ak, &begun.credential_blob, &begun.encrypted_secret);
    let done = client
        .finish_tpm_enrollment(pb::FinishTpmEnrollmentRequest {
            enrollment_id: begun.enrollment_id,
            token,
            activated_secret: secret,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(done.attested, "{}", done.attestation_reason);
    device_id
}

#[tokio::test]
async fn one_tpm_enrolled_by_two_employers_workers_is_flagged_for_both_without_naming_the_other() {
    if tools_missing("the shared-TPM end-to-end test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let acme_device = enroll_tpm(&server, &acme, &tpm, "acme-w1", "ak-acme").await;
    let globex_device = enroll_tpm(&server, &globex, &tpm, "globex-w9", "ak-globex").await;
    for (org, mine, theirs, their_worker, their_tenant) in [
        (&acme, &acme_device, &globex_device, "globex-w9", &globex.keys.tenant_id),
        (&globex, &globex_device, &acme_device, "acme-w1", &acme.keys.tenant_id),
    ] {
        let flags = flags_of(&server, org, "shared_hardware").await;
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(&flags[0].device_id, mine);
        assert_eq!(flags[0].severity, pb::FlagSeverity::High as i32);
        let evidence: serde_json::Value = serde_json::from_str(&flags[0].evidence_json).unwrap();
        assert_eq!(evidence["other_tenants"], 1, "{evidence}");
        assert!(evidence["hardware"].as_str().is_some_and(|h| h.starts_with("tpm-ek:")), "{evidence}");
        for secret in [theirs.as_str(), their_worker, their_tenant.as_str()] {
            assert!(!flags[0].evidence_json.contains(secret), "names {secret}: {}", flags[0].evidence_json);
        }
    }
}
