//! The console in a real headless Chromium (playwright-core, Debian's
//! chromium): an analyst resolving a flag (tests/console/console.mjs), and the
//! farm view's answer timeline of a live sweep (tests/console/farms.mjs).
//! Without the browser, node or playwright-core each test prints SKIPPED.

use super::{audit_entries, console_server, flag_of, plant_flag};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{Org, answer_json, challenge_now, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

/// The artifacts directory for screenshots: TETHER_TEST_ARTIFACTS, else target/tmp/test-artifacts.
fn artifacts_dir() -> PathBuf {
    match std::env::var("TETHER_TEST_ARTIFACTS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts"),
    }
}

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// True (after saying why) when the browser flow cannot run here.
fn browser_missing() -> bool {
    let node_ok = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (!Path::new(&chromium()).exists()).then_some("chromium (apt-get install chromium)"),
        (!node_ok).then_some("node"),
        (!script_dir().join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in tests/console)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        println!("SKIPPED: the browser test needs {}", missing.join(", "));
    }
    !missing.is_empty()
}

/// Runs a script of tests/console with `env`; returns its stdout after asserting it succeeded.
async fn run_script(script: &str, env: &[(&str, &str)]) -> String {
    let output = tokio::process::Command::new("node")
        .arg(script_dir().join(script))
        .current_dir(script_dir())
        .envs(env.iter().copied().collect::<HashMap<_, _>>())
        .env("CHROMIUM", chromium())
        .env("SCREENSHOT_DIR", artifacts_dir())
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser flow {script} failed (output above)");
    stdout
}

#[tokio::test]
async fn an_analyst_resolves_a_flag_in_a_real_browser() {
    if browser_missing() {
        return;
    }
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let (flag_id, device_id) = plant_flag(&server, &org, "w-bob", "SN-1").await;
    let note = "laptop replaced; new one attested";
    let stdout = run_script(
        "console.mjs",
        &[
            ("CONSOLE_URL", server.console_url.as_str()),
            ("ANALYST_KEY", org.analyst_key.as_str()),
            ("FLAG_ID", flag_id.as_str()),
            ("FLAG_KIND", "unattested_hardware"),
            ("DEVICE_ID", device_id.as_str()),
            ("NOTE", note),
        ],
    )
    .await;
    assert!(stdout.contains(&format!("screenshot: {}", artifacts_dir().join("console-flags.png").display())));

    // What the browser did is what the service recorded.
    let flag = flag_of(&server, &org, &device_id).await;
    assert_eq!(flag.status, pb::FlagStatus::Resolved as i32);
    assert_eq!(flag.note, note);
    let entries = audit_entries(&server, &org, "flag.resolved").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target, flag_id);
    assert!(entries[0].details_json.contains(note));
    assert_eq!(entries[0].actor, format!("key:{}", org.analyst_key.split('.').nth(1).unwrap()));
}

/// Time scaled down: answers 0.2–1 s apart are a sweep; three sweeps of three answers flag.
const SWEEP_CONFIG: &str = "[probes]\nenabled = false\n[presence_sweep]\nmin_gap_secs = 0.2\nmax_gap_secs = 1.0\n\
                            min_sweeps = 3\nmin_answers = 3\nmin_ratio = 0.6\n";
const SWEEPS: usize = 3;

#[tokio::test]
async fn a_live_sweep_shows_as_a_staircase_on_the_farm_view_without_the_other_employers_device() {
    if browser_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("risk.toml");
    std::fs::write(&config, SWEEP_CONFIG).unwrap();
    let server =
        Server::start_with_args(&["--console-listen", "127.0.0.1:0", "--risk-config", config.to_str().unwrap()]);
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    // One room behind one (loopback) address: three of acme's laptops and one of globex's, answered third.
    let mut room = Vec::new();
    for worker in ["acme-w1", "acme-w2"] {
        room.push((&acme, acme.enrolled_device(&server, worker).await));
    }
    room.push((&globex, globex.enrolled_device(&server, "globex-w9").await));
    room.push((&acme, acme.enrolled_device(&server, "acme-w3").await));
    for _ in 0..SWEEPS {
        // Challenged at unrelated moments (more than the 1 s gap apart), answered 0.5 s apart by one hand.
        let mut pending = Vec::new();
        for (org, device) in &room {
            pending.push(challenge_now(&server, org, device, 0).await);
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
        for ((_, device), challenge) in room.iter_mut().zip(&pending) {
            answer_json(&server, &challenge.challenge_id, sign(challenge, &mut device.auth)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    // The last sweep is judged by the scheduler's clock once nobody could continue it.
    let start = Instant::now();
    let mut reports = server.reports().await;
    loop {
        let request = pb::ListFlagsRequest { kinds: vec!["presence_burst".into()], ..Default::default() };
        let flags = reports.list_flags(authed(&acme.analyst_key, request)).await.unwrap().into_inner().flags;
        if flags.len() == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no presence_burst on acme's three laptops: {flags:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The staircase's expected order: acme's laptops in the order they were answered.
    let own: Vec<&str> = room
        .iter()
        .filter(|(org, _)| org.keys.tenant_id == acme.keys.tenant_id)
        .map(|(_, d)| d.device_id.as_str())
        .collect();
    let own = own.join(",");
    let foreign = &room[2].1.device_id;
    run_script(
        "farms.mjs",
        &[
            ("CONSOLE_URL", server.console_url.as_str()),
            ("ANALYST_KEY", acme.analyst_key.as_str()),
            ("OWN_DEVICES", own.as_str()),
            ("ANSWERS_PER_DEVICE", &SWEEPS.to_string()),
            ("FOREIGN", &format!("{foreign},{},globex-w9", globex.keys.tenant_id)),
        ],
    )
    .await;
}
