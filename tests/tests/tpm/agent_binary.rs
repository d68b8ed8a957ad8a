//! The `tether-agent` binary with its TPM backend, as a person runs it: `enroll --tpm` against
//! swtpm, `run --once` answering the scheduled challenge with a quote, then a gateway check.
//!
//! The binary must have been built with `--features tpm` (`.ci/run` does it before the TPM
//! tests); otherwise, or without swtpm, the test prints a NOTICE and returns.

use super::{register, trust_tpm_root};
use tether_e2e::fixtures::{Org, is_allow, next_challenge};
use tether_e2e::run_bin;
use tether_e2e::swtpm::{Swtpm, tools_missing};
use tether_e2e::{Server, bin_dir};

#[tokio::test]
async fn the_agent_binary_enrolls_with_tpm_and_answers_with_a_quote() {
    if tools_missing("the tether-agent --tpm binary test") {
        return;
    }
    if !bin_dir().join("tether-agent").exists() {
        eprintln!("NOTICE: skipping the tether-agent --tpm binary test: tether-agent is not built");
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-agent-bin").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-agent-bin", "").await;
    let token = org.token(&server, &device_id).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tether-agent.json");
    let state = state.to_str().unwrap();
    let intermediates = dir.path().join("ek-intermediates.pem");
    std::fs::write(&intermediates, tpm.issuer_pem()).unwrap();
    let tcti = tpm.tcti();

    let enrolled = run_bin(
        "tether-agent",
        &[
            "--output",
            "json",
            "--state",
            state,
            "--server",
            &server.url,
            "enroll",
            "--tpm",
            "--token",
            &token,
            "--tcti",
            &tcti,
            "--ek-intermediates",
            intermediates.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&enrolled.stderr);
    if stderr.contains("built without TPM support") {
        eprintln!(
            "NOTICE: skipping the tether-agent --tpm binary test: tether-agent was built without the `tpm` \
             feature (cargo build -p tether-agent --features tpm)"
        );
        return;
    }
    assert!(enrolled.status.success(), "tether-agent enroll --tpm failed: {stderr}");
    let output: serde_json::Value = serde_json::from_slice(&enrolled.stdout).unwrap();
    assert_eq!(output["device_id"], device_id.as_str());
    assert_eq!(output["format"], "tpm");
    assert_eq!(output["attested"], true, "{output}");
    let credential_id = output["credential_id"].as_str().unwrap().to_owned();
    let denied = org.check(&server, "w-agent-bin", &device_id).await;
    assert!(!is_allow(&denied), "no presence yet");

    // The scheduler's challenge, answered by `run --once` with a TPM2_Quote.
    next_challenge(&server, &credential_id).await;
    let answered = run_bin("tether-agent", &["--output", "json", "--state", state, "run", "--once"], &[]);
    let stdout = String::from_utf8_lossy(&answered.stdout);
    assert!(answered.status.success(), "run --once: {stdout} {}", String::from_utf8_lossy(&answered.stderr));
    assert!(stdout.contains("\"ok\""), "{stdout}");
    let allowed = org.check(&server, "w-agent-bin", &device_id).await;
    assert!(is_allow(&allowed), "{:?}", allowed.reasons);
    assert_eq!(allowed.credential_id, credential_id);
}
