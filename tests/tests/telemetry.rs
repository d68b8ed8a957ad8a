//! Telemetry of a real `tetherd`: the Prometheus endpoint (`--metrics-listen`)
//! and OTLP/gRPC export to a collector (`OTEL_EXPORTER_OTLP_ENDPOINT`), here
//! an OTLP TraceService/MetricsService served by the test on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse, metrics_service_server,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_server,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{Org, prove_presence};
use tether_e2e::{Server, authed, bin, run_bin};
use tether_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// `GET path` over plain HTTP/1.1; returns the status line, headers and body.
fn http_get(base: &str, path: &str) -> (String, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[tokio::test]
async fn prometheus_endpoint_serves_the_service_metrics() {
    let server = Server::start_with_args(&["--metrics-listen", "127.0.0.1:0"]);
    assert!(server.metrics_url.starts_with("http://127.0.0.1:"), "address printed: {:?}", server.metrics_url);
    let org = Org::create(&server, "Metrics Corp").await;
    let mut device = org.enrolled_device(&server, "alice").await;
    prove_presence(&server, &mut device).await;
    let decision = org.check(&server, "alice", &device.device_id).await;
    assert_eq!(decision.decision, pb::Decision::Allow as i32);
    org.check(&server, "mallory", &device.device_id).await;

    let (head, body) = http_get(&server.metrics_url, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    for expected in [
        r#"tether_rpc_server_calls_total{code="OK",method="tether.v1.AccessService/CheckAccess""#,
        "tether_rpc_server_duration_seconds_bucket{",
        r#"tether_enrollments_total{format="packed",kind="webauthn",outcome="attested""#,
        r#"tether_presence_answers_total{outcome="ok""#,
        r#"tether_verification_duration_seconds_count{outcome="ok",step="webauthn.attestation""#,
        r#"tether_verification_duration_seconds_count{outcome="ok",step="webauthn.assertion""#,
        r#"tether_access_decisions_total{decision="allow""#,
        r#"tether_access_decisions_total{decision="deny""#,
        r#"tether_access_deny_reasons_total{reason="worker_unknown""#,
        "tether_db_pool_max",
        r#"tether_db_pool_connections{state="idle""#,
        "tether_db_pool_waiting",
    ] {
        assert!(body.contains(expected), "missing {expected} in:\n{body}");
    }
    if server.database_url.starts_with("sqlite:") {
        // Every write above was committed by the group commit (PostgreSQL has none).
        for expected in ["tether_db_group_commits_total", "tether_db_group_committed_transactions_total"] {
            assert!(body.contains(expected), "missing {expected} in:\n{body}");
        }
    }
    for secret in [&org.keys.admin_key, &org.gateway_key] {
        assert!(!body.contains(secret.as_str()), "a key in the metrics");
    }
    let (head, _) = http_get(&server.metrics_url, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Off unless asked for.
    let plain = Server::start();
    assert!(plain.metrics_url.is_empty());
}

#[derive(Default, Clone)]
struct Collected {
    spans: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl trace_service_server::TraceService for Collected {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.spans.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl metrics_service_server::MetricsService for Collected {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    })
}

/// A `tetherd serve` with its own environment (the test kit's servers
/// inherit the test's). Killed on drop.
struct Tetherd {
    child: std::process::Child,
    url: String,
    database_url: String,
    pepper: String,
    _dir: tempfile::TempDir,
}

impl Tetherd {
    fn start(env: &[(&str, &str)]) -> Tetherd {
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pepper = dir.path().join("pepper").display().to_string();
        std::fs::write(&pepper, uuid::Uuid::new_v4().simple().to_string().repeat(2)).unwrap();
        let mut child = Command::new(bin("tetherd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &database_url])
            .args(["--api-key-pepper-file", &pepper])
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("tetherd exited before listening").unwrap();
            if let Some(addr) = line.strip_prefix("tetherd listening on ") {
                break format!("http://{}", addr.trim());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Tetherd { child, url, database_url, pepper, _dir: dir }
    }
}

impl Drop for Tetherd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Two workers: the collector keeps serving while the test blocks on tetherd start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_collector() {
    let collected = Collected::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let router = tonic::transport::Server::builder()
        .add_service(trace_service_server::TraceServiceServer::new(collected.clone()))
        .add_service(metrics_service_server::MetricsServiceServer::new(collected.clone()));
    tokio::spawn(router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));

    let tetherd = Tetherd::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_SERVICE_NAME", "tetherd-e2e"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
    ]);
    let init = run_bin(
        "tetherd",
        &[
            "init",
            "--tenant",
            "Otlp",
            "--rp-id",
            "otlp.example",
            "--origin",
            "https://otlp.example",
            "--output",
            "json",
        ],
        &[("TETHER_DATABASE_URL", &tetherd.database_url), ("TETHER_API_KEY_PEPPER_FILE", &tetherd.pepper)],
    );
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let keys: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
    let (tenant_id, admin_key) = (keys["tenant_id"].as_str().unwrap(), keys["admin_api_key"].as_str().unwrap());
    let channel = tonic::transport::Channel::from_shared(tetherd.url.clone()).unwrap().connect().await.unwrap();
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
    admin.list_workers(authed(admin_key, pb::ListWorkersRequest::default())).await.unwrap();
    let refused = admin.list_workers(authed("tk.nokey.nosecret", pb::ListWorkersRequest::default())).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);

    let deadline = Instant::now() + Duration::from_secs(20);
    let (span_attributes, resource) = loop {
        let found = collected.spans.lock().unwrap().iter().find_map(|request| {
            request.resource_spans.iter().find_map(|rs| {
                let span = rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()).find(|s| {
                    s.name == "tether.v1.AdminService/ListWorkers" && s.attributes.iter().any(|kv| kv.key == "tenant")
                })?;
                Some((span.attributes.clone(), rs.resource.clone().unwrap_or_default().attributes))
            })
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no ListWorkers span reached the collector");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(string_attr(&span_attributes, "tenant").as_deref(), Some(tenant_id));
    assert_eq!(string_attr(&span_attributes, "outcome").as_deref(), Some("OK"));
    assert_eq!(string_attr(&resource, "service.name").as_deref(), Some("tetherd-e2e"));

    let metric_names = loop {
        let names: Vec<String> = collected
            .metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter().map(|m| m.name.clone()))
            .collect();
        if names.iter().any(|n| n == "tether.rpc.server.calls") {
            break names;
        }
        assert!(Instant::now() < deadline, "no RPC metrics reached the collector: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metric_names.iter().any(|n| n == "tether.db.pool.max"), "{metric_names:?}");
}

#[test]
fn otlp_settings_tetherd_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("t.db").display());
    for env in [
        [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
        [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    ] {
        let out = run_bin("tetherd", &["migrate", "--database-url", &database_url], &env);
        assert!(!out.status.success(), "{env:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("OTEL_EXPORTER_OTLP_"), "the message names the setting: {stderr}");
    }
    // No endpoint: nothing to export, and nothing refused.
    let out =
        run_bin("tetherd", &["migrate", "--database-url", &database_url], &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
