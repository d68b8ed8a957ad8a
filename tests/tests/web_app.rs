//! The workers' web app (`tetherd serve --web-listen`): its HTTP contract
//! (tenant by Host, Origin and CSRF on every POST, CSP, X-Forwarded-For only
//! from trusted proxies, loopback-only plain HTTP) with a soft authenticator
//! over raw HTTP/1.1, and the whole worker flow in a real headless Chromium
//! with its virtual authenticators, driven by tests/console/web_app.mjs.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tether_e2e::fixtures::test_aaguid;
use tether_e2e::{Server, TenantKeys, authed, bin};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection from loopback address `source`.
async fn http(base: &str, source: Ipv4Addr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let target: SocketAddr = base.trim_start_matches("http://").parse().expect("the web app listens on an IP");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source address");
    let mut stream = socket.connect(target).await.expect("connect to the web app");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect();
    Reply { status, headers, body: rest.to_string() }
}

/// A tenant's site as a browser on it sees it: its Host, Origin and CSRF cookie.
struct Site {
    base: String,
    host: String,
    origin: String,
    csrf: String,
    device: Option<String>,
    source: Ipv4Addr,
}

impl Site {
    async fn open(server: &Server, origin: &str) -> Site {
        let host = origin.split("://").nth(1).unwrap().to_string();
        let mut site = Site {
            base: server.web_url.clone(),
            host,
            origin: origin.into(),
            csrf: String::new(),
            device: None,
            source: Ipv4Addr::LOCALHOST,
        };
        let page = site.get("/enroll").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let cookie = page.set_cookie("tether_web_csrf").expect("the page sets its CSRF cookie");
        for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        site.csrf = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        assert!(page.body.contains(&format!("content=\"{}\"", site.csrf)), "the page carries the same token");
        site
    }

    fn cookies(&self) -> String {
        let mut cookie = format!("tether_web_csrf={}", self.csrf);
        if let Some(device) = &self.device {
            cookie.push_str(&format!("; tether_device={device}"));
        }
        cookie
    }

    async fn get(&self, path: &str) -> Reply {
        let cookie = self.cookies();
        http(&self.base, self.source, "GET", path, &[("Host", &self.host), ("Cookie", &cookie)], "").await
    }

    /// A POST as the page's script makes it, with `origin` and `csrf` overridable.
    async fn post_as(&self, path: &str, body: &Value, origin: Option<&str>, csrf: Option<&str>) -> Reply {
        let cookie = self.cookies();
        let mut headers =
            vec![("Host", self.host.as_str()), ("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        if let Some(csrf) = csrf {
            headers.push(("X-Tether-Csrf", csrf));
        }
        http(&self.base, self.source, "POST", path, &headers, &body.to_string()).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_as(path, &body, Some(&self.origin.clone()), Some(&self.csrf.clone())).await
    }

    /// Begin, make a credential with `auth`, finish; the finishing reply (the device cookie is kept).
    async fn enroll(&mut self, token: &str, auth: &mut SoftAuthenticator) -> Reply {
        let begun = self.post("/api/enroll/begin", json!({"token": token})).await;
        if begun.status != 200 {
            return begun;
        }
        let begun = begun.json();
        let registration = auth.make_credential(&begun["creation_options"].to_string(), &self.origin).unwrap();
        let body = json!({
            "enrollment_id": begun["enrollment_id"], "token": token, "registration_response_json": registration,
        });
        let done = self.post("/api/enroll/finish", body).await;
        if let Some(cookie) = done.set_cookie("tether_device") {
            for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
                assert!(cookie.contains(flag), "{cookie}");
            }
            self.device = Some(cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string());
        }
        done
    }
}

/// A tenant at `origin` (RP ID: its host name) with a gateway key and the soft
/// authenticators' attestation root trusted.
struct Tenant {
    keys: TenantKeys,
    gateway_key: String,
    pki: tether_softkey::pki::TestPki,
}

impl Tenant {
    async fn create(server: &Server, name: &str, origin: &str) -> Tenant {
        let host = origin.split("://").nth(1).unwrap();
        let rp_id = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        let keys = server.init_tenant(name, rp_id, origin);
        let pki = tether_softkey::pki::TestPki::generate(&format!("{name} authenticators")).unwrap();
        let mut admin = server.admin().await;
        let anchors = pb::AddTrustAnchorsRequest { pem: pki.root_cert_pem.clone(), name: "soft root".into() };
        admin.add_trust_anchors(authed(&keys.admin_key, anchors)).await.unwrap();
        let request = pb::CreateApiKeyRequest { name: String::new(), role: pb::Role::Gateway as i32, ttl_seconds: 0 };
        let gateway_key = admin.create_api_key(authed(&keys.admin_key, request)).await.unwrap().into_inner().secret;
        Tenant { keys, gateway_key, pki }
    }

    fn authenticator(&self) -> SoftAuthenticator {
        let mode = AttestationMode::Packed {
            ca_cert_pem: self.pki.intermediate_cert_pem.clone(),
            ca_key_pem: self.pki.intermediate_key_pem.clone(),
        };
        SoftAuthenticator::new(mode, test_aaguid()).unwrap()
    }

    /// A new device of `worker` and an enrollment token for it: (device id, token).
    async fn device(&self, server: &Server, worker: &str, ttl_seconds: u64) -> (String, String) {
        let mut admin = server.admin().await;
        let request = pb::RegisterDeviceRequest {
            serial_number: format!("SN-{}", uuid::Uuid::new_v4().simple()),
            model: "Latitude 7450".into(),
            worker_external_id: worker.into(),
            worker_display_name: format!("Worker {worker}"),
            ..Default::default()
        };
        let device = admin.register_device(authed(&self.keys.admin_key, request)).await.unwrap().into_inner().id;
        let request = pb::CreateEnrollmentTokenRequest { device_id: device.clone(), ttl_seconds };
        let token = admin.create_enrollment_token(authed(&self.keys.admin_key, request)).await.unwrap();
        (device, token.into_inner().secret)
    }

    async fn challenge(&self, server: &Server, device: &str, deadline_seconds: u64) -> String {
        let mut admin = server.admin().await;
        let request = pb::ChallengeNowRequest { device_id: device.into(), deadline_seconds };
        admin.challenge_now(authed(&self.keys.admin_key, request)).await.unwrap().into_inner().challenge_ids.remove(0)
    }

    async fn check(&self, server: &Server, worker: &str, device: &str) -> pb::CheckAccessResponse {
        let request = pb::CheckAccessRequest {
            worker_external_id: worker.into(),
            device_id: device.into(),
            source_ip: "127.0.0.1".into(),
            gateway_id: "vpn-test".into(),
            ..Default::default()
        };
        server.access().await.check_access(authed(&self.gateway_key, request)).await.unwrap().into_inner()
    }

    async fn audit(&self, server: &Server, action: &str) -> Vec<pb::AuditEntry> {
        let mut reports = server.reports().await;
        let request = pb::ListAuditLogRequest::default();
        let log = reports.list_audit_log(authed(&self.keys.admin_key, request)).await.unwrap().into_inner();
        log.entries.into_iter().filter(|e| e.action == action).collect()
    }
}

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

/// The artifacts directory for screenshots: TETHER_TEST_ARTIFACTS, else target/tmp/test-artifacts.
fn artifacts_dir() -> PathBuf {
    match std::env::var("TETHER_TEST_ARTIFACTS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts"),
    }
}

/// The leaf certificate of a WebAuthn attestation object's x5c, as PEM.
fn attestation_leaf_pem(attestation_object_b64url: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(attestation_object_b64url).unwrap();
    let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
    let field = |map: &ciborium::Value, name: &str| {
        map.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v.clone()).unwrap()
    };
    let statement = field(&value, "attStmt");
    let x5c = field(&statement, "x5c");
    let der = x5c.as_array().unwrap()[0].as_bytes().unwrap().clone();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[tokio::test]
async fn a_worker_enrolls_and_answers_presence_in_chromium_with_virtual_authenticators() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some("chromium (apt-get install chromium)"),
        (!node_ok).then_some("node"),
        (!script_dir.join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in tests/console)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        println!("SKIPPED: the browser test needs {}", missing.join(", "));
        return;
    }

    let server = web_server(&[]);
    let origin_a = format!("http://localhost:{}", port(&server));
    let origin_b = format!("http://tenant-b.localhost:{}", port(&server));
    let a = Tenant::create(&server, "acme", &origin_a).await;
    let b = Tenant::create(&server, "globex", &origin_b).await;
    // Tenant B takes unattested keys, so its token works there whatever the browser's attestation.
    let mut admin = server.admin().await;
    let policy = pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() };
    admin.update_policy(authed(&b.keys.admin_key, policy)).await.unwrap();
    let (device, token) = a.device(&server, "w-ann", 0).await;
    let (_, token_uv) = a.device(&server, "w-uv", 0).await;
    let (_, token_expired) = a.device(&server, "w-exp", 1).await;
    let (_, token_b) = b.device(&server, "w-bea", 0).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let shots = artifacts_dir();
    let mut child = tokio::process::Command::new("node")
        .arg(script_dir.join("web_app.mjs"))
        .current_dir(&script_dir)
        .envs(HashMap::from([
            ("ORIGIN_A", origin_a.as_str()),
            ("ORIGIN_B", origin_b.as_str()),
            ("TOKEN", token.as_str()),
            ("TOKEN_UV", token_uv.as_str()),
            ("TOKEN_EXPIRED", token_expired.as_str()),
            ("TOKEN_B", token_b.as_str()),
            ("CHROMIUM", chromium.as_str()),
        ]))
        .env("SCREENSHOT_DIR", &shots)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut to_node = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    // The script asks for what only an administrator or gateway can do, one JSON line each.
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            log.push(line.clone());
            let Some(request) = line.strip_prefix("REQUEST ") else { continue };
            let request: Value = serde_json::from_str(request).unwrap();
            let reply = match request["action"].as_str().unwrap() {
                "trust" => {
                    let pem = attestation_leaf_pem(request["attestation_object"].as_str().unwrap());
                    let anchors = pb::AddTrustAnchorsRequest { pem, name: "Chromium virtual authenticators".into() };
                    let added = admin.add_trust_anchors(authed(&a.keys.admin_key, anchors)).await.unwrap();
                    json!({"subject": added.into_inner().anchors[0].subject})
                }
                "challenge" => {
                    let deadline = request["deadline_seconds"].as_u64().unwrap();
                    let id = a.challenge(&server, &device, deadline).await;
                    let mut presence = server.presence().await;
                    let credential_id = request["credential_id"].as_str().unwrap_or_default().to_string();
                    let options = if credential_id.is_empty() {
                        String::new()
                    } else {
                        let poll = pb::PollChallengesRequest { credential_id };
                        let open = presence.poll_challenges(poll).await.unwrap().into_inner().challenges;
                        open.into_iter().find(|c| c.challenge_id == id).unwrap().request_options_json
                    };
                    json!({"challenge_id": id, "request_options_json": options})
                }
                "check" => {
                    let decision = a.check(&server, "w-ann", &device).await;
                    json!({"allow": decision.decision == pb::Decision::Allow as i32, "decision": format!("{decision:?}")})
                }
                other => panic!("unknown request {other}"),
            };
            to_node.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(240), run).await.expect("the browser flow finished in time");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the browser flow failed (output above)");
    for name in ["web-enroll.png", "web-presence.png"] {
        let line = format!("screenshot: {}", shots.join(name).display());
        assert!(log.contains(&line), "{line} missing");
    }
    // What the browser did is what the service recorded.
    let enrolled = a.audit(&server, "device.enrolled").await;
    assert_eq!(enrolled.len(), 1, "only the first laptop enrolled with tenant A");
    assert_eq!(b.audit(&server, "device.enrolled").await.len(), 1, "tenant B's token worked on its own site");
}
