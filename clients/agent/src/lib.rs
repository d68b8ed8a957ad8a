//! The Tether device agent library.
//!
//! The agent proves a worker is on company hardware: it enrolls the device's
//! hardware-bound WebAuthn credential with a one-time token ([`enroll`]) and
//! then answers the server's presence challenges with it ([`run`],
//! [`answer_challenge`]). The key lives behind the [`Authenticator`] trait:
//! the software authenticator from `tether-softkey`, or (cargo feature `tpm`)
//! an attestation key in the TPM 2.0 that enrolls with credential activation
//! (`tpm::enroll_tpm`) and answers with quotes.
//!
//! The device services carry no API key: enrollment is authorized by the
//! token, presence by the signature.

// `tonic::Status` is large, and `AgentError::Status` carries it unboxed so
// callers can match on it directly; errors are the cold path of an RPC client.
#![allow(clippy::result_large_err)]

/// Completing the EK certificate chain by authorityInfoAccess (used by the TPM backend).
pub mod aia;
mod authenticator;
/// The EK certificate chain sent at TPM enrollment: NV chain splitting, issuer order, bounds.
pub mod ek_chain;
mod enrollment;
mod error;
pub mod posture;
mod presence;
mod state;
/// The TPM 2.0 backend (cargo feature `tpm`; needs libtss2 at build and run time).
#[cfg(feature = "tpm")]
pub mod tpm;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

pub use authenticator::{Authenticator, PersistingAuthenticator, SOFTKEY_BACKEND, restore_authenticator};
pub use enrollment::{Enrollment, enroll};
pub use error::AgentError;
pub use presence::{
    AnswerOptions, AnswerResult, MAX_ANSWER_ATTEMPTS, WatchMode, answer_challenge, answer_challenge_full,
    answer_challenge_with, answer_pending, answer_pending_with, poll_challenges, run, run_with,
};
pub use state::AgentState;
pub use tether_proto::v1::{AnswerChallengeResponse, PresenceChallenge, PresenceOutcome};

/// The server URL used when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Deadline for each unary call (enrollment, poll, answer).
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn endpoint(server_url: &str) -> Result<Endpoint, AgentError> {
    Ok(Endpoint::from_shared(server_url.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        // Notice a dead peer under a long-lived challenge stream.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Connect to tetherd now; fails if it cannot be reached.
pub async fn connect(server_url: &str) -> Result<Channel, AgentError> {
    Ok(endpoint(server_url)?.connect().await?)
}

/// A channel that connects on first use and reconnects by itself, for a
/// long-running agent that may start before the server.
pub fn connect_lazy(server_url: &str) -> Result<Channel, AgentError> {
    Ok(endpoint(server_url)?.connect_lazy())
}
