//! Database timeouts are applied to every pooled connection.

mod common;

use std::time::{Duration, Instant};
use tetherd::store::{Store, StoreOptions};

fn options(statement_timeout: Duration) -> StoreOptions {
    StoreOptions {
        max_connections: Some(2),
        acquire_timeout: Duration::from_secs(5),
        statement_timeout,
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn sqlite_writers_wait_no_longer_than_the_statement_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let holder = Store::open_with(&url, &options(Duration::from_secs(10))).await.unwrap();
    let waiter = Store::open_with(&url, &options(Duration::from_millis(200))).await.unwrap();
    let lock = holder.begin().await.unwrap();
    let started = Instant::now();
    let blocked = waiter.begin().await;
    let waited = started.elapsed();
    assert!(blocked.is_err(), "a second writer got the lock while the first held it");
    assert!(waited >= Duration::from_millis(150), "gave up before the timeout: {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited past the timeout: {waited:?}");
    drop(lock);
    assert!(waiter.begin().await.is_ok(), "the lock was released");
}

#[tokio::test]
async fn postgres_statements_are_cancelled_after_the_statement_timeout() {
    let Some(base) = common::postgres_base("postgres_statements_are_cancelled_after_the_statement_timeout") else {
        return;
    };
    // A database of its own: opening a Store applies the migrations.
    let url = common::fresh_database(&base, "tether_options", &[]).await;
    let store = Store::open_with(&url, &options(Duration::from_millis(200))).await.unwrap();
    let started = Instant::now();
    let error = sqlx::query("SELECT pg_sleep(3)").execute(store.pool()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "the statement ran past its timeout");
    assert!(error.to_string().contains("statement timeout"), "{error}");
}

/// This process's SQLite writers queue for their turn (crate::store::tx)
/// instead of meeting SQLite's busy handler: the next writer starts as soon
/// as the holder commits, and one that waits past the busy timeout fails
/// UNAVAILABLE ("retry later"), not as an internal error.
#[tokio::test]
async fn sqlite_writers_of_one_process_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open_with(&url, &options(Duration::from_millis(200))).await.unwrap();

    let holder = store.begin().await.unwrap();
    let started = Instant::now();
    let refused = match store.begin().await {
        Ok(_) => panic!("a second writer got its turn while the first held it"),
        Err(e) => e,
    };
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(150), "gave up before the timeout: {waited:?}");
    let status = tonic::Status::from(tetherd::domain::error::ApiError::from(refused));
    assert_eq!(status.code(), tonic::Code::Unavailable, "{}", status.message());

    let next = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("CREATE TABLE turns (n INTEGER)").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    holder.commit().await.unwrap();
    next.await.unwrap();
}

/// `--sqlite-synchronous`: every pooled connection runs with the chosen setting
/// (SQLite's `synchronous` is per connection, not stored in the file).
#[tokio::test]
async fn sqlite_synchronous_applies_to_every_connection() {
    use tetherd::store::SqliteSynchronous;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    for (setting, expected) in [(SqliteSynchronous::Full, 2), (SqliteSynchronous::Normal, 1)] {
        let store = Store::open_with(
            &url,
            &StoreOptions { max_connections: Some(3), sqlite_synchronous: setting, ..StoreOptions::default() },
        )
        .await
        .unwrap();
        // Hold every connection at once, so each one is asked.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut connection = store.pool().acquire().await.unwrap();
            let value: i64 =
                sqlx::Row::get(&sqlx::query("PRAGMA synchronous").fetch_one(&mut *connection).await.unwrap(), 0);
            assert_eq!(value, expected, "{setting:?}");
            held.push(connection);
        }
        drop(held);
        store.close().await;
    }
}
