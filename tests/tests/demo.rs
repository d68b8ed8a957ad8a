//! `tether demo`, the README's one-minute tour, runs end to end: the CLI (which does not
//! contain the server) starts the `tetherd` executable, and every step of the story happens.

use std::process::Command;
use tether_e2e::bin;

#[test]
fn the_demo_tells_the_whole_story_against_a_real_tetherd() {
    let output = Command::new(bin("tether"))
        .args(["demo", "--tetherd"])
        .arg(bin("tetherd"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tether demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tether demo failed:\n{stdout}\n{stderr}");
    for step in [
        "tetherd (pid ",
        "1. The employer trusts",
        "2. IT registers four laptops",
        "3. Presence round",
        "4. Security asks carol's laptop again",
        "5. Waiting for bob's challenge deadline",
        "6. The VPN gateway asks",
        "7. The analyst's report",
        "Done.",
    ] {
        assert!(stdout.contains(step), "the demo's output lacks {step:?}:\n{stdout}");
    }
    // The replayed answer is refused, bob's miss is reported, and the gateway allows and denies.
    assert!(stdout.contains("rejected:"), "the replay was not refused:\n{stdout}");
    assert!(stdout.contains("missed"), "bob's miss is not in the report:\n{stdout}");
    assert!(stdout.contains("ALLOW") && stdout.contains("DENY"), "no mixed decisions:\n{stdout}");
}

#[test]
fn the_demo_without_a_server_binary_says_how_to_build_one() {
    let output = Command::new(bin("tether"))
        .args(["demo", "--tetherd", "/nonexistent/tetherd"])
        .output()
        .expect("run tether demo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cargo build -p tetherd"), "{stderr}");
}
