//! The workers' web app (`tetherd serve --web-listen`): its HTTP contract
//! (tenant by Host, Origin and CSRF on every POST, CSP, X-Forwarded-For only
//! from trusted proxies, loopback-only plain HTTP) with a soft authenticator
//! over raw HTTP/1.1, and the whole worker flow in a real headless Chromium
//! with its virtual authenticators, driven by tests/console/web_app.mjs.

#[path = "web_app/browser.rs"]
mod browser;
#[path = "web_app/client.rs"]
mod client;

use client::{Site, Tenant, http};
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::Duration;
use tether_e2e::{Server, authed, bin};
use tether_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn web_server(extra: &[&str]) -> Server {
    let mut args = vec!["--web-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Server::start_with_args(&args);
    assert!(server.web_url.starts_with("http://127.0.0.1:"), "web app address: {:?}", server.web_url);
    server
}

fn port(server: &Server) -> String {
    server.web_url.rsplit(':').next().unwrap().to_string()
}

#[tokio::test]
async fn the_web_app_is_off_unless_configured_and_plain_http_needs_loopback() {
    let server = Server::start();
    assert!(server.web_url.is_empty());
    // Checked before anything is bound: no socket on a non-loopback address is ever opened.
    let out = std::process::Command::new(bin("tetherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--web-listen", "0.0.0.0:0"])
        .args(["--database-url", &server.database_url, "--api-key-pepper-file", &server.pepper_file])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address") && stderr.contains("--tls-cert"), "{stderr}");
}

#[tokio::test]
async fn pages_are_per_tenant_origin_with_a_strict_csp_and_posts_need_origin_and_csrf() {
    let server = web_server(&[]);
    let origin = format!("http://localhost:{}", port(&server));
    let tenant = Tenant::create(&server, "acme", &origin).await;
    let site = Site::open(&server, &origin).await;
    let (_device, token) = tenant.device(&server, "w-ann", 0).await;

    for path in ["/enroll", "/presence"] {
        let page = site.get(path).await;
        assert_eq!(page.status, 200);
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(page.body.contains("<script src=\"/web.js\" defer></script>"));
        assert_eq!(page.body.matches("<script").count(), 1, "no inline script: {}", page.body);
        assert!(page.body.contains("acme"));
    }
    // A host no tenant is configured at gets no page.
    let stranger = http(&site.base, site.source, "GET", "/enroll", &[("Host", "evil.localhost:1")], "").await;
    assert_eq!(stranger.status, 404, "{}", stranger.body);

    let begin = json!({"token": token});
    let other = format!("http://evil.localhost:{}", port(&server));
    let refusals = [
        (None, Some(site.csrf.as_str()), "did not come from this site"),
        (Some(other.as_str()), Some(site.csrf.as_str()), "did not come from this site"),
        (Some(origin.as_str()), None, "security token"),
        (Some(origin.as_str()), Some("forged"), "security token"),
    ];
    for (origin, csrf, why) in refusals {
        let reply = site.post_as("/api/enroll/begin", &begin, origin, csrf).await;
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert_eq!(reply.json()["state"], "refused");
        assert!(reply.json()["reason"].as_str().unwrap().contains(why), "{}", reply.body);
    }
    let not_json = http(
        &site.base,
        site.source,
        "POST",
        "/api/enroll/begin",
        &[("Host", &site.host), ("Origin", &origin), ("Cookie", &site.cookies()), ("X-Tether-Csrf", &site.csrf)],
        "token=x",
    )
    .await;
    assert_eq!(not_json.status, 415, "{}", not_json.body);
    let too_big = site.post("/api/enroll/begin", json!({"token": "x".repeat(100 * 1024)})).await;
    assert_eq!(too_big.status, 413, "request-size limit: {}", too_big.body);
    // None of that consumed the token.
    let mut auth = tenant.authenticator();
    let mut site = site;
    let done = site.enroll(&token, &mut auth).await;
    assert_eq!(done.status, 200, "{}", done.body);
}

#[tokio::test]
async fn tokens_of_another_tenant_expired_or_used_are_refused_and_consume_nothing() {
    let server = web_server(&[]);
    let origin_a = format!("http://localhost:{}", port(&server));
    let origin_b = format!("http://tenant-b.localhost:{}", port(&server));
    let a = Tenant::create(&server, "acme", &origin_a).await;
    let b = Tenant::create(&server, "globex", &origin_b).await;
    let mut site_a = Site::open(&server, &origin_a).await;
    let mut site_b = Site::open(&server, &origin_b).await;

    let (_, token_b) = b.device(&server, "w-bea", 0).await;
    let mut auth = b.authenticator();
    let refused = site_a.enroll(&token_b, &mut auth).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.json()["reason"].as_str().unwrap().contains("another organization"), "{}", refused.body);
    // Still good on its own tenant's site.
    let done = site_b.enroll(&token_b, &mut auth).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["attested"], true);
    // Used once: refused the second time.
    let twice = site_b.enroll(&token_b, &mut b.authenticator()).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert!(twice.body.contains("already used"), "{}", twice.body);

    let (_, expired) = a.device(&server, "w-eve", 1).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let late = site_a.enroll(&expired, &mut a.authenticator()).await;
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(late.body.contains("expired"), "{}", late.body);
    assert_eq!(a.audit(&server, "device.enrolled").await.len(), 0, "tenant A enrolled nothing");
    assert_eq!(b.audit(&server, "device.enrolled").await.len(), 1);
}

#[tokio::test]
async fn a_soft_authenticator_enrolls_and_answers_over_http_and_forwarded_for_needs_a_trusted_proxy() {
    let server = web_server(&["--web-trusted-proxy", "127.0.0.2/32"]);
    let origin = format!("http://localhost:{}", port(&server));
    let tenant = Tenant::create(&server, "acme", &origin).await;
    let (device, token) = tenant.device(&server, "w-ann", 0).await;
    let mut site = Site::open(&server, &origin).await;
    let mut auth = tenant.authenticator();

    // From 127.0.0.1 (not a trusted proxy) the header is the client's claim: ignored.
    let begun = site.post("/api/enroll/begin", json!({"token": token})).await.json();
    let registration = auth.make_credential(&begun["creation_options"].to_string(), &origin).unwrap();
    let body =
        json!({"enrollment_id": begun["enrollment_id"], "token": token, "registration_response_json": registration});
    let cookie = site.cookies();
    let headers = [
        ("Host", site.host.as_str()),
        ("Origin", origin.as_str()),
        ("Cookie", cookie.as_str()),
        ("X-Tether-Csrf", site.csrf.as_str()),
        ("Content-Type", "application/json"),
        ("X-Forwarded-For", "198.51.100.23"),
    ];
    let done = http(&site.base, site.source, "POST", "/api/enroll/finish", &headers, &body.to_string()).await;
    assert_eq!(done.status, 200, "{}", done.body);
    site.device = Some(done.json()["credential_id"].as_str().unwrap().to_string());
    let enrolled = tenant.audit(&server, "device.enrolled").await;
    assert!(enrolled[0].details_json.contains("\"source_ip\":\"127.0.0.1\""), "{}", enrolled[0].details_json);

    // Two presence answers through the web API; the second from behind the trusted proxy.
    for (round, source) in [(0, Ipv4Addr::LOCALHOST), (1, Ipv4Addr::new(127, 0, 0, 2))] {
        let id = tenant.challenge(&server, &device, 60).await;
        let pending = site.get("/api/presence/pending").await.json();
        assert_eq!(pending["state"], "enrolled", "{pending}");
        let challenge = pending["challenges"].as_array().unwrap().iter().find(|c| c["challenge_id"] == id).cloned();
        let challenge = challenge.expect("the new challenge is listed");
        let assertion = auth.get_assertion(&challenge["request_options"].to_string(), &origin).unwrap();
        let body = json!({"challenge_id": id, "assertion_response_json": assertion});
        let cookie = site.cookies();
        let headers = [
            ("Host", site.host.as_str()),
            ("Origin", origin.as_str()),
            ("Cookie", cookie.as_str()),
            ("X-Tether-Csrf", site.csrf.as_str()),
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "203.0.113.77, 198.51.100.9"),
        ];
        let answered = http(&site.base, source, "POST", "/api/presence/answer", &headers, &body.to_string()).await;
        assert_eq!(answered.status, 200, "round {round}: {}", answered.body);
        assert_eq!(answered.json()["state"], "answered");
        // The same answer again is a replay.
        let replay = site.post("/api/presence/answer", body).await;
        assert_eq!(replay.status, 409, "{}", replay.body);
        assert!(replay.body.contains("already answered"), "{}", replay.body);
    }
    let decision = tenant.check(&server, "w-ann", &device).await;
    assert_eq!(decision.decision, pb::Decision::Allow as i32, "{decision:?}");
    // What the service recorded as the sender: the TCP peer, or the trusted proxy's rightmost hop.
    let mut reports = server.reports().await;
    let request = pb::GetDeviceTimelineRequest { device_id: device.clone(), ..Default::default() };
    let timeline = reports.get_device_timeline(authed(&tenant.keys.admin_key, request)).await.unwrap().into_inner();
    let text = format!("{timeline:?}");
    assert!(text.contains("198.51.100.9"), "the trusted proxy's hop is the sender: {text}");
    assert!(!text.contains("203.0.113.77") && !text.contains("198.51.100.23"), "client claims are not: {text}");
    // Without the device cookie the presence page has nothing to show.
    site.device = None;
    assert_eq!(site.get("/api/presence/pending").await.json()["state"], "none");
}

#[tokio::test]
async fn the_web_app_serves_tls_with_the_grpc_listeners_certificate() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "web test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key)).unwrap();
    let (cert_path, key_path) = (dir.path().join("web.pem"), dir.path().join("web.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (cert_path, key_path) = (cert_path.display().to_string(), key_path.display().to_string());
    let server =
        Server::start_with_args(&["--web-listen", "127.0.0.1:0", "--tls-cert", &cert_path, "--tls-key", &key_path]);
    assert!(server.web_url.starts_with("https://127.0.0.1:"), "{}", server.web_url);
    let port = server.web_url.rsplit(':').next().unwrap().to_string();
    server.init_tenant("acme", "localhost", &format!("https://localhost:{port}"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let address = format!("127.0.0.1:{port}");
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("a TLS handshake with the gRPC listener's certificate");
    let request = format!("GET /enroll HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("Enroll this device") && text.contains("acme"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"), "{text}");

    // Plain HTTP to the TLS port gets no page.
    let mut plain = tokio::net::TcpStream::connect(&address).await.unwrap();
    plain.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut raw)).await;
    assert!(!String::from_utf8_lossy(&raw).contains("Enroll this device"));
}
