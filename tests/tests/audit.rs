//! The audit log: every security-relevant action is chained, and edits or
//! deletions — in the database or in an export — are detected and named.

use tether_e2e::fixtures::{Org, prove_presence};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;

fn verify(server: &Server, key: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let args = [&["--output", "json", "audit", "verify"], extra].concat();
    let out = run_bin("tether", &args, &[("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", key)]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("not JSON: {} / {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), json)
}

async fn tamper(server: &Server, sql: &'static str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let done = sqlx::query(sql).execute(&pool).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
    pool.close().await;
}

#[tokio::test]
async fn actions_are_chained_and_tampering_is_named() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;
    prove_presence(&server, &mut device).await;
    org.update_policy(&server, pb::UpdatePolicyRequest { presence_window_seconds: Some(600), ..Default::default() })
        .await;
    let mut admin = server.admin().await;
    admin
        .revoke_device(authed(
            &org.keys.admin_key,
            pb::RevokeDeviceRequest { device_id: device.device_id.clone(), reason: "stolen".into() },
        ))
        .await
        .unwrap();

    let mut reports = server.reports().await;
    let log = reports
        .list_audit_log(authed(&org.analyst_key, pb::ListAuditLogRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = log.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "trust_anchors.added",
            "api_key.created",
            "api_key.created",
            "worker.upserted",
            "device.registered",
            "enrollment_token.issued",
            "device.enrolled",
            "policy.updated",
            "device.revoked",
        ]
        .iter()
        .filter(|a| **a != "worker.upserted")
        .copied()
        .collect::<Vec<_>>()
    );
    let revoked = log.entries.last().unwrap();
    assert!(revoked.actor.starts_with("key:key_"));
    assert_eq!(revoked.target, device.device_id);
    assert!(revoked.details_json.contains("stolen"));
    assert_eq!(log.head_seq, revoked.seq);
    let enrolled = log.entries.iter().find(|e| e.action == "device.enrolled").unwrap();
    assert!(enrolled.actor.starts_with("token:tok_"));

    let (code, verdict) = verify(&server, &org.analyst_key, &[]);
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["entries"], 9);
    let head = verdict["head_hash"].as_str().unwrap().to_string();
    assert_eq!(verify(&server, &org.analyst_key, &["--expect-head", &head]).0, 0);

    // An export verifies offline; an edited or removed line is named.
    let out = run_bin(
        "tether",
        &["audit", "export"],
        &[("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.analyst_key.as_str())],
    );
    assert!(out.status.success());
    let export = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &export).unwrap();
    assert_eq!(verify(&server, &org.analyst_key, &["--file", file.to_str().unwrap()]).0, 0);
    let edited = export.replacen("stolen", "returned", 1);
    std::fs::write(&file, edited).unwrap();
    let (code, verdict) = verify(&server, &org.analyst_key, &["--file", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(verdict["broken_seq"], 9, "{verdict}");
    let without_third: Vec<&str> = export.lines().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| l).collect();
    std::fs::write(&file, without_third.join("\n")).unwrap();
    let (code, verdict) = verify(&server, &org.analyst_key, &["--file", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(verdict["broken_seq"], 3, "{verdict}");

    // Someone with database access rewrites history: named by entry.
    tamper(&server, "UPDATE audit_log SET details_json = '{\"reason\":\"returned\"}' WHERE seq = 9").await;
    let (code, verdict) = verify(&server, &org.analyst_key, &[]);
    assert_eq!(code, 1);
    assert_eq!(verdict["broken_seq"], 9, "{verdict}");
    assert!(verdict["error"].as_str().unwrap().contains("changed"), "{verdict}");
}

#[tokio::test]
async fn removing_the_newest_entries_is_detected() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    org.register_device(&server, "w-bob", "SN-1").await;
    let (code, verdict) = verify(&server, &org.analyst_key, &[]);
    assert_eq!(code, 0);
    let recorded_head = verdict["head_hash"].as_str().unwrap().to_string();
    let recorded_seq = verdict["head_seq"].as_i64().unwrap();

    // Delete the newest entry: the server's own head still counts it.
    tamper(&server, "DELETE FROM audit_log WHERE action = 'device.registered'").await;
    let (code, verdict) = verify(&server, &org.analyst_key, &[]);
    assert_eq!(code, 1, "{verdict}");
    assert_eq!(verdict["broken_seq"], recorded_seq, "{verdict}");

    // Rewind the head as well: the chain looks whole, but the head recorded
    // earlier is gone from it.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let previous: String =
        sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_one(&pool).await.unwrap();
    sqlx::query("UPDATE audit_heads SET seq = seq - 1, hash = $1").bind(previous).execute(&pool).await.unwrap();
    pool.close().await;
    assert_eq!(verify(&server, &org.analyst_key, &[]).0, 0, "a consistent truncation passes the server check");
    let (code, verdict) = verify(&server, &org.analyst_key, &["--expect-head", &recorded_head]);
    assert_eq!(code, 1, "{verdict}");
    assert!(verdict["error"].as_str().unwrap().contains("not in the chain"), "{verdict}");
}

#[tokio::test]
async fn concurrent_actions_keep_one_unbroken_chain() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut admin = server.admin().await;
        let key = org.keys.admin_key.clone();
        tasks.push(tokio::spawn(async move {
            admin
                .register_device(authed(
                    &key,
                    pb::RegisterDeviceRequest {
                        serial_number: format!("SN-{i}"),
                        model: "T14".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (code, verdict) = verify(&server, &org.analyst_key, &[]);
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["entries"], 4 + 24);
}
