//! The TPM verification library against structures recorded from a real software TPM
//! (swtpm + tpm2-tools, see tpm_fixtures.rs), including the rejections the anchors learned
//! the hard way.

#[path = "tpm_fixtures.rs"]
mod fixtures;

use fixtures::*;
use tether_attestation::tpm::ak::{AkError, check_ak_attributes};
use tether_attestation::tpm::credential::{Credential, CredentialError, make_credential, secret_matches};
use tether_attestation::tpm::ek::{
    EkError, check_ek_pin, ek_matches_certificate, read_certificates, verify_ek_certificate,
};
use tether_attestation::tpm::pcr::PcrValues;
use tether_attestation::tpm::quote::{ClockAnomaly, QuoteError, compare_clocks, verify_quote, verify_quote_with_key};
use tether_attestation::tpm::signature::SignatureError;
use tether_attestation::tpm::{
    Attest, AttestInfo, ClockInfo, HashAlg, PublicKey, SystemRng, TpmPublic, TpmSignature, WireError, ek_pin,
};
use tether_attestation::trust::TrustStore;
use time::macros::datetime;

fn public(hex: &str) -> TpmPublic {
    TpmPublic::parse(&bytes(hex)).expect("fixture public area")
}

fn rsa_pcrs() -> PcrValues {
    PcrValues::from_tpm2_tools(&bytes(RSA_QUOTE_PCRS)).expect("fixture PCR file")
}

const NONCE: &[u8] = &[0x00, 0x11, 0x22, 0x33, 0x44];

#[test]
fn ak_public_areas_parse_name_and_pass_the_ak_checks() {
    let rsa = public(RSA_AK_PUB);
    assert_eq!(rsa.name(), bytes(RSA_AK_NAME), "name = nameAlg || H(TPMT_PUBLIC), as tpm2_createak -n wrote it");
    assert_eq!(rsa.tpm2b_bytes().expect("encode"), bytes(RSA_AK_PUB));
    assert_eq!(rsa.key.describe(), "RSA-2048");
    check_ak_attributes(&rsa).expect("tpm2_createak makes a valid AK");
    let ecc = public(ECC_AK_PUB);
    assert_eq!(ecc.key.describe(), "P-256");
    check_ak_attributes(&ecc).expect("ECC AK");
    // The TPMT_PUBLIC alone parses to the same object.
    assert_eq!(TpmPublic::parse(rsa.tpmt_bytes()).expect("tpmt"), rsa);
}

#[test]
fn ak_without_restricted_or_fixed_tpm_is_refused() {
    // TPM2B_PUBLIC: size(2) type(2) nameAlg(2) then objectAttributes (u32) at offset 6.
    for (bit, name) in [(1u32 << 16, "restricted"), (1 << 1, "fixedTPM"), (1 << 18, "sign"), (1 << 4, "fixedParent")] {
        let mut raw = bytes(RSA_AK_PUB);
        let attrs = u32::from_be_bytes([raw[6], raw[7], raw[8], raw[9]]) & !bit;
        raw[6..10].copy_from_slice(&attrs.to_be_bytes());
        let ak = TpmPublic::parse(&raw).expect("still parses");
        assert_eq!(check_ak_attributes(&ak), Err(AkError::MissingAttribute(name)));
    }
    // An EK (a decryption key) is no AK either.
    assert!(check_ak_attributes(&public(RSA_EK_PUB)).is_err());
}

#[test]
fn rsa_quote_verifies_with_nonce_and_pcrs() {
    let ak = public(RSA_AK_PUB);
    let pcrs = rsa_pcrs();
    let quote = verify_quote(&ak, &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, Some(&pcrs)).expect("valid");
    assert!(quote.pcrs_verified);
    assert_eq!(quote.clock_info.reset_count, 2);
    assert_eq!(quote.firmware_version, 0x2019_1023_0016_3636);
    assert_eq!(pcrs.values.len(), 4);
    let pcr16 = pcrs.get(HashAlg::Sha256, 16).expect("PCR 16");
    assert_eq!(hex::encode(pcr16), "0b8f4c5b6adc4c087ab9f43aaeb6007084c264adcaa3cb07176b792342850412");
    // Without PCR values the signature and nonce are still checked.
    let quote = verify_quote(&ak, &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, None).expect("valid");
    assert!(!quote.pcrs_verified);
    // The same key as a PEM public key.
    let pem = ak.key.to_pem();
    let key = PublicKey::from_pem(&pem).expect("PEM round trip");
    verify_quote_with_key(&key, &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, Some(&pcrs)).expect("valid");
}

#[test]
fn ecdsa_quote_verifies_and_plain_pcr_values_work() {
    let ak = public(ECC_AK_PUB);
    let pcrs = PcrValues::from_tpm2_tools(&bytes(ECC_QUOTE_PCRS)).expect("PCR file");
    verify_quote(&ak, &bytes(ECC_QUOTE_MSG), &bytes(ECC_QUOTE_SIG), &[0xaa, 0xbb, 0xcc], Some(&pcrs)).expect("valid");
    // tpm2_pcrread -o: the same values concatenated, split by the quote's selection.
    let attest = Attest::parse(&bytes(ECC_QUOTE_MSG)).expect("attest");
    let AttestInfo::Quote { selection, .. } = &attest.info else { panic!("a quote") };
    let concatenated: Vec<u8> = pcrs.values.iter().flat_map(|v| v.value.clone()).collect();
    let plain = PcrValues::from_concatenated(&concatenated, selection).expect("plain values");
    assert_eq!(plain, pcrs);
    assert!(PcrValues::from_concatenated(&concatenated[1..], selection).is_err());
}

#[test]
fn pcr_files_re_encode_byte_for_byte_as_tpm2_tools_wrote_them() {
    for hex in [RSA_QUOTE_PCRS, ECC_QUOTE_PCRS] {
        let file = bytes(hex);
        let pcrs = PcrValues::from_tpm2_tools(&file).expect("PCR file");
        assert_eq!(pcrs.to_tpm2_tools().expect("encode"), file);
    }
}

#[test]
fn wrong_nonce_is_refused() {
    let err = verify_quote(&public(RSA_AK_PUB), &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), b"other", None);
    assert!(matches!(err, Err(QuoteError::NonceMismatch { .. })), "{err:?}");
}

#[test]
fn tampered_pcr_value_is_refused() {
    let mut file = bytes(RSA_QUOTE_PCRS);
    // The first digest's buffer starts after the selection (132), list count (4), digest count (4) and size (2).
    file[142] ^= 1;
    let pcrs = PcrValues::from_tpm2_tools(&file).expect("still well-formed");
    let err = verify_quote(&public(RSA_AK_PUB), &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, Some(&pcrs));
    assert_eq!(err, Err(QuoteError::PcrDigestMismatch));
    // Values for other PCRs than the quote selects are refused as such.
    let other = PcrValues::from_tpm2_tools(&bytes(ECC_QUOTE_PCRS)).expect("PCR file");
    let err = verify_quote(&public(RSA_AK_PUB), &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, Some(&other));
    assert_eq!(err, Err(QuoteError::PcrSelectionMismatch));
}

#[test]
fn quote_from_another_key_than_the_registered_ak_is_refused() {
    // CVE-2022-1053: the AK used later must be the AK checked at registration.
    let other_rsa = public(RSA_EK_PUB);
    let err = verify_quote_with_key(&other_rsa.key, &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, None);
    assert_eq!(err, Err(QuoteError::BadSignature(SignatureError::Invalid)));
    let err = verify_quote(&public(ECC_AK_PUB), &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, None);
    assert!(matches!(err, Err(QuoteError::SchemeMismatch { .. })), "{err:?}");
    let err = verify_quote_with_key(&public(ECC_AK_PUB).key, &bytes(RSA_QUOTE_MSG), &bytes(RSA_QUOTE_SIG), NONCE, None);
    assert!(matches!(err, Err(QuoteError::BadSignature(SignatureError::KeyMismatch { .. }))), "{err:?}");
}

#[test]
fn bad_signature_is_an_error_never_accepted() {
    // Keylime PR #1423: a failed signature check must reject, not log.
    let mut sig = bytes(RSA_QUOTE_SIG);
    let last = sig.len() - 1;
    sig[last] ^= 0x40;
    let err = verify_quote(&public(RSA_AK_PUB), &bytes(RSA_QUOTE_MSG), &sig, NONCE, None);
    assert_eq!(err, Err(QuoteError::BadSignature(SignatureError::Invalid)));
    let mut msg = bytes(RSA_QUOTE_MSG);
    msg[20] ^= 1;
    assert!(verify_quote(&public(RSA_AK_PUB), &msg, &bytes(RSA_QUOTE_SIG), NONCE, None).is_err());
}

#[test]
fn tpm2_sign_output_cannot_pass_as_a_quote() {
    // go-attestation's lesson: the AK really signed these bytes (TPM2_Sign), but they lack
    // TPM_GENERATED_VALUE, so they are not a TPM statement.
    let ak = public(RSA_AK_PUB);
    let sig = TpmSignature::parse(&bytes(PLAIN_SIG)).expect("signature");
    sig.verify(&ak.key, &bytes(PLAIN_MSG)).expect("a genuine TPM2_Sign signature");
    let err = verify_quote(&ak, &bytes(PLAIN_MSG), &bytes(PLAIN_SIG), NONCE, None);
    assert_eq!(err, Err(QuoteError::Message(WireError::NotTpmGenerated("TPMS_ATTEST"))));
}

#[test]
fn attestation_of_the_wrong_type_is_not_a_quote() {
    let ak = public(RSA_AK_PUB);
    let attest = Attest::parse(&bytes(RSA_CERTIFY_MSG)).expect("certify");
    let AttestInfo::Certify { name, .. } = &attest.info else { panic!("certify") };
    assert_eq!(*name, ak.name(), "the AK certified itself");
    let err = verify_quote(&ak, &bytes(RSA_CERTIFY_MSG), &bytes(RSA_CERTIFY_SIG), &attest.extra_data, None);
    assert_eq!(err, Err(QuoteError::NotAQuote("certify".to_owned())));
}

#[test]
fn clock_comparison_reports_each_anomaly() {
    let base = ClockInfo { clock: 10_000, reset_count: 5, restart_count: 2, safe: true };
    let fw = 0x2019_1023_0016_3636;
    let later = ClockInfo { clock: 20_000, ..base };
    assert!(compare_clocks(&base, fw, &later, fw).is_empty());
    let rebooted = ClockInfo { clock: 5_000, reset_count: 6, restart_count: 0, safe: true };
    assert!(compare_clocks(&base, fw, &rebooted, fw).is_empty(), "a reset may restart the counters");
    let reset_back = ClockInfo { reset_count: 4, ..later };
    assert_eq!(
        compare_clocks(&base, fw, &reset_back, fw),
        [ClockAnomaly::ResetCountBackwards { previous: 5, current: 4 }]
    );
    let restart_back = ClockInfo { restart_count: 1, ..later };
    assert_eq!(
        compare_clocks(&base, fw, &restart_back, fw),
        [ClockAnomaly::RestartCountBackwards { previous: 2, current: 1 }]
    );
    let clock_back = ClockInfo { clock: 9_000, ..base };
    assert_eq!(
        compare_clocks(&base, fw, &clock_back, fw),
        [ClockAnomaly::ClockBackwards { previous: 10_000, current: 9_000 }]
    );
    let anomalies = compare_clocks(&base, fw, &later, fw + 1);
    assert!(matches!(anomalies.as_slice(), [ClockAnomaly::FirmwareChanged { .. }]));
    assert!(!anomalies[0].to_string().is_empty());
}

fn localca() -> TrustStore {
    let mut trust = TrustStore::new();
    trust.add_pem(LOCALCA_ROOT_PEM).expect("root");
    trust
}

fn issuer_der() -> Vec<Vec<u8>> {
    read_certificates(LOCALCA_ISSUER_PEM.as_bytes()).expect("issuer PEM")
}

#[test]
fn swtpm_ek_certificates_verify_and_match_their_ek() {
    let at = datetime!(2027-01-01 00:00 UTC);
    for (cert, ek_pub, model_key) in [(RSA_EK_CERT, RSA_EK_PUB, "RSA-2048"), (ECC_EK_CERT, ECC_EK_PUB, "P-384")] {
        let certs = read_certificates(&bytes(cert)).expect("NV-read DER, padding removed");
        let ek = verify_ek_certificate(&certs[0], &issuer_der(), &localca(), at).expect("chains to the local CA");
        assert_eq!(ek.manufacturer.as_deref(), Some("id:00001014"));
        assert_eq!(ek.model.as_deref(), Some("swtpm"));
        assert_eq!(ek.firmware_version.as_deref(), Some("id:20191023"));
        assert_eq!(ek.chain, ["CN=unknown", "CN=swtpm-localca", "CN=swtpm-localca-rootca"]);
        assert_eq!(ek.public_key.describe(), model_key);
        let public = public(ek_pub);
        ek_matches_certificate(&public, &ek).expect("the EK public area is the certified key");
        assert_eq!(ek_pin(&public.key), ek_pin(&ek.public_key), "the pin is the same from either side");
        check_ek_pin(&public.key, &ek_pin(&ek.public_key)).expect("pinned");
    }
}

#[test]
fn ek_certificate_rejections() {
    let at = datetime!(2027-01-01 00:00 UTC);
    let rsa = read_certificates(&bytes(RSA_EK_CERT)).expect("DER");
    // Not matching the EK public area.
    let ek = verify_ek_certificate(&rsa[0], &issuer_der(), &localca(), at).expect("valid");
    assert!(matches!(ek_matches_certificate(&public(ECC_EK_PUB), &ek), Err(EkError::KeyMismatch { .. })));
    assert!(matches!(check_ek_pin(&public(ECC_EK_PUB).key, &ek_pin(&ek.public_key)), Err(EkError::PinMismatch { .. })));
    // From an untrusted CA.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mut other = TrustStore::new();
    other.add_pem(&params.self_signed(&key).expect("root").pem()).expect("anchor");
    assert!(matches!(verify_ek_certificate(&rsa[0], &issuer_der(), &other, at), Err(EkError::Chain(_))));
    // Without the intermediate, and before the certificates existed.
    assert!(verify_ek_certificate::<Vec<u8>>(&rsa[0], &[], &localca(), at).is_err());
    assert!(verify_ek_certificate(&rsa[0], &issuer_der(), &localca(), datetime!(2020-01-01 00:00 UTC)).is_err());
    // A CA certificate is not an EK certificate.
    let issuer = issuer_der();
    assert!(matches!(verify_ek_certificate::<Vec<u8>>(&issuer[0], &[], &localca(), at), Err(EkError::Requirement(_))));
}

#[test]
fn make_credential_produces_the_tpm2_tools_format() {
    let ak_name = bytes(RSA_AK_NAME);
    for (ek, secret_len) in [(public(RSA_EK_PUB), 32), (public(ECC_EK_PUB), 48)] {
        let secret = vec![7u8; secret_len];
        let credential = make_credential(&ek, &ak_name, &secret, &mut SystemRng::new()).expect("credential");
        let file = credential.to_tpm2_tools().expect("encode");
        assert_eq!(&file[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
        assert_eq!(Credential::from_tpm2_tools(&file).expect("decode"), credential);
        // integrity HMAC (TPM2B of the name digest size) then the encrypted TPM2B secret.
        let digest = ek.name_alg.digest_len();
        assert_eq!(credential.id_object.len(), 2 + digest + 2 + secret_len);
        let again = make_credential(&ek, &ak_name, &secret, &mut SystemRng::new()).expect("credential");
        assert_ne!(again, credential, "a fresh seed every time");
        let too_long = vec![1u8; digest + 1];
        assert!(matches!(
            make_credential(&ek, &ak_name, &too_long, &mut SystemRng::new()),
            Err(CredentialError::SecretSize { .. })
        ));
    }
    let ek = public(RSA_EK_PUB);
    assert_eq!(make_credential(&ek, &ak_name[..10], b"s", &mut SystemRng::new()), Err(CredentialError::BadName));
    assert_eq!(
        make_credential(&public(RSA_AK_PUB), &ak_name, b"s", &mut SystemRng::new()),
        Err(CredentialError::NotAnEk)
    );
    assert!(secret_matches(b"abc", b"abc"));
    assert!(!secret_matches(b"abc", b"abd"));
    assert!(!secret_matches(b"abc", b"ab"));
}

#[test]
fn public_keys_round_trip_through_spki() {
    for hex in [RSA_AK_PUB, ECC_AK_PUB, RSA_EK_PUB, ECC_EK_PUB] {
        let key = public(hex).key;
        assert_eq!(PublicKey::from_spki_der(&key.to_spki_der()).expect("SPKI"), key);
    }
    assert!(PublicKey::from_pem("no key here").is_err());
    assert!(PublicKey::from_spki_der(&[0x30, 0x00]).is_err());
}

#[test]
fn the_signature_alone_tells_the_aks_messages_from_anyone_elses() {
    use tether_attestation::tpm::quote::verify_signature;
    let (ak, msg, sig) = (public(RSA_AK_PUB), bytes(RSA_QUOTE_MSG), bytes(RSA_QUOTE_SIG));
    verify_signature(&ak, &msg, &sig).expect("the AK's own signature");
    // Whatever nonce the quote carries: that is verify_quote's business.
    assert!(matches!(verify_quote(&ak, &msg, &sig, b"other", None), Err(QuoteError::NonceMismatch { .. })));
    let mut altered = msg.clone();
    altered[20] ^= 1;
    assert_eq!(verify_signature(&ak, &altered, &sig), Err(QuoteError::BadSignature(SignatureError::Invalid)));
    assert!(matches!(verify_signature(&public(ECC_AK_PUB), &msg, &sig), Err(QuoteError::SchemeMismatch { .. })));
    assert!(matches!(verify_signature(&ak, &msg, b"garbage"), Err(QuoteError::SignatureFormat(_))));
}
