//! Building the attestation object: COSE key, packed statements, CBOR encoding.

use ciborium::Value;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SigningKey};

use crate::SoftKeyError;

/// COSE algorithm ES256.
pub const ES256: i64 = -7;
/// id-fido-gen-ce-aaguid.
const OID_FIDO_AAGUID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];

pub fn encode(value: &Value) -> Result<Vec<u8>, SoftKeyError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out)
        .map_err(|e| SoftKeyError::Crypto(format!("CBOR encoding failed: {e}")))?;
    Ok(out)
}

/// The COSE_Key of an ES256 public key given as an uncompressed SEC1 point.
pub fn cose_es256(point: &[u8]) -> Result<Vec<u8>, SoftKeyError> {
    let (x, y) = match point {
        [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
        _ => return Err(SoftKeyError::Crypto("unexpected P-256 public key encoding".to_owned())),
    };
    encode(&Value::Map(vec![
        (Value::from(1), Value::from(2)),     // kty: EC2
        (Value::from(3), Value::from(ES256)), // alg
        (Value::from(-1), Value::from(1)),    // crv: P-256
        (Value::from(-2), Value::Bytes(x.to_vec())),
        (Value::from(-3), Value::Bytes(y.to_vec())),
    ]))
}

pub fn attestation_object(fmt: &str, att_stmt: Value, auth_data: &[u8]) -> Result<Vec<u8>, SoftKeyError> {
    encode(&Value::Map(vec![
        (Value::from("fmt"), Value::from(fmt)),
        (Value::from("attStmt"), att_stmt),
        (Value::from("authData"), Value::Bytes(auth_data.to_vec())),
    ]))
}

/// The key identifier FIDO metadata names an attestation key by: lowercase hex SHA-1 of its
/// public key (the uncompressed point), as `attestationCertificateKeyIdentifiers` lists it.
pub fn attestation_key_id(key_pem: &str) -> Result<String, SoftKeyError> {
    let key = KeyPair::from_pem(key_pem)?;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key.public_key_raw());
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// A packed statement by `attestation_key`, whose certificate the CA signs. The leaf lives
/// exactly as long as the CA, so an expired CA also means an expired leaf.
pub fn packed_with_ca(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    attestation_key: &KeyPair,
    aaguid: &uuid::Uuid,
    signed_data: &[u8],
) -> Result<Value, SoftKeyError> {
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
        .map_err(|e| SoftKeyError::Certificate(format!("the CA certificate PEM is invalid ({e})")))?;
    let ca_cert =
        ca_pem.parse_x509().map_err(|e| SoftKeyError::Certificate(format!("the CA certificate is invalid ({e})")))?;
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, "Tether Softkey");
    name.push(DnType::OrganizationalUnitName, "Authenticator Attestation");
    name.push(DnType::CommonName, "Tether Softkey Attestation");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = ca_cert.validity().not_before.to_datetime();
    params.not_after = ca_cert.validity().not_after.to_datetime();
    // extnValue is a DER OCTET STRING holding the 16 AAGUID bytes.
    let mut aaguid_der = vec![0x04, 0x10];
    aaguid_der.extend_from_slice(aaguid.as_bytes());
    params.custom_extensions = vec![CustomExtension::from_oid_content(OID_FIDO_AAGUID, aaguid_der)];

    let leaf = params.signed_by(attestation_key, &issuer)?;
    let sig = attestation_key.sign(signed_data)?;
    Ok(Value::Map(vec![
        (Value::from("alg"), Value::from(ES256)),
        (Value::from("sig"), Value::Bytes(sig)),
        (
            Value::from("x5c"),
            Value::Array(vec![Value::Bytes(leaf.der().to_vec()), Value::Bytes(ca_pem.contents.clone())]),
        ),
    ]))
}
