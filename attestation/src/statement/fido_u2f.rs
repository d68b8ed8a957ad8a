//! The "fido-u2f" format (WebAuthn §8.6): a U2F authenticator's registration signature,
//! recomputed over the CTAP1 message layout.

use super::{Context, Outcome, StatementError};
use crate::cbor::Map;
use crate::cose::alg;
use crate::registration::AttestationType;
use crate::x509;

/// UP | AT: all a client may set when it wraps a U2F registration.
const U2F_FLAGS: u8 = 0x41;

pub(super) fn verify(map: &Map<'_>, ctx: &Context<'_>) -> Result<Outcome, StatementError> {
    check_unsigned_fields(ctx)?;
    let sig = super::sig(map)?;
    let x5c = super::required_x5c(map)?;
    let [leaf_der] = x5c.as_slice() else {
        return Err(StatementError::Malformed(format!("x5c must hold exactly one certificate, not {}", x5c.len())));
    };
    let leaf = super::parse_leaf(leaf_der)?;
    if x509::key_kind(leaf.public_key()) != "P-256" {
        return Err(StatementError::CertificateRequirement(
            "the U2F attestation certificate key must be an EC P-256 key".to_owned(),
        ));
    }
    let point =
        ctx.credential.public_key.p256_uncompressed_point().ok_or_else(|| {
            StatementError::Malformed("a fido-u2f credential key must be an EC2 P-256 key".to_owned())
        })?;
    // CTAP1 registration signature base: 0x00 ‖ appId hash ‖ challenge hash ‖ key handle ‖ key.
    let signed =
        [&[0x00][..], &ctx.auth_data.rp_id_hash, ctx.client_data_hash, &ctx.credential.credential_id, &point].concat();
    x509::verify_statement_signature(leaf.public_key(), alg::ES256, false, &signed, sig)
        .map_err(|e| StatementError::BadSignature(e.to_string()))?;
    Ok(Outcome { attestation_type: AttestationType::Basic, trust: super::chain_trust(&x5c, ctx) })
}

/// The U2F signature does not cover the flags, counter or AAGUID: the client synthesises
/// them (CTAP 2.1 §10.2) as UP|AT, 0 and zeros. Anything else was not produced by the
/// authenticator, and accepting it would let a client claim, for example, user verification.
fn check_unsigned_fields(ctx: &Context<'_>) -> Result<(), StatementError> {
    let unsigned = |what: String| StatementError::UnsignedFields(what);
    if ctx.auth_data.flags != U2F_FLAGS {
        return Err(unsigned(format!("flags 0x{:02x} instead of 0x{U2F_FLAGS:02x} (UP, AT)", ctx.auth_data.flags)));
    }
    if ctx.auth_data.sign_count != 0 {
        return Err(unsigned(format!("signature counter {} instead of 0", ctx.auth_data.sign_count)));
    }
    if ctx.credential.aaguid != [0; 16] {
        return Err(unsigned("a non-zero AAGUID".to_owned()));
    }
    Ok(())
}
