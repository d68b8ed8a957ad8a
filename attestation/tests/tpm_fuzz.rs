//! Fuzz-style robustness: every truncation, every single-bit flip and random bytes fed to
//! each TPM parser and verifier never panic, and a flipped quote never verifies.

#[path = "tpm_fixtures.rs"]
mod fixtures;

use fixtures::*;
use tether_attestation::tpm::credential::{Credential, make_credential};
use tether_attestation::tpm::ek::{read_certificates, verify_ek_certificate};
use tether_attestation::tpm::pcr::PcrValues;
use tether_attestation::tpm::quote::verify_quote;
use tether_attestation::tpm::{Attest, PcrSelection, PublicKey, SystemRng, TpmPublic, TpmSignature};
use tether_attestation::trust::TrustStore;
use time::macros::datetime;

/// xorshift64*: reproducible test input, not cryptography.
struct TestRng(u64);

impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs `parse` on every prefix of `input`, on `input` with each bit flipped (every bit for
/// short inputs, a sample for long ones), and on random inputs of similar sizes.
fn hammer(input: &[u8], parse: &dyn Fn(&[u8])) {
    for len in 0..input.len() {
        parse(&input[..len]);
    }
    let step = (input.len() / 256).max(1);
    for byte in (0..input.len()).step_by(step) {
        for bit in 0..8 {
            let mut flipped = input.to_vec();
            flipped[byte] ^= 1 << bit;
            parse(&flipped);
        }
    }
    let mut rng = TestRng(0x9e37_79b9_7f4a_7c15 ^ input.len() as u64);
    for _ in 0..200 {
        let len = (rng.next() as usize) % (input.len() + 16);
        let mut random = rng.bytes(len);
        // Keep plausible prefixes now and then so the parsers get past their first checks.
        if rng.next().is_multiple_of(2) {
            let keep = len.min(input.len()).min(8);
            random[..keep].copy_from_slice(&input[..keep]);
        }
        parse(&random);
    }
}

#[test]
fn public_area_parser_never_panics() {
    for hex in [RSA_AK_PUB, ECC_AK_PUB, RSA_EK_PUB, ECC_EK_PUB] {
        hammer(&bytes(hex), &|b| {
            if let Ok(public) = TpmPublic::parse(b) {
                let _ = public.name();
                let _ = public.key.to_spki_der();
                let _ = make_credential(&public, &bytes(RSA_AK_NAME), b"secret", &mut SystemRng::new());
            }
        });
    }
}

#[test]
fn attest_and_signature_parsers_never_panic() {
    for hex in [RSA_QUOTE_MSG, ECC_QUOTE_MSG, RSA_CERTIFY_MSG, PLAIN_MSG] {
        hammer(&bytes(hex), &|b| {
            let _ = Attest::parse(b);
        });
    }
    for hex in [RSA_QUOTE_SIG, ECC_QUOTE_SIG, PLAIN_SIG] {
        hammer(&bytes(hex), &|b| {
            if let Ok(sig) = TpmSignature::parse(b) {
                let _ = sig.verify(&TpmPublic::parse(&bytes(ECC_AK_PUB)).expect("AK").key, b"message");
            }
        });
    }
}

#[test]
fn pcr_and_credential_file_parsers_never_panic() {
    let selection = [PcrSelection { hash: 0x000b, select: vec![0x07, 0x00, 0x01] }];
    for hex in [RSA_QUOTE_PCRS, ECC_QUOTE_PCRS] {
        hammer(&bytes(hex), &|b| {
            let _ = PcrValues::from_tpm2_tools(b);
            let _ = PcrValues::from_concatenated(b, &selection);
        });
    }
    let ek = TpmPublic::parse(&bytes(ECC_EK_PUB)).expect("EK");
    let credential = make_credential(&ek, &bytes(RSA_AK_NAME), b"secret", &mut SystemRng::new()).expect("credential");
    hammer(&credential.to_tpm2_tools().expect("file"), &|b| {
        let _ = Credential::from_tpm2_tools(b);
    });
}

#[test]
fn ek_certificate_and_key_parsers_never_panic() {
    let mut trust = TrustStore::new();
    trust.add_pem(LOCALCA_ROOT_PEM).expect("root");
    let issuer = read_certificates(LOCALCA_ISSUER_PEM.as_bytes()).expect("issuer");
    let at = datetime!(2027-01-01 00:00 UTC);
    for hex in [RSA_EK_CERT, ECC_EK_CERT] {
        hammer(&bytes(hex), &|b| {
            if let Ok(certs) = read_certificates(b)
                && let Some(first) = certs.first()
            {
                let _ = verify_ek_certificate(first, &issuer, &trust, at);
            }
        });
    }
    let spki = TpmPublic::parse(&bytes(RSA_AK_PUB)).expect("AK").key.to_spki_der();
    hammer(&spki, &|b| {
        let _ = PublicKey::from_spki_der(b);
    });
}

#[test]
fn no_single_bit_flip_of_a_quote_verifies() {
    let ak = TpmPublic::parse(&bytes(ECC_AK_PUB)).expect("AK");
    let msg = bytes(ECC_QUOTE_MSG);
    let sig = bytes(ECC_QUOTE_SIG);
    let nonce = [0xaa, 0xbb, 0xcc];
    verify_quote(&ak, &msg, &sig, &nonce, None).expect("the original verifies");
    for byte in 0..msg.len() {
        let mut flipped = msg.clone();
        flipped[byte] ^= 0x01;
        assert!(verify_quote(&ak, &flipped, &sig, &nonce, None).is_err(), "message byte {byte}");
    }
    for byte in 0..sig.len() {
        let mut flipped = sig.clone();
        flipped[byte] ^= 0x01;
        assert!(verify_quote(&ak, &msg, &flipped, &nonce, None).is_err(), "signature byte {byte}");
    }
}
