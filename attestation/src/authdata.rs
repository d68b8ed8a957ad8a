//! Authenticator data (WebAuthn §6.1): rpIdHash ‖ flags ‖ signCount ‖ [attested credential
//! data] ‖ [extensions].

use ciborium::Value;

use crate::cbor::{self, CborError};
use crate::cose::{CoseError, CredentialPublicKey};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;
/// WebAuthn §6.1: credential ids longer than 1023 bytes must be rejected.
const MAX_CREDENTIAL_ID_LEN: usize = 1023;
const MAX_EXTENSIONS_BYTES: usize = 16 * 1024;
const FIXED_LEN: usize = 37;

/// Why authenticator data is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthDataError {
    #[error("the authenticator data is {0} bytes, shorter than the 37-byte minimum")]
    TooShort(usize),
    #[error("the attested credential data is truncated")]
    CredentialDataTruncated,
    #[error("the credential id is empty")]
    EmptyCredentialId,
    #[error("the credential id is {0} bytes; WebAuthn allows at most 1023")]
    CredentialIdTooLong(usize),
    #[error("the credential public key is unusable: {0}")]
    PublicKey(#[from] CoseError),
    #[error("the extensions in the authenticator data are not a valid CBOR map: {0}")]
    Extensions(CborError),
    #[error("the ED flag is set but the authenticator data carries no extensions")]
    MissingExtensions,
    #[error("{0} unexpected bytes follow the authenticator data")]
    TrailingBytes(usize),
    #[error("the BS (backed up) flag is set without the BE (backup eligible) flag")]
    BackupStateWithoutEligibility,
}

/// The credential created by a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    pub public_key: CredentialPublicKey,
}

/// Parsed authenticator data.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatorData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    pub attested: Option<AttestedCredential>,
    pub extensions: Option<Value>,
}

impl AuthenticatorData {
    pub fn parse(bytes: &[u8]) -> Result<Self, AuthDataError> {
        let (fixed, mut rest) = bytes.split_at_checked(FIXED_LEN).ok_or(AuthDataError::TooShort(bytes.len()))?;
        let (rp_id_hash, tail) = fixed.split_first_chunk::<32>().ok_or(AuthDataError::TooShort(bytes.len()))?;
        let (&[flags], count) = tail.split_first_chunk::<1>().ok_or(AuthDataError::TooShort(bytes.len()))?;
        let sign_count = u32::from_be_bytes(count.try_into().map_err(|_| AuthDataError::TooShort(bytes.len()))?);
        if flags & FLAG_BS != 0 && flags & FLAG_BE == 0 {
            return Err(AuthDataError::BackupStateWithoutEligibility);
        }
        let attested = if flags & FLAG_AT != 0 {
            let (credential, after) = parse_attested(rest)?;
            rest = after;
            Some(credential)
        } else {
            None
        };
        let extensions = if flags & FLAG_ED != 0 {
            if rest.is_empty() {
                return Err(AuthDataError::MissingExtensions);
            }
            let value = cbor::decode_exact(rest, MAX_EXTENSIONS_BYTES).map_err(AuthDataError::Extensions)?;
            if !value.is_map() {
                return Err(AuthDataError::Extensions(CborError::NotAMap));
            }
            rest = &[];
            Some(value)
        } else {
            None
        };
        if !rest.is_empty() {
            return Err(AuthDataError::TrailingBytes(rest.len()));
        }
        Ok(Self { rp_id_hash: *rp_id_hash, flags, sign_count, attested, extensions })
    }

    pub fn user_present(&self) -> bool {
        self.flags & FLAG_UP != 0
    }

    pub fn user_verified(&self) -> bool {
        self.flags & FLAG_UV != 0
    }

    pub fn backup_eligible(&self) -> bool {
        self.flags & FLAG_BE != 0
    }

    pub fn backed_up(&self) -> bool {
        self.flags & FLAG_BS != 0
    }
}

fn parse_attested(bytes: &[u8]) -> Result<(AttestedCredential, &[u8]), AuthDataError> {
    let (aaguid, rest) = bytes.split_first_chunk::<16>().ok_or(AuthDataError::CredentialDataTruncated)?;
    let (id_len, rest) = rest.split_first_chunk::<2>().ok_or(AuthDataError::CredentialDataTruncated)?;
    let id_len = usize::from(u16::from_be_bytes(*id_len));
    if id_len == 0 {
        return Err(AuthDataError::EmptyCredentialId);
    }
    if id_len > MAX_CREDENTIAL_ID_LEN {
        return Err(AuthDataError::CredentialIdTooLong(id_len));
    }
    let (credential_id, rest) = rest.split_at_checked(id_len).ok_or(AuthDataError::CredentialDataTruncated)?;
    let (public_key, rest) = CredentialPublicKey::from_cose_prefix(rest)?;
    let credential = AttestedCredential { aaguid: *aaguid, credential_id: credential_id.to_vec(), public_key };
    Ok((credential, rest))
}
