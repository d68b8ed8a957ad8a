//! Gateway decisions, roles and tenant isolation.

use tether_e2e::fixtures::{Org, deny_codes, is_allow, prove_presence};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;

fn request(worker: &str, device: &str, ip: &str) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        worker_external_id: worker.into(),
        device_id: device.into(),
        credential_id: String::new(),
        source_ip: ip.into(),
        gateway_id: "vpn-1".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_revoked_device_is_denied() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;
    prove_presence(&server, &mut device).await;
    assert!(is_allow(&org.check(&server, "w-alice", &device.device_id).await));

    let mut admin = server.admin().await;
    let revoked = admin
        .revoke_device(authed(
            &org.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: device.device_id.clone(), reason: "laptop reported stolen".into() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_ms > 0);
    assert!(revoked.credentials.iter().all(|c| c.revoked_at_ms > 0));
    let decision = org.check(&server, "w-alice", &device.device_id).await;
    assert!(!is_allow(&decision));
    assert!(deny_codes(&decision).contains(&pb::DenyReason::DeviceRevoked));
}

#[tokio::test]
async fn unknown_or_malformed_input_is_denied_never_allowed() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-bob").await;
    prove_presence(&server, &mut device).await;
    let mut access = server.access().await;
    let cases = [
        (request("", &device.device_id, "127.0.0.1"), pb::DenyReason::InvalidRequest),
        (request("w-bob", "", "127.0.0.1"), pb::DenyReason::InvalidRequest),
        (request("w-bob", &device.device_id, "not-an-ip"), pb::DenyReason::InvalidRequest),
        (request("w-nobody", &device.device_id, "127.0.0.1"), pb::DenyReason::WorkerUnknown),
        (request("w-bob", "dev_doesnotexist", "127.0.0.1"), pb::DenyReason::DeviceNotEnrolled),
    ];
    for (req, expected) in cases {
        let decision = access.check_access(authed(&org.gateway_key, req.clone())).await.unwrap().into_inner();
        assert_eq!(decision.decision, pb::Decision::Deny as i32, "{req:?}");
        assert!(deny_codes(&decision).contains(&expected), "{req:?}: {:?}", decision.reasons);
        assert!(!decision.session_id.is_empty(), "every decision is recorded");
    }
    // Another worker presenting Bob's device.
    let mut admin = server.admin().await;
    admin
        .upsert_worker(authed(
            &org.keys.admin_key,
            pb::UpsertWorkerRequest {
                external_id: "w-mallory".into(),
                display_name: "Mallory".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let decision = access
        .check_access(authed(&org.gateway_key, request("w-mallory", &device.device_id, "::ffff:127.0.0.1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::DeviceNotAssignedToWorker]);

    let mut reports = server.reports().await;
    let denied = reports
        .list_sessions(authed(
            &org.analyst_key,
            pb::ListSessionsRequest { decision: pb::Decision::Deny as i32, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(denied.len(), 6);
    assert_eq!(denied[0].worker_external_id, "w-mallory", "newest first");
    assert_eq!(denied[0].source_ip, "127.0.0.1", "IPv4-mapped addresses are canonicalized");
}

#[tokio::test]
async fn tenants_cannot_see_each_other() {
    let server = Server::start();
    let a = Org::create(&server, "alpha").await;
    let b = Org::create(&server, "beta").await;
    let mut b_device = b.enrolled_device(&server, "w-bea").await;
    prove_presence(&server, &mut b_device).await;
    let mut admin = server.admin().await;

    let err = admin
        .get_device(authed(&a.keys.admin_key, pb::GetDeviceRequest { device_id: b_device.device_id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "existence must not leak");
    let err = admin
        .revoke_device(authed(
            &a.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: b_device.device_id.clone(), reason: String::new() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = admin
        .create_enrollment_token(authed(
            &a.keys.admin_key,
            pb::CreateEnrollmentTokenRequest { device_id: b_device.device_id.clone(), ttl_seconds: 0 },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = admin
        .list_devices(authed(&a.keys.admin_key, pb::ListDevicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(listed.is_empty());

    // A's gateway asking about B's worker and device: denied, as unknown.
    let decision = a.check(&server, "w-bea", &b_device.device_id).await;
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::WorkerUnknown]);
    // B's own gateway allows.
    assert!(is_allow(&b.check(&server, "w-bea", &b_device.device_id).await));
    // A's analysts see none of B's records.
    let mut reports = server.reports().await;
    let sessions = reports
        .list_sessions(authed(&a.analyst_key, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1, "only A's own (denied) check: {sessions:?}");
    assert_eq!(sessions[0].decision, pb::Decision::Deny as i32);
}

#[tokio::test]
async fn roles_are_enforced() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut admin = server.admin().await;
    let register = pb::RegisterDeviceRequest {
        serial_number: "SN-X".into(),
        model: "M".into(),
        asset_tag: String::new(),
        worker_external_id: String::new(),
        worker_display_name: String::new(),
        ek_pin: String::new(),
    };
    for key in [&org.analyst_key, &org.gateway_key] {
        let err = admin.register_device(authed(key, register.clone())).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        let err = admin
            .create_api_key(authed(
                key,
                pb::CreateApiKeyRequest { name: "x".into(), role: pb::Role::Admin as i32, ttl_seconds: 0 },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let device_id = org.register_device(&server, "w-cy", "SN-Y").await;
    let err = admin
        .create_enrollment_token(authed(
            &org.analyst_key,
            pb::CreateEnrollmentTokenRequest { device_id, ttl_seconds: 0 },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut reports = server.reports().await;
    let err = reports.list_sessions(authed(&org.gateway_key, pb::ListSessionsRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut access = server.access().await;
    let err = access.check_access(authed(&org.analyst_key, request("w-cy", "x", "127.0.0.1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // No key, a malformed key, a forged key, a revoked key.
    let err = access.check_access(request("w-cy", "x", "127.0.0.1")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    for bad in ["garbage", "tk.key_000.AAAA"] {
        let err = access.check_access(authed(bad, request("w-cy", "x", "127.0.0.1"))).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let forged = format!("{}x", &org.gateway_key[..org.gateway_key.len() - 1]);
    let err = access.check_access(authed(&forged, request("w-cy", "x", "127.0.0.1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let keys =
        admin.list_api_keys(authed(&org.keys.admin_key, pb::ListApiKeysRequest {})).await.unwrap().into_inner().keys;
    let gateway = keys.iter().find(|k| k.role == pb::Role::Gateway as i32).unwrap();
    admin
        .revoke_api_key(authed(&org.keys.admin_key, pb::RevokeApiKeyRequest { id: gateway.id.clone() }))
        .await
        .unwrap();
    let err = access.check_access(authed(&org.gateway_key, request("w-cy", "x", "127.0.0.1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn keys_expire_and_depend_on_the_servers_pepper() {
    let mut server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut admin = server.admin().await;
    let short = admin
        .create_api_key(authed(
            &org.keys.admin_key,
            pb::CreateApiKeyRequest { name: "short".into(), role: pb::Role::Gateway as i32, ttl_seconds: 1 },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(short.key.unwrap().expires_at_ms > 0);
    let mut access = server.access().await;
    access.check_access(authed(&short.secret, request("w", "d", "127.0.0.1"))).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let err = access.check_access(authed(&short.secret, request("w", "d", "127.0.0.1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());

    // The stored hash is keyed by the pepper: with another pepper no key works.
    std::fs::write(&server.pepper_file, "another pepper of at least thirty-two bytes!!").unwrap();
    server.restart();
    let mut admin = server.admin().await;
    let err = admin.list_api_keys(authed(&org.keys.admin_key, pb::ListApiKeysRequest {})).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}
