//! A test FIDO metadata service: its own root and BLOB signer, signing any payload as an MDS3
//! BLOB (an ES256 JWS with the signer in `x5c`), as the FIDO Alliance signs the real one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};

pub struct TestMds {
    pub root_pem: String,
    signer_der: Vec<u8>,
    signer_key: KeyPair,
}

impl TestMds {
    pub fn generate() -> TestMds {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name.push(DnType::CommonName, "Test MDS Root");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = root_params.self_signed(&root_key).expect("root");
        let signer_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut signer_params = CertificateParams::default();
        signer_params.distinguished_name.push(DnType::CommonName, "Test MDS Signer");
        let signer =
            signer_params.signed_by(&signer_key, &Issuer::from_params(&root_params, &root_key)).expect("signer");
        TestMds { root_pem: root.pem(), signer_der: signer.der().to_vec(), signer_key }
    }

    /// `payload` (the BLOB's JSON: no, nextUpdate, entries) signed as a BLOB.
    pub fn sign(&self, payload: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![STANDARD.encode(&self.signer_der)]);
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.signer_key.serialize_der());
        jsonwebtoken::encode(&header, payload, &key).expect("sign")
    }
}

/// The DER of the first certificate in `pem`, base64 as `attestationRootCertificates` lists it.
pub fn root_base64(pem: &str) -> String {
    let mut store = tether_attestation::trust::TrustStore::new();
    store.add_pem(pem).expect("certificate");
    let der = store.anchors_with_der().next().map(|(_, der)| der.to_vec()).expect("certificate");
    STANDARD.encode(der)
}
