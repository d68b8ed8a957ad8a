//! TLS on the gRPC listener, and mutual TLS: a client certificate from the
//! configured client CA, naming tether://tenant/<id>/role/<role>, stands in
//! for an API key; anything else is refused.

use std::path::Path;
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// (certificate PEM, key PEM) issued by `ca`.
fn issue(ca: &Ca, dns: &[&str], uri: Option<&str>) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    if let Some(uri) = uri {
        params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().unwrap()));
    }
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn connect(server: &Server, ca_pem: &str, identity: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let url = server.url.replace("http://", "https://");
    Channel::from_shared(url).unwrap().tls_config(tls).unwrap().connect().await.map_err(|e| format!("{e:?}"))
}

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
async fn mutual_tls_authenticates_gateways_by_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("Tether Test Server CA");
    let client_ca = ca("Tether Test Gateway CA");
    let (cert, key) = issue(&server_ca, &["localhost"], None);
    let args = [
        "--tls-cert".to_string(),
        write(dir.path(), "server.pem", &cert),
        "--tls-key".to_string(),
        write(dir.path(), "server.key", &key),
        "--tls-client-ca".to_string(),
        write(dir.path(), "client-ca.pem", &client_ca.pem),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with_args(&args);
    let tenant = server.init_tenant("acme", "acme.example", "https://acme.example");

    // Plaintext to a TLS listener does not get through.
    let plain = Channel::from_shared(server.url.clone()).unwrap().connect().await;
    if let Ok(channel) = plain {
        let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
        assert!(admin.get_tenant(authed(&tenant.admin_key, pb::GetTenantRequest {})).await.is_err());
    }

    // TLS without a client certificate: API keys still work.
    let channel = connect(&server, &server_ca.pem, None).await.unwrap();
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
    let shown = admin.get_tenant(authed(&tenant.admin_key, pb::GetTenantRequest {})).await.unwrap().into_inner();
    assert_eq!(shown.id, tenant.tenant_id);

    // A gateway certificate for this tenant: no API key needed, gateway rights only.
    let gateway =
        issue(&client_ca, &["vpn-1.acme.example"], Some(&format!("tether://tenant/{}/role/gateway", tenant.tenant_id)));
    let channel = connect(&server, &server_ca.pem, Some(&gateway)).await.unwrap();
    let mut access = pb::access_service_client::AccessServiceClient::new(channel.clone());
    let decision = access.check_access(check("w-nobody")).await.unwrap().into_inner();
    assert_eq!(decision.decision, pb::Decision::Deny as i32);
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
    let err = admin.list_devices(pb::ListDevicesRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A certificate naming a tenant that does not exist.
    let stray = issue(&client_ca, &["x"], Some("tether://tenant/ten_000000000000000000000000/role/admin"));
    let channel = connect(&server, &server_ca.pem, Some(&stray)).await.unwrap();
    let mut access = pb::access_service_client::AccessServiceClient::new(channel);
    assert_eq!(access.check_access(check("w")).await.unwrap_err().code(), Code::Unauthenticated);

    // A certificate without the identity URI.
    let anonymous = issue(&client_ca, &["anon"], None);
    let channel = connect(&server, &server_ca.pem, Some(&anonymous)).await.unwrap();
    let mut access = pb::access_service_client::AccessServiceClient::new(channel);
    assert_eq!(access.check_access(check("w")).await.unwrap_err().code(), Code::Unauthenticated);

    // A certificate from another CA, even with a valid-looking identity, fails the handshake.
    let rogue_ca = ca("Rogue CA");
    let rogue = issue(&rogue_ca, &["vpn"], Some(&format!("tether://tenant/{}/role/admin", tenant.tenant_id)));
    let refused = match connect(&server, &server_ca.pem, Some(&rogue)).await {
        Err(_) => true,
        Ok(channel) => {
            let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
            admin.get_tenant(pb::GetTenantRequest {}).await.is_err()
        }
    };
    assert!(refused, "a certificate from an unknown CA must not get in");
}

#[tokio::test]
async fn a_required_client_certificate_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("Tether Test Server CA");
    let client_ca = ca("Tether Test Gateway CA");
    let (cert, key) = issue(&server_ca, &["localhost"], None);
    let args = [
        "--tls-cert".to_string(),
        write(dir.path(), "server.pem", &cert),
        "--tls-key".to_string(),
        write(dir.path(), "server.key", &key),
        "--tls-client-ca".to_string(),
        write(dir.path(), "client-ca.pem", &client_ca.pem),
        "--tls-require-client-cert".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with_args(&args);
    let tenant = server.init_tenant("acme", "acme.example", "https://acme.example");
    let refused = match connect(&server, &server_ca.pem, None).await {
        Err(_) => true,
        Ok(channel) => {
            let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
            admin.get_tenant(authed(&tenant.admin_key, pb::GetTenantRequest {})).await.is_err()
        }
    };
    assert!(refused, "a connection without a client certificate must be refused");
}
