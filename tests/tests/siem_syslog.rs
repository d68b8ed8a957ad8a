//! Flags and presence failures reach a syslog receiver (docs/siem.md): RFC
//! 5424 messages framed by octet counting (RFC 6587) on a TCP listener
//! started here, one integration sending JSON and one CEF.

use std::time::{Duration, Instant};
use tether_e2e::fixtures::{Org, answer_json, next_challenge, prove_presence, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Accepts connections and sends every octet-counted frame's message on.
async fn listen() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
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
    let response = server
        .admin()
        .await
        .add_integration(authed(
            &org.keys.admin_key,
            pb::AddIntegrationRequest {
                name: format!("syslog {format}"),
                kind: "syslog".into(),
                target: target.into(),
                format: format.into(),
                tls: false,
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
