//! The web app as a browser's script sees it, over raw HTTP/1.1 from a chosen
//! loopback address, and a tenant at an origin with what its administrator does.

use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use tether_e2e::fixtures::test_aaguid;
use tether_e2e::{Server, TenantKeys, authed};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection from loopback address `source`.
pub async fn http(
    base: &str,
    source: Ipv4Addr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
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
pub struct Site {
    pub base: String,
    pub host: String,
    pub origin: String,
    pub csrf: String,
    pub device: Option<String>,
    pub source: Ipv4Addr,
}

impl Site {
    pub async fn open(server: &Server, origin: &str) -> Site {
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

    pub fn cookies(&self) -> String {
        let mut cookie = format!("tether_web_csrf={}", self.csrf);
        if let Some(device) = &self.device {
            cookie.push_str(&format!("; tether_device={device}"));
        }
        cookie
    }

    pub async fn get(&self, path: &str) -> Reply {
        let cookie = self.cookies();
        http(&self.base, self.source, "GET", path, &[("Host", &self.host), ("Cookie", &cookie)], "").await
    }

    /// A POST as the page's script makes it, with `origin` and `csrf` overridable.
    pub async fn post_as(&self, path: &str, body: &Value, origin: Option<&str>, csrf: Option<&str>) -> Reply {
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

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_as(path, &body, Some(&self.origin.clone()), Some(&self.csrf.clone())).await
    }

    /// Begin, make a credential with `auth`, finish; the finishing reply (the device cookie is kept).
    pub async fn enroll(&mut self, token: &str, auth: &mut SoftAuthenticator) -> Reply {
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
pub struct Tenant {
    pub keys: TenantKeys,
    pub gateway_key: String,
    pub pki: tether_softkey::pki::TestPki,
}

impl Tenant {
    pub async fn create(server: &Server, name: &str, origin: &str) -> Tenant {
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

    pub fn authenticator(&self) -> SoftAuthenticator {
        let mode = AttestationMode::Packed {
            ca_cert_pem: self.pki.intermediate_cert_pem.clone(),
            ca_key_pem: self.pki.intermediate_key_pem.clone(),
        };
        SoftAuthenticator::new(mode, test_aaguid()).unwrap()
    }

    /// A new device of `worker` and an enrollment token for it: (device id, token).
    pub async fn device(&self, server: &Server, worker: &str, ttl_seconds: u64) -> (String, String) {
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

    pub async fn challenge(&self, server: &Server, device: &str, deadline_seconds: u64) -> String {
        let mut admin = server.admin().await;
        let request = pb::ChallengeNowRequest { device_id: device.into(), deadline_seconds };
        admin.challenge_now(authed(&self.keys.admin_key, request)).await.unwrap().into_inner().challenge_ids.remove(0)
    }

    pub async fn check(&self, server: &Server, worker: &str, device: &str) -> pb::CheckAccessResponse {
        let request = pb::CheckAccessRequest {
            worker_external_id: worker.into(),
            device_id: device.into(),
            source_ip: "127.0.0.1".into(),
            gateway_id: "vpn-test".into(),
            ..Default::default()
        };
        server.access().await.check_access(authed(&self.gateway_key, request)).await.unwrap().into_inner()
    }

    pub async fn audit(&self, server: &Server, action: &str) -> Vec<pb::AuditEntry> {
        let mut reports = server.reports().await;
        let request = pb::ListAuditLogRequest::default();
        let log = reports.list_audit_log(authed(&self.keys.admin_key, request)).await.unwrap().into_inner();
        log.entries.into_iter().filter(|e| e.action == action).collect()
    }
}
