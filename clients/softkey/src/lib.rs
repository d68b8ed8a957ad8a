//! A software WebAuthn authenticator (and the browser half of the ceremony) for development
//! and tests. It holds one ES256 credential, produces W3C JSON responses, and attests either
//! with a certificate issued by a CA you provide ("packed"), with its own key ("self"), or
//! not at all ("none").
//!
//! This is a test tool: its private keys live in memory and in the state JSON it exports.

mod attestation;
mod authenticator;
pub mod ek_cert;
mod error;
pub mod pki;

pub use attestation::attestation_key_id;
pub use authenticator::{AttestationMode, SoftAuthenticator};
pub use error::SoftKeyError;
