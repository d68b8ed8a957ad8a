//! The canonical COSE_Key encoding of a credential public key.

use super::{CRV_ED25519, CRV_P256, CRV_P384, CredentialPublicKey, Curve, KTY_EC2, KTY_OKP, KTY_RSA, Material};

impl CredentialPublicKey {
    /// Canonical CTAP2 encoding: integer keys in the order 1, 3, -1, -2, -3.
    pub fn to_cose(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        match &self.material {
            Material::Ec2 { curve, x, y } => {
                let crv = match curve {
                    Curve::P256 => CRV_P256,
                    Curve::P384 => CRV_P384,
                };
                push_head(&mut out, 5, 5);
                push_int_entry(&mut out, 1, KTY_EC2);
                push_int_entry(&mut out, 3, self.alg);
                push_int_entry(&mut out, -1, crv);
                push_bytes_entry(&mut out, -2, x);
                push_bytes_entry(&mut out, -3, y);
            }
            Material::Rsa { n, e } => {
                push_head(&mut out, 5, 4);
                push_int_entry(&mut out, 1, KTY_RSA);
                push_int_entry(&mut out, 3, self.alg);
                push_bytes_entry(&mut out, -1, n);
                push_bytes_entry(&mut out, -2, e);
            }
            Material::Ed25519 { x } => {
                push_head(&mut out, 5, 4);
                push_int_entry(&mut out, 1, KTY_OKP);
                push_int_entry(&mut out, 3, self.alg);
                push_int_entry(&mut out, -1, CRV_ED25519);
                push_bytes_entry(&mut out, -2, x);
            }
        }
        out
    }
}

/// Writes a CBOR head (major type and argument) in its shortest form.
fn push_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    match arg {
        0..=23 => out.push(major | arg as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

fn push_int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        push_head(out, 0, value.unsigned_abs());
    } else {
        // CBOR negative integers encode -1 - value.
        push_head(out, 1, (value + 1).unsigned_abs());
    }
}

fn push_int_entry(out: &mut Vec<u8>, label: i64, value: i64) {
    push_int(out, label);
    push_int(out, value);
}

fn push_bytes_entry(out: &mut Vec<u8>, label: i64, value: &[u8]) {
    push_int(out, label);
    push_head(out, 2, value.len() as u64);
    out.extend_from_slice(value);
}
