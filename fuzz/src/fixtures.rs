//! Fixed keys, trust anchors and expectations the targets verify against. They are the
//! project's own outputs (swtpm recordings from attestation/tests/tpm_fixtures.rs, and the
//! soft authenticator's PKI written by `examples/make_corpus.rs`), committed under
//! fuzz/fixtures/ so that a run is reproducible.

use std::sync::OnceLock;

use tether_attestation::tpm::TpmPublic;
use tether_attestation::trust::TrustStore;
use time::OffsetDateTime;
use time::macros::datetime;

/// Every certificate is evaluated at this instant (inside the validity of all fixtures).
pub const AT: OffsetDateTime = datetime!(2027-06-01 00:00:00 UTC);

/// The relying party the soft authenticator seeds were made for.
pub const RP_ID: &str = "fuzz.example";
pub const ORIGIN: &str = "https://fuzz.example";
/// The challenge of every soft-authenticator registration and assertion seed.
pub const CHALLENGE: [u8; 32] = [0x5a; 32];

/// Relying parties of the seeds (ours and the conformance vectors'), so that a target can
/// find the one an attestation object was made for from its rpIdHash.
pub const KNOWN_RP_IDS: &[&str] = &[
    RP_ID,
    "demo.yubico.com",
    "localhost",
    "portal.fxon.com",
    "authress.io",
    "example.com",
    "webauthn.io",
    "d2urpypvrhb05x.amplifyapp.com",
    // The second set of ../shared/conformance/webauthn (2026-12).
    "127.0.0.1",
    "172.20.0.141",
    "56k.guru",
    "6cc3c9e7967a.ngrok.io",
    "dev.dontneeda.pw",
    "dev2.dontneeda.pw",
    "etools-dev.example.com",
    "netpassport.io",
    "spectral.local",
    "try-webauthn.appspot.com",
    "webauthn.firstyear.id.au",
    "webauthn.org",
    "webauthntest.azurewebsites.net",
];

/// Root of the soft authenticator's attestation PKI (the only WebAuthn trust anchor).
pub const SOFTKEY_ROOT_PEM: &str = include_str!("../fixtures/softkey-root.pem");
/// The soft authenticator's credential public key (COSE) for the assertion seeds, and its id.
pub const ASSERTION_KEY_COSE: &[u8] = include_bytes!("../fixtures/assertion-key.cose");
pub const ASSERTION_CREDENTIAL_ID: &[u8] = include_bytes!("../fixtures/assertion-credential-id.bin");
/// SHA-256 of every message (authenticatorData ‖ SHA-256(clientDataJSON)) the soft
/// authenticator signed for the seeds, hex, one per line: no other message may verify.
pub const ASSERTION_SIGNED: &str = include_str!("../fixtures/assertion-signed.txt");
/// SHA-256 of the TBSCertificate of every certificate issued under the fixture roots, hex,
/// one per line: a chain may only validate with a leaf from this list.
pub const KNOWN_TBS: &str = include_str!("../fixtures/known-tbs.txt");

pub mod tpm {
    pub const RSA_AK_PUB: &[u8] = include_bytes!("../fixtures/tpm/rsa_ak_pub.bin");
    pub const RSA_AK_NAME: &[u8] = include_bytes!("../fixtures/tpm/rsa_ak_name.bin");
    pub const ECC_AK_PUB: &[u8] = include_bytes!("../fixtures/tpm/ecc_ak_pub.bin");
    pub const RSA_EK_PUB: &[u8] = include_bytes!("../fixtures/tpm/rsa_ek_pub.bin");
    pub const ECC_EK_PUB: &[u8] = include_bytes!("../fixtures/tpm/ecc_ek_pub.bin");
    pub const RSA_QUOTE_MSG: &[u8] = include_bytes!("../fixtures/tpm/rsa_quote_msg.bin");
    pub const RSA_QUOTE_SIG: &[u8] = include_bytes!("../fixtures/tpm/rsa_quote_sig.bin");
    pub const RSA_QUOTE_PCRS: &[u8] = include_bytes!("../fixtures/tpm/rsa_quote_pcrs.bin");
    pub const ECC_QUOTE_MSG: &[u8] = include_bytes!("../fixtures/tpm/ecc_quote_msg.bin");
    pub const ECC_QUOTE_SIG: &[u8] = include_bytes!("../fixtures/tpm/ecc_quote_sig.bin");
    pub const ECC_QUOTE_PCRS: &[u8] = include_bytes!("../fixtures/tpm/ecc_quote_pcrs.bin");
    pub const RSA_CERTIFY_MSG: &[u8] = include_bytes!("../fixtures/tpm/rsa_certify_msg.bin");
    pub const RSA_CERTIFY_SIG: &[u8] = include_bytes!("../fixtures/tpm/rsa_certify_sig.bin");
    pub const PLAIN_MSG: &[u8] = include_bytes!("../fixtures/tpm/plain_msg.bin");
    pub const PLAIN_SIG: &[u8] = include_bytes!("../fixtures/tpm/plain_sig.bin");
    pub const RSA_EK_CERT: &[u8] = include_bytes!("../fixtures/tpm/rsa_ek_cert.bin");
    pub const ECC_EK_CERT: &[u8] = include_bytes!("../fixtures/tpm/ecc_ek_cert.bin");
    pub const LOCALCA_ROOT_PEM: &str = include_str!("../fixtures/tpm/localca_root_pem.pem");
    pub const LOCALCA_ISSUER_PEM: &str = include_str!("../fixtures/tpm/localca_issuer_pem.pem");
    /// The nonces the recorded quotes answer (RSA AK, ECC AK).
    pub const RSA_NONCE: &[u8] = &[0x00, 0x11, 0x22, 0x33, 0x44];
    pub const ECC_NONCE: &[u8] = &[0xaa, 0xbb, 0xcc];
    /// Every message the recorded AKs signed: no other message may verify under them.
    pub const SIGNED_MESSAGES: &[&[u8]] = &[RSA_QUOTE_MSG, ECC_QUOTE_MSG, RSA_CERTIFY_MSG, PLAIN_MSG];
}

/// A fixture that does not load is a broken checkout, not a finding: say so loudly.
fn fixture<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("fixture {what} does not load: {e:?}"),
    }
}

/// The WebAuthn trust store: the soft authenticator's root.
pub fn webauthn_trust() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut store = TrustStore::new();
        fixture("softkey-root.pem", store.add_pem(SOFTKEY_ROOT_PEM));
        store
    })
}

/// The TPM EK trust store: the swtpm local CA root.
pub fn ek_trust() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut store = TrustStore::new();
        fixture("localca root", store.add_pem(tpm::LOCALCA_ROOT_PEM));
        store
    })
}

/// The DER of the swtpm local CA's issuing certificate (the EK certificates' intermediate).
pub fn ek_intermediate() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| {
        let (_, pem) = fixture("localca issuer", x509_parser::pem::parse_x509_pem(tpm::LOCALCA_ISSUER_PEM.as_bytes()));
        pem.contents
    })
}

/// The recorded attestation keys with the nonce each one's quote answers.
pub fn tpm_aks() -> &'static [(TpmPublic, &'static [u8])] {
    static AKS: OnceLock<Vec<(TpmPublic, &'static [u8])>> = OnceLock::new();
    AKS.get_or_init(|| {
        vec![
            (fixture("RSA AK", TpmPublic::parse(tpm::RSA_AK_PUB)), tpm::RSA_NONCE),
            (fixture("ECC AK", TpmPublic::parse(tpm::ECC_AK_PUB)), tpm::ECC_NONCE),
        ]
    })
}

/// Whether the hex SHA-256 of `data` is a line of `list`.
pub fn listed(list: &str, data: &[u8]) -> bool {
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, data));
    list.lines().any(|line| line.trim() == digest)
}
