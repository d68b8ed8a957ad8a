//! RADIUS for VPN concentrators through Debian's FreeRADIUS (started here on loopback with the
//! module and virtual server shipped in deploy/radius/), asked with `radclient` as a
//! concentrator would after its own authentication: Access-Accept only on ALLOW, with a
//! Reply-Message; Access-Reject with the reasons otherwise, and on a tetherd outage or a wrong
//! gateway key. Without freeradius and radclient the test prints SKIPPED and passes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tether_e2e::fixtures::{Org, prove_presence};
use tether_e2e::{Daemon, Server, authed};
use tether_proto::v1 as pb;

const SECRET: &str = "concentrator-secret";

fn installed(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

fn shipped(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/radius").join(relative)).unwrap()
}

/// FreeRADIUS with the shipped module and site, pointed at `web_url` over plain HTTP on loopback.
fn start_freeradius(binary: &Path, web_url: &str, gateway_key: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let d = dir.path().display();
    for sub in ["mods-enabled", "sites-enabled", "log", "run"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let radiusd = format!(
        "prefix = /usr\nexec_prefix = /usr\nsysconfdir = /etc\nlocalstatedir = /var\nsbindir = /usr/sbin\n\
         datarootdir = /usr/share\ndictdir = /usr/share/freeradius\nraddbdir = {d}\nconfdir = {d}\n\
         modconfdir = {d}/mods-config\nlogdir = {d}/log\nrun_dir = {d}/run\ndb_dir = {d}\n\
         libdir = /usr/lib/freeradius\npidfile = {d}/run/radiusd.pid\nname = freeradius\n\
         max_request_time = 10\ncleanup_delay = 1\nmax_requests = 1024\nhostname_lookups = no\n\
         log {{\n destination = stdout\n auth = yes\n}}\n\
         security {{\n allow_core_dumps = no\n max_attributes = 200\n reject_delay = 0\n status_server = no\n}}\n\
         thread pool {{\n start_servers = 2\n max_servers = 4\n min_spare_servers = 1\n max_spare_servers = 2\n \
         max_requests_per_server = 0\n}}\n\
         client concentrator {{\n ipaddr = 127.0.0.1\n secret = {SECRET}\n}}\n\
         modules {{\n $INCLUDE mods-enabled/\n}}\n$INCLUDE sites-enabled/\n"
    );
    std::fs::write(dir.path().join("radiusd.conf"), radiusd).unwrap();
    // Plain HTTP on loopback: no CA file to verify tetherd with.
    let module: String = shipped("mods-available/tether")
        .replace("https://tether.internal:8443", web_url)
        .lines()
        .filter(|line| !line.contains("ca_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(dir.path().join("mods-enabled/tether"), module).unwrap();
    let site = shipped("sites-available/tether")
        .replace("ipaddr = *", "ipaddr = 127.0.0.1")
        .replace("port = 1812", &format!("port = {port}"));
    std::fs::write(dir.path().join("sites-enabled/tether"), site).unwrap();
    let mut child = Command::new(binary)
        .args(["-f", "-d", dir.path().to_str().unwrap(), "-l", "stdout"])
        .env("TETHER_GATEWAY_KEY", gateway_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start freeradius");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Ready to process requests") {
                let _ = ready_tx.send(Ok(()));
            }
            log.push(line);
            if log.len() > 200 {
                log.remove(0);
            }
        }
        let _ = ready_tx.send(Err(log.join("\n")));
    });
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => {}
        Ok(Err(log)) => panic!("freeradius exited before it was ready:\n{log}"),
        Err(_) => panic!("freeradius was not ready within 20 s"),
    }
    Daemon { child, port, dir }
}

/// What `radclient` got back: Some(accepted, Reply-Message), None for no answer.
fn ask(radclient: &Path, port: u16, attributes: &str) -> (bool, String) {
    let mut child = Command::new(radclient)
        .args(["-r", "1", "-t", "10", "-x", &format!("127.0.0.1:{port}"), "auth", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run radclient");
    child.stdin.take().unwrap().write_all(attributes.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let accepted = text.contains("Received Access-Accept");
    assert!(accepted || text.contains("Received Access-Reject"), "no RADIUS answer:\n{text}");
    let reply = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Reply-Message = "))
        .map(|m| m.trim_matches('"').to_string())
        .unwrap_or_default();
    (accepted, reply)
}

#[tokio::test]
async fn freeradius_accepts_only_what_tether_allows() {
    let (Some(freeradius), Some(radclient)) = (installed("freeradius"), installed("radclient")) else {
        eprintln!("SKIPPED: freeradius or radclient is not installed (apt-get install freeradius freeradius-utils)");
        return;
    };
    let mut server = Server::start_with_args(&["--web-listen", "127.0.0.1:0"]);
    let org = Org::create(&server, "acme").await;
    let mut alice = org.enrolled_device(&server, "alice").await;
    let mut bob = org.enrolled_device(&server, "bob").await;
    // Both answer presence from 127.0.0.1 (the test's own gRPC connection).
    prove_presence(&server, &mut alice).await;
    prove_presence(&server, &mut bob).await;
    org.enrolled_device(&server, "carol").await; // enrolled, never present
    let radius = start_freeradius(&freeradius, &server.web_url, &org.gateway_key);

    let (accepted, reply) = ask(
        &radclient,
        radius.port,
        "User-Name = \"alice\", Calling-Station-Id = \"127.0.0.1\", NAS-Identifier = \"asa-1\"",
    );
    assert!(accepted, "{reply}");
    assert!(reply.starts_with("Tether: ALLOW device ") && reply.contains(&alice.device_id), "{reply}");

    // From an address her laptop never answered from; a worker never present; an unknown one.
    for (attributes, expected) in [
        ("User-Name = \"alice\", Calling-Station-Id = \"127.0.0.99\"", "no device of \\\"alice\\\" answered"),
        ("User-Name = \"carol\", Calling-Station-Id = \"127.0.0.1\"", "identity_missing"),
        ("User-Name = \"mallory\", Calling-Station-Id = \"127.0.0.1\"", "identity_missing"),
        ("User-Name = \"alice\", Calling-Station-Id = \"00-11-22-33-44-55\"", "invalid_request"),
        ("User-Name = \"alice\"", "invalid_request"),
    ] {
        let (accepted, reply) = ask(&radclient, radius.port, attributes);
        assert!(!accepted, "{attributes}: {reply}");
        assert!(reply.contains("Tether: DENY") && reply.contains(expected), "{attributes}: {reply}");
    }

    // A revoked device is refused with that reason.
    server
        .admin()
        .await
        .revoke_device(authed(
            &org.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: bob.device_id.clone(), reason: "lost".into() },
        ))
        .await
        .unwrap();
    let (accepted, reply) = ask(&radclient, radius.port, "User-Name = \"bob\", Calling-Station-Id = \"127.0.0.1\"");
    assert!(!accepted && reply.contains("device_revoked"), "{reply}");

    // FreeRADIUS does not expand the client-chosen name in the reply.
    let (accepted, reply) =
        ask(&radclient, radius.port, "User-Name = \"%{Calling-Station-Id}\", Calling-Station-Id = \"127.0.0.1\"");
    assert!(!accepted && reply.contains("%{Calling-Station-Id}"), "{reply}");

    // The decisions are sessions under the concentrator's NAS-Identifier.
    let sessions = server
        .reports()
        .await
        .list_sessions(authed(&org.analyst_key, pb::ListSessionsRequest { ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert!(sessions.sessions.iter().any(|s| s.gateway_id == "asa-1" && s.device_id == alice.device_id));

    // A wrong gateway key, then tetherd down: Access-Reject, never Accept.
    let wrong = start_freeradius(&freeradius, &server.web_url, "tk.nope.nope");
    let (accepted, _) = ask(&radclient, wrong.port, "User-Name = \"alice\", Calling-Station-Id = \"127.0.0.1\"");
    assert!(!accepted);
    server.stop();
    let (accepted, _) = ask(&radclient, radius.port, "User-Name = \"alice\", Calling-Station-Id = \"127.0.0.1\"");
    assert!(!accepted);
}
