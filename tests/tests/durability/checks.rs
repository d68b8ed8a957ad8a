//! What a crash must never leave behind: records written only in part. Each
//! query counts one kind; the durability test expects every count to be 0,
//! and the test below writes each kind by hand to prove the query sees it.

use sqlx::AnyPool;
use tether_e2e::Server;
use tether_e2e::fixtures::Org;

/// Queries that count records a crash could have left half-written; each must be 0.
const HALF_WRITTEN: &[(&str, &str)] = &[
    (
        "credentials without their device",
        "SELECT COUNT(*) FROM credentials c WHERE NOT EXISTS \
         (SELECT 1 FROM devices d WHERE d.id = c.device_id AND d.tenant_id = c.tenant_id)",
    ),
    (
        "credentials without the token their enrollment consumed",
        "SELECT COUNT(*) FROM credentials c WHERE NOT EXISTS \
         (SELECT 1 FROM enrollment_tokens t WHERE t.device_id = c.device_id AND t.used_at_ms = c.enrolled_at_ms)",
    ),
    (
        "consumed tokens without a credential",
        "SELECT COUNT(*) FROM enrollment_tokens t WHERE t.used_at_ms IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM credentials c WHERE c.device_id = t.device_id AND c.enrolled_at_ms = t.used_at_ms)",
    ),
    (
        "consumed tokens without exactly one finished ceremony",
        "SELECT COUNT(*) FROM enrollment_tokens t WHERE t.used_at_ms IS NOT NULL AND 1 <> \
         (SELECT COUNT(*) FROM enrollment_sessions s WHERE s.token_id = t.id AND s.finished_at_ms IS NOT NULL)",
    ),
    (
        "finished ceremonies whose token was not consumed with them",
        "SELECT COUNT(*) FROM enrollment_sessions s WHERE s.finished_at_ms IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM enrollment_tokens t WHERE t.id = s.token_id AND t.used_at_ms = s.finished_at_ms)",
    ),
    (
        "credentials without a device.enrolled audit entry",
        "SELECT COUNT(*) FROM credentials c WHERE NOT EXISTS (SELECT 1 FROM audit_log a \
         WHERE a.tenant_id = c.tenant_id AND a.action = 'device.enrolled' AND a.target = c.device_id)",
    ),
    (
        "device.enrolled audit entries without a credential",
        "SELECT COUNT(*) FROM audit_log a WHERE a.action = 'device.enrolled' AND NOT EXISTS \
         (SELECT 1 FROM credentials c WHERE c.tenant_id = a.tenant_id AND c.device_id = a.target)",
    ),
    (
        "challenges both answered and missed",
        "SELECT COUNT(*) FROM challenges WHERE consumed_at_ms IS NOT NULL AND missed_at_ms IS NOT NULL",
    ),
    (
        "challenges with more than one outcome",
        "SELECT COUNT(*) FROM challenges ch WHERE 1 < (SELECT COUNT(*) FROM presence_events e \
         WHERE e.challenge_id = ch.id AND e.outcome IN ('ok', 'clone_suspected', 'missed'))",
    ),
    (
        "answered challenges without the answer's record",
        "SELECT COUNT(*) FROM challenges ch WHERE ch.consumed_at_ms IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM presence_events e WHERE e.challenge_id = ch.id \
          AND e.outcome IN ('ok', 'clone_suspected') AND e.at_ms = ch.consumed_at_ms)",
    ),
    (
        "answer records whose challenge was not consumed with them",
        "SELECT COUNT(*) FROM presence_events e WHERE e.outcome IN ('ok', 'clone_suspected') AND NOT EXISTS \
         (SELECT 1 FROM challenges ch WHERE ch.id = e.challenge_id AND ch.consumed_at_ms = e.at_ms)",
    ),
    (
        "missed challenges without their record, or records without the mark",
        "SELECT COUNT(*) FROM challenges ch WHERE (ch.missed_at_ms IS NOT NULL) <> EXISTS \
         (SELECT 1 FROM presence_events e WHERE e.challenge_id = ch.id AND e.outcome = 'missed' \
          AND e.at_ms = ch.missed_at_ms)",
    ),
    (
        "credentials whose last presence is not their latest recorded answer",
        "SELECT COUNT(*) FROM credentials c WHERE COALESCE(c.last_presence_at_ms, 0) <> COALESCE( \
         (SELECT MAX(e.at_ms) FROM presence_events e WHERE e.credential_id = c.id AND e.outcome = 'ok'), 0)",
    ),
    (
        "answers and misses without their risk event",
        "SELECT COUNT(*) FROM presence_events e WHERE e.outcome IN ('ok', 'missed') AND NOT EXISTS \
         (SELECT 1 FROM risk_events r WHERE r.credential_id = e.credential_id AND r.at_ms = e.at_ms)",
    ),
    (
        "enrollments without their risk event",
        "SELECT COUNT(*) FROM credentials c WHERE NOT EXISTS \
         (SELECT 1 FROM risk_events r WHERE r.credential_id = c.id AND r.at_ms = c.enrolled_at_ms)",
    ),
    (
        "audit heads that are not their chain's last entry",
        "SELECT COUNT(*) FROM audit_heads h WHERE h.seq <> (SELECT COUNT(*) FROM audit_log a \
         WHERE a.tenant_id = h.tenant_id) OR (h.seq > 0 AND NOT EXISTS (SELECT 1 FROM audit_log a \
         WHERE a.tenant_id = h.tenant_id AND a.seq = h.seq AND a.hash = h.hash))",
    ),
];

pub async fn check_nothing_half_written(server: &Server) {
    let pool = connect(server).await;
    let mut connection = pool.acquire().await.unwrap();
    for (what, count) in half_written(&mut connection).await {
        assert_eq!(count, 0, "{count} {what}");
    }
    drop(connection);
    pool.close().await;
}

async fn half_written(connection: &mut sqlx::AnyConnection) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for (what, sql) in HALF_WRITTEN {
        let count: i64 =
            sqlx::query_scalar(*sql).fetch_one(&mut *connection).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        counts.push((*what, count));
    }
    counts
}

/// The checks above are only worth something if they see half-written
/// records: write each kind by hand (then roll it back) and expect it named.
#[tokio::test]
async fn the_checks_name_each_kind_of_half_written_record() {
    let mut server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;
    tether_e2e::fixtures::prove_presence(&server, &mut device).await;
    server.stop();
    let pool = connect(&server).await;
    let tamperings: &[(&str, &str)] = &[
        ("DELETE FROM presence_events WHERE outcome = 'ok'", "answered challenges without the answer's record"),
        ("UPDATE challenges SET consumed_at_ms = NULL", "answer records whose challenge was not consumed with them"),
        (
            "UPDATE credentials SET last_presence_at_ms = NULL",
            "credentials whose last presence is not their latest recorded answer",
        ),
        ("UPDATE enrollment_tokens SET used_at_ms = NULL", "credentials without the token their enrollment consumed"),
        (
            "UPDATE enrollment_sessions SET finished_at_ms = NULL",
            "consumed tokens without exactly one finished ceremony",
        ),
        ("DELETE FROM credentials", "consumed tokens without a credential"),
        ("DELETE FROM audit_log WHERE action = 'device.enrolled'", "credentials without a device.enrolled audit entry"),
        ("UPDATE audit_heads SET seq = seq + 1", "audit heads that are not their chain's last entry"),
        (
            "INSERT INTO presence_events SELECT id || 'x', tenant_id, outcome, device_id, worker_external_id, \
             credential_id, challenge_id, at_ms, source_ip, detail FROM presence_events WHERE outcome = 'ok'",
            "challenges with more than one outcome",
        ),
        ("UPDATE challenges SET missed_at_ms = consumed_at_ms", "challenges both answered and missed"),
        (
            "DELETE FROM risk_events WHERE at_ms IN (SELECT at_ms FROM presence_events)",
            "answers and misses without their risk event",
        ),
        (
            "DELETE FROM risk_events WHERE at_ms IN (SELECT enrolled_at_ms FROM credentials)",
            "enrollments without their risk event",
        ),
    ];
    let mut connection = pool.acquire().await.unwrap();
    assert!(half_written(&mut connection).await.iter().all(|(_, n)| *n == 0), "the untouched database is whole");
    drop(connection);
    for (sql, expected) in tamperings {
        let mut tx = pool.begin().await.unwrap();
        // DELETE FROM credentials would trip foreign keys on the challenges first.
        if sql.starts_with("DELETE FROM credentials") {
            for dependent in ["DELETE FROM presence_events", "DELETE FROM challenges"] {
                sqlx::query(dependent).execute(&mut *tx).await.unwrap();
            }
        }
        let done = sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await.unwrap();
        assert!(done.rows_affected() > 0, "{sql}");
        let counts = half_written(&mut tx).await;
        let named = counts.iter().find(|(what, _)| what == expected).map(|(_, n)| *n);
        assert!(named.is_some_and(|n| n > 0), "{sql}: expected {expected:?} in {counts:?}");
        tx.rollback().await.unwrap();
    }
    pool.close().await;
}

pub async fn connect(server: &Server) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&server.database_url).await.expect("open the database directly")
}
