//! Abuse limits: a flood is answered RESOURCE_EXHAUSTED with a retry hint,
//! and one tenant's flood does not starve another tenant.

use tether_e2e::fixtures::{Org, enroll};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;

fn check(worker: &str) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        worker_external_id: worker.into(),
        device_id: "dev_x".into(),
        credential_id: String::new(),
        source_ip: "127.0.0.1".into(),
        gateway_id: "vpn".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn one_tenants_flood_is_limited_and_does_not_starve_another() {
    let server = Server::start_with_args(&["--limit-access-per-tenant", "5"]);
    let noisy = Org::create(&server, "noisy").await;
    let quiet = Org::create(&server, "quiet").await;

    let mut flood = Vec::new();
    for _ in 0..60 {
        let mut access = server.access().await;
        let key = noisy.gateway_key.clone();
        flood.push(tokio::spawn(async move { access.check_access(authed(&key, check("w"))).await }));
    }
    // The quiet tenant asks while the flood is under way.
    let mut access = server.access().await;
    for _ in 0..5 {
        let answer = access.check_access(authed(&quiet.gateway_key, check("w"))).await;
        assert!(answer.is_ok(), "the quiet tenant was starved: {answer:?}");
    }
    let mut limited = 0;
    for task in flood {
        match task.await.unwrap() {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("retry in"), "{}", status.message());
                let wait: u64 = status.metadata().get("retry-after-ms").unwrap().to_str().unwrap().parse().unwrap();
                assert!(wait <= 1000, "{wait}");
                limited += 1;
            }
        }
    }
    assert!(limited >= 40, "only {limited} of 60 flooding calls were limited");
}

#[tokio::test]
async fn enrollment_attempts_from_one_address_are_limited() {
    let server = Server::start_with_args(&["--limit-enrollment-per-address", "1"]);
    let org = Org::create(&server, "acme").await;
    let mut client = server.enrollment().await;
    let mut refused = 0;
    // Guessing tokens: the burst (4) gets answers, then the address waits.
    for i in 0..12 {
        match client.begin_enrollment(pb::BeginEnrollmentRequest { token: format!("et.guess-{i}") }).await {
            Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
            Ok(_) => panic!("a guessed token was accepted"),
        }
    }
    assert!(refused >= 6, "only {refused} guesses were limited");
    // After the wait, a real enrollment goes through.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let device_id = org.register_device(&server, "w-a", "SN-1").await;
    let token = org.token(&server, &device_id).await;
    let mut auth = org.attested_authenticator();
    assert!(enroll(&server, &token, &mut auth).await.unwrap().attested);
}

#[test]
fn a_non_positive_limit_is_refused_at_start() {
    let out =
        tether_e2e::run_bin("tetherd", &["serve", "--listen", "127.0.0.1:0", "--limit-access-per-tenant", "0"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--limit-access-per-tenant"));
}
