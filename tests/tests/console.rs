//! The analysts' web console (`tetherd serve --console-listen`): login with
//! API keys, sessions, CSRF, tenant scoping and escaping over raw HTTP/1.1,
//! and the whole flow (log in, resolve a planted flag, see the audit entry)
//! in a real headless Chromium driven by tests/console/console.mjs, and the
//! farm view (console/farms.rs; its answer timeline in Chromium with
//! tests/console/farms.mjs).

#[path = "console/browser.rs"]
mod browser;
#[path = "console/farms.rs"]
mod farms;

use std::net::{Ipv4Addr, SocketAddr};
use tether_e2e::fixtures::{Org, enroll, test_aaguid};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn console_server() -> Server {
    let server = Server::start_with_args(&["--console-listen", "127.0.0.1:0"]);
    assert!(server.console_url.starts_with("http://127.0.0.1:"), "console address: {:?}", server.console_url);
    server
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The value a `Set-Cookie` header gives cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// The hidden CSRF field of the first form on the page.
    fn csrf(&self) -> String {
        let start = self.body.find("name=\"csrf\" value=\"").expect("the page has a CSRF field") + 19;
        self.body[start..].split('"').next().unwrap().to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection (the console speaks plain HTTP/1.1).
async fn http(base: &str, method: &str, path: &str, cookie: Option<&str>, form: Option<&[(&str, &str)]>) -> Reply {
    http_from(None, base, method, path, cookie, form).await
}

/// [`http`] from the loopback address `source` (127.0.0.0/8), as from another machine.
async fn http_from(
    source: Option<Ipv4Addr>,
    base: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let address = base.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(source) = source {
        socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source address");
    }
    let target: SocketAddr = address.parse().expect("the console listens on an IP address");
    let mut stream = socket.connect(target).await.expect("connect to the console");
    let body: String = form
        .map(|fields| fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&"))
        .unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if form.is_some() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Reply { status, headers, body }
}

/// Percent-encodes a form field (everything but RFC 3986 unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// Logs in through the form; returns the reply to the POST and the session cookie header value.
async fn login(base: &str, key: &str) -> (Reply, Option<String>) {
    login_from(None, base, key).await
}

async fn login_from(source: Option<Ipv4Addr>, base: &str, key: &str) -> (Reply, Option<String>) {
    let http = |method, path, cookie, form| http_from(source, base, method, path, cookie, form);
    let page = http("GET", "/login", None, None).await;
    assert_eq!(page.status, 200);
    let login_cookie = page.cookie("tether_console_login").expect("the login form sets its token cookie");
    let csrf = page.csrf();
    assert_eq!(csrf, login_cookie, "double-submit: the field and the cookie carry one token");
    let cookie = format!("tether_console_login={login_cookie}");
    let reply = http("POST", "/login", Some(&cookie), Some(&[("csrf", &csrf), ("api_key", key)])).await;
    let session = reply.cookie("tether_console").filter(|v| !v.is_empty()).map(|v| format!("tether_console={v}"));
    (reply, session)
}

/// Logs in and returns the session cookie and its CSRF token.
async fn session(base: &str, key: &str) -> (String, String) {
    let (reply, cookie) = login(base, key).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let cookie = cookie.expect("a session cookie");
    let flags = http(base, "GET", "/flags", Some(&cookie), None).await;
    assert_eq!(flags.status, 200, "{}", flags.body);
    (cookie, flags.csrf())
}

/// An unattested enrollment the tenant's policy allows raises an open
/// `unattested_hardware` flag; returns (flag id, device id).
async fn plant_flag(server: &Server, org: &Org, worker: &str, serial: &str) -> (String, String) {
    org.update_policy(server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(server, worker, serial).await;
    let token = org.token(server, &device_id).await;
    let mut authenticator =
        tether_softkey::SoftAuthenticator::new(tether_softkey::AttestationMode::SelfAttestation, test_aaguid())
            .unwrap();
    enroll(server, &token, &mut authenticator).await.unwrap();
    let flag = flag_of(server, org, &device_id).await;
    assert_eq!(flag.kind, "unattested_hardware");
    (flag.id, device_id)
}

async fn flag_of(server: &Server, org: &Org, device_id: &str) -> pb::Flag {
    let request = pb::ListFlagsRequest { device_id: device_id.into(), ..Default::default() };
    let mut reports = server.reports().await;
    reports.list_flags(authed(&org.analyst_key, request)).await.unwrap().into_inner().flags.remove(0)
}

async fn audit_entries(server: &Server, org: &Org, action: &str) -> Vec<pb::AuditEntry> {
    let mut reports = server.reports().await;
    let log = reports.list_audit_log(authed(&org.analyst_key, pb::ListAuditLogRequest::default())).await.unwrap();
    log.into_inner().entries.into_iter().filter(|e| e.action == action).collect()
}

#[tokio::test]
async fn the_console_is_off_unless_configured() {
    let server = Server::start();
    assert!(server.console_url.is_empty());
}

#[tokio::test]
async fn login_refuses_bad_and_gateway_keys_and_forged_forms_and_is_rate_limited() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let base = &server.console_url;

    let (reply, cookie) = login(base, "tk.key_nope.not-a-secret").await;
    assert_eq!((reply.status, cookie.is_none()), (401, true), "{}", reply.body);
    let (reply, cookie) = login(base, &org.gateway_key).await;
    assert_eq!((reply.status, cookie.is_none()), (403, true), "gateway keys cannot sign in: {}", reply.body);
    assert!(reply.body.contains("analyst or admin"), "{}", reply.body);
    // A login form posted without its token (e.g. from another site) is refused even with a good key.
    let forged = http(base, "POST", "/login", None, Some(&[("csrf", "x"), ("api_key", &org.analyst_key)])).await;
    assert_eq!((forged.status, forged.cookie("tether_console").is_none()), (403, true));

    let (reply, cookie) = login(base, &org.analyst_key).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/farms"), "the farm view is the first page");
    let set_cookie = reply.headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("tether_console="));
    let set_cookie = &set_cookie.expect("a session cookie").1;
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert_eq!(cookie.unwrap().len(), "tether_console=".len() + 64, "a 256-bit session id");

    // Guessing keys: the address runs out of attempts (burst 10), and then even a good key waits.
    let mut limited = false;
    for _ in 0..12 {
        if login(base, "tk.key_guess.guess").await.0.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "login attempts are rate-limited per address");
    assert_eq!(login(base, &org.analyst_key).await.0.status, 429);
}

#[tokio::test]
async fn a_login_needs_a_form_the_server_issued_and_each_form_logs_in_once() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let base = &server.console_url;
    // A made-up token in both the cookie and the field: equal, but not the server's.
    for made_up in ["x".repeat(64), "0".repeat(64), format!("{}.9999999999999.{}", "a".repeat(32), "b".repeat(64))] {
        let cookie = format!("tether_console_login={made_up}");
        let fields = [("csrf", made_up.as_str()), ("api_key", org.analyst_key.as_str())];
        let forged = http(base, "POST", "/login", Some(&cookie), Some(&fields)).await;
        assert_eq!((forged.status, forged.cookie("tether_console")), (403, None), "{made_up}: {}", forged.body);
    }
    // A form the server issued logs in once; posting it again is refused.
    let page = http(base, "GET", "/login", None, None).await;
    let token = page.csrf();
    let cookie = format!("tether_console_login={token}");
    let fields = [("csrf", token.as_str()), ("api_key", org.analyst_key.as_str())];
    let first = http(base, "POST", "/login", Some(&cookie), Some(&fields)).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let again = http(base, "POST", "/login", Some(&cookie), Some(&fields)).await;
    assert_eq!((again.status, again.cookie("tether_console")), (403, None), "a replayed form");
}

#[tokio::test]
async fn one_tenant_logging_in_past_its_caps_signs_out_no_other_tenant() {
    let server = Server::start_with_args(&[
        "--console-listen",
        "127.0.0.1:0",
        "--console-sessions-max",
        "6",
        "--console-sessions-per-tenant",
        "3",
        "--console-sessions-per-key",
        "2",
    ]);
    let base = &server.console_url;
    let (acme, other, third, fourth) = tokio::join!(
        Org::create(&server, "acme"),
        Org::create(&server, "other"),
        Org::create(&server, "third"),
        Org::create(&server, "fourth"),
    );
    let from = |host: u8| Some(Ipv4Addr::new(127, 0, 0, host));
    let signed_in =
        |cookie: String| async move { http(base, "GET", "/flags", Some(&cookie), None).await.status == 200 };
    let (reply, victim) = login_from(from(2), base, &other.analyst_key).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let victim = victim.unwrap();
    let (_, acme_admin) = login_from(from(3), base, &acme.keys.admin_key).await;
    let acme_admin = acme_admin.unwrap();

    // acme's analyst logs in 24 times from 12 addresses: four times the whole console's cap.
    let mut latest = None;
    for i in 0..24u8 {
        let (reply, cookie) = login_from(from(10 + i / 2), base, &acme.analyst_key).await;
        assert_eq!(reply.status, 303, "login {i}: {}", reply.body);
        latest = cookie;
    }
    assert!(signed_in(latest.unwrap()).await, "the newest login works");
    assert!(signed_in(victim.clone()).await, "another tenant's analyst is still signed in");
    assert!(signed_in(acme_admin.clone()).await, "the key's cap spared its tenant's other key");

    // Filled by tenants each under their own caps, the console refuses logins instead of evicting.
    for (i, key) in [&third.analyst_key, &third.analyst_key].into_iter().enumerate() {
        assert_eq!(login_from(from(40 + i as u8), base, key).await.0.status, 303);
    }
    let (refused, cookie) = login_from(from(50), base, &fourth.analyst_key).await;
    assert_eq!((refused.status, cookie), (503, None), "{}", refused.body);
    assert!(refused.body.contains("--console-sessions-max"), "{}", refused.body);
    assert!(signed_in(victim).await, "a refused login signed nobody out");
}

#[tokio::test]
async fn pages_need_a_session_and_reviews_need_the_csrf_token_and_are_audited_like_grpc() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let (flag_id, device_id) = plant_flag(&server, &org, "w-bob", "SN-1").await;
    let base = &server.console_url;

    for path in ["/", "/farms", "/flags", "/audit", "/presence", "/clusters", &format!("/devices/{device_id}")] {
        let reply = http(base, "GET", path, None, None).await;
        assert_eq!(reply.status, 303, "{path} without a session");
        let expected = if path == "/" { "/farms" } else { "/login" };
        assert_eq!(reply.header("location"), Some(expected), "{path}");
        let forged = http(base, "GET", path, Some("tether_console=00ff"), None).await;
        assert_eq!(forged.header("location"), Some(expected), "{path} with an unknown session id");
    }

    let (cookie, csrf) = session(base, &org.analyst_key).await;
    let flags = http(base, "GET", "/flags", Some(&cookie), None).await;
    assert!(flags.body.contains(&flag_id) && flags.body.contains("unattested_hardware"));
    assert_eq!(
        flags.header("content-security-policy"),
        Some("default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    );
    assert_eq!(flags.header("x-frame-options"), Some("DENY"));
    assert!(!flags.body.contains("<script"), "the console serves no scripts");

    let review = format!("/flags/{flag_id}/review");
    let no_token = http(base, "POST", &review, Some(&cookie), Some(&[("status", "resolved"), ("note", "n")])).await;
    assert_eq!(no_token.status, 403);
    let wrong = [("csrf", "0".repeat(64)), ("status", "resolved".into()), ("note", "n".into())];
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(http(base, "POST", &review, Some(&cookie), Some(&wrong)).await.status, 403);
    let no_session = http(base, "POST", &review, None, Some(&[("csrf", &csrf), ("status", "resolved")])).await;
    assert_eq!(no_session.status, 303, "a POST without a session goes to the login page");
    let no_note = [("csrf", csrf.as_str()), ("status", "resolved"), ("note", "  ")];
    assert_eq!(http(base, "POST", &review, Some(&cookie), Some(&no_note)).await.status, 400);
    assert_eq!(flag_of(&server, &org, &device_id).await.status, pb::FlagStatus::Open as i32, "nothing changed");
    assert!(audit_entries(&server, &org, "flag.acknowledged").await.is_empty());

    let ack = [("csrf", csrf.as_str()), ("status", "acknowledged"), ("note", "asked the worker")];
    let done = http(base, "POST", &review, Some(&cookie), Some(&ack)).await;
    assert_eq!((done.status, done.header("location")), (303, Some("/flags")), "{}", done.body);
    let flag = flag_of(&server, &org, &device_id).await;
    assert_eq!(flag.status, pb::FlagStatus::Acknowledged as i32);
    assert_eq!(flag.note, "asked the worker");
    // The same audit entry as gRPC UpdateFlag writes: actor is the analyst's key.
    let entries = audit_entries(&server, &org, "flag.acknowledged").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target, flag_id);
    assert_eq!(entries[0].actor, flag.updated_by);
    assert!(entries[0].actor.starts_with("key:key_"));
    let details: serde_json::Value = serde_json::from_str(&entries[0].details_json).unwrap();
    assert_eq!(
        details,
        serde_json::json!({"kind": "unattested_hardware", "from": "open", "to": "acknowledged", "note": "asked the worker"})
    );
    // A second identical review is refused as gRPC refuses it.
    assert_eq!(http(base, "POST", &review, Some(&cookie), Some(&ack)).await.status, 409);

    // Logging out ends the session for good, and needs the token too.
    assert_eq!(http(base, "POST", "/logout", Some(&cookie), None).await.status, 403);
    assert_eq!(http(base, "POST", "/logout", Some(&cookie), Some(&[("csrf", &csrf)])).await.status, 303);
    assert_eq!(http(base, "GET", "/flags", Some(&cookie), None).await.header("location"), Some("/login"));
}

#[tokio::test]
async fn revoking_the_key_ends_its_console_sessions() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let (cookie, _) = session(&server.console_url, &org.analyst_key).await;
    let key_id = org.analyst_key.split('.').nth(1).unwrap().to_string();
    let mut admin = server.admin().await;
    admin.revoke_api_key(authed(&org.keys.admin_key, pb::RevokeApiKeyRequest { id: key_id })).await.unwrap();
    let reply = http(&server.console_url, "GET", "/flags", Some(&cookie), None).await;
    assert_eq!((reply.status, reply.header("location")), (303, Some("/login")));
}

#[tokio::test]
async fn another_tenants_flags_and_devices_are_invisible_and_cannot_be_reviewed() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let other = Org::create(&server, "other").await;
    let (flag_id, device_id) = plant_flag(&server, &org, "w-bob", "SN-1").await;
    let base = &server.console_url;
    let (cookie, csrf) = session(base, &other.analyst_key).await;

    for view in ["unresolved", "open", "resolved"] {
        let page = http(base, "GET", &format!("/flags?status={view}"), Some(&cookie), None).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(&flag_id), "another tenant's flag is not listed");
    }
    let device = http(base, "GET", &format!("/devices/{device_id}"), Some(&cookie), None).await;
    assert_eq!(device.status, 404);
    assert!(!http(base, "GET", "/audit", Some(&cookie), None).await.body.contains(&device_id));
    let review = [("csrf", csrf.as_str()), ("status", "resolved"), ("note", "not mine")];
    let reply = http(base, "POST", &format!("/flags/{flag_id}/review"), Some(&cookie), Some(&review)).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(flag_of(&server, &org, &device_id).await.status, pb::FlagStatus::Open as i32);
}

#[tokio::test]
async fn attacker_controlled_evidence_and_notes_render_escaped() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let (flag_id, device_id) = plant_flag(&server, &org, "w-bob", "SN-1").await;
    // Evidence carries what devices and networks report (posture strings, names, addresses):
    // write such a flag as the risk engine would store it.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let evidence = serde_json::json!({"posture": "<script>alert('posture')</script>", "ip": "\"><img src=x>"});
    sqlx::query(
        "INSERT INTO flags (id, tenant_id, kind, severity, status, device_id, worker_external_id, \
         credential_id, session_id, raised_at_ms, evidence_json) \
         VALUES ('flg_markup', $1, 'posture_mismatch', 'review', 'open', $2, 'w-bob', '', '', $3, $4)",
    )
    .bind(&org.keys.tenant_id)
    .bind(&device_id)
    .bind(
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap(),
    )
    .bind(evidence.to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // And an analyst note with markup, through gRPC.
    let mut reports = server.reports().await;
    let note = "<script>alert('note')</script>";
    let request = pb::UpdateFlagRequest {
        flag_id: flag_id.clone(),
        status: pb::FlagStatus::Acknowledged as i32,
        note: note.into(),
    };
    reports.update_flag(authed(&org.analyst_key, request)).await.unwrap();

    let base = &server.console_url;
    let (cookie, _) = session(base, &org.analyst_key).await;
    for path in ["/flags".to_string(), "/audit".to_string(), format!("/devices/{device_id}")] {
        let page = http(base, "GET", &path, Some(&cookie), None).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains("<script") && !page.body.contains("<img"), "{path} renders raw markup");
        assert!(page.body.contains("&lt;script&gt;alert("), "{path} shows the escaped text");
    }
    let flags = http(base, "GET", "/flags", Some(&cookie), None).await;
    assert!(flags.body.contains("flg_markup") && flags.body.contains("&quot;&gt;&lt;img src=x&gt;"));
}

#[tokio::test]
async fn the_siem_page_shows_only_the_tenants_integrations_and_no_target_or_secret() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let other = Org::create(&server, "other").await;
    let mut admin = server.admin().await;
    let add = |name: &str, target: &str| pb::AddIntegrationRequest {
        name: name.into(),
        kind: "webhook".into(),
        target: target.into(),
        format: "json".into(),
        tls: false,
    };
    let mine = add("acme-splunk", "http://127.0.0.1:9/hook?token=hec-secret");
    let secret = admin.add_integration(authed(&org.keys.admin_key, mine)).await.unwrap().into_inner().secret;
    let theirs = add("other-sentinel", "http://127.0.0.1:9/other");
    admin.add_integration(authed(&other.keys.admin_key, theirs)).await.unwrap();

    let base = &server.console_url;
    let (cookie, _) = session(base, &org.analyst_key).await;
    let page = http(base, "GET", "/integrations", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("acme-splunk"), "{}", page.body);
    assert!(!page.body.contains("other-sentinel"), "another tenant's integration is listed");
    assert!(!page.body.contains("hec-secret") && !page.body.contains(&secret), "target or secret shown");
    let audit = http(base, "GET", "/audit", Some(&cookie), None).await;
    assert!(audit.body.contains("integration.added"), "{}", audit.body);
    assert!(!audit.body.contains("hec-secret") && !audit.body.contains(&secret), "the audit log keeps no token");
    assert_eq!(http(base, "GET", "/integrations", None, None).await.status, 303, "a session is required");
}

#[tokio::test]
async fn the_device_page_shows_the_tier_and_marks_would_deny_sessions() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let (_, device_id) = plant_flag(&server, &org, "w-bob", "SN-1").await;
    let (cookie, _) = session(&server.console_url, &org.analyst_key).await;
    let page =
        || async { http(&server.console_url, "GET", &format!("/devices/{device_id}"), Some(&cookie), None).await };

    org.check(&server, "w-bob", &device_id).await;
    let before = page().await;
    assert_eq!(before.status, 200);
    assert!(before.body.contains("self_or_none"), "the enrollment shows its tier");
    assert!(!before.body.contains("would deny"), "an enforced session is not marked");

    let monitor = pb::UpdatePolicyRequest {
        allow_unattested: Some(false),
        enforcement: Some(pb::EnforcementMode::Monitor as i32),
        ..Default::default()
    };
    org.update_policy(&server, monitor).await;
    let decision = org.check(&server, "w-bob", &device_id).await;
    assert_eq!(decision.would_deny_reasons.len(), 1, "{decision:?}");
    assert!(page().await.body.contains("would deny"), "the monitored session is marked");
}
