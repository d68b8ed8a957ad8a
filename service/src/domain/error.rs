//! Domain errors: what went wrong, in words a caller can act on. Each
//! transport maps them to its own status codes (transport::status).

use crate::store::StoreError;
use crate::store::retry::Retryable;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Transient: the call may succeed when retried.
    #[error("{0}")]
    Unavailable(String),
    #[error("{message}")]
    ResourceExhausted { message: String, retry_after: std::time::Duration },
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    pub fn precondition(message: impl Into<String>) -> ApiError {
        ApiError::FailedPrecondition(message.into())
    }

    pub fn denied(message: impl Into<String>) -> ApiError {
        ApiError::PermissionDenied(message.into())
    }
}

/// Requires a non-empty, bounded string field.
pub fn required<'a>(field: &str, value: &'a str) -> ApiResult<&'a str> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    if trimmed.len() > 256 {
        return Err(ApiError::invalid(format!("{field} is longer than 256 bytes")));
    }
    Ok(trimmed)
}

/// A call fails for a transaction the database aborted exactly when its store error would.
impl Retryable for ApiError {
    fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Store(e) if e.is_retryable())
    }

    fn exhausted(self, what: &'static str, attempts: u32) -> Self {
        match self {
            ApiError::Store(e) => ApiError::Store(e.exhausted(what, attempts)),
            other => other,
        }
    }
}
