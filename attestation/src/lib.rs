//! Pure verification of WebAuthn / FIDO2 registrations (attestation) and assertions.
//!
//! Nothing in this crate performs I/O or reads the clock: the caller passes the
//! instant at which certificates are evaluated. Cryptography is `ring`; X.509 parsing is
//! `x509-parser`; CBOR is `ciborium`. Everything that cannot be verified is reported as
//! untrusted rather than silently accepted.

pub mod access_token;
pub mod assertion;
pub mod audit_chain;
pub mod authdata;
mod cbor;
pub mod chain;
pub mod client_data;
pub mod cose;
mod encoding;
pub mod json;
pub mod mds;
pub mod posture;
pub mod registration;
mod statement;
pub mod tpm;
pub mod trust;
mod x509;

pub use encoding::{Base64Error, b64url_decode, b64url_encode};
/// AAGUIDs in this API are `uuid::Uuid`; re-exported so callers need not pin the crate.
pub use uuid;
pub use x509::der_sequence_length;
