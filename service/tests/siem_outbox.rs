//! The SIEM outbox's store functions: per-tenant reads after a cursor, due
//! integrations, leases, and the two kinds of pruning (delivered rows, and the
//! per-tenant cap a dead receiver would otherwise exceed). SQLite, and
//! PostgreSQL with TETHER_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tetherd::store::Store;
use tetherd::store::outbox::{self, Integration};
use tetherd::store::risk_events::Position;

async fn append(store: &Store, tenant: &str, n: usize) {
    for i in 0..n {
        let mut tx = store.begin().await.unwrap();
        outbox::append(&mut tx, tenant, "flag.raised", i as i64, &format!("{{\"n\":{i}}}")).await.unwrap();
        tx.commit().await.unwrap();
    }
}

fn integration(id: &str, tenant: &str) -> Integration {
    Integration {
        id: id.into(),
        tenant_id: tenant.into(),
        name: id.into(),
        kind: "webhook".into(),
        target: "http://127.0.0.1:9/".into(),
        format: "json".into(),
        tls: false,
        secret: "s".into(),
        created_at_ms: 0,
        created_by: "test".into(),
        cursor: Position { txn: -1, seq: -1 },
        failures: 0,
        next_attempt_ms: 0,
        last_error: String::new(),
        last_delivered_at_ms: 0,
        delivered: 0,
    }
}

/// Rows of `tenant` readable after `cursor` (PostgreSQL: once other tests'
/// transactions on the server have ended).
async fn settled(store: &Store, tenant: &str, cursor: Position, expected: usize) -> Vec<outbox::OutboxRow> {
    let started = std::time::Instant::now();
    loop {
        let rows = outbox::after(store, tenant, cursor, 1000).await.unwrap();
        if rows.len() >= expected || started.elapsed() > std::time::Duration::from_secs(10) {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn exercise(store: Store) {
    append(&store, "a", 5).await;
    append(&store, "b", 3).await;
    let mut tx = store.begin().await.unwrap();
    outbox::insert_integration(&mut tx, &integration("int_a", "a")).await.unwrap();
    tx.commit().await.unwrap();

    // Only a's rows, in order.
    let rows = settled(&store, "a", Position { txn: -1, seq: -1 }, 5).await;
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.tenant_id == "a"));
    assert!(rows.windows(2).all(|w| w[0].position() < w[1].position()));

    // Due (rows pending), leased once, the cursor moves only for the holder.
    let due = outbox::due(&store, 1_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["int_a"]);
    assert!(outbox::claim(&store, "int_a", "me", 1_000, 21_000).await.unwrap());
    assert!(!outbox::claim(&store, "int_a", "other", 1_001, 21_001).await.unwrap());
    assert!(outbox::due(&store, 1_001, 10).await.unwrap().is_empty(), "leased");
    assert!(!outbox::delivered(&store, "int_a", "other", rows[2].position(), 1_002, 21_002).await.unwrap());
    assert!(outbox::delivered(&store, "int_a", "me", rows[2].position(), 1_002, 21_002).await.unwrap());
    // The cursor never moves backwards.
    assert!(!outbox::delivered(&store, "int_a", "me", rows[1].position(), 1_003, 21_003).await.unwrap());
    outbox::failed(&store, "int_a", "me", "HTTP 503", 5_000).await.unwrap();
    let stored = outbox::get_integration(&store, "a", "int_a").await.unwrap().unwrap();
    assert_eq!((stored.failures, stored.next_attempt_ms, stored.delivered), (1, 5_000, 1));
    assert_eq!(stored.cursor, rows[2].position());
    assert!(outbox::due(&store, 4_999, 10).await.unwrap().is_empty(), "backing off");
    assert_eq!(outbox::due(&store, 5_000, 10).await.unwrap().len(), 1);
    // Another tenant cannot read or remove it.
    assert!(outbox::get_integration(&store, "b", "int_a").await.unwrap().is_none());

    // Pruning keeps a's undelivered rows and drops all of b's (no integration reads them).
    assert_eq!(outbox::prune_delivered(&store, "a").await.unwrap(), 3);
    assert_eq!(outbox::prune_delivered(&store, "b").await.unwrap(), 3);
    let left = outbox::after(&store, "a", Position { txn: -1, seq: -1 }, 100).await.unwrap();
    assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [rows[3].seq, rows[4].seq]);

    // Over the cap, the oldest undelivered go, newest kept.
    append(&store, "a", 4).await;
    assert_eq!(outbox::prune_over_cap(&store, "a", 3).await.unwrap(), 3);
    assert_eq!(outbox::prune_over_cap(&store, "a", 3).await.unwrap(), 0);
    let kept = settled(&store, "a", Position { txn: -1, seq: -1 }, 3).await;
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|r| r.seq > rows[4].seq));
    assert_eq!(outbox::count(&store).await.unwrap(), 3);
}

#[tokio::test]
async fn outbox_reads_leases_and_pruning_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap()).await;
}

#[tokio::test]
async fn outbox_reads_leases_and_pruning_on_postgres() {
    let Some(base) = common::postgres_base("outbox_reads_leases_and_pruning_on_postgres") else { return };
    let url = common::fresh_database(&base, "tether_outbox", &[]).await;
    exercise(Store::open(&url).await.unwrap()).await;
}
