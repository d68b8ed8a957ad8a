//! The service as a process: health, reflection, restarts, bad input.

use std::time::Duration;
use tether_e2e::fixtures::{Org, is_allow, prove_presence};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn health_and_reflection_answer_standard_clients() {
    let server = Server::start();
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let overall =
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(overall.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let access = health
        .check(tonic_health::pb::HealthCheckRequest { service: "tether.v1.AccessService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(access.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let v1 = reflection_v1_services(&server).await;
    let v1alpha = reflection_v1alpha_services(&server).await;
    for names in [&v1, &v1alpha] {
        for expected in [
            "tether.v1.AdminService",
            "tether.v1.EnrollmentService",
            "tether.v1.PresenceService",
            "tether.v1.AccessService",
            "tether.v1.ReportService",
            "grpc.health.v1.Health",
            "envoy.service.auth.v3.Authorization",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
    }
    assert!(v1.iter().any(|n| n == "grpc.reflection.v1.ServerReflection"), "{v1:?}");
    assert!(v1alpha.iter().any(|n| n == "grpc.reflection.v1alpha.ServerReflection"), "{v1alpha:?}");
}

/// The service names a grpc.reflection.v1 client (grpcurl, grpc_cli) lists.
async fn reflection_v1_services(server: &Server) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection v1 answer");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// The service names a grpc.reflection.v1alpha client (Python's grpcio-reflection, older
/// grpcurl, Postman, evans) lists.
async fn reflection_v1alpha_services(server: &Server) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection v1alpha answer");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn a_restart_keeps_all_state() {
    let mut server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;
    prove_presence(&server, &mut device).await;
    assert!(is_allow(&org.check(&server, "w-alice", &device.device_id).await));

    server.restart();

    // Keys, inventory, credential, counter and presence all survived.
    assert!(is_allow(&org.check(&server, "w-alice", &device.device_id).await));
    let mut admin = server.admin().await;
    let shown = admin
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: device.device_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.credentials.len(), 1);
    assert!(shown.credentials[0].sign_count >= 1);
    prove_presence_now(&server, &org, &mut device).await;
    let anchors = admin
        .list_trust_anchors(authed(&org.keys.admin_key, pb::ListTrustAnchorsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .anchors;
    assert_eq!(anchors.len(), 1);
}

async fn prove_presence_now(server: &Server, org: &Org, device: &mut tether_e2e::fixtures::EnrolledDevice) {
    let mut admin = server.admin().await;
    admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap();
    prove_presence(server, device).await;
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut admin = server.admin().await;
    let err =
        admin.register_device(authed(&org.keys.admin_key, pb::RegisterDeviceRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("serial_number"), "{}", err.message());

    org.register_device(&server, "w-a", "SN-DUP").await;
    let err = admin
        .register_device(authed(
            &org.keys.admin_key,
            pb::RegisterDeviceRequest { serial_number: "SN-DUP".into(), model: "M".into(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    let err = admin
        .add_trust_anchors(authed(
            &org.keys.admin_key,
            pb::AddTrustAnchorsRequest {
                pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
                name: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = admin
        .update_policy(authed(
            &org.keys.admin_key,
            pb::UpdatePolicyRequest { origin: Some("ftp://x".into()), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let mut reports = server.reports().await;
    let err = reports
        .list_sessions(authed(
            &org.analyst_key,
            pb::ListSessionsRequest {
                page: Some(pb::Page { page_size: 10, page_token: "%%%".into() }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"));

    // An oversized message is refused by the transport, not processed.
    let mut enrollment = server.enrollment().await;
    let err = enrollment
        .begin_enrollment(pb::BeginEnrollmentRequest { token: "x".repeat(2 * 1024 * 1024) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}

#[tokio::test]
async fn reports_paginate_newest_first_with_stable_cursors() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut access = server.access().await;
    for i in 0..7 {
        access
            .check_access(authed(
                &org.gateway_key,
                pb::CheckAccessRequest {
                    worker_external_id: format!("w-{i}"),
                    device_id: "dev_x".into(),
                    credential_id: String::new(),
                    source_ip: "127.0.0.1".into(),
                    gateway_id: "g".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reports = server.reports().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = reports
            .list_sessions(authed(
                &org.analyst_key,
                pb::ListSessionsRequest {
                    page: Some(pb::Page { page_size: 3, page_token: token.clone() }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.sessions.into_iter().map(|s| s.worker_external_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("w-{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_cleanly() {
    let mut server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device = org.enrolled_device(&server, "w-zed").await;
    let mut presence = server.presence().await;
    let mut stream = presence
        .watch_challenges(pb::WatchChallengesRequest { credential_id: device.credential_id.clone() })
        .await
        .unwrap()
        .into_inner();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.stop();
        (server, status)
    })
    .await
    .unwrap()
    .1;
    let status = status.expect("tetherd did not exit within 5 s of SIGTERM");
    assert!(status.success(), "tetherd exited with {status}");
    // The agent's stream ends (it reconnects elsewhere), it does not hang.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the stream did not end");
}

/// The official Python client (grpcio-reflection) speaks only v1alpha; `.ci/run` installs it.
#[test]
fn python_grpcio_reflection_lists_the_services() {
    let probe = std::process::Command::new("python3").args(["-c", "import grpc, grpc_reflection"]).output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!(
            "SKIPPED: python3 with grpcio and grpcio-reflection is not installed (pip install grpcio-reflection)"
        );
        return;
    }
    let server = Server::start();
    let target = server.url.trim_start_matches("http://").to_string();
    let script = r#"
import sys, grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(sys.argv[1]))
for name in db.get_services():
    print(name)
print(db.FindFileContainingSymbol("tether.v1.AccessService").name)
"#;
    let output = std::process::Command::new("python3").args(["-c", script, &target]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python reflection client failed: {}", String::from_utf8_lossy(&output.stderr));
    for expected in ["tether.v1.AccessService", "tether.v1.EnrollmentService", "grpc.health.v1.Health"] {
        assert!(stdout.lines().any(|l| l == expected), "{expected} missing from {stdout}");
    }
    assert!(stdout.lines().any(|l| l.ends_with(".proto")), "no file descriptor for AccessService: {stdout}");
}
