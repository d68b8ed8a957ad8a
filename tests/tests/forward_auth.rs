//! Forward auth through a real nginx (Debian's package, started here on loopback): nginx's
//! `auth_request` asks tetherd's `/gateway/check` before every request, with the shipped
//! snippet's settings. An allowed device reaches the upstream with its identity headers and
//! without its token; a token-less, tampered or denied one gets 401/403; a wrong gateway key
//! or a tetherd outage gives 5xx. Without nginx the tests print SKIPPED and pass.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{EnrolledDevice, Org, next_challenge, sign};
use tether_e2e::{Daemon, Server, authed, free_tcp_port, run_bin};
use tether_proto::v1 as pb;

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// nginx in front of an upstream it serves itself (which echoes what reached it), asking
/// `web_url`'s `/gateway/check` with `gateway_key`. The auth location is the shipped snippet's
/// (deploy/nginx/tether-forward-auth.conf) with its placeholders filled in.
fn start_nginx(binary: &Path, web_url: &str, gateway_key: &str) -> Daemon {
    start_nginx_with(binary, web_url, gateway_key, None)
}

/// PEM files for an nginx that verifies device certificates: its own certificate and key, and
/// the device CA.
struct NginxTls {
    cert: String,
    key: String,
    device_ca: String,
}

fn start_nginx_with(binary: &Path, web_url: &str, gateway_key: &str, tls: Option<&NginxTls>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let (port, upstream) = (free_tcp_port(), free_tcp_port());
    let mut snippet =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx/tether-forward-auth.conf"))
            .unwrap()
            .replace("https://tether.internal:8443", web_url)
            .replace("GATEWAY-KEY", gateway_key);
    let d = dir.path().display();
    let listen = match tls {
        Some(tls) => {
            for (name, pem) in [("server.pem", &tls.cert), ("server.key", &tls.key), ("device-ca.pem", &tls.device_ca)]
            {
                std::fs::write(dir.path().join(name), pem).unwrap();
            }
            // As docs/forward-auth.md says: the device CA verifies; a token may stand in for a certificate.
            format!(
                "listen 127.0.0.1:{port} ssl;\n        ssl_certificate {d}/server.pem;\n        \
                 ssl_certificate_key {d}/server.key;\n        ssl_client_certificate {d}/device-ca.pem;\n        \
                 ssl_verify_client optional;"
            )
        }
        None => {
            // Plain HTTP on loopback: no client certificates to forward.
            snippet = snippet.replace("$ssl_client_escaped_cert", "\"\"");
            format!("listen 127.0.0.1:{port};")
        }
    };
    let config = format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {snippet_http}
    server {{
        {listen}
        location / {{
            include {d}/tether-auth-location.conf;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        include {d}/tether-auth-endpoint.conf;
    }}
    server {{
        listen 127.0.0.1:{upstream};
        location / {{
            default_type text/plain;
            return 200 "upstream: worker=$http_x_tether_worker device=$http_x_tether_device session=$http_x_tether_session token=$http_x_tether_access_token auth=$http_authorization cookie=$http_cookie\n";
        }}
    }}
}}
"#,
        snippet_http = section(&snippet, "http"),
    );
    std::fs::write(dir.path().join("tether-auth-location.conf"), section(&snippet, "location")).unwrap();
    std::fs::write(dir.path().join("tether-auth-endpoint.conf"), section(&snippet, "server")).unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new(binary)
        .args(["-c", conf.to_str().unwrap(), "-p", dir.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "nginx did not start: {:?}", error_log(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon { child, port, dir }
}

fn error_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
}

/// The part of the shipped snippet between `# --- NAME` and the next `# ---` line.
fn section(snippet: &str, name: &str) -> String {
    let marker = format!("# --- {name}");
    let start = snippet.find(&marker).unwrap_or_else(|| panic!("the snippet has no {marker:?} part"));
    let rest = &snippet[start + marker.len()..];
    let rest = rest.split_once('\n').map(|(_, r)| r).unwrap_or_default();
    rest.split("# ---").next().unwrap_or_default().to_string()
}

/// One HTTP/1.1 GET with extra headers; (status, body).
fn get(port: u16, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = "GET /app/page HTTP/1.1\r\nHost: intranet.example\r\nConnection: close\r\n".to_string();
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn new_token_key(dir: &Path) -> PathBuf {
    let path = dir.join("token.key");
    let out = run_bin("tether", &["gateway", "new-token-key", "--out", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// A presence answer that asks for an access token (issued to the answer's address, 127.0.0.1).
async fn token_for(server: &Server, device: &mut EnrolledDevice) -> String {
    let challenge = next_challenge(server, &device.credential_id).await;
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
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);
    answered.access_token
}

/// Caddy running the shipped deploy/caddy/Caddyfile, its placeholders filled in, in front of
/// an upstream that echoes what reached it (served by a second Caddy site).
fn start_caddy(binary: &Path, web_url: &str, gateway_key: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let (port, upstream) = (free_tcp_port(), free_tcp_port());
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/caddy/Caddyfile")).unwrap();
    let site = shipped
        // Caddy routes by Host; the test's requests name intranet.example. Loopback only.
        .replace("intranet.example.com {", &format!("http://intranet.example:{port} {{\n\tbind 127.0.0.1"))
        .replace("https://tether.internal:8443", web_url)
        .replace("app.internal:8080", &format!("127.0.0.1:{upstream}"));
    let config = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n{site}\n\
         http://:{upstream} {{\n\tbind 127.0.0.1\n\trespond \"upstream: worker={{header.X-Tether-Worker}} \
         device={{header.X-Tether-Device}} session={{header.X-Tether-Session}} \
         token={{header.X-Tether-Access-Token}} auth={{header.Authorization}} cookie={{header.Cookie}}\n\" 200\n}}\n"
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, config).unwrap();
    let child = Command::new(binary)
        .args(["run", "--adapter", "caddyfile", "--config", file.to_str().unwrap()])
        .env("TETHER_GATEWAY_KEY", gateway_key)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start caddy");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "caddy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon { child, port, dir }
}

fn caddy_binary() -> Option<PathBuf> {
    ["/usr/bin/caddy", "/usr/local/bin/caddy"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// What every forward-auth gateway must do with tetherd's answers.
fn assert_gateway_decides_like_tether(
    gateway: &str,
    port: u16,
    alice_token: &str,
    alice_device: &str,
    revoked_token: &str,
) {
    // ALLOW: the upstream sees who it is, never the token.
    let (status, body) = get(port, &[("X-Tether-Access-Token", alice_token)]);
    assert_eq!(status, 200, "{gateway}: {body}");
    assert!(body.contains("worker=alice"), "{gateway}: {body}");
    assert!(body.contains(&format!("device={alice_device}")), "{gateway}: {body}");
    assert!(body.contains("session=ses_"), "{gateway}: {body}");
    assert!(body.contains("token= "), "{gateway}: the token reached the upstream: {body}");
    // In `Authorization: Tether …` or the cookie, too; neither reaches the upstream.
    let (status, body) = get(port, &[("Authorization", &format!("Tether {alice_token}"))]);
    assert_eq!(status, 200, "{gateway}: {body}");
    assert!(!body.contains(alice_token), "{gateway}: the token reached the upstream: {body}");
    let cookie = format!("theme=dark; tether-access-token={alice_token}; lang=en");
    let (status, body) = get(port, &[("Cookie", &cookie)]);
    assert_eq!(status, 200, "{gateway}: {body}");
    assert!(!body.contains(alice_token), "{gateway}: the token cookie reached the upstream: {body}");
    assert!(body.contains("theme=dark") && body.contains("lang=en"), "{gateway}: other cookies lost: {body}");
    // A client cannot name itself to the upstream.
    let (status, body) = get(port, &[("X-Tether-Access-Token", alice_token), ("X-Tether-Worker", "root")]);
    assert_eq!(status, 200, "{gateway}");
    assert!(body.contains("worker=alice") && !body.contains("root"), "{gateway}: {body}");

    // No token, a tampered one: 401. A revoked device with a good token: 403.
    assert_eq!(get(port, &[]).0, 401, "{gateway}");
    let mut tampered = alice_token.to_string().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(get(port, &[("X-Tether-Access-Token", std::str::from_utf8(&tampered).unwrap())]).0, 401, "{gateway}");
    let (status, body) = get(port, &[("X-Tether-Access-Token", revoked_token)]);
    assert_eq!(status, 403, "{gateway}: {body}");
    assert!(!body.contains("upstream:"), "{gateway}: {body}");
}

fn assert_no_decision_is_refused(gateway: &str, port: u16, token: &str) {
    let (status, body) = get(port, &[("X-Tether-Access-Token", token)]);
    assert!(status >= 500, "{gateway}: {status} {body}");
    assert!(!body.contains("upstream:"), "{gateway}: {body}");
}

#[tokio::test]
async fn nginx_and_caddy_admit_only_what_tether_allows_and_fail_closed() {
    let Some(nginx_bin) = nginx_binary() else {
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let caddy_bin = caddy_binary();
    if caddy_bin.is_none() {
        eprintln!("NOTICE: caddy is not installed (apt-get install caddy): only nginx is tested");
    }
    let keys = tempfile::tempdir().unwrap();
    let key = new_token_key(keys.path());
    let mut server =
        Server::start_with_args(&["--web-listen", "127.0.0.1:0", "--access-token-key", key.to_str().unwrap()]);
    let org = Org::create(&server, "acme").await;
    let mut alice = org.enrolled_device(&server, "alice").await;
    let mut bob = org.enrolled_device(&server, "bob").await;
    let alice_token = token_for(&server, &mut alice).await;
    let bob_token = token_for(&server, &mut bob).await;
    server
        .admin()
        .await
        .revoke_device(authed(
            &org.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: bob.device_id.clone(), reason: "lost".into() },
        ))
        .await
        .unwrap();

    let nginx = start_nginx(&nginx_bin, &server.web_url, &org.gateway_key);
    assert_gateway_decides_like_tether("nginx", nginx.port, &alice_token, &alice.device_id, &bob_token);
    let caddy = caddy_bin.as_ref().map(|bin| start_caddy(bin, &server.web_url, &org.gateway_key));
    if let Some(caddy) = &caddy {
        assert_gateway_decides_like_tether("caddy", caddy.port, &alice_token, &alice.device_id, &bob_token);
    }

    // The decisions are sessions like CheckAccess's, under each gateway's name.
    let sessions = server
        .reports()
        .await
        .list_sessions(authed(&org.analyst_key, pb::ListSessionsRequest { ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    for gateway in ["nginx"].into_iter().chain(caddy.as_ref().map(|_| "caddy")) {
        assert!(
            sessions.sessions.iter().any(|s| s.gateway_id == gateway && s.device_id == alice.device_id),
            "no {gateway} session"
        );
    }

    // A gateway with a wrong key gets no decision: 5xx, never the upstream.
    let wrong = start_nginx(&nginx_bin, &server.web_url, "tk.nope.nope");
    assert_no_decision_is_refused("nginx with a wrong key", wrong.port, &alice_token);
    if let Some(bin) = &caddy_bin {
        let wrong = start_caddy(bin, &server.web_url, "tk.nope.nope");
        assert_no_decision_is_refused("caddy with a wrong key", wrong.port, &alice_token);
    }

    // tetherd down: 5xx, never the upstream.
    server.stop();
    assert_no_decision_is_refused("nginx, tetherd down", nginx.port, &alice_token);
    if let Some(caddy) = &caddy {
        assert_no_decision_is_refused("caddy, tetherd down", caddy.port, &alice_token);
    }
}

/// curl (the test's TLS client) with an optional client certificate; (status, body).
fn curl_tls(port: u16, client: Option<(&Path, &Path)>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"]);
    if let Some((cert, key)) = client {
        command.args(["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    }
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let out = command.arg(format!("https://127.0.0.1:{port}/app/page")).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test]
async fn nginx_forwards_the_device_certificate_it_verified() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let Some(nginx_bin) = nginx_binary() else {
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let server = Server::start_with_args(&["--web-listen", "127.0.0.1:0"]);
    let org = Org::create(&server, "acme").await;
    let mut alice = org.enrolled_device(&server, "alice").await;
    tether_e2e::fixtures::prove_presence(&server, &mut alice).await;
    let bob = org.enrolled_device(&server, "bob").await; // never present

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Acme Device CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let files = tempfile::tempdir().unwrap();
    let device_cert = |name: &str, uri: String| -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "laptop");
        params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().unwrap())];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let (cert_path, key_path) =
            (files.path().join(format!("{name}.pem")), files.path().join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let tenant = &org.keys.tenant_id;
    let alice_cert = device_cert("alice", format!("tether://tenant/{tenant}/device/{}", alice.device_id));
    let bob_cert = device_cert("bob", format!("tether://tenant/{tenant}/device/{}", bob.device_id));
    let foreign_cert = device_cert("foreign", format!("tether://tenant/other-tenant/device/{}", alice.device_id));
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&server_key).unwrap();
    let tls = NginxTls { cert: server_cert.pem(), key: server_key.serialize_pem(), device_ca: ca_cert.pem() };
    let nginx = start_nginx_with(&nginx_bin, &server.web_url, &org.gateway_key, Some(&tls));

    let (status, body) = curl_tls(nginx.port, Some((&alice_cert.0, &alice_cert.1)), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("worker=alice") && body.contains(&alice.device_id), "{body}");
    // A device that never answered presence, and a certificate naming another tenant: 403.
    let (status, body) = curl_tls(nginx.port, Some((&bob_cert.0, &bob_cert.1)), &[]);
    assert_eq!(status, 403, "{body}");
    let (status, body) = curl_tls(nginx.port, Some((&foreign_cert.0, &foreign_cert.1)), &[]);
    assert_eq!(status, 403, "{body}");
    // No certificate and no token: 401. A client's own X-Tether-Client-Cert header is not the
    // one nginx forwards (the snippet overwrites it with what nginx verified).
    assert_eq!(curl_tls(nginx.port, None, &[]).0, 401);
    let smuggled = std::fs::read_to_string(&alice_cert.0).unwrap().replace('\n', "%0A");
    let (status, body) = curl_tls(nginx.port, None, &[("X-Tether-Client-Cert", &smuggled)]);
    assert_eq!(status, 401, "{body}");
}
