//! Verification steps as child spans of the call's span, each timed into
//! `tether.verification.duration`. The wrappers take the step's closure, so
//! a call site stays one expression and no input (attestation objects,
//! signatures, quotes) is ever recorded — only the step's name and outcome.

use super::metrics;
use std::time::Instant;

/// WebAuthn attestation statement and certificate chain (enrollment).
pub const WEBAUTHN_ATTESTATION: &str = "webauthn.attestation";
/// TPM EK certificate chain (TPM enrollment).
pub const TPM_EK_CERTIFICATE: &str = "tpm.ek_certificate";
/// WebAuthn assertion signature (presence).
pub const WEBAUTHN_ASSERTION: &str = "webauthn.assertion";
/// TPM2_Quote signature, nonce and PCR digest (presence).
pub const TPM_QUOTE: &str = "tpm.quote";
/// The risk engine's evaluation of one event.
pub const RISK_EVALUATION: &str = "risk.evaluate";

fn span(step: &'static str) -> tracing::Span {
    tracing::info_span!("verify", otel.name = step, step = step, outcome = tracing::field::Empty)
}

/// Runs a fallible verification step inside its own span.
pub fn verify<T, E>(step: &'static str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let span = span(step);
    let started = Instant::now();
    let result = span.in_scope(f);
    let ok = result.is_ok();
    span.record("outcome", if ok { "ok" } else { "error" });
    metrics::record_verification(step, ok, started.elapsed());
    result
}

/// Runs an infallible step (risk evaluation) inside its own span.
pub fn evaluate<T>(step: &'static str, f: impl FnOnce() -> T) -> T {
    verify(step, || Ok::<T, std::convert::Infallible>(f())).unwrap_or_else(|never| match never {})
}
