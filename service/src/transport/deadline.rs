//! Request deadlines: no unary call runs longer than `--request-timeout`.
//!
//! A client's own deadline (`grpc-timeout`) is kept by tonic, which drops the
//! handler when it passes. tonic's server-wide timeout would answer CANCELLED,
//! but callers retry on DEADLINE_EXCEEDED, which is what the gRPC
//! specification prescribes for a deadline, so the server's cap is this
//! layer. When it fires the handler's future is dropped: a transaction it had
//! open rolls back, and a statement the database was already executing
//! finishes or fails whole, so an abandoned call never leaves a half-written
//! record. Streams are unaffected once they have started, because the
//! deadline covers producing the response head only.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    longest: Duration,
}

impl DeadlineLayer {
    /// `longest` caps every call, whatever deadline the client asked for.
    pub fn new(longest: Duration) -> DeadlineLayer {
        DeadlineLayer { longest }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner, longest: self.longest }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    longest: Duration,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Deadline<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let limit = self.longest;
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call did not finish within its deadline of {} ms and was abandoned; \
                     a write already under way completes or rolls back whole",
                    limit.as_millis()
                ))
                .into_http()),
            }
        })
    }
}
