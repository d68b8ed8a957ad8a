//! Flags and presence failures reach a syslog receiver (docs/siem.md): RFC
//! 5424 messages framed by octet counting (RFC 6587) on a TCP listener
//! started here, one integration sending JSON and one CEF; over TLS, to a
//! listener whose CA tetherd trusts (SSL_CERT_FILE) and one it does not.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{Org, answer_json, next_challenge, prove_presence, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

async fn listen() -> (String, mpsc::UnboundedReceiver<String>) {
    listen_with(None).await
}

/// A CA (its PEM) and a TLS acceptor for `localhost` under it.
fn tls_listener_identity(ca_name: &str) -> (String, TlsAcceptor) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (ca_pem, TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections (TLS ones with `tls`) and sends every octet-counted frame's message on.
async fn listen_with(tls: Option<TlsAcceptor>) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut stream: Box<dyn AsyncRead + Unpin + Send> = match tls {
                    None => Box::new(tcp),
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => Box::new(stream),
                        Err(_) => return,
                    },
                };
                loop {
                    let mut len = Vec::new();
                    loop {
                        let Ok(b) = stream.read_u8().await else { return };
                        if b == b' ' {
                            break;
                        }
                        assert!(b.is_ascii_digit() && len.len() < 10, "octet count expected, got byte {b}");
                        len.push(b);
                    }
                    let n: usize = String::from_utf8(len).unwrap().parse().unwrap();
                    let mut message = vec![0; n];
                    if stream.read_exact(&mut message).await.is_err() {
                        return;
                    }
                    let _ = tx.send(String::from_utf8(message).expect("UTF-8 message"));
                }
            });
        }
    });
    (target, rx)
}

async fn next_of(rx: &mut mpsc::UnboundedReceiver<String>, msgid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, rx.recv()).await.expect("a syslog message in time").unwrap();
        if message.split(' ').nth(5) == Some(msgid) {
            return message;
        }
    }
}

async fn add(server: &Server, org: &Org, target: &str, format: &str) {
    add_with(server, org, target, format, false).await;
}

async fn add_with(server: &Server, org: &Org, target: &str, format: &str, tls: bool) {
    let response = server
        .admin()
        .await
        .add_integration(authed(
            &org.keys.admin_key,
            pb::AddIntegrationRequest {
                name: format!("syslog {format} {target}"),
                kind: "syslog".into(),
                target: target.into(),
                format: format.into(),
                tls,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.secret.is_empty(), "syslog integrations have no secret");
}

#[tokio::test]
async fn syslog_receives_octet_counted_rfc5424_messages_in_json_and_cef() {
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let (json_target, mut json_rx) = listen().await;
    let (cef_target, mut cef_rx) = listen().await;
    add(&server, &acme, &json_target, "json").await;
    add(&server, &acme, &cef_target, "cef").await;

    let mut device = acme.enrolled_device(&server, "w-alice").await;
    let mut clone = tether_softkey::SoftAuthenticator::from_state_json(&device.auth.to_state_json()).unwrap();
    prove_presence(&server, &mut device).await;
    server
        .admin()
        .await
        .challenge_now(authed(
            &acme.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap();
    let challenge = next_challenge(&server, &device.credential_id).await;
    assert!(answer_json(&server, &challenge.challenge_id, sign(&challenge, &mut clone)).await.is_err());

    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG
    let message = next_of(&mut json_rx, "flag.raised").await;
    let fields: Vec<&str> = message.splitn(7, ' ').collect();
    assert_eq!(fields[0], "<106>1", "facility 13 (log audit), severity 2 (critical) for a high flag");
    assert!(fields[1].ends_with('Z') && fields[1].contains('T'), "RFC 3339 UTC time: {}", fields[1]);
    assert_eq!(&fields[2..5], ["-", "tetherd", "-"]);
    let rest = fields[6];
    assert!(rest.starts_with(&format!("[tether@32473 key=\"{}.", acme.keys.tenant_id)), "{rest}");
    let (_, body) = rest.split_once("] \u{feff}").expect("structured data, then a BOM and the message");
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["flag"]["kind"], "clone_suspected");
    assert_eq!(doc["flag"]["device"], device.device_id.as_str());

    let failure = next_of(&mut cef_rx, "presence.failure").await;
    let (_, cef) = failure.split_once('\u{feff}').unwrap();
    assert!(cef.starts_with("CEF:0|Tether|tetherd|"), "{cef}");
    assert!(cef.contains("|presence.failure|presence clone_suspected|9|"), "{cef}");
    assert!(cef.contains(&format!("dvchost={}", device.device_id)), "{cef}");
    assert!(cef.contains(&format!("cs1={}", acme.keys.tenant_id)), "{cef}");
    let flag = next_of(&mut cef_rx, "flag.raised").await;
    assert!(flag.contains("|flag.raised|flag raised: clone_suspected|9|"), "{flag}");
    assert!(!flag.contains('\n'), "one line: {flag}");
}

#[tokio::test]
async fn syslog_over_tls_reaches_a_trusted_listener_and_refuses_an_untrusted_one() {
    let (ca_pem, acceptor) = tls_listener_identity("Test SIEM CA");
    let (_, stranger) = tls_listener_identity("Someone Else's CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("siem-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    // rustls-native-certs reads SSL_CERT_FILE instead of the system store.
    let server = Server::start_with_env(&[], &[("SSL_CERT_FILE", ca_file.to_str().unwrap())]);
    let acme = Org::create(&server, "acme").await;
    let (trusted, mut trusted_rx) = listen_with(Some(acceptor)).await;
    let (untrusted, mut untrusted_rx) = listen_with(Some(stranger)).await;
    let port = |target: &str| target.rsplit_once(':').unwrap().1.to_string();
    add_with(&server, &acme, &format!("localhost:{}", port(&trusted)), "json", true).await;
    add_with(&server, &acme, &format!("localhost:{}", port(&untrusted)), "json", true).await;

    let mut device = acme.enrolled_device(&server, "w-alice").await;
    let mut clone = tether_softkey::SoftAuthenticator::from_state_json(&device.auth.to_state_json()).unwrap();
    prove_presence(&server, &mut device).await;
    server
        .admin()
        .await
        .challenge_now(authed(
            &acme.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap();
    let challenge = next_challenge(&server, &device.credential_id).await;
    assert!(answer_json(&server, &challenge.challenge_id, sign(&challenge, &mut clone)).await.is_err());

    let message = next_of(&mut trusted_rx, "presence.failure").await;
    assert!(message.contains("\"outcome\":\"clone_suspected\""), "{message}");
    next_of(&mut trusted_rx, "flag.raised").await;

    // The untrusted listener never gets a message; its integration records why.
    let start = Instant::now();
    let failing = loop {
        let listed = server
            .admin()
            .await
            .list_integrations(authed(&acme.keys.admin_key, pb::ListIntegrationsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .integrations;
        let failing = listed.into_iter().find(|i| i.target.ends_with(&port(&untrusted))).unwrap();
        if failing.failures > 0 || start.elapsed() > Duration::from_secs(20) {
            break failing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failing.failures > 0 && failing.delivered == 0, "{failing:?}");
    assert!(failing.last_error.contains("TLS"), "{failing:?}");
    assert!(untrusted_rx.try_recv().is_err());
}
