//! The agent's error type.

use std::error::Error as _;

/// Everything that can go wrong while enrolling or answering challenges.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The server answered with a gRPC error; displays the server's message.
    /// (Deliberately not a `source`: the message is the whole story, and
    /// error-chain printers would otherwise repeat it in tonic's debug form.)
    #[error("{}", status_message(.0))]
    Status(tonic::Status),
    /// The authenticator (soft key, later the TPM) failed to create or sign.
    #[error("authenticator: {0}")]
    Authenticator(String),
    /// The server could not be reached, or the URL is not usable. Displays
    /// the whole cause chain itself.
    #[error("{}", transport_message(.0))]
    Transport(tonic::transport::Error),
    /// The state file could not be read, parsed or written.
    #[error("state: {0}")]
    State(String),
}

impl From<tonic::Status> for AgentError {
    fn from(status: tonic::Status) -> Self {
        AgentError::Status(status)
    }
}

impl From<tonic::transport::Error> for AgentError {
    fn from(error: tonic::transport::Error) -> Self {
        AgentError::Transport(error)
    }
}

impl AgentError {
    /// Whether trying the same call again later may succeed: the server was
    /// unreachable or overloaded, not "your request is wrong".
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Status(status) => is_transient_code(status.code()),
            AgentError::Transport(_) => true,
            AgentError::Authenticator(_) | AgentError::State(_) => false,
        }
    }
}

/// gRPC codes after which retrying the same request later may succeed.
pub(crate) fn is_transient_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
            | tonic::Code::Cancelled
    )
}

/// The server's message, or the code's description when the message is empty.
pub(crate) fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() { format!("{:?}", status.code()) } else { status.message().to_string() }
}

/// A transport error with its whole source chain ("transport error: tcp
/// connect error: Connection refused ..."): the top level alone says nothing.
fn transport_message(error: &tonic::transport::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_displays_the_server_message() {
        let error = AgentError::from(tonic::Status::failed_precondition("token already used"));
        assert_eq!(error.to_string(), "token already used");
        assert!(!error.is_transient());
    }

    #[test]
    fn error_chains_do_not_repeat_the_status() {
        let error = anyhow::Error::from(AgentError::from(tonic::Status::permission_denied("revoked")));
        assert_eq!(format!("{error:#}"), "revoked");
    }

    #[test]
    fn empty_status_message_falls_back_to_the_code() {
        let error = AgentError::from(tonic::Status::unavailable(""));
        assert_eq!(error.to_string(), "Unavailable");
        assert!(error.is_transient());
    }
}
