//! Domain errors as gRPC statuses, in one place for every transport (the
//! console maps the same codes to HTTP). Storage details stay in the server
//! log; callers learn only whether to retry.

use crate::domain::error::ApiError;
use crate::store::StoreError;
use tonic::{Code, Status};

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument(m) => Status::new(Code::InvalidArgument, m),
            ApiError::Unauthenticated(m) => Status::new(Code::Unauthenticated, m),
            ApiError::PermissionDenied(m) => Status::new(Code::PermissionDenied, m),
            ApiError::NotFound(m) => Status::new(Code::NotFound, m),
            ApiError::FailedPrecondition(m) => Status::new(Code::FailedPrecondition, m),
            ApiError::AlreadyExists(m) => Status::new(Code::AlreadyExists, m),
            ApiError::Unavailable(m) => Status::new(Code::Unavailable, m),
            ApiError::ResourceExhausted { message, retry_after } => {
                let mut status = Status::new(Code::ResourceExhausted, message);
                // Machine-readable retry hint for clients and gateways.
                if let Ok(value) = retry_after.as_millis().to_string().parse() {
                    status.metadata_mut().insert("retry-after-ms", value);
                }
                status
            }
            ApiError::Store(e) => {
                // Details stay in the server log; callers learn only that it
                // was the server's fault and may be retried.
                tracing::error!(error = %e, "storage failure");
                if matches!(e, StoreError::Database(sqlx::Error::PoolTimedOut)) {
                    crate::telemetry::record_pool_timeout();
                }
                match e {
                    StoreError::Database(
                        sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::WorkerCrashed,
                    ) => Status::new(Code::Unavailable, "the database is unavailable; retry later"),
                    e if e.is_busy() => Status::new(Code::Unavailable, "the database is unavailable; retry later"),
                    // gRPC's "retry at a higher level": the change lost a race
                    // with a concurrent one and the service's own re-runs
                    // (--db-retry-attempts) did not get it through.
                    StoreError::Conflict { attempts, .. } => Status::new(
                        Code::Aborted,
                        format!(
                            "the database aborted this change {attempts} time(s) because of concurrent changes \
                             (deadlock or serialization failure); it was not applied; retry the call"
                        ),
                    ),
                    e if e.is_retryable() => Status::new(
                        Code::Aborted,
                        "the database aborted a transaction because of a concurrent change \
                         (deadlock or serialization failure); retry the call",
                    ),
                    _ => Status::new(Code::Internal, "internal storage error; see the server log"),
                }
            }
        }
    }
}
