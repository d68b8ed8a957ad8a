//! One span and one set of RPC metrics per gRPC call, as a tower layer in
//! front of every service. The span is named after the method
//! (`tether.v1.AccessService/CheckAccess`), continues the caller's W3C trace
//! context, and carries the tenant (recorded by the domain code once it
//! knows it, see [`set_tenant`]) and the outcome (the gRPC status code).
//! Nothing from the request body or its credentials reaches the span.

use super::metrics;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

tokio::task_local! {
    /// The span of the call this task is serving.
    static CALL: tracing::Span;
}

/// Records the tenant on the current call's span; outside a call it does nothing.
pub fn set_tenant(tenant_id: &str) {
    let _ = CALL.try_with(|span| {
        span.record("tenant", tenant_id);
    });
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLayer;

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Name and method are recorded when the call ends, once the server has
        // said whether the path names a real method (see `Finish`).
        let span = tracing::info_span!(
            "rpc",
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = tracing::field::Empty,
            rpc.method = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            tenant = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
        let _ = span.set_parent(parent);
        let mut finish =
            Finish { span: span.clone(), method: Some(Method::parse(request.uri().path())), started: Instant::now() };
        let call = {
            let _entered = span.enter();
            CALL.sync_scope(span.clone(), || self.inner.call(request))
        };
        let instrumented = CALL.scope(span.clone(), call.instrument(span));
        Box::pin(async move {
            let result = instrumented.await;
            // Handlers' errors come back "trailers-only": the status is in the
            // head. A head without one is a successful unary call or an opened stream.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32),
                Err(_) => Code::Unknown,
            };
            finish.done(code);
            result
        })
    }
}

/// Ends a call's span and metrics exactly once: with the response's code, or
/// CANCELLED when the caller went away and the call's future was dropped.
struct Finish {
    span: tracing::Span,
    method: Option<Method>,
    started: Instant,
}

impl Finish {
    fn done(&mut self, code: Code) {
        let Some(method) = self.method.take() else { return };
        let method = if code == Code::Unimplemented { Method::unknown() } else { method };
        // The OpenTelemetry span has started by now, so `otel.name` no longer renames it.
        self.span.context().span().update_name(method.full.clone());
        self.span.record("rpc.service", method.service.as_str());
        self.span.record("rpc.method", method.method.as_str());
        self.span.record("rpc.grpc.status_code", code as i64);
        self.span.record("outcome", code_name(code));
        if is_server_fault(code) {
            self.span.record("otel.status_code", "error");
        }
        metrics::record_rpc(&method.full, code_name(code), self.started.elapsed());
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.done(Code::Cancelled);
    }
}

/// The method a request path names. Paths are chosen by the caller, so
/// anything that is not `/package.Service/Method` of modest length is
/// `unknown`, and so is any path the server answered UNIMPLEMENTED.
struct Method {
    full: String,
    service: String,
    method: String,
}

impl Method {
    fn parse(path: &str) -> Method {
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
        match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
            Some((service, method)) if path.len() <= 128 && valid(service) && valid(method) => {
                Method { full: format!("{service}/{method}"), service: service.to_string(), method: method.to_string() }
            }
            _ => Method::unknown(),
        }
    }

    fn unknown() -> Method {
        Method { full: "unknown".into(), service: "unknown".into(), method: "unknown".into() }
    }
}

/// The canonical upper-case name of a gRPC status code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The OpenTelemetry gRPC conventions mark a server span as an error only
/// for codes that are the server's fault; a refused token is not one.
fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_come_only_from_well_formed_paths() {
        let m = Method::parse("/tether.v1.AccessService/CheckAccess");
        assert_eq!(
            (m.full.as_str(), m.service.as_str(), m.method.as_str()),
            ("tether.v1.AccessService/CheckAccess", "tether.v1.AccessService", "CheckAccess")
        );
        for bad in ["/", "/x", "/a/b/c", "/a b/c", &format!("/{}/x", "a".repeat(200)), "/tk.key.secret/x?y"] {
            assert_eq!(Method::parse(bad).full, "unknown", "{bad}");
        }
    }

    #[test]
    fn only_server_faults_are_span_errors() {
        assert!(is_server_fault(Code::Internal));
        assert!(!is_server_fault(Code::InvalidArgument));
        assert!(!is_server_fault(Code::Unauthenticated));
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    }
}
