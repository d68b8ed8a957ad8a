//! The attestation key (AK) requirements: a key the TPM generated, that cannot leave it,
//! and that only signs TPM-generated structures (quotes, certifications).

use super::public::{PublicKey, TpmPublic, attr};
use super::{HashAlg, TPM_ECC_NIST_P256, TPM_ECC_NIST_P384};

/// Why a public area is not acceptable as an attestation key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AkError {
    #[error(
        "the attestation key lacks the {0} attribute; create it with tpm2_createak (fixedTPM, fixedParent, \
         sensitiveDataOrigin, restricted and sign are required)"
    )]
    MissingAttribute(&'static str),
    #[error("the attestation key has the decrypt attribute; an AK must be a signing-only key")]
    Decrypt,
    #[error("the attestation key is {0}; RSA keys of at least 2048 bits or NIST P-256/P-384 keys are required")]
    WeakKey(String),
    #[error("the attestation key's nameAlg is SHA-1; its name must use SHA-256 or stronger")]
    WeakNameAlg,
}

const REQUIRED: &[(u32, &str)] = &[
    (attr::FIXED_TPM, "fixedTPM"),
    (attr::FIXED_PARENT, "fixedParent"),
    (attr::SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    (attr::RESTRICTED, "restricted"),
    (attr::SIGN, "sign"),
];

/// Checks fixedTPM, fixedParent, sensitiveDataOrigin, restricted and sign (and not decrypt),
/// the key size and the name algorithm. `restricted` + `sign` is what makes the TPM refuse to
/// sign anything that starts with TPM_GENERATED_VALUE unless the TPM produced it.
pub fn check_ak_attributes(ak: &TpmPublic) -> Result<(), AkError> {
    for (bit, name) in REQUIRED {
        if !ak.has(*bit) {
            return Err(AkError::MissingAttribute(name));
        }
    }
    if ak.has(attr::DECRYPT) {
        return Err(AkError::Decrypt);
    }
    if ak.name_alg == HashAlg::Sha1 {
        return Err(AkError::WeakNameAlg);
    }
    match &ak.key {
        PublicKey::Rsa { modulus, .. } if modulus.len() * 8 < 2048 => Err(AkError::WeakKey(ak.key.describe())),
        PublicKey::Ecc { curve, .. } if *curve != TPM_ECC_NIST_P256 && *curve != TPM_ECC_NIST_P384 => {
            Err(AkError::WeakKey(ak.key.describe()))
        }
        _ => Ok(()),
    }
}
