//! The risk engine running inside tetherd: flags appear in the analyst
//! report and in the gateway decision of the request that completes a
//! pattern. Loopback addresses stand in for public egress addresses.

use tether_e2e::fixtures::{EnrolledDevice, Org, deny_codes, is_allow, prove_presence};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

async fn check_from(server: &Server, org: &Org, device: &EnrolledDevice, ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    access
        .check_access(authed(
            &org.gateway_key,
            pb::CheckAccessRequest {
                worker_external_id: device.worker.clone(),
                device_id: device.device_id.clone(),
                credential_id: String::new(),
                source_ip: ip.into(),
                gateway_id: "vpn-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn flags(server: &Server, org: &Org) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    reports.list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default())).await.unwrap().into_inner().flags
}

#[tokio::test]
async fn laptops_of_three_employers_behind_one_egress_are_flagged_and_denied() {
    let server = Server::start();
    let mut fleet = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let org = Org::create(&server, name).await;
        let mut devices = Vec::new();
        for i in 0..2 {
            let mut device = org.enrolled_device(&server, &format!("{name}-w{i}")).await;
            prove_presence(&server, &mut device).await;
            devices.push(device);
        }
        fleet.push((org, devices));
    }
    // The "house": every laptop connects to the VPN from one address.
    let mut last = None;
    for (org, devices) in &fleet {
        for device in devices {
            last = Some(check_from(&server, org, device, "127.0.0.66").await);
        }
    }
    let last = last.unwrap();
    assert!(!is_allow(&last), "the sixth laptop behind one egress must be denied: {:?}", last.reasons);
    assert!(deny_codes(&last).contains(&pb::DenyReason::OpenHighSeverityFlags), "{:?}", last.reasons);

    // Every employer's analysts see the finding on their own laptops, with the cluster as evidence.
    for (org, devices) in &fleet {
        let shared: Vec<pb::Flag> =
            flags(&server, org).await.into_iter().filter(|f| f.kind == "shared_egress").collect();
        assert!(!shared.is_empty(), "no shared_egress flag for {}", org.keys.tenant_id);
        assert!(shared.iter().all(|f| devices.iter().any(|d| d.device_id == f.device_id)), "foreign device in report");
        let high = shared.iter().find(|f| f.severity == pb::FlagSeverity::High as i32).expect("a high flag");
        let evidence: serde_json::Value = serde_json::from_str(&high.evidence_json).unwrap();
        assert!(evidence.to_string().contains("127.0.0."), "evidence names the egress: {evidence}");
        // And every laptop of the cluster is now denied.
        for device in devices {
            assert!(!is_allow(&check_from(&server, org, device, "127.0.0.66").await));
        }
    }
}

#[tokio::test]
async fn one_employers_office_behind_one_nat_is_not_a_farm() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut devices = Vec::new();
    for i in 0..7 {
        let mut device = org.enrolled_device(&server, &format!("acme-w{i}")).await;
        prove_presence(&server, &mut device).await;
        devices.push(device);
    }
    for device in &devices {
        let decision = check_from(&server, &org, device, "127.0.0.77").await;
        assert!(is_allow(&decision), "{:?}", decision.reasons);
    }
    let high: Vec<pb::Flag> =
        flags(&server, &org).await.into_iter().filter(|f| f.severity == pb::FlagSeverity::High as i32).collect();
    assert!(high.is_empty(), "{high:?}");
}
