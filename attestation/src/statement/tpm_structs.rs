//! Decoding of the two TPM 2.0 structures a "tpm" attestation carries (TPM 2.0 Library,
//! Part 2): TPMT_PUBLIC (`pubArea`, the credential key as the TPM sees it) and TPMS_ATTEST
//! (`certInfo`, what the attestation key signed). All integers are big-endian.

pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_SHA384: u16 = 0x000C;
pub const TPM_ALG_SHA512: u16 = 0x000D;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
pub const TPM_ECC_NIST_P384: u16 = 0x0004;
/// TPM_GENERATED_VALUE: only the TPM itself signs structures starting with this.
const TPM_GENERATED: u32 = 0xff54_4347;
const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;

/// A bounds-checked big-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or_else(|| format!("{} is truncated", self.what))?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| format!("{} is truncated", self.what))
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    /// A TPM2B: a u16 length followed by that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], String> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn finish(&self) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!("{} has {} unexpected trailing bytes", self.what, self.buf.len()))
        }
    }
}

/// The key in a TPMT_PUBLIC.
#[derive(Debug)]
pub enum TpmKey<'a> {
    /// Modulus and public exponent (0 in the structure means the default 65537).
    Rsa {
        modulus: &'a [u8],
        exponent: u32,
    },
    Ecc {
        curve: u16,
        x: &'a [u8],
        y: &'a [u8],
    },
}

#[derive(Debug)]
pub struct PubArea<'a> {
    pub name_alg: u16,
    pub key: TpmKey<'a>,
}

pub fn parse_pub_area(bytes: &[u8]) -> Result<PubArea<'_>, String> {
    let mut r = Reader { buf: bytes, what: "pubArea" };
    let key_type = r.u16()?;
    let name_alg = r.u16()?;
    let _object_attributes = r.u32()?;
    let _auth_policy = r.sized()?;
    // A signing key has no symmetric algorithm; anything else is not a credential key.
    if r.u16()? != TPM_ALG_NULL {
        return Err("pubArea describes a key with a symmetric algorithm, not a signing key".to_owned());
    }
    let key = match key_type {
        TPM_ALG_RSA => {
            skip_scheme(&mut r)?;
            let _key_bits = r.u16()?;
            let exponent = r.u32()?;
            let modulus = r.sized()?;
            TpmKey::Rsa { modulus, exponent }
        }
        TPM_ALG_ECC => {
            skip_scheme(&mut r)?;
            let curve = r.u16()?;
            skip_scheme(&mut r)?; // kdf
            let x = r.sized()?;
            let y = r.sized()?;
            TpmKey::Ecc { curve, x, y }
        }
        other => return Err(format!("pubArea key type 0x{other:04x} is not RSA or ECC")),
    };
    r.finish()?;
    Ok(PubArea { name_alg, key })
}

/// A scheme is an algorithm id followed by a hash algorithm unless it is TPM_ALG_NULL.
fn skip_scheme(r: &mut Reader<'_>) -> Result<(), String> {
    if r.u16()? != TPM_ALG_NULL {
        r.u16()?;
    }
    Ok(())
}

/// The parts of a TPMS_ATTEST (of type TPM_ST_ATTEST_CERTIFY) that are checked.
#[derive(Debug)]
pub struct CertInfo<'a> {
    pub extra_data: &'a [u8],
    /// TPMS_CERTIFY_INFO.name: nameAlg ‖ H(pubArea) of the certified key.
    pub attested_name: &'a [u8],
}

pub fn parse_cert_info(bytes: &[u8]) -> Result<CertInfo<'_>, String> {
    let mut r = Reader { buf: bytes, what: "certInfo" };
    if r.u32()? != TPM_GENERATED {
        return Err("certInfo does not start with TPM_GENERATED_VALUE".to_owned());
    }
    if r.u16()? != TPM_ST_ATTEST_CERTIFY {
        return Err("certInfo is not of type TPM_ST_ATTEST_CERTIFY".to_owned());
    }
    let _qualified_signer = r.sized()?;
    let extra_data = r.sized()?;
    let _clock_info = r.take(17)?; // clock u64, resetCount u32, restartCount u32, safe u8
    let _firmware_version = r.take(8)?;
    let attested_name = r.sized()?;
    let _qualified_name = r.sized()?;
    r.finish()?;
    Ok(CertInfo { extra_data, attested_name })
}
