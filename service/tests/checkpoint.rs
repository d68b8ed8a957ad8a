//! SQLite checkpoints run in the background, not inside a request's commit.

use std::time::{Duration, Instant};

use sqlx::Row;
use tetherd::store::Store;

/// Commits `rows` rows of 1 KiB, each in a transaction of its own, as requests do.
async fn write(store: &Store, rows: usize) {
    for i in 0..rows {
        let mut tx = store.begin().await.expect("begin");
        sqlx::query("INSERT INTO scratch (id, body) VALUES ($1, $2)")
            .bind(i64::try_from(i).expect("small"))
            .bind("x".repeat(1024))
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn the_background_task_copies_the_log_into_the_database_without_a_commit_doing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.db");
    let store = Store::open(&format!("sqlite://{}", file.display())).await.expect("open");
    let backstop: i64 = sqlx::query("PRAGMA wal_autocheckpoint")
        .fetch_one(store.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("value");
    assert_eq!(backstop, i64::from(tetherd::store::checkpoint::BACKSTOP_PAGES));
    sqlx::query("CREATE TABLE scratch (id BIGINT PRIMARY KEY, body TEXT)").execute(store.pool()).await.expect("table");
    store.checkpoint().await.expect("checkpoint");
    let size = || std::fs::metadata(&file).expect("database file").len();

    // ~300 pages: below both the backstop and SQLite's own default of 1,000, so no commit
    // checkpoints and the rows stay in the log.
    let before = size();
    write(&store, 300).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(size(), before, "without the task the database file does not change");

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let task = store.spawn_checkpoints(stopping).expect("a task on SQLite");
    let deadline = Instant::now() + Duration::from_secs(10);
    while size() < before + 300 * 1024 {
        assert!(Instant::now() < deadline, "the task never copied the log into the database");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = store.checkpoint().await.expect("checkpoint").expect("SQLite");
    assert!(!done.busy && done.copied_pages == done.log_pages, "{done:?}");
    stop.send(true).expect("stop");
    task.await.expect("the task ends when asked");
}
