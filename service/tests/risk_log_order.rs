//! The shared risk log's read order on a real PostgreSQL: a reader never takes
//! a row while a transaction that could still append before it is running, so
//! no replica's cursor can pass a row that commits late. On SQLite (one writer)
//! every committed row is readable at once, in sequence order.
//! PostgreSQL tests skip with a notice without TETHER_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::postgres_base;
use tetherd::store::risk_events::{Position, StoredEvent, after, append};
use tetherd::store::{Store, Tx};

fn event(device: &str) -> StoredEvent {
    StoredEvent {
        seq: 0,
        txn: 0,
        tenant_id: "t".into(),
        device_id: device.into(),
        credential_id: String::new(),
        session_id: String::new(),
        at_ms: 1,
        event_json: "{}".into(),
        declared_json: String::new(),
    }
}

async fn readable(store: &Store, cursor: Position) -> Vec<String> {
    let rows = after(store, cursor, Position::END, i64::MIN, 100).await.unwrap();
    rows.into_iter().map(|r| r.device_id).collect()
}

/// What a reader takes once unrelated transactions elsewhere on the server
/// (other tests' databases share its transaction ids) have ended.
async fn settled(store: &Store, cursor: Position, expected: usize) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let rows = readable(store, cursor).await;
        if rows.len() >= expected || started.elapsed() > std::time::Duration::from_secs(10) {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn postgres_store(test: &str) -> Option<Store> {
    let base = postgres_base(test)?;
    let url = common::fresh_database(&base, "tether_risklog", &[]).await;
    Some(Store::open(&url).await.unwrap())
}

/// Gives the transaction its id now, before it appends anything.
async fn take_transaction_id(tx: &mut Tx) {
    sqlx::query("SELECT pg_current_xact_id()::text").fetch_one(&mut **tx).await.unwrap();
}

#[tokio::test]
async fn a_row_committed_behind_a_running_append_waits_for_it() {
    let Some(store) = postgres_store("a_row_committed_behind_a_running_append_waits_for_it").await else { return };
    let mut slow = store.begin().await.unwrap();
    let first = append(&mut slow, &event("slow")).await.unwrap();
    let mut fast = store.begin().await.unwrap();
    let second = append(&mut fast, &event("fast")).await.unwrap();
    fast.commit().await.unwrap();
    assert!(first < second, "{first:?} {second:?}");

    // Reading "fast" now would move the cursor past "slow", which would then be skipped for good.
    assert!(readable(&store, Position::START).await.is_empty());
    slow.commit().await.unwrap();
    assert_eq!(settled(&store, Position::START, 2).await, ["slow", "fast"]);
}

#[tokio::test]
async fn the_order_is_by_transaction_even_when_sequence_numbers_disagree() {
    let test = "the_order_is_by_transaction_even_when_sequence_numbers_disagree";
    let Some(store) = postgres_store(test).await else { return };
    let mut older = store.begin().await.unwrap();
    take_transaction_id(&mut older).await;
    let mut newer = store.begin().await.unwrap();
    take_transaction_id(&mut newer).await;
    let low_seq = append(&mut newer, &event("newer")).await.unwrap();
    newer.commit().await.unwrap();
    // A reader in between takes nothing: the older transaction may still append.
    assert!(readable(&store, Position::START).await.is_empty());
    let high_seq = append(&mut older, &event("older")).await.unwrap();
    older.commit().await.unwrap();
    assert!(low_seq.seq < high_seq.seq && high_seq < low_seq, "{low_seq:?} {high_seq:?}");

    assert_eq!(settled(&store, Position::START, 2).await, ["older", "newer"]);
    assert_eq!(settled(&store, high_seq, 1).await, ["newer"]);
    assert!(readable(&store, low_seq).await.is_empty());
}

#[tokio::test]
async fn a_rolled_back_append_leaves_nothing_to_wait_for() {
    let Some(store) = postgres_store("a_rolled_back_append_leaves_nothing_to_wait_for").await else { return };
    let mut abandoned = store.begin().await.unwrap();
    append(&mut abandoned, &event("abandoned")).await.unwrap();
    let mut kept = store.begin().await.unwrap();
    append(&mut kept, &event("kept")).await.unwrap();
    kept.commit().await.unwrap();
    assert!(readable(&store, Position::START).await.is_empty());
    abandoned.rollback().await.unwrap();
    assert_eq!(settled(&store, Position::START, 1).await, ["kept"]);
}

#[tokio::test]
async fn on_sqlite_committed_rows_are_read_at_once_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let mut positions = Vec::new();
    for device in ["a", "b", "c"] {
        let mut tx = store.begin().await.unwrap();
        positions.push(append(&mut tx, &event(device)).await.unwrap());
        tx.commit().await.unwrap();
    }
    assert!(positions.iter().all(|p| p.txn == 0));
    assert_eq!(readable(&store, Position::START).await, ["a", "b", "c"]);
    assert_eq!(readable(&store, positions[0]).await, ["b", "c"]);
}
