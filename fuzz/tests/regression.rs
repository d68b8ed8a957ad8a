//! The deterministic fuzz regression run: every file of fuzz/corpus/<target>/ (the committed
//! seeds and every input a fuzzer ever found a bug with), plus the seeds derived from the
//! real-device vectors in ../shared when they are present, goes through its target body.
//! No libFuzzer and no nightly: `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`.

use std::path::{Path, PathBuf};

use tether_fuzz::{TARGETS, Target, seeds, target};

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name)
}

/// Runs `input` through the target, naming the input if it panics.
fn run(target: &Target, origin: &str, input: &[u8]) {
    let outcome = std::panic::catch_unwind(|| (target.run)(input));
    if outcome.is_err() {
        panic!("fuzz target {} panicked on {origin}", target.name);
    }
}

#[test]
fn committed_corpus_passes_every_target() {
    let mut total = 0;
    for target in TARGETS {
        let dir = corpus_dir(target.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); every target has a corpus", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of {} is empty", target.name);
        for file in &files {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            run(target, &file.display().to_string(), &data);
        }
        eprintln!("{:<20} {:>4} corpus files clean", target.name, files.len());
        total += files.len();
    }
    eprintln!("{total} corpus files through {} targets", TARGETS.len());
}

/// Whether the vector states `rejected` as its verdict (the second set's negatives, and
/// credentials Tether refuses such as ES512; see attestation/tests/conformance.rs).
fn expected_rejected(dir: &Path, name: &str) -> bool {
    const REFUSED_BY_TETHER: &[&str] = &["packed-self-es512-p521"];
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_default();
    let vector: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    vector["expected"]["verdict"] == "rejected" || REFUSED_BY_TETHER.contains(&name)
}

#[test]
fn shared_vectors_pass_every_target() {
    let Some(dir) = seeds::shared_dir() else {
        eprintln!("NOTICE: ../shared/conformance/webauthn is absent; skipping the real-device seeds");
        return;
    };
    let seeds = seeds::shared_seeds(&dir);
    assert!(!seeds.is_empty(), "{} yields no seeds", dir.display());
    for seed in &seeds {
        if seed.target == "attestation_object" && !expected_rejected(&dir, &seed.name) {
            // Every vector but the stated rejections is a valid registration: it verifies
            // (trusted or not, as our only anchor is the soft authenticator's), so the tamper
            // checks ran on it.
            let outcome = tether_fuzz::webauthn::registration_outcome(&seed.data);
            assert!(outcome.is_ok(), "{} does not verify: {outcome:?}", seed.name);
        }
        let target = target(seed.target).unwrap_or_else(|| panic!("seed for unknown target {}", seed.target));
        run(target, &format!("{} (from {})", seed.name, dir.display()), &seed.data);
    }
    eprintln!("{} real-device seeds from {} clean", seeds.len(), dir.display());
}

/// The committed seeds must reach the interesting code, not only be refused: the valid
/// registrations, assertions, chains and quotes verify (otherwise the fixtures and the
/// seeds have drifted apart and the "no forgery" properties test nothing).
#[test]
fn valid_seeds_verify() {
    use tether_attestation::chain::validate_chain;
    use tether_attestation::tpm::quote::verify_quote;
    use tether_fuzz::fixtures::{self, tpm as fx};
    use tether_fuzz::frame::split_all;

    let chain = std::fs::read(corpus_dir("chain").join("softkey-packed")).unwrap_or_default();
    let x5c = split_all(&chain, 9);
    let anchor = validate_chain(&x5c, fixtures::webauthn_trust(), fixtures::AT);
    assert!(anchor.is_ok(), "the soft authenticator's chain does not validate: {anchor:?}");

    for (name, trusted) in [("softkey-packed", true), ("softkey-self", false), ("softkey-none", false)] {
        let data = std::fs::read(corpus_dir("attestation_object").join(name)).unwrap_or_default();
        let outcome = tether_fuzz::webauthn::registration_outcome(&data);
        let outcome = outcome.unwrap_or_else(|e| panic!("{name} does not verify: {e}"));
        assert_eq!(outcome.trust.is_trusted(), trusted, "{name}: {:?}", outcome.trust);
    }

    let (ak, nonce) = &fixtures::tpm_aks()[0];
    assert!(verify_quote(ak, fx::RSA_QUOTE_MSG, fx::RSA_QUOTE_SIG, nonce, None).is_ok());

    let token = std::fs::read(corpus_dir("access_token").join("token-v4")).unwrap_or_default();
    let parts = tether_fuzz::frame::split(&token, 3);
    let now = i64::from_be_bytes(parts[0].try_into().unwrap_or_default());
    let keys = tether_fuzz::access_token::key_set(tether_fuzz::access_token::TENANT);
    let token = std::str::from_utf8(parts[2]).unwrap_or_default();
    let claims = tether_attestation::access_token::verify(token, &keys, now, Some("192.0.2.7"));
    assert!(claims.is_ok(), "the access-token seed does not verify: {claims:?}");

    let key = tether_attestation::cose::CredentialPublicKey::from_cose(fixtures::ASSERTION_KEY_COSE);
    assert!(key.is_ok(), "assertion key fixture: {key:?}");
    assert!(fixtures::ASSERTION_SIGNED.lines().count() >= 2);
}
