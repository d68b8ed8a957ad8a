//! The bodies of Tether's fuzz targets, as plain functions: each takes untrusted bytes,
//! feeds them to a parser or verifier of the project, and asserts the properties that
//! matter (no forgery verifies, encoders roundtrip, limits hold). A panic is a finding.
//!
//! The libFuzzer binaries in fuzz_targets/ call these; tests/regression.rs replays the
//! committed corpus through them on stable Rust without libFuzzer.

pub mod access_token;
#[cfg(feature = "analyze")]
pub mod analyze;
pub mod fixtures;
pub mod frame;
pub mod mds;
pub mod openvpn;
pub mod seeds;
pub mod tpm;
pub mod webauthn;
pub mod x509;

/// A fuzz target: its name (the binary in fuzz_targets/ and the folder in corpus/) and body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// What it parses, for the summary table.
    pub parses: &'static str,
}

/// Every target, in the order `run.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "attestation_object",
        run: webauthn::attestation_object,
        parses: "CBOR attestation object + clientDataJSON through verify_registration (all formats)",
    },
    Target { name: "registration_json", run: webauthn::registration_json, parses: "RegistrationResponseJSON document" },
    Target { name: "client_data", run: webauthn::client_data, parses: "clientDataJSON (raw or base64url)" },
    Target { name: "authenticator_data", run: webauthn::authenticator_data, parses: "authenticator data" },
    Target { name: "cose_key", run: webauthn::cose_key, parses: "COSE_Key + signature verification" },
    Target {
        name: "assertion",
        run: webauthn::assertion,
        parses: "assertion (authenticatorData, clientDataJSON, signature) through verify_assertion",
    },
    Target { name: "assertion_json", run: webauthn::assertion_json, parses: "AuthenticationResponseJSON document" },
    Target { name: "chain", run: x509::chain, parses: "X.509 DER chain (x5c) through validate_chain" },
    Target { name: "trust_store", run: x509::trust_store, parses: "trust anchors: PEM bundle and DER certificate" },
    Target {
        name: "tpm_public",
        run: tpm::tpm_public,
        parses: "TPM2B_PUBLIC/TPMT_PUBLIC, AK checks, SPKI conversion, MakeCredential",
    },
    Target { name: "tpm_attest", run: tpm::tpm_attest, parses: "TPMS_ATTEST (quote, certify, other)" },
    Target { name: "tpm_signature", run: tpm::tpm_signature, parses: "TPMT_SIGNATURE + verification" },
    Target {
        name: "tpm_quote",
        run: tpm::tpm_quote,
        parses: "quote checking: TPMS_ATTEST + TPMT_SIGNATURE + PCR file",
    },
    Target { name: "tpm_pcr", run: tpm::tpm_pcr, parses: "tpm2_quote PCR files, PCR selections, tpm2_pcrread output" },
    Target { name: "tpm_ek", run: tpm::tpm_ek, parses: "EK certificate files (DER/PEM) through verify_ek_certificate" },
    Target {
        name: "tpm_credential",
        run: tpm::tpm_credential,
        parses: "MakeCredential inputs (EK public, AK name, secret), tpm2-tools credential file",
    },
    Target {
        name: "access_token",
        run: access_token::access_token,
        parses: "gateway access token through access_token::verify, published key set, signing key",
    },
    Target {
        name: "mds_blob",
        run: mds::mds_blob,
        parses: "FIDO MDS3 BLOB (JWS) through verify_blob with the production roots; its payload reader",
    },
    Target {
        name: "openvpn",
        run: openvpn::openvpn,
        parses: "OpenVPN script input: via-file credentials file and script environment",
    },
    #[cfg(feature = "analyze")]
    Target {
        name: "analyze_events",
        run: analyze::analyze_events,
        parses: "`tether analyze` JSON Lines event log through the risk engine",
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
