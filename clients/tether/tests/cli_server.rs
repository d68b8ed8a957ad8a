//! The `tether` binary against in-process fake AccessService and
//! ReportService servers on loopback: exit codes of `gateway check`, the API
//! key header, error messages, paging and the JSON shapes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tether_proto::v1::access_service_server::{AccessService, AccessServiceServer};
use tether_proto::v1::report_service_server::{ReportService, ReportServiceServer};
use tether_proto::v1::{
    CheckAccessRequest, CheckAccessResponse, Decision, DenyReason, Flag, FlagSeverity, FlagStatus, ListFlagsRequest,
    ListFlagsResponse, ListPresenceFailuresRequest, ListPresenceFailuresResponse, ListSessionsRequest,
    ListSessionsResponse, PresenceEvent, PresenceOutcome, Reason,
};
use tonic::{Request, Response, Status};

const KEY: &str = "tk.key_test.secret";

#[derive(Default)]
struct Fake {
    authorization: Mutex<Vec<String>>,
    checks: Mutex<Vec<CheckAccessRequest>>,
    failure_requests: Mutex<Vec<ListPresenceFailuresRequest>>,
}

#[derive(Clone)]
struct Shared(Arc<Fake>);

impl Shared {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header =
            request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        self.0.authorization.lock().unwrap().push(header.clone());
        if header != format!("Bearer {KEY}") {
            return Err(Status::unauthenticated("the API key is not valid"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl AccessService for Shared {
    async fn check_access(
        &self,
        request: Request<CheckAccessRequest>,
    ) -> Result<Response<CheckAccessResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.0.checks.lock().unwrap().push(request.clone());
        let response = match request.worker_external_id.as_str() {
            "alice" => CheckAccessResponse {
                decision: Decision::Allow as i32,
                reasons: vec![],
                session_id: "ses_1".into(),
                device_id: "dev_1".into(),
                credential_id: "Y3JlZA".into(),
                last_presence_at_ms: 1_700_000_000_000,
                open_flags: vec![],
                would_deny_reasons: vec![],
            },
            "bob" => CheckAccessResponse {
                decision: Decision::Deny as i32,
                reasons: vec![Reason {
                    code: DenyReason::PresenceStale as i32,
                    detail: "last presence answer is older than 2h".into(),
                }],
                session_id: "ses_2".into(),
                device_id: "dev_2".into(),
                credential_id: String::new(),
                last_presence_at_ms: 0,
                open_flags: vec![],
                would_deny_reasons: vec![],
            },
            "mallory" => CheckAccessResponse { decision: Decision::Unspecified as i32, ..Default::default() },
            _ => return Err(Status::permission_denied("this call needs a gateway key")),
        };
        Ok(Response::new(response))
    }

    async fn get_access_token_keys(
        &self,
        _request: Request<tether_proto::v1::GetAccessTokenKeysRequest>,
    ) -> Result<Response<tether_proto::v1::GetAccessTokenKeysResponse>, Status> {
        // A tetherd from before key sets named their tenant: a valid key, no `tenant_id`.
        let key = tether_attestation::access_token::VerifyingKey::new(
            tether_attestation::access_token::KeyAlgorithm::EdDsa,
            &[9; 32],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(tether_proto::v1::GetAccessTokenKeysResponse {
            keys: vec![tether_proto::v1::AccessTokenKey {
                key_id: key.key_id.clone(),
                public_key: String::new(),
                active: true,
                algorithm: "EdDSA".into(),
            }],
            token_ttl_ms: 300_000,
            tenant_id: String::new(),
            jwks_json: tether_attestation::access_token::jwks_json(&[key]),
            issuer: "tether".into(),
        }))
    }
}

fn event(id: &str) -> PresenceEvent {
    PresenceEvent {
        id: id.into(),
        outcome: PresenceOutcome::CloneSuspected as i32,
        device_id: "dev_1".into(),
        worker_external_id: "alice".into(),
        at_ms: 1_700_000_000_000,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl ReportService for Shared {
    async fn list_presence_failures(
        &self,
        request: Request<ListPresenceFailuresRequest>,
    ) -> Result<Response<ListPresenceFailuresResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.0.failure_requests.lock().unwrap().push(request.clone());
        let token = request.page.map(|p| p.page_token).unwrap_or_default();
        let (events, next) = match token.as_str() {
            "" => (vec![event("pev_1"), event("pev_2")], "page2"),
            "page2" => (vec![event("pev_3")], ""),
            _ => return Err(Status::invalid_argument("bad page token")),
        };
        Ok(Response::new(ListPresenceFailuresResponse { events, next_page_token: next.into() }))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        self.authorize(&request)?;
        // A broken server that repeats its token: --all must stop.
        Ok(Response::new(ListSessionsResponse { sessions: vec![], next_page_token: "same".into() }))
    }

    async fn update_flag(
        &self,
        _request: Request<tether_proto::v1::UpdateFlagRequest>,
    ) -> Result<Response<tether_proto::v1::Flag>, Status> {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn list_audit_log(
        &self,
        _request: Request<tether_proto::v1::ListAuditLogRequest>,
    ) -> Result<Response<tether_proto::v1::ListAuditLogResponse>, Status> {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn get_device_timeline(
        &self,
        _request: Request<tether_proto::v1::GetDeviceTimelineRequest>,
    ) -> Result<Response<tether_proto::v1::GetDeviceTimelineResponse>, Status> {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn get_summary(
        &self,
        _request: Request<tether_proto::v1::GetSummaryRequest>,
    ) -> Result<Response<tether_proto::v1::GetSummaryResponse>, Status> {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn list_flags(&self, request: Request<ListFlagsRequest>) -> Result<Response<ListFlagsResponse>, Status> {
        self.authorize(&request)?;
        assert_eq!(request.get_ref().status, FlagStatus::Open as i32);
        Ok(Response::new(ListFlagsResponse {
            flags: vec![Flag {
                id: "flg_1".into(),
                kind: "clone_suspected".into(),
                severity: FlagSeverity::High as i32,
                status: FlagStatus::Open as i32,
                evidence_json: r#"{"stored_sign_count":5,"presented_sign_count":3}"#.into(),
                raised_at_ms: 1_700_000_000_000,
                ..Default::default()
            }],
            next_page_token: String::new(),
        }))
    }
}

async fn start() -> (Arc<Fake>, SocketAddr) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Shared(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AccessServiceServer::new(shared.clone()))
            .add_service(ReportServiceServer::new(shared))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (fake, addr)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn tether(addr: SocketAddr, key: Option<&str>, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"));
    command.arg("--server").arg(format!("http://{addr}")).args(args);
    command.env_remove("TETHER_API_KEY").env_remove("TETHER_SERVER").env_remove("TETHER_TIMEOUT");
    if let Some(key) = key {
        command.env("TETHER_API_KEY", key);
    }
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn check_args(worker: &str) -> Vec<&str> {
    vec!["gateway", "check", "--worker", worker, "--device", "dev_1", "--source-ip", "127.0.0.1", "--gateway", "vpn-1"]
}

#[tokio::test]
async fn gateway_check_exit_codes() {
    let (fake, addr) = start().await;

    let allow = tether(addr, Some(KEY), &check_args("alice")).await;
    assert_eq!(allow.code, Some(0), "{}", allow.stderr);
    assert!(allow.stdout.starts_with("ALLOW\n"), "{}", allow.stdout);

    let deny = tether(addr, Some(KEY), &check_args("bob")).await;
    assert_eq!(deny.code, Some(1), "{}", deny.stderr);
    assert!(deny.stdout.starts_with("DENY\n"), "{}", deny.stdout);
    assert!(deny.stdout.contains("presence_stale: last presence answer is older than 2h"), "{}", deny.stdout);

    let unspecified = tether(addr, Some(KEY), &check_args("mallory")).await;
    assert_eq!(unspecified.code, Some(2), "no decision must not allow");

    let refused = tether(addr, Some(KEY), &check_args("eve")).await;
    assert_eq!(refused.code, Some(2));
    assert_eq!(refused.stderr, "error: this call needs a gateway key\n");

    let no_key = tether(addr, None, &check_args("alice")).await;
    assert_eq!(no_key.code, Some(2));
    assert!(no_key.stderr.starts_with("error: the API key is not valid"), "{}", no_key.stderr);
    assert!(no_key.stderr.contains("--api-key"), "{}", no_key.stderr);

    let headers = fake.authorization.lock().unwrap().clone();
    assert!(headers.contains(&format!("Bearer {KEY}")));
    assert!(headers.contains(&String::new()), "no header without a key: {headers:?}");
    let checks = fake.checks.lock().unwrap().clone();
    assert_eq!(checks[0].device_id, "dev_1");
    assert_eq!(checks[0].source_ip, "127.0.0.1");
    assert_eq!(checks[0].gateway_id, "vpn-1");
}

#[tokio::test]
async fn gateway_check_json() {
    let (_fake, addr) = start().await;
    let deny = tether(addr, Some(KEY), &[&["--output", "json"][..], &check_args("bob")].concat()).await;
    assert_eq!(deny.code, Some(1), "{}", deny.stderr);
    let value: serde_json::Value = serde_json::from_str(&deny.stdout).unwrap();
    assert_eq!(value["decision"], "deny");
    assert_eq!(value["reasons"][0]["code"], "presence_stale");
    assert_eq!(value["last_presence_at"], serde_json::Value::Null);

    let allow = tether(addr, Some(KEY), &[&["--output", "json"][..], &check_args("alice")].concat()).await;
    let value: serde_json::Value = serde_json::from_str(&allow.stdout).unwrap();
    assert_eq!(value["decision"], "allow");
    assert_eq!(value["last_presence_at"], "2023-11-14T22:13:20Z");
}

#[tokio::test]
async fn report_pages_and_filters() {
    let (fake, addr) = start().await;
    let one = tether(
        addr,
        Some(KEY),
        &[
            "--output",
            "json",
            "report",
            "presence-failures",
            "--since",
            "2023-11-01T00:00:00Z",
            "--worker",
            "alice",
            "--outcome",
            "missed,clone-suspected",
            "--limit",
            "2",
        ],
    )
    .await;
    assert_eq!(one.code, Some(0), "{}", one.stderr);
    let value: serde_json::Value = serde_json::from_str(&one.stdout).unwrap();
    assert_eq!(value["events"].as_array().unwrap().len(), 2);
    assert_eq!(value["next_page_token"], "page2");
    assert_eq!(value["events"][0]["outcome"], "clone_suspected");
    assert_eq!(value["events"][0]["at"], "2023-11-14T22:13:20Z");
    {
        let requests = fake.failure_requests.lock().unwrap();
        let first = &requests[0];
        assert_eq!(first.worker_external_id, "alice");
        assert_eq!(first.outcomes, vec![PresenceOutcome::Missed as i32, PresenceOutcome::CloneSuspected as i32]);
        let range = first.range.unwrap();
        assert_eq!(range.since_ms, 1_698_796_800_000);
        assert_eq!(range.until_ms, 0);
        assert_eq!(first.page.as_ref().unwrap().page_size, 2);
    }

    let all = tether(addr, Some(KEY), &["--output", "json", "report", "presence-failures", "--all"]).await;
    assert_eq!(all.code, Some(0), "{}", all.stderr);
    let value: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    let ids: Vec<&str> = value["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pev_1", "pev_2", "pev_3"]);
    assert_eq!(value["next_page_token"], serde_json::Value::Null);

    let next = tether(addr, Some(KEY), &["report", "presence-failures", "--page-token", "page2"]).await;
    assert_eq!(next.code, Some(0), "{}", next.stderr);
    assert!(next.stdout.starts_with("AT "), "{}", next.stdout);
    assert!(next.stdout.contains("pev_3") || next.stdout.contains("clone_suspected"), "{}", next.stdout);

    let table = tether(addr, Some(KEY), &["report", "presence-failures"]).await;
    assert!(table.stdout.contains("--page-token page2"), "{}", table.stdout);
}

#[tokio::test]
async fn report_all_stops_on_a_repeated_token() {
    let (_fake, addr) = start().await;
    let run = tether(addr, Some(KEY), &["report", "sessions", "--all"]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("same page token"), "{}", run.stderr);
}

#[tokio::test]
async fn report_flags_json_embeds_evidence() {
    let (_fake, addr) = start().await;
    let run = tether(addr, Some(KEY), &["--output", "json", "report", "flags", "--status", "open"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let flag = &value["flags"][0];
    assert_eq!(flag["severity"], "high");
    assert_eq!(flag["status"], "open");
    assert_eq!(flag["evidence"]["presented_sign_count"], 3);
    assert_eq!(flag["raised_at"], "2023-11-14T22:13:20Z");
}

#[tokio::test]
async fn bad_time_range_is_refused_before_connecting() {
    let (fake, addr) = start().await;
    let run = tether(
        addr,
        Some(KEY),
        &["report", "presence-failures", "--since", "2024-01-02T00:00:00Z", "--until", "2024-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--since must be before --until"), "{}", run.stderr);
    assert!(fake.failure_requests.lock().unwrap().is_empty());
}

/// Without the tenant a key set would admit every tenant's tokens offline, so
/// no file is written from a server that does not name it.
#[tokio::test]
async fn token_keys_refuses_a_key_set_without_its_tenant() {
    let (_fake, addr) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys.json");
    let run = tether(addr, Some(KEY), &["gateway", "token-keys", "--out", out.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("did not say which tenant these keys are for"), "{}", run.stderr);
    assert!(!out.exists(), "no key set file may be written");
    let printed = tether(addr, Some(KEY), &["gateway", "token-keys"]).await;
    assert_eq!((printed.code, printed.stdout.as_str()), (Some(2), ""), "{}", printed.stderr);
}
