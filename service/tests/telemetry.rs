//! Telemetry, in process: a real tonic server on 127.0.0.1 driven over real
//! gRPC, with the service's spans and metrics captured by the OpenTelemetry
//! SDK's in-memory exporters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use opentelemetry::Value;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::OnceLock;
use std::time::Duration;
use tether_proto::v1 as pb;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tetherd::domain::app::{App, Settings};
use tetherd::domain::tenancy::auth::Pepper;
use tetherd::store::Store;
use tonic::Request;
use tonic::transport::Channel;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const RP_ID: &str = "telemetry.example";
const ORIGIN: &str = "https://telemetry.example";

struct Capture {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    meter: SdkMeterProvider,
    _tracer: SdkTracerProvider,
}

/// Telemetry is process-wide, so every test shares one capture and the tests
/// take turns (metric deltas would otherwise mix).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let tracer = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let metrics = InMemoryMetricExporter::default();
        let meter = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(metrics.clone()).build()).build();
        assert!(tetherd::telemetry::metrics::install(&meter));
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        tracing_subscriber::registry().with(tetherd::telemetry::otel_layer(&tracer)).init();
        Capture { spans, metrics, meter, _tracer: tracer }
    })
}

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Service {
    channel: Channel,
    admin_key: String,
    tenant_id: String,
    pki: TestPki,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> Service {
    capture();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let pepper = Pepper::ephemeral();
    let (tenant, admin) =
        tetherd::domain::tenancy::create_tenant(&store, &pepper, "Telemetry", RP_ID, ORIGIN).await.unwrap();
    let settings = Settings { scheduler_tick: Duration::from_millis(100), ..Settings::default() };
    let engine = tether_risk::Engine::new(tether_risk::RiskConfig::default()).unwrap();
    let app = App::new(store, pepper, settings, engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tetherd::process::server::serve(app, listener, None, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let pki = TestPki::generate("Telemetry Authenticators").unwrap();
    let service = Service { channel, admin_key: admin.secret, tenant_id: tenant.id, pki, stop: Some(stop), _dir: dir };
    service
        .admin()
        .add_trust_anchors(
            service.authed(pb::AddTrustAnchorsRequest { pem: service.pki.root_cert_pem.clone(), name: "root".into() }),
        )
        .await
        .unwrap();
    service
}

impl Service {
    fn authed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("authorization", format!("Bearer {}", self.admin_key).parse().unwrap());
        request
    }

    fn admin(&self) -> pb::admin_service_client::AdminServiceClient<Channel> {
        pb::admin_service_client::AdminServiceClient::new(self.channel.clone())
    }

    fn authenticator(&self, attested: bool) -> SoftAuthenticator {
        let mode = if attested {
            AttestationMode::Packed {
                ca_cert_pem: self.pki.intermediate_cert_pem.clone(),
                ca_key_pem: self.pki.intermediate_key_pem.clone(),
            }
        } else {
            AttestationMode::None
        };
        SoftAuthenticator::new(mode, uuid::Uuid::new_v4()).unwrap()
    }

    /// Registers a device for `worker` and returns an enrollment token for it.
    async fn token(&self, worker: &str) -> String {
        let device = self
            .admin()
            .register_device(self.authed(pb::RegisterDeviceRequest {
                serial_number: format!("SN-{}", uuid::Uuid::new_v4().simple()),
                model: "ThinkPad T14".into(),
                worker_external_id: worker.into(),
                worker_display_name: worker.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let request = pb::CreateEnrollmentTokenRequest { device_id: device.id, ttl_seconds: 0 };
        self.admin().create_enrollment_token(self.authed(request)).await.unwrap().into_inner().secret
    }

    async fn enroll(
        &self,
        token: &str,
        auth: &mut SoftAuthenticator,
    ) -> Result<pb::FinishEnrollmentResponse, tonic::Status> {
        let mut client = pb::enrollment_service_client::EnrollmentServiceClient::new(self.channel.clone());
        let begun = client.begin_enrollment(pb::BeginEnrollmentRequest { token: token.into() }).await?.into_inner();
        let json = auth.make_credential(&begun.creation_options_json, &begun.origin).unwrap();
        let finish = pb::FinishEnrollmentRequest {
            enrollment_id: begun.enrollment_id,
            token: token.into(),
            registration_response_json: json,
        };
        client.finish_enrollment(finish).await.map(|r| r.into_inner())
    }
}

fn spans() -> Vec<SpanData> {
    capture().spans.get_finished_spans().unwrap()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes.iter().rev().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
}

fn rpc_spans(method: &str) -> Vec<SpanData> {
    spans().into_iter().filter(|s| s.name == method).collect()
}

/// The method's spans once there are at least `count`: a call's span ends
/// when the server drops the call's future, which may be just after the
/// client has its response.
async fn rpc_spans_at_least(method: &str, count: usize) -> Vec<SpanData> {
    for _ in 0..100 {
        let found = rpc_spans(method);
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    rpc_spans(method)
}

/// The sum of a counter's (or a histogram's count's) points whose labels include `labels`.
fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    capture().meter.force_flush().unwrap();
    let exported = capture().metrics.get_finished_metrics().unwrap();
    let Some(last) = exported.last() else { return 0.0 };
    let matches = |attrs: Vec<&opentelemetry::KeyValue>| {
        labels.iter().all(|(k, v)| attrs.iter().any(|kv| kv.key.as_str() == *k && kv.value.as_str() == *v))
    };
    let mut total = 0.0;
    for m in last.scope_metrics().flat_map(|s| s.metrics()).filter(|m| m.name() == name) {
        match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                total += sum
                    .data_points()
                    .filter(|p| matches(p.attributes().collect()))
                    .map(|p| p.value() as f64)
                    .sum::<f64>();
            }
            AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                total += h
                    .data_points()
                    .filter(|p| matches(p.attributes().collect()))
                    .map(|p| p.count() as f64)
                    .sum::<f64>();
            }
            AggregatedMetrics::I64(MetricData::Gauge(g)) => {
                total += g
                    .data_points()
                    .filter(|p| matches(p.attributes().collect()))
                    .map(|p| p.value() as f64)
                    .sum::<f64>();
            }
            other => panic!("{name}: unexpected data {other:?}"),
        }
    }
    total
}

#[tokio::test]
async fn every_call_is_a_span_with_tenant_method_and_outcome_and_no_secrets() {
    let _turn = TURN.lock().await;
    let service = start().await;
    let listed = "tether.v1.AdminService/ListWorkers";
    let before = rpc_spans(listed).len();

    // A caller's W3C trace context is continued.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = service.authed(pb::ListWorkersRequest::default());
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    service.admin().list_workers(request).await.unwrap();
    // A wrong secret for a real key id: UNAUTHENTICATED, and the tenant stays unknown.
    let key_id = service.admin_key.split('.').nth(1).unwrap().to_string();
    let forged = format!("tk.{key_id}.{}", "A".repeat(43));
    let mut request = Request::new(pb::ListWorkersRequest::default());
    request.metadata_mut().insert("authorization", format!("Bearer {forged}").parse().unwrap());
    let refused = service.admin().list_workers(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let token = service.token("alice").await;
    let mut client = pb::enrollment_service_client::EnrollmentServiceClient::new(service.channel.clone());
    let begun =
        client.begin_enrollment(pb::BeginEnrollmentRequest { token: token.clone() }).await.unwrap().into_inner();
    let garbage = pb::FinishEnrollmentRequest {
        enrollment_id: begun.enrollment_id,
        token: token.clone(),
        registration_response_json: "{\"not\": \"a registration\"}".into(),
    };
    assert_eq!(client.finish_enrollment(garbage).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    let calls = rpc_spans_at_least(listed, before + 2).await;
    assert_eq!(calls.len(), before + 2, "one span per call");
    let ok = calls.iter().find(|s| attr(s, "outcome") == Some("OK".into())).expect("the OK call's span");
    assert_eq!(attr(ok, "tenant"), Some(service.tenant_id.clone().into()));
    assert_eq!(attr(ok, "rpc.method"), Some("ListWorkers".into()));
    assert_eq!(attr(ok, "rpc.service"), Some("tether.v1.AdminService".into()));
    assert_eq!(attr(ok, "rpc.grpc.status_code"), Some(Value::I64(0)));
    assert_eq!(ok.span_context.trace_id(), TraceId::from_hex(trace_id).unwrap());
    assert_eq!(ok.parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert_eq!(ok.span_kind, opentelemetry::trace::SpanKind::Server);
    let denied = calls.iter().find(|s| attr(s, "outcome") == Some("UNAUTHENTICATED".into())).expect("refused span");
    assert_eq!(attr(denied, "rpc.grpc.status_code"), Some(Value::I64(16)));
    assert_eq!(attr(denied, "tenant"), None, "no tenant is known for a forged key");
    // A client's mistake is not a server error.
    assert_eq!(denied.status, opentelemetry::trace::Status::Unset);

    // The other tests of this binary finish enrollments at the same time (one refused
    // FAILED_PRECONDITION), into the same exporter: pick this test's span by its tenant.
    let tenant = Some(service.tenant_id.clone().into());
    let mut mine = Vec::new();
    for _ in 0..100 {
        mine = rpc_spans("tether.v1.EnrollmentService/FinishEnrollment");
        mine.retain(|s| attr(s, "tenant") == tenant);
        if !mine.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(mine.len(), 1, "the token names the tenant");
    assert_eq!(attr(&mine[0], "outcome"), Some("INVALID_ARGUMENT".into()));

    // No key, secret or token anywhere: attributes of spans and of their events.
    let secret = service.admin_key.rsplit('.').next().unwrap().to_string();
    for span in spans() {
        let mut values: Vec<String> = span.attributes.iter().map(|kv| kv.value.as_str().into_owned()).collect();
        for event in &span.events.events {
            values.push(event.name.to_string());
            values.extend(event.attributes.iter().map(|kv| kv.value.as_str().into_owned()));
        }
        for value in values {
            for needle in [&service.admin_key, &secret, &forged, &token] {
                assert!(!value.contains(needle.as_str()), "span {} carries a secret: {value}", span.name);
            }
        }
    }
}

#[tokio::test]
async fn enrollment_verification_is_a_child_span_and_outcomes_are_counted() {
    let _turn = TURN.lock().await;
    let service = start().await;
    let enrollments = |outcome: &'static str, format: &'static str| {
        metric("tether.enrollments", &[("kind", "webauthn"), ("outcome", outcome), ("format", format)])
    };
    let attested_before = enrollments("attested", "packed");
    let rejected_before = enrollments("rejected", "unknown");
    let steps_before = metric("tether.verification.duration", &[("step", "webauthn.attestation")]);
    let finish_calls_before = metric(
        "tether.rpc.server.calls",
        &[("method", "tether.v1.EnrollmentService/FinishEnrollment"), ("code", "OK")],
    );

    let token = service.token("bob").await;
    let mut auth = service.authenticator(true);
    let enrolled = service.enroll(&token, &mut auth).await.unwrap();
    assert!(enrolled.attested);
    // fmt "none" under the default policy (attestation required): refused.
    let token = service.token("carol").await;
    let refused = service.enroll(&token, &mut service.authenticator(false)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    let this_tenant = |s: &SpanData| {
        s.name == "tether.v1.EnrollmentService/FinishEnrollment"
            && attr(s, "tenant") == Some(service.tenant_id.clone().into())
    };
    for _ in 0..100 {
        if spans().iter().filter(|s| this_tenant(s)).count() >= 2 {
            break;
        }
        // A call's span ends when the server drops the call, which may be just after the response.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let all = spans();
    let finishes: Vec<&SpanData> = all
        .iter()
        .filter(|s| s.name == "tether.v1.EnrollmentService/FinishEnrollment")
        .filter(|s| attr(s, "tenant") == Some(service.tenant_id.clone().into()))
        .collect();
    let ok = finishes.iter().find(|s| attr(s, "outcome") == Some("OK".into())).expect("the enrollment's span");
    let children: Vec<&SpanData> = all
        .iter()
        .filter(|s| {
            s.parent_span_id == ok.span_context.span_id() && s.span_context.trace_id() == ok.span_context.trace_id()
        })
        .collect();
    let names: Vec<&str> = children.iter().map(|s| s.name.as_ref()).collect();
    assert!(names.contains(&"webauthn.attestation"), "children: {names:?}");
    assert!(names.contains(&"risk.evaluate"), "children: {names:?}");
    let verification = children.iter().find(|s| s.name == "webauthn.attestation").unwrap();
    assert_eq!(attr(verification, "outcome"), Some("ok".into()));
    // Only the step, its outcome and where in the code it ran: no verification input.
    let instrumentation = ["code.file.path", "code.module.name", "code.line.number", "target", "busy_ns", "idle_ns"];
    let keys: Vec<&str> = verification.attributes.iter().map(|kv| kv.key.as_str()).collect();
    let own: Vec<&&str> = keys.iter().filter(|k| !instrumentation.contains(k)).collect();
    assert_eq!(own, [&"step", &"outcome"], "{keys:?}");
    let refused_span = finishes.iter().find(|s| attr(s, "outcome") == Some("FAILED_PRECONDITION".into()));
    assert!(refused_span.is_some(), "the refused enrollment has its span");

    assert_eq!(enrollments("attested", "packed") - attested_before, 1.0);
    assert_eq!(enrollments("rejected", "unknown") - rejected_before, 1.0);
    assert_eq!(metric("tether.verification.duration", &[("step", "webauthn.attestation")]) - steps_before, 2.0);
    let finish_calls = metric(
        "tether.rpc.server.calls",
        &[("method", "tether.v1.EnrollmentService/FinishEnrollment"), ("code", "OK")],
    );
    assert_eq!(finish_calls - finish_calls_before, 1.0);
}

#[tokio::test]
async fn presence_access_flags_and_pool_are_measured() {
    let _turn = TURN.lock().await;
    let service = start().await;
    let presence_ok = metric("tether.presence.answers", &[("outcome", "ok")]);
    let presence_replayed = metric("tether.presence.answers", &[("outcome", "replayed")]);
    let allow = metric("tether.access.decisions", &[("decision", "allow")]);
    let deny = metric("tether.access.decisions", &[("decision", "deny")]);
    let unknown_worker = metric("tether.access.deny_reasons", &[("reason", "worker_unknown")]);
    let unattested_flags = metric("tether.flags.raised", &[("kind", "unattested_hardware"), ("severity", "review")]);
    let unattested = metric("tether.enrollments", &[("outcome", "unattested"), ("format", "none")]);

    let token = service.token("dave").await;
    let mut auth = service.authenticator(true);
    let credential_id = service.enroll(&token, &mut auth).await.unwrap().credential_id;
    let mut presence = pb::presence_service_client::PresenceServiceClient::new(service.channel.clone());
    let challenge = loop {
        let poll = pb::PollChallengesRequest { credential_id: credential_id.clone() };
        if let Some(c) = presence.poll_challenges(poll).await.unwrap().into_inner().challenges.pop() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let json = auth.get_assertion(&challenge.request_options_json, &challenge.origin).unwrap();
    let answer = |json: String| pb::AnswerChallengeRequest {
        challenge_id: challenge.challenge_id.clone(),
        assertion_response_json: json,
        ..Default::default()
    };
    presence.answer_challenge(answer(json.clone())).await.unwrap();
    assert_eq!(presence.answer_challenge(answer(json)).await.unwrap_err().code(), tonic::Code::FailedPrecondition);

    let mut access = pb::access_service_client::AccessServiceClient::new(service.channel.clone());
    let check = |worker: &str| {
        service.authed(pb::CheckAccessRequest {
            worker_external_id: worker.into(),
            device_id: String::new(),
            credential_id: credential_id.clone(),
            source_ip: "198.51.100.7".into(),
            gateway_id: "vpn".into(),
            ..Default::default()
        })
    };
    let allowed = access.check_access(check("dave")).await.unwrap().into_inner();
    assert_eq!(allowed.decision, pb::Decision::Allow as i32, "{:?}", allowed.reasons);
    let denied = access.check_access(check("nobody")).await.unwrap().into_inner();
    assert_eq!(denied.decision, pb::Decision::Deny as i32);

    // An unattested enrollment the policy allows raises a review flag.
    let policy = pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() };
    service.admin().update_policy(service.authed(policy)).await.unwrap();
    let token = service.token("erin").await;
    let enrolled = service.enroll(&token, &mut service.authenticator(false)).await.unwrap();
    assert!(!enrolled.attested);

    assert_eq!(metric("tether.presence.answers", &[("outcome", "ok")]) - presence_ok, 1.0);
    assert_eq!(metric("tether.presence.answers", &[("outcome", "replayed")]) - presence_replayed, 1.0);
    assert_eq!(metric("tether.access.decisions", &[("decision", "allow")]) - allow, 1.0);
    assert_eq!(metric("tether.access.decisions", &[("decision", "deny")]) - deny, 1.0);
    assert_eq!(metric("tether.access.deny_reasons", &[("reason", "worker_unknown")]) - unknown_worker, 1.0);
    let flags = metric("tether.flags.raised", &[("kind", "unattested_hardware"), ("severity", "review")]);
    assert_eq!(flags - unattested_flags, 1.0);
    assert_eq!(metric("tether.enrollments", &[("outcome", "unattested"), ("format", "none")]) - unattested, 1.0);
    assert!(metric("tether.verification.duration", &[("step", "webauthn.assertion"), ("outcome", "ok")]) >= 1.0);
    // The pool gauges read the serving store's pool: SQLite's default of 8 connections.
    assert_eq!(metric("tether.db.pool.max", &[]), 8.0);
    assert!(metric("tether.db.pool.connections", &[("state", "idle")]) >= 1.0);

    let mut answers = rpc_spans("tether.v1.PresenceService/AnswerChallenge");
    for _ in 0..100 {
        if answers.iter().any(|s| attr(s, "outcome") == Some("OK".into())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        answers = rpc_spans("tether.v1.PresenceService/AnswerChallenge");
    }
    let ok = answers.iter().find(|s| attr(s, "outcome") == Some("OK".into())).expect("the answer's span");
    assert_eq!(attr(ok, "tenant"), Some(service.tenant_id.clone().into()));
    let all = spans();
    assert!(
        all.iter().any(|s| s.name == "webauthn.assertion" && s.parent_span_id == ok.span_context.span_id()),
        "the assertion check is a child of the answer's span"
    );
}
