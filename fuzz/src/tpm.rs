//! TPM 2.0 targets: public areas, TPMS_ATTEST, TPMT_SIGNATURE, quote verification, PCR
//! files and selections, EK certificates and MakeCredential inputs.

use tether_attestation::tpm::ak::check_ak_attributes;
use tether_attestation::tpm::credential::{Credential, make_credential, secret_matches};
use tether_attestation::tpm::ek::{check_ek_pin, ek_matches_certificate, read_certificates, verify_ek_certificate};
use tether_attestation::tpm::pcr::PcrValues;
use tether_attestation::tpm::quote::{compare_clocks, verify_quote, verify_quote_with_key};
use tether_attestation::tpm::rand_core::{TryCryptoRng, TryRng};
use tether_attestation::tpm::{
    Attest, AttestInfo, HashAlg, PcrSelection, PublicKey, TpmPublic, TpmSignature, attest, ek_pin,
};

use crate::fixtures::{self, tpm as fx};
use crate::frame::split;

/// A TPM2B_PUBLIC or TPMT_PUBLIC: re-encodings read back equal, the name has the name
/// algorithm's size, the key survives DER, and MakeCredential only accepts EK-shaped keys.
pub fn tpm_public(data: &[u8]) {
    let Ok(public) = TpmPublic::parse(data) else { return };
    let sized = public.tpm2b_bytes().ok();
    if let Some(sized) = &sized {
        assert_eq!(TpmPublic::from_tpm2b(sized).as_ref(), Ok(&public), "TPM2B_PUBLIC re-encoding");
    }
    assert_eq!(TpmPublic::from_tpmt(public.tpmt_bytes()).as_ref(), Ok(&public), "TPMT_PUBLIC re-encoding");
    assert!(data == public.tpmt_bytes() || sized.as_deref() == Some(data), "raw bytes kept");
    assert_eq!(public.name().len(), 2 + public.name_alg.digest_len());
    check_key_roundtrip(&public.key);
    let _ = check_ak_attributes(&public);
    let secret = [7u8; 16];
    if let Ok(credential) = make_credential(&public, fx::RSA_AK_NAME, &secret, &mut FuzzRng::new(data)) {
        use tether_attestation::tpm::public::attr;
        assert!(public.has(attr::RESTRICTED | attr::DECRYPT) && !public.has(attr::SIGN), "only EKs");
        if let Ok(file) = credential.to_tpm2_tools() {
            assert_eq!(Credential::from_tpm2_tools(&file), Ok(credential), "credential file roundtrip");
        }
    }
}

/// The key as SubjectPublicKeyInfo DER (and PEM) reads back as the same key, with the same pin.
fn check_key_roundtrip(key: &PublicKey) {
    let der = key.to_spki_der();
    assert_eq!(PublicKey::from_spki_der(&der).as_ref(), Ok(key), "SPKI roundtrip");
    assert!(check_ek_pin(key, &ek_pin(key)).is_ok());
    assert_eq!(PublicKey::from_pem(&key.to_pem()).as_ref(), Ok(key), "PEM roundtrip");
}

/// A TPMS_ATTEST: only TPM-generated structures parse, and a quote's selection stays within
/// the TPM's limits.
pub fn tpm_attest(data: &[u8]) {
    let Ok(parsed) = Attest::parse(data) else { return };
    assert_eq!(data.get(..4), Some(&attest::TPM_GENERATED_VALUE.to_be_bytes()[..]), "magic checked");
    let _ = parsed.type_name();
    if let AttestInfo::Quote { selection, .. } = &parsed.info {
        check_selection(selection);
        let _ = compare_clocks(&parsed.clock_info, parsed.firmware_version, &parsed.clock_info, 0);
    }
}

fn check_selection(selection: &[PcrSelection]) {
    assert!(selection.len() <= attest::MAX_PCR_BANKS);
    for bank in selection {
        assert!(bank.select.len() <= attest::MAX_PCR_SELECT);
        assert!(bank.pcrs().iter().all(|&i| i < 32));
    }
}

/// A TPMT_SIGNATURE: whatever parses verifies only over messages the fixture AKs signed.
pub fn tpm_signature(data: &[u8]) {
    let Ok(sig) = TpmSignature::parse(data) else { return };
    let _ = (sig.hash(), sig.scheme(), sig.scheme_name());
    for (ak, _) in fixtures::tpm_aks() {
        for message in [fx::PLAIN_MSG, fx::RSA_QUOTE_MSG, b"not signed".as_slice()] {
            if sig.verify(&ak.key, message).is_ok() {
                assert!(fx::SIGNED_MESSAGES.contains(&message), "forged TPM signature");
            }
        }
    }
}

/// Quote verification: input = selector byte ‖ frame(message, signature, PCR file). A quote
/// verifies only if its message is one the AK signed, with the AK's nonce, and its PCRs hash
/// to the digest; the key-only check accepts everything the full check does.
pub fn tpm_quote(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let aks = fixtures::tpm_aks();
    let Some((ak, nonce)) = aks.get(usize::from(selector) % aks.len()) else { return };
    let parts = split(rest, 3);
    let (message, signature, pcr_file) = (parts[0], parts[1], parts[2]);
    let pcrs = if pcr_file.is_empty() { None } else { PcrValues::from_tpm2_tools(pcr_file).ok() };
    let full = verify_quote(ak, message, signature, nonce, pcrs.as_ref());
    let key_only = verify_quote_with_key(&ak.key, message, signature, nonce, pcrs.as_ref());
    if let Ok(quote) = &full {
        assert!(fx::SIGNED_MESSAGES.contains(&message), "forged quote");
        assert_eq!(key_only.as_ref(), Ok(quote), "the key-only check is weaker");
        assert_eq!(quote.pcrs_verified, pcrs.is_some());
        check_selection(&quote.selection);
        if let Some(values) = &pcrs {
            assert!(values.covers(&quote.selection));
        }
        let _ = compare_clocks(&quote.clock_info, quote.firmware_version, &quote.clock_info, u64::MAX);
    }
    if key_only.is_ok() {
        assert!(fx::SIGNED_MESSAGES.contains(&message), "forged quote (key only)");
    }
}

/// PCR files: `tpm2_quote -o` files read back equal after writing, and concatenated values
/// (`tpm2_pcrread -o`) for the same selection give the same values.
pub fn tpm_pcr(data: &[u8]) {
    if let Ok(values) = PcrValues::from_tpm2_tools(data) {
        for v in &values.values {
            assert_eq!(v.value.len(), v.bank.digest_len());
            assert!(v.index < 32);
        }
        let _ = values.digest(HashAlg::Sha256);
        if let Ok(file) = values.to_tpm2_tools() {
            assert_eq!(PcrValues::from_tpm2_tools(&file).as_ref(), Ok(&values), "PCR file roundtrip");
        }
    }
    // The same bytes as a selection (TPM wire format inside a quote) and concatenated values.
    let parts = split(data, 2);
    let selection = wire_selection(parts[0]);
    if let Ok(values) = PcrValues::from_concatenated(parts[1], &selection) {
        assert!(values.covers(&selection));
        let concatenated: Vec<u8> = values.values.iter().flat_map(|v| v.value.clone()).collect();
        assert_eq!(concatenated, parts[1]);
    }
}

/// A TPML_PCR_SELECTION-like list from bytes: (hash u16, size u8, bitmap) entries.
fn wire_selection(data: &[u8]) -> Vec<PcrSelection> {
    let mut out = Vec::new();
    let mut rest = data;
    while let [h0, h1, size, tail @ ..] = rest {
        let size = usize::from(*size % 5).min(tail.len());
        let (select, tail) = tail.split_at(size);
        out.push(PcrSelection { hash: u16::from_be_bytes([*h0, *h1]), select: select.to_vec() });
        rest = tail;
        if out.len() == attest::MAX_PCR_BANKS {
            break;
        }
    }
    out
}

/// EK certificate files (DER with NV padding, or PEM): only the recorded EK certificates
/// verify against the swtpm CA, and a verified EK matches only its own public area.
pub fn tpm_ek(data: &[u8]) {
    let Ok(certs) = read_certificates(data) else { return };
    assert!(!certs.is_empty() && certs.len() <= 8);
    let Some((leaf, rest)) = certs.split_first() else { return };
    let intermediates: Vec<&[u8]> = rest.iter().map(Vec::as_slice).chain([fixtures::ek_intermediate()]).collect();
    let Ok(verified) = verify_ek_certificate(leaf, &intermediates, fixtures::ek_trust(), fixtures::AT) else { return };
    assert!(fixtures::listed(fixtures::KNOWN_TBS, &crate::x509::tbs(leaf)), "forged EK certificate");
    check_key_roundtrip(&verified.public_key);
    for ek in [fx::RSA_EK_PUB, fx::ECC_EK_PUB] {
        if let Ok(public) = TpmPublic::parse(ek) {
            assert_eq!(ek_matches_certificate(&public, &verified).is_ok(), public.key == verified.public_key);
        }
    }
}

/// MakeCredential and the credential file: input = frame(EK public, AK name, secret, file).
/// Refused inputs are errors, a made credential's file reads back equal, and the secret
/// comparison is exact.
pub fn tpm_credential(data: &[u8]) {
    let parts = split(data, 4);
    let (ek, ak_name, secret, file) = (parts[0], parts[1], parts[2], parts[3]);
    if let Ok(credential) = Credential::from_tpm2_tools(file)
        && let Ok(written) = credential.to_tpm2_tools()
    {
        assert_eq!(written, file, "credential file roundtrip");
    }
    assert!(secret_matches(secret, secret));
    assert!(!secret_matches(secret, ak_name) || secret == ak_name);
    let Ok(ek) = TpmPublic::parse(ek) else { return };
    if let Ok(credential) = make_credential(&ek, ak_name, secret, &mut FuzzRng::new(data)) {
        assert!(!secret.is_empty() && secret.len() <= ek.name_alg.digest_len());
        assert!(ak_name.len() > 2);
        if let Ok(file) = credential.to_tpm2_tools() {
            assert_eq!(Credential::from_tpm2_tools(&file), Ok(credential));
        }
    }
}

/// A deterministic generator (xorshift64* seeded from the input), so that a crashing input
/// reproduces; these targets test parsing, not the quality of randomness.
pub struct FuzzRng(u64);

impl FuzzRng {
    pub fn new(data: &[u8]) -> Self {
        let seed =
            data.iter().fold(0x9e37_79b9_7f4a_7c15u64, |acc, &b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Self(seed | 1)
    }
}

impl TryRng for FuzzRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        Ok(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for FuzzRng {}
