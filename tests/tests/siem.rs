//! Flags and presence failures reach tenants' SIEM webhooks (docs/siem.md):
//! a real HTTP receiver started here checks every signature with ring and
//! deduplicates by idempotency key, the way a SIEM's collector would.
//! With TETHER_TEST_POSTGRES_URL set the servers run on PostgreSQL.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{Org, answer_json, next_challenge, prove_presence, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;

#[derive(Default)]
struct State {
    secret: String,
    up: bool,
    delay: Duration,
    /// Distinct events in arrival order: (idempotency key, event kind, body).
    got: Vec<(String, String, serde_json::Value)>,
    bodies: HashMap<String, String>,
    /// Keys that arrived twice with different bodies: must stay empty.
    conflicts: Vec<String>,
    redeliveries: usize,
    bad_signatures: usize,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { up: true, ..State::default() }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&state), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { url, state }
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }

    fn got(&self) -> Vec<(String, String, serde_json::Value)> {
        self.state.lock().unwrap().got.clone()
    }

    /// Waits until `done` holds for the received events (60 s at most).
    async fn wait_for(&self, what: &str, done: impl Fn(&[(String, String, serde_json::Value)]) -> bool) {
        let start = Instant::now();
        loop {
            if done(&self.got()) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}; got {:#?}", self.got());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_mac) = signature.strip_prefix("sha256=") else { return false };
    let Ok(mac) = hex::decode(hex_mac) else { return false };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    ring::hmac::verify(&key, &signed, &mac).is_ok()
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (timestamp, signature, key, event) = (
        header("x-tether-timestamp"),
        header("x-tether-signature"),
        header("idempotency-key"),
        header("x-tether-event"),
    );
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (up, delay) = {
        let s = state.lock().unwrap();
        (s.up, s.delay)
    };
    let status = if !up {
        503
    } else {
        tokio::time::sleep(delay).await;
        let mut s = state.lock().unwrap();
        let fresh = timestamp.parse::<i64>().is_ok_and(|t| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            (now - t).abs() < 300
        });
        if !fresh || !verify(&s.secret, &timestamp, &body, &signature) {
            s.bad_signatures += 1;
            401
        } else {
            let text = String::from_utf8_lossy(&body).to_string();
            match s.bodies.get(&key) {
                Some(seen) if *seen != text => s.conflicts.push(key),
                Some(_) => s.redeliveries += 1,
                None => {
                    s.bodies.insert(key.clone(), text.clone());
                    s.got.push((key, event, serde_json::from_str(&text).unwrap()));
                }
            }
            200
        }
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

async fn add_webhook(server: &Server, org: &Org, receiver: &Receiver) -> pb::Integration {
    let response = server
        .admin()
        .await
        .add_integration(authed(
            &org.keys.admin_key,
            pb::AddIntegrationRequest {
                name: "siem".into(),
                kind: "webhook".into(),
                target: receiver.url.clone(),
                format: "json".into(),
                tls: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.secret.len(), 64, "a 32-byte hex secret");
    receiver.set(|s| s.secret = response.secret.clone());
    response.integration.unwrap()
}

/// A stale copy of the device's key answers a challenge: one presence
/// failure (clone_suspected) and one high flag. Returns the flag's id.
async fn raise_clone_flag(server: &Server, org: &Org, worker: &str) -> String {
    let mut device = org.enrolled_device(server, worker).await;
    let mut clone = tether_softkey::SoftAuthenticator::from_state_json(&device.auth.to_state_json()).unwrap();
    prove_presence(server, &mut device).await;
    server
        .admin()
        .await
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap();
    let challenge = next_challenge(server, &device.credential_id).await;
    assert!(answer_json(server, &challenge.challenge_id, sign(&challenge, &mut clone)).await.is_err());
    let flags = server
        .reports()
        .await
        .list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .flags;
    flags.into_iter().find(|f| f.kind == "clone_suspected" && f.device_id == device.device_id).unwrap().id
}

async fn review(server: &Server, org: &Org, flag_id: &str, status: pb::FlagStatus, note: &str) {
    server
        .reports()
        .await
        .update_flag(authed(
            &org.analyst_key,
            pb::UpdateFlagRequest { flag_id: flag_id.into(), status: status as i32, note: note.into() },
        ))
        .await
        .unwrap();
}

/// The Prometheus exposition of `--metrics-listen`.
async fn metrics(server: &Server) -> String {
    let addr = server.metrics_url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = Request::get("/metrics").header("host", addr).body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn kinds(got: &[(String, String, serde_json::Value)]) -> Vec<&str> {
    got.iter().map(|(_, kind, _)| kind.as_str()).collect()
}

fn count(got: &[(String, String, serde_json::Value)], kind: &str) -> usize {
    got.iter().filter(|(_, k, _)| k == kind).count()
}

/// The outbox sequence number in `tenant.seq`.
fn seq(key: &str) -> i64 {
    key.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap()
}

#[tokio::test]
async fn flags_and_presence_failures_arrive_signed_in_order_to_their_tenant_only() {
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let (to_acme, to_globex) = (Receiver::start().await, Receiver::start().await);
    let acme_hook = add_webhook(&server, &acme, &to_acme).await;
    add_webhook(&server, &globex, &to_globex).await;

    // Targets that would leak events or reach the host are refused when configured.
    let mut admin = server.admin().await;
    for target in ["http://203.0.113.7/hook", "https://169.254.169.254/latest", "ftp://siem.example.com/"] {
        let request = pb::AddIntegrationRequest {
            name: "bad".into(),
            kind: "webhook".into(),
            target: target.into(),
            format: "json".into(),
            tls: false,
        };
        let status = admin.add_integration(authed(&acme.keys.admin_key, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{target}: {status:?}");
    }
    // Another tenant's integration cannot be removed, nor seen.
    let status = admin
        .remove_integration(authed(&globex.keys.admin_key, pb::RemoveIntegrationRequest { id: acme_hook.id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let listed = admin
        .list_integrations(authed(&globex.keys.admin_key, pb::ListIntegrationsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .integrations;
    assert!(listed.iter().all(|i| i.id != acme_hook.id));

    let flag_id = raise_clone_flag(&server, &acme, "w-alice").await;
    review(&server, &acme, &flag_id, pb::FlagStatus::Acknowledged, "looking").await;
    raise_clone_flag(&server, &globex, "w-bob").await;

    to_acme.wait_for("acme's three events", |got| count(got, "flag.reviewed") >= 1).await;
    to_globex.wait_for("globex's flag", |got| count(got, "flag.raised") >= 1).await;
    let got = to_acme.got();
    let order = kinds(&got);
    let at = |kind: &str| order.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind} in {order:?}"));
    assert!(at("presence.failure") < at("flag.raised") && at("flag.raised") < at("flag.reviewed"), "{order:?}");
    assert!(got.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)), "in outbox order: {got:#?}");
    let raised = &got[at("flag.raised")].2;
    assert_eq!(raised["flag"]["id"], flag_id.as_str());
    assert_eq!(raised["flag"]["kind"], "clone_suspected");
    assert_eq!(got[at("presence.failure")].2["presence"]["outcome"], "clone_suspected");
    assert_eq!(got[at("flag.reviewed")].2["flag"]["status"], "acknowledged");
    assert_eq!(got[at("flag.reviewed")].2["from"], "open");
    for (key, _, body) in &got {
        assert_eq!(body["tenant"], acme.keys.tenant_id.as_str(), "{key}");
        assert_eq!(body["id"], key.as_str());
    }
    // Give a misrouted event time to show up before asserting it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (key, _, body) in to_globex.got() {
        assert_eq!(body["tenant"], globex.keys.tenant_id.as_str(), "{key}");
    }
    for receiver in [&to_acme, &to_globex] {
        let s = receiver.state.lock().unwrap();
        assert_eq!(s.bad_signatures, 0);
        assert!(s.conflicts.is_empty());
    }
    let listed = admin
        .list_integrations(authed(&acme.keys.admin_key, pb::ListIntegrationsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .integrations;
    assert!(listed[0].delivered >= 3, "{listed:?}");
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_while_loses_nothing() {
    let server = Server::start_with_args(&["--metrics-listen", "127.0.0.1:0"]);
    let acme = Org::create(&server, "acme").await;
    let receiver = Receiver::start().await;
    add_webhook(&server, &acme, &receiver).await;
    receiver.set(|s| s.up = false);

    let flag_id = raise_clone_flag(&server, &acme, "w-alice").await;
    for (status, note) in
        [(pb::FlagStatus::Acknowledged, "one"), (pb::FlagStatus::Open, "two"), (pb::FlagStatus::Resolved, "three")]
    {
        review(&server, &acme, &flag_id, status, note).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.got().is_empty());
    let listed = server
        .admin()
        .await
        .list_integrations(authed(&acme.keys.admin_key, pb::ListIntegrationsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .integrations;
    assert!(listed[0].failures >= 1 && listed[0].last_error.contains("503"), "{listed:?}");
    assert!(listed[0].next_attempt_ms > 0);

    receiver.set(|s| s.up = true);
    receiver.wait_for("every event after the outage", |got| count(got, "flag.reviewed") == 3).await;
    let got = receiver.got();
    assert!(got.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)), "in order: {got:#?}");
    let notes: Vec<&str> =
        got.iter().filter(|(_, k, _)| k == "flag.reviewed").map(|(_, _, b)| b["note"].as_str().unwrap()).collect();
    assert_eq!(notes, ["one", "two", "three"]);
    assert_eq!(count(&got, "presence.failure"), 1);
    assert_eq!(count(&got, "flag.raised"), 1);
    let exposition = metrics(&server).await;
    for expected in [
        r#"tether_siem_deliveries_total{kind="webhook",outcome="failed""#,
        r#"tether_siem_deliveries_total{kind="webhook",outcome="ok""#,
        "tether_siem_backlog",
    ] {
        assert!(exposition.contains(expected), "missing {expected} in:\n{exposition}");
    }
}

#[tokio::test]
async fn kill_9_mid_delivery_then_restart_delivers_every_event_with_one_body_per_key() {
    let mut server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let receiver = Receiver::start().await;
    add_webhook(&server, &acme, &receiver).await;
    // Slow enough that the kill lands while deliveries are in flight.
    receiver.set(|s| s.delay = Duration::from_millis(150));

    let flag_id = raise_clone_flag(&server, &acme, "w-alice").await;
    const REVIEWS: usize = 12;
    for n in 0..REVIEWS {
        let status = if n % 2 == 0 { pb::FlagStatus::Acknowledged } else { pb::FlagStatus::Open };
        review(&server, &acme, &flag_id, status, &format!("review {n}")).await;
    }
    receiver.wait_for("the first deliveries", |got| got.len() >= 4).await;
    server.kill_hard();
    let before = receiver.got().len();
    assert!(before < REVIEWS + 2, "the kill should interrupt delivery (got {before})");
    server.restart();

    // The dead process's lease lapses, the new one resumes from the stored cursor.
    receiver.wait_for("every event after the restart", |got| count(got, "flag.reviewed") == REVIEWS).await;
    let got = receiver.got();
    let notes: Vec<String> = got
        .iter()
        .filter(|(_, k, _)| k == "flag.reviewed")
        .map(|(_, _, b)| b["note"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(notes, (0..REVIEWS).map(|n| format!("review {n}")).collect::<Vec<_>>());
    assert!(got.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)), "in order: {got:#?}");
    let s = receiver.state.lock().unwrap();
    assert!(s.conflicts.is_empty(), "one idempotency key, two bodies: {:?}", s.conflicts);
    assert_eq!(s.bad_signatures, 0);
    eprintln!("redeliveries after kill -9: {}", s.redeliveries);
}
