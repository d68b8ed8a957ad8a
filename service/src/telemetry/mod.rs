//! Traces and metrics.
//!
//! Every gRPC call is a span ([`RpcLayer`]) with its tenant and outcome;
//! verification steps are child spans ([`verify`]). Metrics live in one place
//! ([`metrics`]) behind typed `record_*` functions. Both are exported over
//! OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables name
//! a collector, and nothing leaves the process when they do not; metrics are
//! also served for Prometheus with `--metrics-listen` ([`prometheus`]).

pub(crate) mod held;
pub mod metrics;
pub mod prometheus;
mod rpc;
mod steps;

pub use metrics::{
    EnrollmentOutcome, record_access_result, record_db_retry, record_enrollment, record_flag, record_group_commit,
    record_pool_timeout, record_presence, record_siem_delivery, record_siem_dropped, set_siem_backlog,
    waiting_for_connection, watch_pool,
};
pub use rpc::{RpcLayer, RpcService, code_name, set_tenant};
pub use steps::{
    RISK_EVALUATION, TPM_EK_CERTIFICATE, TPM_QUOTE, WEBAUTHN_ASSERTION, WEBAUTHN_ATTESTATION, evaluate, verify,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The providers of a running process; [`Telemetry::shutdown`] flushes them.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: SdkMeterProvider,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is configured for traces).
    pub fn exports_traces(&self) -> bool {
        self.tracer.is_some()
    }

    /// Exports what is buffered and stops the exporters.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(e) = tracer.shutdown()
        {
            eprintln!("tetherd: flushing spans failed: {e}");
        }
        if let Err(e) = self.meter.shutdown() {
            eprintln!("tetherd: flushing metrics failed: {e}");
        }
    }
}

/// The layer that turns tetherd's `tracing` spans into OpenTelemetry spans.
/// Only tetherd's own spans and events (INFO and up) go to the tracer,
/// whatever `RUST_LOG` says about the log output.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(metrics::SCOPE))
        .with_threads(false)
        .with_filter(Targets::new().with_target("tetherd", tracing::Level::INFO))
}

/// Sets up logging on stderr (text or JSON, filtered by `RUST_LOG`), the
/// metric instruments, and the exporters the environment asks for.
pub fn init(json_logs: bool) -> anyhow::Result<Telemetry> {
    let traces = otlp_wanted("TRACES")?;
    let exported_metrics = otlp_wanted("METRICS")?;
    let resource = resource();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());

    let tracer = if traces {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up OTLP span export: {e}"))?;
        Some(SdkTracerProvider::builder().with_resource(resource.clone()).with_batch_exporter(exporter).build())
    } else {
        None
    };

    let registry = ::prometheus::Registry::new();
    let reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the Prometheus metrics reader: {e}"))?;
    prometheus::set_registry(registry);
    let mut meter = SdkMeterProvider::builder().with_resource(resource).with_reader(reader);
    if exported_metrics {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up OTLP metric export: {e}"))?;
        meter = meter.with_periodic_exporter(exporter);
    }
    let meter = meter.build();
    metrics::install(&meter);

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = (!json_logs).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json = json_logs.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr));
    Registry::default()
        .with(tracer.as_ref().map(otel_layer))
        .with(text.with_filter(filter.clone()))
        .with(json.with_filter(filter))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    if traces {
        tracing::info!("exporting spans over OTLP/gRPC");
    }
    if exported_metrics {
        tracing::info!("exporting metrics over OTLP/gRPC");
    }
    Ok(Telemetry { tracer, meter })
}

/// The service resource: the SDK's detectors read `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`; without a name from them it is `tetherd`.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named { builder.build() } else { builder.with_service_name("tetherd").build() }
}

/// Whether a signal (`TRACES`, `METRICS`) is to be exported: an endpoint is
/// set for it or for all signals, and neither `OTEL_SDK_DISABLED=true` nor
/// `OTEL_<SIGNAL>_EXPORTER=none` turns it off. Settings tetherd cannot honour
/// are refused rather than silently exporting nothing.
fn otlp_wanted(signal: &str) -> anyhow::Result<bool> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    match var(&format!("OTEL_{signal}_EXPORTER")).as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(false),
        Some(other) => {
            anyhow::bail!("OTEL_{signal}_EXPORTER={other} is not supported: tetherd exports `otlp` or `none`")
        }
    }
    let endpoint_var = format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT");
    let Some((name, endpoint)) = [endpoint_var.as_str(), "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .into_iter()
        .find_map(|name| var(name).map(|value| (name, value)))
    else {
        return Ok(false);
    };
    if !endpoint.starts_with("http://") {
        anyhow::bail!(
            "{name}={endpoint}: tetherd sends OTLP over plaintext gRPC to a collector on the host or in the pod \
             (http://HOST:4317); let that collector forward over TLS"
        );
    }
    let protocol_var = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    let protocol = [protocol_var.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .into_iter()
        .find_map(|name| var(name).map(|value| (name, value)));
    if let Some((name, value)) = protocol.filter(|(_, v)| v != "grpc") {
        anyhow::bail!("{name}={value} is not supported: tetherd exports OTLP over gRPC (set it to grpc)");
    }
    Ok(true)
}
