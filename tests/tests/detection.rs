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

/// An employer that registers its office egress keeps its own laptops there
/// out of `shared_egress`; other employers' laptops behind the same address
/// still count, and clearing the registration counts acme's again.
#[tokio::test]
async fn a_registered_office_egress_hides_only_its_own_tenants_laptops() {
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let initech = Org::create(&server, "initech").await;
    let office = |cidrs: &[&str]| pb::UpdatePolicyRequest {
        set_office_egress_cidrs: true,
        office_egress_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    // Every call of the test comes from 127.0.0.x, enrollments included.
    let policy = acme.update_policy(&server, office(&["127.0.0.9/24"])).await;
    assert_eq!(policy.office_egress_cidrs, ["127.0.0.0/24"]);
    let mut fleet = Vec::new();
    for (org, workers) in [(&acme, 3), (&globex, 2), (&initech, 1)] {
        for i in 0..workers {
            let mut device = org.enrolled_device(&server, &format!("w{i}")).await;
            prove_presence(&server, &mut device).await;
            check_from(&server, org, &device, "127.0.0.88").await;
            fleet.push((org, device));
        }
    }
    let shared = |flags: Vec<pb::Flag>| flags.into_iter().filter(|f| f.kind == "shared_egress").collect::<Vec<_>>();
    assert!(shared(flags(&server, &acme).await).is_empty(), "acme's office is not a farm");
    for org in [&globex, &initech] {
        let found = shared(flags(&server, org).await);
        assert!(found.iter().any(|f| f.severity == pb::FlagSeverity::Review as i32), "{found:?}");
        let evidence: serde_json::Value = serde_json::from_str(&found[0].evidence_json).unwrap();
        assert!(!evidence.to_string().contains(&fleet[0].1.device_id), "acme's laptops are not members: {evidence}");
    }

    // Without the registration, acme's laptop answering from the address where tetherd saw the
    // others answer counts again. (Other tenants' gateway-reported addresses, like 127.0.0.88
    // above, never count against acme: see the framing test below.)
    acme.update_policy(&server, office(&[])).await;
    let (_, device) = &mut fleet[0];
    tether_e2e::fixtures::challenge_now(&server, &acme, device, 300).await;
    prove_presence(&server, device).await;
    assert!(!shared(flags(&server, &acme).await).is_empty(), "without the registration acme's laptops count");

    let mut admin = server.admin().await;
    let wide = admin.update_policy(authed(&acme.keys.admin_key, office(&["10.0.0.0/8"]))).await.unwrap_err();
    assert_eq!(wide.code(), tonic::Code::InvalidArgument);
    assert!(wide.message().contains("office_egress_cidrs[0]"), "{}", wide.message());
}
