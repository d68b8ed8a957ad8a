//! A deadlock on a real write path, through gRPC: the service on PostgreSQL
//! finishes an (unattested) enrollment while the test holds the tenant's
//! audit head and then asks for the enrollment token's row, the opposite
//! lock order. PostgreSQL aborts the service's transaction (the test's own
//! deadlock check is set to wait a minute, so the victim is always the
//! service). With retries the call succeeds and everything is written once;
//! without, it fails ABORTED, nothing is written and calling again works.
//! Skips with a notice without TETHER_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::postgres_base;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use sqlx::{Connection, PgConnection};
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tetherd::domain::app::{App, Settings};
use tetherd::domain::tenancy::auth::Pepper;
use tetherd::store::{Store, StoreOptions};
use tonic::transport::Channel;
use tonic::{Code, Request};

struct Capture {
    metrics: InMemoryMetricExporter,
    meter: SdkMeterProvider,
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let metrics = InMemoryMetricExporter::default();
        let meter = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(metrics.clone()).build()).build();
        assert!(tetherd::telemetry::metrics::install(&meter));
        Capture { metrics, meter }
    })
}

/// Metrics are process-wide: the tests take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The sum of a counter's points whose labels include `labels`.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    capture().meter.force_flush().unwrap();
    let exported = capture().metrics.get_finished_metrics().unwrap();
    let Some(last) = exported.last() else { return 0 };
    let mut total = 0;
    for m in last.scope_metrics().flat_map(|s| s.metrics()).filter(|m| m.name() == name) {
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else { panic!("{name} is not a counter") };
        for point in sum.data_points() {
            let attrs: Vec<_> = point.attributes().collect();
            if labels.iter().all(|(k, v)| attrs.iter().any(|kv| kv.key.as_str() == *k && kv.value.as_str() == *v)) {
                total += point.value();
            }
        }
    }
    total
}

struct Service {
    channel: Channel,
    admin_key: String,
    tenant_id: String,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(base: &str, retry_attempts: u32) -> Service {
    capture();
    // The service's deadlock check runs 3 s into a lock wait: ample time for the test to close the cycle.
    let url = common::fresh_database(base, "tether_retry", &["deadlock_timeout = '3s'"]).await;
    let store = Store::open_with(&url, &StoreOptions { retry_attempts, ..StoreOptions::default() }).await.unwrap();
    let pepper = Pepper::ephemeral();
    let (tenant, key) =
        tetherd::domain::tenancy::create_tenant(&store, &pepper, "Retry", "retry.example", "https://retry.example")
            .await
            .unwrap();
    let engine = tether_risk::Engine::new(tether_risk::RiskConfig::default()).unwrap();
    let app = App::new(store, pepper, Settings::default(), engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tetherd::process::server::serve(app, listener, None, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(address).unwrap().connect().await.unwrap();
    let service = Service { channel, admin_key: key.secret, tenant_id: tenant.id, url, stop: Some(stop) };
    let policy = pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() };
    service.admin().update_policy(service.authed(policy)).await.unwrap();
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

    /// A registered device, the ceremony's finishing request and the (unattested) key.
    async fn ceremony(&self) -> (String, pb::FinishEnrollmentRequest, SoftAuthenticator) {
        let device = pb::RegisterDeviceRequest {
            serial_number: "SN-1".into(),
            model: "ThinkPad T14".into(),
            worker_external_id: "alice".into(),
            worker_display_name: "Alice".into(),
            ..Default::default()
        };
        let device = self.admin().register_device(self.authed(device)).await.unwrap().into_inner();
        let request = pb::CreateEnrollmentTokenRequest { device_id: device.id.clone(), ttl_seconds: 0 };
        let token = self.admin().create_enrollment_token(self.authed(request)).await.unwrap().into_inner().secret;
        let mut client = pb::enrollment_service_client::EnrollmentServiceClient::new(self.channel.clone());
        let begun = client.begin_enrollment(pb::BeginEnrollmentRequest { token: token.clone() }).await.unwrap();
        let begun = begun.into_inner();
        let mut key = SoftAuthenticator::new(AttestationMode::None, uuid::Uuid::new_v4()).unwrap();
        let json = key.make_credential(&begun.creation_options_json, &begun.origin).unwrap();
        let finish =
            pb::FinishEnrollmentRequest { enrollment_id: begun.enrollment_id, token, registration_response_json: json };
        (device.id, finish, key)
    }

    /// Runs `call` while a rival transaction holds the rows `hold` locks: once the service's
    /// transaction waits for them (its statement starts with `service_waits_on`), the rival
    /// locks `then`, rows the service's transaction holds, and so closes the cycle.
    async fn against_rival<T: Send + 'static>(
        &self,
        hold: &'static str,
        service_waits_on: &str,
        then: &'static str,
        call: impl Future<Output = Result<T, tonic::Status>> + Send + 'static,
    ) -> Result<T, tonic::Status> {
        let mut rival = PgConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql("SET deadlock_timeout = '60s'").execute(&mut rival).await.unwrap();
        let mut tx = rival.begin().await.unwrap();
        sqlx::query(hold).bind(&self.tenant_id).execute(&mut *tx).await.unwrap();
        let call = tokio::spawn(call);
        self.wait_for_lock_wait(&format!("{service_waits_on}%")).await;
        // Returns once PostgreSQL has broken the deadlock by aborting the service's transaction.
        sqlx::query(then).bind(&self.tenant_id).execute(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
        call.await.unwrap()
    }

    /// Finishes the enrollment against a rival holding the tenant's audit head (which the
    /// enrollment's transaction appends to last) and then its token row (which it takes first).
    async fn finish_against_rival(&self, finish: pb::FinishEnrollmentRequest) -> Result<(), tonic::Status> {
        let mut client = pb::enrollment_service_client::EnrollmentServiceClient::new(self.channel.clone());
        self.against_rival(
            "UPDATE audit_heads SET seq = seq WHERE tenant_id = $1",
            "UPDATE audit_heads",
            "UPDATE enrollment_tokens SET used_at_ms = used_at_ms WHERE tenant_id = $1",
            async move { client.finish_enrollment(finish).await.map(drop) },
        )
        .await
    }

    async fn wait_for_lock_wait(&self, query: &str) {
        let mut watcher = PgConnection::connect(&self.url).await.unwrap();
        let started = Instant::now();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
            )
            .bind(query)
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the service never waited on {query}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Rows written: credentials, unattested flags, `device.enrolled` audit entries, used tokens.
    async fn written(&self) -> [i64; 4] {
        let mut db = PgConnection::connect(&self.url).await.unwrap();
        let mut counts = [0; 4];
        for (i, sql) in [
            "SELECT count(*) FROM credentials WHERE tenant_id = $1",
            "SELECT count(*) FROM flags WHERE tenant_id = $1 AND kind = 'unattested_hardware'",
            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'device.enrolled'",
            "SELECT count(*) FROM enrollment_tokens WHERE tenant_id = $1 AND used_at_ms IS NOT NULL",
        ]
        .into_iter()
        .enumerate()
        {
            counts[i] = sqlx::query_scalar(sql).bind(&self.tenant_id).fetch_one(&mut db).await.unwrap();
        }
        counts
    }

    /// The audit chain still verifies end to end.
    async fn verify_audit(&self) {
        let mut db = PgConnection::connect(&self.url).await.unwrap();
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT seq, prev_hash, hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq")
                .bind(&self.tenant_id)
                .fetch_all(&mut db)
                .await
                .unwrap();
        let mut prev = tetherd::domain::audit::GENESIS_HASH.to_string();
        for (i, (seq, prev_hash, hash)) in rows.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "audit sequence has a gap");
            assert_eq!(prev_hash, &prev, "audit entry {seq} does not link");
            prev = hash.clone();
        }
    }
}

const RETRIES: &str = "tether.db.retries";
const FLAGS: &str = "tether.flags.raised";
const WHAT: (&str, &str) = ("what", "enrollment.finish");
const UNATTESTED: (&str, &str) = ("kind", "unattested_hardware");

#[tokio::test]
async fn a_deadlocked_enrollment_is_run_again_and_written_once() {
    let Some(base) = postgres_base("a_deadlocked_enrollment_is_run_again_and_written_once") else { return };
    let _turn = TURN.lock().await;
    let service = start(&base, 3).await;
    let (_, finish, _) = service.ceremony().await;
    let (retried, recovered) =
        (counter(RETRIES, &[WHAT, ("outcome", "retried")]), counter(RETRIES, &[WHAT, ("outcome", "recovered")]));
    let flags = counter(FLAGS, &[UNATTESTED]);

    service.finish_against_rival(finish).await.expect("the enrollment succeeds on its second run");

    assert_eq!(service.written().await, [1, 1, 1, 1], "credential, flag, audit entry, used token: once each");
    service.verify_audit().await;
    assert_eq!(counter(RETRIES, &[WHAT, ("outcome", "retried")]) - retried, 1);
    assert_eq!(counter(RETRIES, &[WHAT, ("outcome", "recovered")]) - recovered, 1);
    assert_eq!(counter(FLAGS, &[UNATTESTED]) - flags, 1, "the rolled-back run's flag is not counted");
}

#[tokio::test]
async fn without_retries_a_deadlock_fails_aborted_and_the_call_can_be_repeated() {
    let Some(base) = postgres_base("without_retries_a_deadlock_fails_aborted_and_the_call_can_be_repeated") else {
        return;
    };
    let _turn = TURN.lock().await;
    let service = start(&base, 1).await;
    let (_, finish, _) = service.ceremony().await;
    let exhausted = counter(RETRIES, &[WHAT, ("outcome", "exhausted")]);
    let flags = counter(FLAGS, &[UNATTESTED]);

    let status = service.finish_against_rival(finish.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("retry the call"), "{}", status.message());
    assert_eq!(service.written().await, [0, 0, 0, 0], "the aborted enrollment left nothing behind");
    assert_eq!(counter(RETRIES, &[WHAT, ("outcome", "exhausted")]) - exhausted, 1);
    assert_eq!(counter(FLAGS, &[UNATTESTED]) - flags, 0);

    // ABORTED means "retry at a higher level": the same call now goes through.
    let mut client = pb::enrollment_service_client::EnrollmentServiceClient::new(service.channel.clone());
    client.finish_enrollment(finish).await.unwrap();
    assert_eq!(service.written().await, [1, 1, 1, 1]);
    service.verify_audit().await;
}

#[tokio::test]
async fn a_deadlocked_presence_answer_is_run_again_and_recorded_once() {
    let Some(base) = postgres_base("a_deadlocked_presence_answer_is_run_again_and_recorded_once") else { return };
    let _turn = TURN.lock().await;
    let service = start(&base, 3).await;
    let (device_id, finish, mut key) = service.ceremony().await;
    let mut enrollment = pb::enrollment_service_client::EnrollmentServiceClient::new(service.channel.clone());
    enrollment.finish_enrollment(finish).await.unwrap();
    let now = pb::ChallengeNowRequest { device_id, deadline_seconds: 0 };
    let challenge_id = service.admin().challenge_now(service.authed(now)).await.unwrap().into_inner().challenge_ids;
    let mut presence = pb::presence_service_client::PresenceServiceClient::new(service.channel.clone());
    let credential_id: String = sqlx::query_scalar("SELECT id FROM credentials")
        .fetch_one(&mut PgConnection::connect(&service.url).await.unwrap())
        .await
        .unwrap();
    let challenges = presence.poll_challenges(pb::PollChallengesRequest { credential_id }).await.unwrap();
    let challenge = challenges.into_inner().challenges.pop().expect("the challenge");
    assert_eq!(vec![challenge.challenge_id.clone()], challenge_id);
    let json = key.get_assertion(&challenge.request_options_json, &challenge.origin).unwrap();
    let answer = pb::AnswerChallengeRequest {
        challenge_id: challenge.challenge_id,
        assertion_response_json: json,
        ..Default::default()
    };
    let what = ("what", "presence.answer");
    let retried = counter(RETRIES, &[what, ("outcome", "retried")]);
    let ok = counter("tether.presence.answers", &[("outcome", "ok")]);

    // The answer consumes its challenge, then moves the credential's counter: the rival takes
    // the credential first, then the challenge.
    service
        .against_rival(
            "UPDATE credentials SET revoked_at_ms = revoked_at_ms WHERE tenant_id = $1",
            "UPDATE credentials",
            "UPDATE challenges SET consumed_at_ms = consumed_at_ms WHERE tenant_id = $1",
            async move { presence.answer_challenge(answer).await.map(drop) },
        )
        .await
        .expect("the answer is recorded on its second run");

    let mut db = PgConnection::connect(&service.url).await.unwrap();
    let events: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM presence_events").fetch_all(&mut db).await.unwrap();
    assert_eq!(events, vec!["ok".to_string()], "one answer, recorded once");
    let consumed: i64 = sqlx::query_scalar("SELECT count(*) FROM challenges WHERE consumed_at_ms IS NOT NULL")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(consumed, 1);
    assert_eq!(counter(RETRIES, &[what, ("outcome", "retried")]) - retried, 1);
    assert_eq!(counter("tether.presence.answers", &[("outcome", "ok")]) - ok, 1, "counted once");
}
