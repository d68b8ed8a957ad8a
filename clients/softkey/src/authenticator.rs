//! The soft authenticator: one ES256 credential, W3C JSON in and out.

use ciborium::Value;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use tether_attestation::json::{
    AssertionResponseJson, AttestationResponseJson, AuthenticationResponseJson, CreationOptionsJson,
    RegistrationResponseJson, RequestOptionsJson,
};
use tether_attestation::{b64url_decode, b64url_encode};

use crate::SoftKeyError;
use crate::attestation::{self, ES256};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;
const CREDENTIAL_ID_LEN: usize = 32;
const STATE_VERSION: u32 = 1;

/// How registrations are attested.
#[derive(Clone)]
pub enum AttestationMode {
    /// "packed" signed by the credential key itself.
    SelfAttestation,
    /// fmt "none".
    None,
    /// "packed" with a fresh attestation key and leaf certificate (C, O, CN,
    /// OU="Authenticator Attestation", CA:FALSE, AAGUID extension) signed by this CA;
    /// x5c = [leaf, CA].
    Packed { ca_cert_pem: String, ca_key_pem: String },
    /// "packed" whose attestation key is a fixed batch key (PEM PKCS#8 P-256), as real
    /// authenticators share one per production batch; its leaf is signed by this CA.
    PackedBatch { ca_cert_pem: String, ca_key_pem: String, batch_key_pem: String },
}

impl std::fmt::Debug for AttestationMode {
    // Never print the CA private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SelfAttestation => "SelfAttestation",
            Self::None => "None",
            Self::Packed { .. } => "Packed { .. }",
            Self::PackedBatch { .. } => "PackedBatch { .. }",
        })
    }
}

struct Credential {
    id: Vec<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    pkcs8: Vec<u8>,
    key: EcdsaKeyPair,
}

/// A software authenticator holding at most one credential.
pub struct SoftAuthenticator {
    mode: AttestationMode,
    aaguid: uuid::Uuid,
    credential: Option<Credential>,
    sign_count: u32,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftAuthenticator")
            .field("mode", &self.mode)
            .field("aaguid", &self.aaguid)
            .field("credential_id", &self.credential.as_ref().map(|c| b64url_encode(&c.id)))
            .field("sign_count", &self.sign_count)
            .finish()
    }
}

/// The persisted form. The private key is in it: treat the file as a secret.
#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    aaguid: String,
    /// "self", "none" or "packed"; a restored packed authenticator cannot register again
    /// because the CA key is deliberately not saved.
    attestation: String,
    sign_count: u32,
    credential: Option<SavedCredential>,
}

#[derive(Serialize, Deserialize)]
struct SavedCredential {
    id: String,
    rp_id: String,
    user_handle: String,
    private_key_pkcs8: String,
}

impl SoftAuthenticator {
    pub fn new(mode: AttestationMode, aaguid: uuid::Uuid) -> Result<Self, SoftKeyError> {
        if let AttestationMode::PackedBatch { batch_key_pem, .. } = &mode {
            rcgen::KeyPair::from_pem(batch_key_pem)?;
        }
        if let AttestationMode::Packed { ca_cert_pem, ca_key_pem }
        | AttestationMode::PackedBatch { ca_cert_pem, ca_key_pem, .. } = &mode
        {
            // Fail now rather than at the first registration.
            rcgen::KeyPair::from_pem(ca_key_pem)?;
            x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
                .map_err(|e| SoftKeyError::Certificate(format!("the CA certificate PEM is invalid ({e})")))?;
        }
        Ok(Self { mode, aaguid, credential: None, sign_count: 0, rng: SystemRandom::new() })
    }

    pub fn credential_id(&self) -> Option<Vec<u8>> {
        self.credential.as_ref().map(|c| c.id.clone())
    }

    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }

    /// Sets the counter, e.g. to simulate a cloned authenticator in tests.
    pub fn set_sign_count(&mut self, n: u32) {
        self.sign_count = n;
    }

    /// Acts as browser and authenticator for `navigator.credentials.create()`; returns a
    /// `RegistrationResponseJSON`. Sets UP, UV and AT; the counter starts at 0.
    pub fn make_credential(&mut self, creation_options_json: &str, origin: &str) -> Result<String, SoftKeyError> {
        let options = CreationOptionsJson::from_json(creation_options_json)?;
        if self.credential.is_some() {
            return Err(SoftKeyError::AlreadyRegistered);
        }
        if !options.pub_key_cred_params.iter().any(|p| p.alg == ES256 && p.type_ == "public-key") {
            return Err(SoftKeyError::UnsupportedAlgorithms);
        }
        let rp_id = options.rp.id.clone();
        check_origin(origin, &rp_id)?;
        let challenge = decode(&options.challenge)?;
        let user_handle = decode(&options.user.id)?;

        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &self.rng)
            .map_err(|e| SoftKeyError::Crypto(e.to_string()))?;
        let mut id = vec![0u8; CREDENTIAL_ID_LEN];
        self.rng.fill(&mut id)?;

        let cose_key = attestation::cose_es256(key.public_key().as_ref())?;
        let mut auth_data = rp_header(&rp_id, FLAG_UP | FLAG_UV | FLAG_AT, self.sign_count);
        auth_data.extend_from_slice(self.aaguid.as_bytes());
        auth_data.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&cose_key);

        let client_data_json = client_data("webauthn.create", &challenge, origin);
        let signed = [auth_data.as_slice(), &sha256(client_data_json.as_bytes())].concat();
        let (fmt, att_stmt) = match &self.mode {
            AttestationMode::None => ("none", Value::Map(Vec::new())),
            AttestationMode::SelfAttestation => {
                let sig = key.sign(&self.rng, &signed)?;
                let stmt = Value::Map(vec![
                    (Value::from("alg"), Value::from(ES256)),
                    (Value::from("sig"), Value::Bytes(sig.as_ref().to_vec())),
                ]);
                ("packed", stmt)
            }
            AttestationMode::Packed { ca_cert_pem, ca_key_pem } => {
                let attestation_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                (
                    "packed",
                    attestation::packed_with_ca(ca_cert_pem, ca_key_pem, &attestation_key, &self.aaguid, &signed)?,
                )
            }
            AttestationMode::PackedBatch { ca_cert_pem, ca_key_pem, batch_key_pem } => {
                let batch_key = rcgen::KeyPair::from_pem(batch_key_pem)?;
                ("packed", attestation::packed_with_ca(ca_cert_pem, ca_key_pem, &batch_key, &self.aaguid, &signed)?)
            }
        };
        let attestation_object = attestation::attestation_object(fmt, att_stmt, &auth_data)?;
        let response = RegistrationResponseJson {
            id: b64url_encode(&id),
            raw_id: b64url_encode(&id),
            type_: "public-key".to_owned(),
            response: AttestationResponseJson {
                client_data_json: b64url_encode(client_data_json.as_bytes()),
                attestation_object: b64url_encode(&attestation_object),
                transports: Some(vec!["internal".to_owned()]),
            },
            authenticator_attachment: Some("platform".to_owned()),
            client_extension_results: Some(serde_json::json!({})),
        };
        self.credential = Some(Credential { id, rp_id, user_handle, pkcs8: pkcs8.as_ref().to_vec(), key });
        Ok(response.to_json())
    }

    /// Acts as browser and authenticator for `navigator.credentials.get()`; returns an
    /// `AuthenticationResponseJSON`. Sets UP and UV and increments the counter.
    pub fn get_assertion(&mut self, request_options_json: &str, origin: &str) -> Result<String, SoftKeyError> {
        let options = RequestOptionsJson::from_json(request_options_json)?;
        let credential = self.credential.as_ref().ok_or(SoftKeyError::NoCredential)?;
        if options.rp_id != credential.rp_id {
            return Err(SoftKeyError::RpIdMismatch { requested: options.rp_id, registered: credential.rp_id.clone() });
        }
        check_origin(origin, &credential.rp_id)?;
        let allowed = options.allow_credentials.is_empty()
            || options.allow_credentials.iter().any(|d| b64url_decode(&d.id).is_ok_and(|id| id == credential.id));
        if !allowed {
            return Err(SoftKeyError::CredentialNotAllowed);
        }
        let challenge = decode(&options.challenge)?;
        let sign_count = self.sign_count.checked_add(1).ok_or(SoftKeyError::CounterExhausted)?;
        let auth_data = rp_header(&credential.rp_id, FLAG_UP | FLAG_UV, sign_count);
        let client_data_json = client_data("webauthn.get", &challenge, origin);
        let signed = [auth_data.as_slice(), &sha256(client_data_json.as_bytes())].concat();
        let signature = credential.key.sign(&self.rng, &signed)?;
        let response = AuthenticationResponseJson {
            id: b64url_encode(&credential.id),
            raw_id: b64url_encode(&credential.id),
            type_: "public-key".to_owned(),
            response: AssertionResponseJson {
                client_data_json: b64url_encode(client_data_json.as_bytes()),
                authenticator_data: b64url_encode(&auth_data),
                signature: b64url_encode(signature.as_ref()),
                user_handle: Some(b64url_encode(&credential.user_handle)),
            },
        };
        self.sign_count = sign_count;
        Ok(response.to_json())
    }

    /// Everything needed to resume later, including the private key.
    pub fn to_state_json(&self) -> String {
        let state = State {
            version: STATE_VERSION,
            aaguid: self.aaguid.to_string(),
            attestation: match self.mode {
                AttestationMode::SelfAttestation => "self",
                AttestationMode::None => "none",
                AttestationMode::Packed { .. } | AttestationMode::PackedBatch { .. } => "packed",
            }
            .to_owned(),
            sign_count: self.sign_count,
            credential: self.credential.as_ref().map(|c| SavedCredential {
                id: b64url_encode(&c.id),
                rp_id: c.rp_id.clone(),
                user_handle: b64url_encode(&c.user_handle),
                private_key_pkcs8: b64url_encode(&c.pkcs8),
            }),
        };
        serde_json::to_string(&state).unwrap_or_default()
    }

    /// Restores an authenticator saved by [`Self::to_state_json`]. A saved "packed"
    /// authenticator comes back in `None` mode: the CA key is never persisted.
    pub fn from_state_json(json: &str) -> Result<Self, SoftKeyError> {
        let state: State = serde_json::from_str(json).map_err(|e| SoftKeyError::State(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(SoftKeyError::State(format!("unknown state version {}", state.version)));
        }
        let mode = match state.attestation.as_str() {
            "self" => AttestationMode::SelfAttestation,
            "none" | "packed" => AttestationMode::None,
            other => return Err(SoftKeyError::State(format!("unknown attestation mode \"{other}\""))),
        };
        let aaguid =
            uuid::Uuid::parse_str(&state.aaguid).map_err(|_| SoftKeyError::State("aaguid is not a UUID".to_owned()))?;
        let rng = SystemRandom::new();
        let credential = match state.credential {
            None => None,
            Some(saved) => {
                let field = |name: &str, value: &str| {
                    b64url_decode(value).map_err(|_| SoftKeyError::State(format!("{name} is not base64url")))
                };
                let pkcs8 = field("private_key_pkcs8", &saved.private_key_pkcs8)?;
                let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
                    .map_err(|_| SoftKeyError::State("the private key is not a P-256 PKCS#8 key".to_owned()))?;
                Some(Credential {
                    id: field("id", &saved.id)?,
                    rp_id: saved.rp_id,
                    user_handle: field("user_handle", &saved.user_handle)?,
                    pkcs8,
                    key,
                })
            }
        };
        Ok(Self { mode, aaguid, credential, sign_count: state.sign_count, rng })
    }
}

fn decode(value: &str) -> Result<Vec<u8>, SoftKeyError> {
    // The options were validated by from_json, so this only fails on a library bug.
    b64url_decode(value).map_err(|e| SoftKeyError::State(e.to_string()))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// rpIdHash ‖ flags ‖ signCount.
fn rp_header(rp_id: &str, flags: u8, sign_count: u32) -> Vec<u8> {
    let mut out = sha256(rp_id.as_bytes());
    out.push(flags);
    out.extend_from_slice(&sign_count.to_be_bytes());
    out
}

fn client_data(type_: &str, challenge: &[u8], origin: &str) -> String {
    serde_json::json!({
        "type": type_,
        "challenge": b64url_encode(challenge),
        "origin": origin,
        "crossOrigin": false,
    })
    .to_string()
}

/// What a browser enforces: the RP id must be the origin's host or a parent domain of it.
fn check_origin(origin: &str, rp_id: &str) -> Result<(), SoftKeyError> {
    let host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    let allowed =
        !rp_id.is_empty() && (host == rp_id || host.strip_suffix(rp_id).is_some_and(|prefix| prefix.ends_with('.')));
    if allowed {
        Ok(())
    } else {
        Err(SoftKeyError::OriginNotForRpId { origin: origin.to_owned(), rp_id: rp_id.to_owned() })
    }
}
