//! The farm view (`/farms`) over raw HTTP: only the tenant's devices named,
//! evidence escaped, the `day` parameter validated, nothing of it shown to
//! another tenant. Its timeline in a browser is in browser.rs.

use super::{console_server, http, plant_flag, session};
use tether_e2e::Server;
use tether_e2e::fixtures::Org;

/// Writes a cluster flag as the risk engine stores it (evidence unredacted, every member listed).
async fn insert_flag(server: &Server, id: &str, org: &Org, kind: &str, device: &str, evidence: serde_json::Value) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    sqlx::query(
        "INSERT INTO flags (id, tenant_id, kind, severity, status, device_id, worker_external_id, \
         credential_id, session_id, raised_at_ms, evidence_json) \
         VALUES ($1, $2, $3, 'high', 'open', $4, 'w-bob', '', '', $5, $6)",
    )
    .bind(id)
    .bind(&org.keys.tenant_id)
    .bind(kind)
    .bind(device)
    .bind(i64::try_from(now).unwrap())
    .bind(evidence.to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn the_farm_view_names_only_the_tenants_devices_escapes_evidence_and_refuses_a_bad_day() {
    let server = console_server();
    let org = Org::create(&server, "acme").await;
    let other = Org::create(&server, "other").await;
    let (_, device_id) = plant_flag(&server, &org, "w-bob", "SN-1").await;
    let member = |tenant: &str, worker: &str, device: &str| serde_json::json!({"tenant": tenant, "worker": worker, "device": device});
    let evidence = serde_json::json!({
        "egress": "lan:<img src=x>", "tenants": 2, "members_total": 3,
        "device": member(&org.keys.tenant_id, "w-bob", &device_id),
        "recent_sweeps": [{"answers": [
            member(&org.keys.tenant_id, "w-bob", &device_id),
            member(&other.keys.tenant_id, "w-secret-other", "dev_secret_other"),
        ]}],
    });
    insert_flag(&server, "flg_sweep", &org, "presence_burst", &device_id, evidence).await;
    let base = &server.console_url;

    let (cookie, _) = session(base, &org.analyst_key).await;
    let page = http(base, "GET", "/farms", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("lan:&lt;img src=x&gt;") && !page.body.contains("<img"), "{}", page.body);
    assert!(page.body.contains("farm suspected") && page.body.contains("presence_burst: one hand answering"));
    assert!(page.body.contains(&format!("href=\"/devices/{device_id}\"")), "our device is linked");
    assert!(page.body.contains("2 devices of 1 other employer"), "members_total 3 minus ours: {}", page.body);
    for secret in ["dev_secret_other", "w-secret-other", other.keys.tenant_id.as_str()] {
        assert!(!page.body.contains(secret), "the farm view shows another tenant's {secret}");
    }
    assert!(page.body.contains("<svg class=\"timeline day\""), "a timeline is drawn even on a day without answers");
    assert!(!page.body.contains("<script") && !page.body.contains("style="), "no script, no inline style");
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    );

    for bad in ["2026-02-30", "yesterday", "2026-12-07%3Cb%3E", "9999-01-01"] {
        let reply = http(base, "GET", &format!("/farms?day={bad}"), Some(&cookie), None).await;
        assert_eq!(reply.status, 400, "day={bad}: {}", reply.body);
        assert!(reply.body.contains("YYYY-MM-DD") || reply.body.contains("has not begun"), "{}", reply.body);
        assert!(!reply.body.contains("<b>"), "the refused value is escaped");
    }
    let past = http(base, "GET", "/farms?day=2020-01-01", Some(&cookie), None).await;
    assert_eq!(past.status, 200, "{}", past.body);
    assert!(past.body.contains("2020-01-01 (UTC)"));

    // The other employer sees neither the farm nor our device.
    let (theirs, _) = session(base, &other.analyst_key).await;
    let page = http(base, "GET", "/farms", Some(&theirs), None).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&device_id) && !page.body.contains("lan:"), "{}", page.body);
    assert!(page.body.contains("No suspected farm"), "{}", page.body);
}
