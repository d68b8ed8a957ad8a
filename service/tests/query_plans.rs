//! The queries every access check runs are index searches on SQLite, so their
//! cost does not grow with the risk log or a tenant's flags (issue #17: a
//! row-value range on `(txn, seq)` had made each catch-up scan the whole log).

use sqlx::Row;
use tetherd::store::Store;

async fn plan(store: &Store, sql: &str) -> Vec<String> {
    plan_with(store, sql, 0, 4).await
}

/// The plan of `sql` with `texts` text parameters, then `numbers` integer ones, bound (a
/// number bound to a text column's equality would keep SQLite off that column's indexes).
async fn plan_with(store: &Store, sql: &str, texts: usize, numbers: usize) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
    for _ in 0..texts {
        query = query.bind("x");
    }
    for _ in 0..numbers {
        query = query.bind(0_i64);
    }
    let rows = query.fetch_all(store.pool()).await.unwrap();
    rows.iter().map(|r| r.get::<String, _>("detail")).collect()
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn the_risk_log_catch_up_searches_by_sequence() {
    let (_dir, store) = store().await;
    let steps = plan(&store, tetherd::store::risk_events::SQLITE_AFTER).await;
    assert!(steps.iter().all(|s| !s.starts_with("SCAN")), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("seq>?")), "not a search by seq: {steps:?}");
}

#[tokio::test]
async fn open_flags_are_found_by_device_and_by_worker_not_by_scanning_the_tenant() {
    let (_dir, store) = store().await;
    let steps = plan(&store, tetherd::store::flags::OPEN_KINDS).await;
    assert!(steps.iter().all(|s| !s.starts_with("SCAN")), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("device_id=?")), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("worker_external_id=?")), "{steps:?}");
}

#[tokio::test]
async fn credentials_due_a_challenge_are_found_per_tenant_by_index_not_by_walking_every_credential() {
    let (_dir, store) = store().await;
    let steps = plan(&store, tetherd::store::presence::CREDENTIALS_DUE).await;
    assert!(
        steps.iter().any(|s| s.contains("credentials_tenant_challenged (tenant_id=? AND last_challenged_at_ms<")),
        "{steps:?}"
    );
    assert!(steps.iter().all(|s| !s.starts_with("SCAN c") && !s.contains("TEMP B-TREE")), "{steps:?}");
}

#[tokio::test]
async fn the_farm_view_reads_a_range_of_the_tenants_flags_and_each_devices_answers_by_index() {
    let (_dir, store) = store().await;
    let steps = plan_with(&store, tetherd::store::flags::UNRESOLVED_SINCE, 1, 2).await;
    assert!(steps.iter().any(|s| s.contains("flags_tenant_at (tenant_id=? AND raised_at_ms>?)")), "{steps:?}");
    assert!(steps.iter().all(|s| !s.starts_with("SCAN") && !s.contains("TEMP B-TREE")), "{steps:?}");
    let steps = plan_with(&store, tetherd::store::presence::DEVICE_ANSWERS, 2, 3).await;
    assert!(
        steps
            .iter()
            .any(|s| s
                .contains("presence_events_tenant_device_at (tenant_id=? AND device_id=? AND at_ms>? AND at_ms<?)")),
        "{steps:?}"
    );
    assert!(
        steps.iter().any(|s| s.contains("SEARCH c USING INDEX sqlite_autoindex_challenges_1 (id=?)")
            || s.contains("SEARCH c USING INTEGER PRIMARY KEY")),
        "{steps:?}"
    );
    assert!(steps.iter().all(|s| !s.starts_with("SCAN") && !s.contains("TEMP B-TREE")), "{steps:?}");
    let steps = plan_with(&store, tetherd::store::presence::DEVICE_ANSWER_COUNT, 2, 2).await;
    assert!(
        steps
            .iter()
            .any(|s| s
                .contains("presence_events_tenant_device_at (tenant_id=? AND device_id=? AND at_ms>? AND at_ms<?)")),
        "{steps:?}"
    );
}

#[tokio::test]
async fn an_access_checks_inputs_are_one_statement_of_key_and_index_searches() {
    let (_dir, store) = store().await;
    let steps = plan_with(&store, tetherd::store::decision::DECISION_INPUTS.as_str(), 4, 0).await;
    // The one-row base is the only scan; every table is reached by a key or an index.
    let scans: Vec<&String> = steps.iter().filter(|s| s.starts_with("SCAN")).collect();
    assert!(scans.iter().all(|s| *s == "SCAN base" || *s == "SCAN CONSTANT ROW"), "{steps:?}");
    for table in ["w USING", "c USING", "d USING", "t USING", "e USING INDEX credentials_worker_enrolled", "n USING"] {
        assert!(steps.iter().any(|s| s.starts_with(&format!("SEARCH {table}"))), "no search of {table}: {steps:?}");
    }
    assert!(
        steps.iter().any(|s| s.contains("SEARCH x USING INDEX credentials_device (tenant_id=? AND device_id=?)")),
        "{steps:?}"
    );
    assert!(steps.iter().any(|s| s.starts_with("SEARCH g") && s.contains("device_id=?")), "{steps:?}");
    assert!(steps.iter().any(|s| s.starts_with("SEARCH g") && s.contains("worker_external_id=?")), "{steps:?}");
}
