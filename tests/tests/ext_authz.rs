//! Envoy external authorization against a real tetherd: Authorization.Check
//! over gRPC with rcgen device certificates and access tokens, as Envoy
//! sends it (`include_peer_certificate`, URL-encoded PEM).

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use std::collections::HashMap;
use std::path::PathBuf;
use tether_e2e::fixtures::{EnrolledDevice, Org, next_challenge, prove_presence, sign, test_aaguid};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tonic::Code;

/// The employer's device CA (Envoy verifies chains against it; tetherd reads the forwarded leaf).
struct DeviceCa {
    issuer: Issuer<'static, KeyPair>,
}

impl DeviceCa {
    fn new() -> DeviceCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Acme Device CA");
        DeviceCa { issuer: Issuer::new(params, KeyPair::generate().unwrap()) }
    }

    fn device_cert(&self, uris: &[String]) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "laptop");
        params.subject_alt_names = uris.iter().map(|u| SanType::URI(u.as_str().try_into().unwrap())).collect();
        params.signed_by(&KeyPair::generate().unwrap(), &self.issuer).unwrap().pem()
    }

    fn for_device(&self, tenant: &str, device: &str) -> String {
        self.device_cert(&[format!("tether://tenant/{tenant}/device/{device}")])
    }
}

/// Envoy's URL encoding of the PEM: everything but unreserved characters escaped.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn check_request(certificate_pem: Option<&str>, headers: &[(&str, &str)]) -> CheckRequest {
    let address = Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            ..Default::default()
        })),
    };
    let http = HttpRequest {
        method: "GET".into(),
        path: "/payroll".into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(address),
                certificate: certificate_pem.map(url_encode).unwrap_or_default(),
                ..Default::default()
            }),
            request: Some(AttrRequest { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

async fn ask(server: &Server, key: &str, request: CheckRequest) -> CheckResponse {
    let mut client = AuthorizationClient::new(server.channel().await);
    client.check(authed(key, request)).await.unwrap().into_inner()
}

fn headers_of(response: &CheckResponse) -> HashMap<String, String> {
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("expected an OK response: {response:?}");
    };
    ok.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect()
}

/// Asserts DENY (PERMISSION_DENIED, 403) and returns the body.
fn denied(response: &CheckResponse) -> String {
    assert_eq!(response.status.as_ref().map(|s| s.code), Some(Code::PermissionDenied as i32), "{response:?}");
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("expected a denied response: {response:?}");
    };
    assert_eq!(denied.status.as_ref().map(|s| s.code), Some(403));
    assert!(denied.body.starts_with("access denied by Tether"), "{}", denied.body);
    denied.body.clone()
}

fn is_ok(response: &CheckResponse) -> bool {
    response.status.as_ref().map(|s| s.code) == Some(Code::Ok as i32)
}

#[tokio::test]
async fn device_certificates_allow_only_attested_present_devices() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let other = Org::create(&server, "globex").await;
    let ca = DeviceCa::new();
    let tenant = org.keys.tenant_id.clone();
    let mut device = org.enrolled_device(&server, "alice").await;
    let cert = ca.for_device(&tenant, &device.device_id);

    // Enrolled but never present: denied with the reason.
    let body = denied(&ask(&server, &org.gateway_key, check_request(Some(&cert), &[])).await);
    assert!(body.contains("presence_never"), "{body}");

    prove_presence(&server, &mut device).await;
    let smuggled = [("x-tether-worker", "mallory"), ("x-tether-flags", "none-really")];
    let allowed = ask(&server, &org.gateway_key, check_request(Some(&cert), &smuggled)).await;
    assert!(is_ok(&allowed), "{allowed:?}");
    let headers = headers_of(&allowed);
    assert_eq!(headers["x-tether-worker"], "alice", "the client's own header is overwritten");
    assert_eq!(headers["x-tether-device"], device.device_id);
    assert!(headers["x-tether-session"].starts_with("ses_"));
    assert_eq!(headers["x-tether-flags"], "none", "no open flags, and the client's header is overwritten");
    let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else { unreachable!() };
    assert!(ok.headers_to_remove.contains(&"x-tether-access-token".to_string()));

    // The session is recorded for analysts like any gateway decision.
    let mut reports = server.reports().await;
    let sessions = reports
        .list_sessions(authed(&org.analyst_key, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert!(sessions.iter().any(|s| s.gateway_id == "envoy" && s.device_id == device.device_id), "{sessions:?}");

    // Another tenant's gateway cannot use this tenant's device certificate, nor can this
    // gateway accept a certificate naming another tenant.
    let body = denied(&ask(&server, &other.gateway_key, check_request(Some(&cert), &[])).await);
    assert!(body.contains("client_certificate_invalid"), "{body}");
    let foreign = ca.for_device(&other.keys.tenant_id, &device.device_id);
    let body = denied(&ask(&server, &org.gateway_key, check_request(Some(&foreign), &[])).await);
    assert!(body.contains("client_certificate_invalid") && body.contains("tenant"), "{body}");

    // Revoked: denied.
    let mut admin = server.admin().await;
    admin
        .revoke_device(authed(
            &org.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: device.device_id.clone(), reason: "stolen".into() },
        ))
        .await
        .unwrap();
    let body = denied(&ask(&server, &org.gateway_key, check_request(Some(&cert), &[])).await);
    assert!(body.contains("device_revoked"), "{body}");
}

#[tokio::test]
async fn unattested_flagged_and_unknown_devices_are_denied() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let ca = DeviceCa::new();
    let tenant = org.keys.tenant_id.clone();

    // Self-attested: present but unattested.
    org.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(&server, "bob", "SN-SELF").await;
    let token = org.token(&server, &device_id).await;
    let mut auth =
        tether_softkey::SoftAuthenticator::new(tether_softkey::AttestationMode::SelfAttestation, test_aaguid())
            .unwrap();
    let done = tether_e2e::fixtures::enroll(&server, &token, &mut auth).await.unwrap();
    let mut bob =
        EnrolledDevice { device_id: device_id.clone(), credential_id: done.credential_id, worker: "bob".into(), auth };
    prove_presence(&server, &mut bob).await;
    // Allowed while the tenant lets unattested devices in: the review flag travels as a header.
    let allowed = ask(&server, &org.gateway_key, check_request(Some(&ca.for_device(&tenant, &device_id)), &[])).await;
    assert!(is_ok(&allowed), "{allowed:?}");
    assert_eq!(headers_of(&allowed)["x-tether-flags"], "unattested_hardware:review");
    assert_eq!(headers_of(&allowed)["x-tether-would-deny"], "none");
    // Monitor mode: the tier denial lets the request through and names itself to the upstream.
    let monitor = pb::UpdatePolicyRequest {
        allow_unattested: Some(false),
        enforcement: Some(pb::EnforcementMode::Monitor as i32),
        ..Default::default()
    };
    org.update_policy(&server, monitor).await;
    let monitored = ask(&server, &org.gateway_key, check_request(Some(&ca.for_device(&tenant, &device_id)), &[])).await;
    assert!(is_ok(&monitored), "{monitored:?}");
    assert_eq!(headers_of(&monitored)["x-tether-would-deny"], "unattested");
    let enforce =
        pb::UpdatePolicyRequest { enforcement: Some(pb::EnforcementMode::Enforce as i32), ..Default::default() };
    org.update_policy(&server, enforce).await;
    let body =
        denied(&ask(&server, &org.gateway_key, check_request(Some(&ca.for_device(&tenant, &device_id)), &[])).await);
    assert!(body.contains("unattested"), "{body}");

    // Flagged: a cloned key answering with an old counter raises a high-severity flag.
    let mut carol = org.enrolled_device(&server, "carol").await;
    let mut clone = tether_softkey::SoftAuthenticator::from_state_json(&carol.auth.to_state_json()).unwrap();
    prove_presence(&server, &mut carol).await;
    let carol_cert = ca.for_device(&tenant, &carol.device_id);
    assert!(is_ok(&ask(&server, &org.gateway_key, check_request(Some(&carol_cert), &[])).await));
    let challenge = tether_e2e::fixtures::challenge_now(&server, &org, &carol, 60).await;
    let json = sign(&challenge, &mut clone);
    assert!(tether_e2e::fixtures::answer_json(&server, &challenge.challenge_id, json).await.is_err());
    let body = denied(&ask(&server, &org.gateway_key, check_request(Some(&carol_cert), &[])).await);
    assert!(body.contains("open_high_severity_flags"), "{body}");

    // A device that is not in the inventory, and one with no worker.
    let body =
        denied(&ask(&server, &org.gateway_key, check_request(Some(&ca.for_device(&tenant, "dev_nope")), &[])).await);
    assert!(body.contains("device_not_enrolled"), "{body}");
}

#[tokio::test]
async fn missing_and_malformed_identities_are_denied_never_allowed() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let ca = DeviceCa::new();
    let tenant = org.keys.tenant_id.clone();

    let body = denied(&ask(&server, &org.gateway_key, check_request(None, &[])).await);
    assert!(body.contains("identity_missing"), "{body}");

    let role_cert = ca.device_cert(&[format!("tether://tenant/{tenant}/role/gateway")]);
    let no_uri = ca.device_cert(&[]);
    let two = ca.device_cert(&[
        format!("tether://tenant/{tenant}/device/dev_a"),
        format!("tether://tenant/{tenant}/device/dev_b"),
    ]);
    let truncated = ca.for_device(&tenant, "dev_a");
    let truncated = &truncated[..truncated.len() / 2];
    for cert in [role_cert.as_str(), no_uri.as_str(), two.as_str(), truncated, "garbage", "%ZZ"] {
        let body = denied(&ask(&server, &org.gateway_key, check_request(Some(cert), &[])).await);
        assert!(body.contains("client_certificate_invalid"), "{body}");
    }

    // Without a gateway key Envoy gets an error (and, with failure_mode_allow: false, refuses).
    let mut client = AuthorizationClient::new(server.channel().await);
    let refused = client.check(check_request(None, &[])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // An analyst key is not a gateway.
    let refused = client.check(authed(&org.analyst_key, check_request(None, &[]))).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn access_tokens_in_headers_allow_and_forged_ones_deny() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.pem");
    let made = run_bin("tether", &["gateway", "new-token-key", "--out", key.to_str().unwrap()], &[]);
    assert!(made.status.success());
    let server = Server::start_with_args(&["--access-token-key", key.to_str().unwrap()]);
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "alice").await;
    let challenge = next_challenge(&server, &device.credential_id).await;
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
    let token = answered.access_token;

    let allowed = ask(&server, &org.gateway_key, check_request(None, &[("x-tether-access-token", &token)])).await;
    assert!(is_ok(&allowed), "{allowed:?}");
    assert_eq!(headers_of(&allowed)["x-tether-device"], device.device_id);
    let by_authorization = format!("Tether {token}");
    let allowed = ask(&server, &org.gateway_key, check_request(None, &[("authorization", &by_authorization)])).await;
    assert!(is_ok(&allowed), "{allowed:?}");
    let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else { unreachable!() };
    assert!(ok.headers_to_remove.contains(&"authorization".to_string()), "the token does not reach the upstream");

    // A token in both headers: the one checked is x-tether-access-token, and
    // the copy in authorization must not reach the upstream either.
    let both = [("x-tether-access-token", token.as_str()), ("authorization", by_authorization.as_str())];
    let allowed = ask(&server, &org.gateway_key, check_request(None, &both)).await;
    assert!(is_ok(&allowed), "{allowed:?}");
    let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else { unreachable!() };
    let mut removed = ok.headers_to_remove.clone();
    removed.sort();
    assert_eq!(removed, ["authorization", "x-tether-access-token"], "no token header reaches the upstream");
    // The upstream's own credential is not Tether's to remove.
    let own = [("x-tether-access-token", token.as_str()), ("authorization", "Bearer app-session")];
    let allowed = ask(&server, &org.gateway_key, check_request(None, &own)).await;
    let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else { panic!("{allowed:?}") };
    assert_eq!(ok.headers_to_remove, ["x-tether-access-token"]);

    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let body =
        denied(&ask(&server, &org.gateway_key, check_request(None, &[("x-tether-access-token", &forged)])).await);
    assert!(body.contains("access_token_invalid"), "{body}");
    let body =
        denied(&ask(&server, &org.gateway_key, check_request(None, &[("x-tether-access-token", "tt1.nope")])).await);
    assert!(body.contains("access_token_invalid"), "{body}");
}

#[tokio::test]
async fn reflection_lists_the_envoy_authorization_service() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let server = Server::start();
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("envoy.service.auth.v3.CheckRequest".into())),
        },
    ];
    let mut responses = reflection.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "envoy.service.auth.v3.Authorization"), "{names:?}");
    assert!(names.iter().any(|n| n == "tether.v1.AccessService"), "{names:?}");
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("the CheckRequest message is not resolvable by reflection");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[test]
fn the_shipped_envoy_config_parses_and_wires_ext_authz_to_tetherd() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/envoy/envoy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let listener = &config["static_resources"]["listeners"][0];
    let chain = &listener["filter_chains"][0];
    assert_eq!(
        chain["transport_socket"]["typed_config"]["require_client_certificate"],
        serde_yaml_ng::Value::Bool(true)
    );
    let filters = &chain["filters"][0]["typed_config"]["http_filters"];
    let ext_authz = &filters[0]["typed_config"];
    assert_eq!(filters[0]["name"].as_str(), Some("envoy.filters.http.ext_authz"));
    assert_eq!(ext_authz["include_peer_certificate"], serde_yaml_ng::Value::Bool(true));
    assert_eq!(ext_authz["failure_mode_allow"], serde_yaml_ng::Value::Bool(false));
    assert_eq!(ext_authz["grpc_service"]["envoy_grpc"]["cluster_name"].as_str(), Some("tetherd"));
    let metadata = &ext_authz["grpc_service"]["initial_metadata"][0];
    assert_eq!(metadata["key"].as_str(), Some("authorization"));
    assert!(metadata["value"].as_str().unwrap().starts_with("Bearer "));
    let clusters = config["static_resources"]["clusters"].as_sequence().unwrap();
    assert!(clusters.iter().any(|c| c["name"].as_str() == Some("tetherd")));
}
