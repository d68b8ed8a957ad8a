//! Throughput of the TPM verifier, single-threaded, on the recorded swtpm structures.
//! Not run by `cargo test`; run it optimized:
//!
//! ```sh
//! cargo test --release -p tether-attestation --test tpm_bench -- --ignored --nocapture
//! ```

#[path = "tpm_fixtures.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use fixtures::*;
use tether_attestation::tpm::credential::make_credential;
use tether_attestation::tpm::pcr::PcrValues;
use tether_attestation::tpm::quote::verify_quote;
use tether_attestation::tpm::{SystemRng, TpmPublic};

/// Runs `f` repeatedly for about `budget` and returns operations per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark; run with --release -- --ignored --nocapture"]
fn tpm_throughput() {
    let budget = Duration::from_secs(3);
    for (label, ak, msg, sig, pcrs, nonce) in [
        (
            "quote verify, RSA-2048 RSASSA-SHA256 AK, 4 PCRs",
            RSA_AK_PUB,
            RSA_QUOTE_MSG,
            RSA_QUOTE_SIG,
            RSA_QUOTE_PCRS,
            &[0x00, 0x11, 0x22, 0x33, 0x44][..],
        ),
        (
            "quote verify, P-256 ECDSA-SHA256 AK, 2 PCRs",
            ECC_AK_PUB,
            ECC_QUOTE_MSG,
            ECC_QUOTE_SIG,
            ECC_QUOTE_PCRS,
            &[0xaa, 0xbb, 0xcc][..],
        ),
    ] {
        let (ak, msg, sig, pcrs) = (bytes(ak), bytes(msg), bytes(sig), bytes(pcrs));
        let per_second = rate(budget, || {
            // Everything a server does per answer: parse the AK, the PCR file, verify.
            let ak = TpmPublic::parse(&ak).expect("AK");
            let pcrs = PcrValues::from_tpm2_tools(&pcrs).expect("PCRs");
            verify_quote(&ak, &msg, &sig, nonce, Some(&pcrs)).expect("valid");
        });
        println!("{label}: {per_second:.0}/s");
    }
    let ak_name = bytes(RSA_AK_NAME);
    let mut rng = SystemRng::new();
    for (label, ek) in [
        ("make-credential, RSA-2048 EK (OAEP, AES-128)", RSA_EK_PUB),
        ("make-credential, P-384 EK (ECDH, KDFe, AES-256)", ECC_EK_PUB),
    ] {
        let ek = TpmPublic::parse(&bytes(ek)).expect("EK");
        let per_second = rate(budget, || {
            make_credential(&ek, &ak_name, &[7u8; 32], &mut rng).expect("credential");
        });
        println!("{label}: {per_second:.0}/s");
    }
}
