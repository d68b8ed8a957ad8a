//! Detection inputs that are live in tetherd: posture reports signed with the
//! presence answer (WebAuthn and TPM), declared worker homes and working hours.

use tether_e2e::fixtures::{
    EnrolledDevice, Org, answer_json, answer_with_posture, deny_codes, is_allow, next_challenge, sign,
    sign_with_posture,
};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tonic::Code;

#[path = "detection_live/probes.rs"]
mod probes;
#[path = "detection_live/tpm_posture.rs"]
mod tpm_posture;
#[path = "detection_live/workers.rs"]
mod workers;

const PIKVM: &str = r#"{"usb":[{"vid":"1d6b","pid":"0104","manufacturer":"PiKVM","product":"Composite KVM Device"}],
"processes":["systemd","kvmd"],"timezone":"Europe/Berlin"}"#;
const HONEST: &str = r#"{"usb":[{"vid":"046d","pid":"c52b","manufacturer":"Logitech","product":"USB Receiver"}],
"processes":["systemd","bash","firefox"],"timezone":"Europe/Berlin","displays":["DELL U2720Q"]}"#;

pub async fn flags_of(server: &Server, org: &Org, device_id: &str, kind: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { device_id: device_id.into(), ..Default::default() };
    let flags = reports.list_flags(authed(&org.analyst_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| kind.is_empty() || f.kind == kind).collect()
}

/// The posture stored with the device's presence answers: (sha256, json).
async fn stored_postures(server: &Server, device_id: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let rows = sqlx::query("SELECT posture_sha256, posture_json FROM presence_postures WHERE device_id = $1")
        .bind(device_id)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter().map(|r| (r.get("posture_sha256"), r.get("posture_json"))).collect()
}

async fn failures(server: &Server, org: &Org, device_id: &str) -> Vec<String> {
    let mut reports = server.reports().await;
    let request = pb::ListPresenceFailuresRequest { device_id: device_id.into(), ..Default::default() };
    let events = reports.list_presence_failures(authed(&org.analyst_key, request)).await.unwrap().into_inner().events;
    events.into_iter().map(|e| e.detail).collect()
}

async fn enrolled(server: &Server, org: &Org, worker: &str) -> EnrolledDevice {
    org.enrolled_device(server, worker).await
}

#[tokio::test]
async fn a_pikvm_gadget_in_a_signed_posture_is_flagged_and_denied() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = enrolled(&server, &org, "w-kvm").await;
    let challenge = next_challenge(&server, &device.credential_id).await;
    let json = sign_with_posture(&challenge, &mut device.auth, PIKVM.as_bytes());
    let answered = answer_with_posture(&server, &challenge.challenge_id, json, PIKVM.as_bytes()).await.unwrap();
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);

    let flagged = flags_of(&server, &org, &device.device_id, "remote_control").await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].severity, pb::FlagSeverity::High as i32);
    let evidence: serde_json::Value = serde_json::from_str(&flagged[0].evidence_json).unwrap();
    assert_eq!(evidence["indicators"][0]["indicator"], "PiKVM", "{evidence}");
    assert_eq!(evidence["indicators"][0]["vid"], "1d6b", "{evidence}");

    // The gateway's next decision sees it: a high flag is a deny (the tenant's policy).
    let decision = org.check(&server, "w-kvm", &device.device_id).await;
    assert!(!is_allow(&decision), "{:?}", decision.reasons);
    assert!(deny_codes(&decision).contains(&pb::DenyReason::OpenHighSeverityFlags), "{:?}", decision.reasons);

    // The report is kept with the answer, with the digest the key signed over.
    let stored = stored_postures(&server, &device.device_id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, tether_e2e::swtpm::hex(&tether_attestation::posture::posture_digest(PIKVM.as_bytes())));
    assert_eq!(stored[0].1, PIKVM);
}

#[tokio::test]
async fn a_posture_changed_after_signing_is_rejected_as_tampered() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = enrolled(&server, &org, "w-relay").await;
    let challenge = next_challenge(&server, &device.credential_id).await;

    // Signed with the KVM's report, sent with an innocent one (what a relay hiding the KVM would do).
    let signed = sign_with_posture(&challenge, &mut device.auth, PIKVM.as_bytes());
    let err =
        answer_with_posture(&server, &challenge.challenge_id, signed.clone(), HONEST.as_bytes()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("tampered"), "{}", err.message());
    // A report attached to an answer signed without one.
    let plain = sign(&challenge, &mut device.auth);
    let err = answer_with_posture(&server, &challenge.challenge_id, plain, HONEST.as_bytes()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("signed without one"), "{}", err.message());
    // The report stripped from an answer that was signed with one.
    let err = answer_json(&server, &challenge.challenge_id, signed).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());

    let recorded = failures(&server, &org, &device.device_id).await;
    assert_eq!(recorded.iter().filter(|d| d.contains("tampered")).count(), 2, "{recorded:?}");
    assert!(flags_of(&server, &org, &device.device_id, "").await.is_empty());
    assert!(stored_postures(&server, &device.device_id).await.is_empty());

    // Nothing was consumed: the honest answer with its honest report still counts, and raises nothing.
    let json = sign_with_posture(&challenge, &mut device.auth, HONEST.as_bytes());
    let answered = answer_with_posture(&server, &challenge.challenge_id, json, HONEST.as_bytes()).await.unwrap();
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);
    assert!(flags_of(&server, &org, &device.device_id, "").await.is_empty());
    let decision = org.check(&server, "w-relay", &device.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    assert_eq!(stored_postures(&server, &device.device_id).await.len(), 1);
}

#[tokio::test]
async fn a_malformed_posture_is_invalid_argument_naming_the_field() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = enrolled(&server, &org, "w-bad").await;
    let challenge = next_challenge(&server, &device.credential_id).await;
    for (posture, field) in [
        (r#"{"usb":[{"vid":"zz","pid":"0104"}]}"#, "posture_json.usb[0].vid"),
        (r#"{"processes":"kvmd"}"#, "posture_json.processes must be an array"),
        (r#"{"usb":[],"serial":"x"}"#, "unknown field \"serial\""),
        ("{not json", "posture_json is not valid JSON"),
    ] {
        let json = sign_with_posture(&challenge, &mut device.auth, posture.as_bytes());
        let err = answer_with_posture(&server, &challenge.challenge_id, json, posture.as_bytes()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{posture}: {}", err.message());
        assert!(err.message().contains(field), "{posture}: {}", err.message());
    }
    let big = format!(r#"{{"processes":["{}"]}}"#, "a".repeat(70 * 1024));
    let err = answer_with_posture(&server, &challenge.challenge_id, String::new(), big.as_bytes()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("at most 65536"), "{}", err.message());
}

/// A tenant with one laptop enrolled by the real `tether-agent`, which then answers a presence
/// challenge with the posture it reads under `root` (sys/, proc/, etc/). Returns the server,
/// the admin key and the device id.
async fn agent_answers_with_posture_root(root: &std::path::Path) -> (Server, String, String) {
    let server = Server::start();
    let keys = server.init_tenant("acme", "acme.example", "https://acme.example");
    let dir = tempfile::tempdir().unwrap();
    let (ca, state) = (dir.path().join("dev-ca"), dir.path().join("agent.json"));
    let (ca, state) = (ca.to_str().unwrap(), state.to_str().unwrap());
    let admin = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", keys.admin_key.as_str())];
    let tether = |args: &[&str]| {
        let out = run_bin("tether", &[&["--output", "json"], args].concat(), &admin);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert!(run_bin("tether", &["dev-ca", "--dir", ca], &[]).status.success());
    tether(&["trust", "add", &format!("{ca}/root.pem"), "--name", "dev"]);
    let device =
        tether(&["devices", "add", "--serial", "KVM1", "--model", "T14", "--worker", "w", "--worker-name", "W"]);
    let device_id = device["id"].as_str().unwrap().to_string();
    let token = tether(&["tokens", "create", "--device", &device_id])["secret"].as_str().unwrap().to_string();
    let agent_env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_AGENT_STATE", state)];
    let ca_cert = format!("{ca}/vendor-ca.pem");
    let ca_key = format!("{ca}/vendor-ca.key");
    let enroll = ["enroll", "--token", &token, "--attestation-ca-cert", &ca_cert, "--attestation-ca-key", &ca_key];
    assert!(run_bin("tether-agent", &enroll, &agent_env).status.success());
    let root_arg = root.to_str().unwrap();
    let mut answered = false;
    for _ in 0..50 {
        let out =
            run_bin("tether-agent", &["--output", "json", "run", "--once", "--posture-root", root_arg], &agent_env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let answers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if answers.as_array().is_some_and(|a| a.iter().any(|x| x["outcome"] == "ok")) {
            answered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(answered, "the agent answered no challenge");
    (server, keys.admin_key, device_id)
}

/// Writes one USB device (sysfs attributes, and each interface's class, subclass and protocol)
/// under `root`, as the kernel lays it out.
fn usb_device(root: &std::path::Path, port: &str, attributes: &[(&str, &str)], interfaces: &[(&str, &str, &str)]) {
    let device = root.join("sys/bus/usb/devices").join(port);
    std::fs::create_dir_all(&device).unwrap();
    for (file, value) in attributes {
        std::fs::write(device.join(file), format!("{value}\n")).unwrap();
    }
    for (i, (class, subclass, protocol)) in interfaces.iter().enumerate() {
        let interface = root.join("sys/bus/usb/devices").join(format!("{port}:1.{i}"));
        std::fs::create_dir_all(&interface).unwrap();
        for (file, value) in
            [("bInterfaceClass", class), ("bInterfaceSubClass", subclass), ("bInterfaceProtocol", protocol)]
        {
            std::fs::write(interface.join(file), format!("{value}\n")).unwrap();
        }
    }
}

async fn remote_control_flags(server: &Server, admin_key: &str, device_id: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { device_id: device_id.into(), ..Default::default() };
    let flags = reports.list_flags(authed(admin_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == "remote_control").collect()
}

/// A JetKVM with its Logitech preset: the ids say "Logitech receiver", the structure — one
/// composite keyboard + mouse with a gadget's serial and a mass-storage function — says KVM.
/// The same ids and HID structure without gadget traits (a real receiver) stay quiet.
#[tokio::test]
async fn a_kvm_spoofing_a_logitech_receiver_is_flagged_by_its_structure_through_the_real_agent() {
    let keyboard_and_mouse = [("03", "01", "01"), ("03", "01", "02")];
    let dir = tempfile::tempdir().unwrap();
    let spoofed = dir.path().join("jetkvm");
    let attributes =
        [("idVendor", "046d"), ("idProduct", "c52b"), ("manufacturer", "Logitech"), ("product", "USB Receiver")];
    usb_device(
        &spoofed,
        "1-2",
        &[&attributes[..], &[("serial", "CAFEBABE")]].concat(),
        &[keyboard_and_mouse[0], keyboard_and_mouse[1], ("08", "06", "50")],
    );
    let (server, admin_key, device_id) = agent_answers_with_posture_root(&spoofed).await;
    let flags = remote_control_flags(&server, &admin_key, &device_id).await;
    assert!(flags.iter().any(|f| f.severity == pb::FlagSeverity::High as i32), "{flags:?}");
    let evidence: serde_json::Value = serde_json::from_str(&flags[0].evidence_json).unwrap();
    assert!(evidence.to_string().contains("by structure"), "{evidence}");
    assert!(evidence.to_string().contains("CAFEBABE"), "the traits are named: {evidence}");

    let receiver = dir.path().join("receiver");
    usb_device(&receiver, "1-2", &attributes, &keyboard_and_mouse);
    let (server, admin_key, device_id) = agent_answers_with_posture_root(&receiver).await;
    let flags = remote_control_flags(&server, &admin_key, &device_id).await;
    assert!(flags.is_empty(), "a real receiver is not a KVM: {flags:?}");
}

#[tokio::test]
async fn the_agent_binary_collects_and_signs_its_posture() {
    // A prepared root with a PiKVM gadget on the USB bus (the agent reads sys/, proc/, etc/ under it).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let usb = root.join("sys/bus/usb/devices/1-1");
    std::fs::create_dir_all(&usb).unwrap();
    for (file, value) in [("idVendor", "1d6b"), ("idProduct", "0104"), ("manufacturer", "PiKVM"), ("product", "KVM")] {
        std::fs::write(usb.join(file), format!("{value}\n")).unwrap();
    }
    let (server, admin_key, device_id) = agent_answers_with_posture_root(&root).await;
    let stored = stored_postures(&server, &device_id).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let posture: serde_json::Value = serde_json::from_str(&stored[0].1).unwrap();
    assert_eq!(posture["usb"][0]["manufacturer"], "PiKVM", "{posture}");
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { device_id: device_id.clone(), ..Default::default() };
    let flags = reports.list_flags(authed(&admin_key, request)).await.unwrap().into_inner().flags;
    assert!(
        flags.iter().any(|f| f.kind == "remote_control" && f.severity == pb::FlagSeverity::High as i32),
        "{flags:?}"
    );
}
