//! SQLite group commit (crate::store::group_commit): concurrent writers share
//! commits, each keeps its own rollback, and a batch that cannot commit fails
//! every member in it — nothing is acknowledged that was not committed.

use sqlx::Row;
use std::time::Duration;
use tetherd::store::{Store, StoreOptions};

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let options = StoreOptions { max_connections: Some(4), ..StoreOptions::default() };
    let store = Store::open_with(&url, &options).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    sqlx::query("CREATE TABLE writes (n INTEGER PRIMARY KEY)").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    (dir, store)
}

async fn written(store: &Store) -> Vec<i64> {
    let rows = sqlx::query("SELECT n FROM writes ORDER BY n").fetch_all(store.pool()).await.unwrap();
    rows.iter().map(|r| r.get::<i64, _>("n")).collect()
}

async fn insert(store: &Store, n: i64) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await.unwrap();
    sqlx::query("INSERT INTO writes (n) VALUES ($1)").bind(n).execute(&mut *tx).await?;
    tx.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_each_is_durable_when_acknowledged() {
    let (_dir, store) = open().await;
    let before = store.group_commits();
    let writers: Vec<_> = (0..64)
        .map(|n| {
            tokio::spawn({
                let store = store.clone();
                async move { insert(&store, n).await }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
        // Acknowledged means committed: visible to every other connection.
    }
    assert_eq!(written(&store).await, (0..64).collect::<Vec<_>>());
    let after = store.group_commits();
    let (batches, transactions) = (after.batches - before.batches, after.transactions - before.transactions);
    assert_eq!(transactions, 64, "every write transaction was committed in a batch");
    assert!(batches < 64, "64 concurrent writers took {batches} commits: nothing was shared");
}

#[tokio::test]
async fn a_writer_that_rolls_back_leaves_the_others_in_its_batch_alone() {
    let (_dir, store) = open().await;
    // Alone in its batch (no savepoint): its rollback ends the batch.
    let mut alone = store.begin().await.unwrap();
    sqlx::query("INSERT INTO writes (n) VALUES (0)").execute(&mut *alone).await.unwrap();
    alone.rollback().await.unwrap();
    let mut kept = store.begin().await.unwrap();
    sqlx::query("INSERT INTO writes (n) VALUES (1)").execute(&mut *kept).await.unwrap();
    // Queued behind `kept`: joins the same batch, then gives up.
    let dropped = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("INSERT INTO writes (n) VALUES (2)").execute(&mut *tx).await.unwrap();
            drop(tx);
        }
    });
    let rolled_back = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("INSERT INTO writes (n) VALUES (3)").execute(&mut *tx).await.unwrap();
            tx.rollback().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    kept.commit().await.unwrap();
    dropped.await.unwrap();
    rolled_back.await.unwrap();
    insert(&store, 4).await.unwrap();
    assert_eq!(written(&store).await, vec![1, 4]);
}

#[tokio::test]
async fn a_batch_that_cannot_commit_fails_every_member_in_it() {
    let (_dir, store) = open().await;
    let mut first = store.begin().await.unwrap();
    sqlx::query("INSERT INTO writes (n) VALUES (1)").execute(&mut *first).await.unwrap();
    // Queued for the next turn, it will destroy the batch transaction under everybody.
    let saboteur = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
            tx.commit().await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = first.commit().await;
    assert!(first.is_err(), "a write whose batch was rolled back was acknowledged");
    assert!(saboteur.await.unwrap().is_err());
    assert_eq!(written(&store).await, Vec::<i64>::new(), "nothing of the failed batch was kept");
    // The next writer starts a fresh batch.
    insert(&store, 5).await.unwrap();
    assert_eq!(written(&store).await, vec![5]);
}

#[tokio::test]
async fn a_cancelled_writer_is_rolled_back_and_frees_the_database_for_other_processes() {
    let (dir, store) = open().await;
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let other_process =
        Store::open_with(&url, &StoreOptions { statement_timeout: Duration::from_secs(2), ..StoreOptions::default() })
            .await
            .unwrap();
    let cancelled = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("INSERT INTO writes (n) VALUES (1)").execute(&mut *tx).await.unwrap();
            std::future::pending::<()>().await;
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancelled.abort();
    let _ = cancelled.await;
    insert(&other_process, 2).await.unwrap();
    assert_eq!(written(&store).await, vec![2]);
}

fn session(id: &str) -> tetherd::store::sessions::SessionRecord {
    tetherd::store::sessions::SessionRecord {
        id: id.into(),
        tenant_id: "t".into(),
        worker_external_id: "w".into(),
        device_id: "d".into(),
        credential_id: "c".into(),
        source_ip: "127.0.0.1".into(),
        gateway_id: "g".into(),
        decision: "allow".into(),
        reasons_json: "[]".into(),
        would_deny_json: "[]".into(),
        at_ms: 1,
    }
}

/// A store with tenant `t`, whose sessions the tests record.
async fn open_with_tenant() -> (tempfile::TempDir, Store) {
    let (dir, store) = open().await;
    let mut tx = store.begin().await.unwrap();
    sqlx::query("INSERT INTO tenants (id, name, created_at_ms, rp_id, origin) VALUES ('t', 't', 0, 'x', 'https://x')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (dir, store)
}

async fn session_ids(store: &Store) -> Vec<String> {
    let rows = sqlx::query("SELECT id FROM sessions ORDER BY id").fetch_all(store.pool()).await.unwrap();
    rows.iter().map(|r| r.get::<String, _>("id")).collect()
}

/// Access decisions queue their session rows and share transactions; a row
/// that cannot be written fails only its own caller, even when it was queued
/// into a transaction with others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_rows_share_transactions_and_a_bad_row_fails_only_its_caller() {
    use tetherd::store::append_queue::record_session as record;
    let (_dir, store) = open_with_tenant().await;
    record(&store, session("ses-taken")).await.unwrap();

    // Hold the database so that the rows queue up behind the first one.
    let held = store.begin().await.unwrap();
    let first = tokio::spawn({
        let store = store.clone();
        async move { record(&store, session("ses-first")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = store.group_commits();
    let queued: Vec<_> = (0..31)
        .map(|i| {
            let id = if i == 15 { "ses-taken".to_string() } else { format!("ses-{i:02}") };
            let store = store.clone();
            tokio::spawn(async move { (id.clone(), record(&store, session(&id)).await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    first.await.unwrap().unwrap();
    for task in queued {
        let (id, result) = task.await.unwrap();
        assert_eq!(result.is_err(), id == "ses-taken", "{id}: {result:?}");
    }
    let mut expected: Vec<String> = (0..31).filter(|i| *i != 15).map(|i| format!("ses-{i:02}")).collect();
    expected.extend(["ses-first".to_string(), "ses-taken".to_string()]);
    expected.sort();
    assert_eq!(session_ids(&store).await, expected);
    let after = store.group_commits();
    // The 30 good rows of the shared transaction were written again one by one:
    // at most 1 (first) + 30 transactions, fewer than one per caller plus the shared try.
    assert!(after.transactions - before.transactions <= 31, "{before:?} → {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_session_rows_take_fewer_transactions_than_rows() {
    use tetherd::store::append_queue::record_session as record;
    let (_dir, store) = open_with_tenant().await;
    let held = store.begin().await.unwrap();
    let before = store.group_commits();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { record(&store, session(&format!("ses-{i:02}"))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.rollback().await.unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(session_ids(&store).await.len(), 64);
    let after = store.group_commits();
    assert!(after.transactions - before.transactions < 10, "64 rows took {before:?} → {after:?}");
}

/// Risk events of concurrent checks share transactions too; each caller gets
/// its own event's position, and the log reads back every event in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_risk_events_each_get_their_own_position_in_the_log() {
    use tetherd::store::append_queue::append_risk_event;
    use tetherd::store::risk_events::{Position, StoredEvent, after};
    let (_dir, store) = open().await;
    let event = |device: String| StoredEvent {
        seq: 0,
        txn: 0,
        tenant_id: "t".into(),
        device_id: device,
        credential_id: String::new(),
        session_id: String::new(),
        at_ms: 1,
        event_json: "{}".into(),
        declared_json: String::new(),
    };
    let held = store.begin().await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (store, row) = (store.clone(), event(format!("d{i:02}")));
            tokio::spawn(async move { (format!("d{i:02}"), append_risk_event(&store, row).await.unwrap()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.rollback().await.unwrap();
    let mut positions = Vec::new();
    for task in tasks {
        positions.push(task.await.unwrap());
    }
    let log = after(&store, Position::START, Position::END, i64::MIN, 100).await.unwrap();
    assert_eq!(log.len(), 32);
    for (device, position) in &positions {
        let row = log.iter().find(|r| r.position() == *position).expect("the position names a row");
        assert_eq!(&row.device_id, device, "a caller got another caller's position");
    }
}
