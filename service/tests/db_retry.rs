//! `Store::retrying` against a real PostgreSQL: a deadlock and a
//! serialization failure provoked with a second connection are run again and
//! commit once; attempts that run out fail ABORTED; errors that are not
//! conflicts (and SQLite's busy timeout) are not retried; the flag is checked
//! at start. PostgreSQL tests skip with a notice without TETHER_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::postgres_base;
use sqlx::{Connection, PgConnection};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tetherd::domain::error::ApiError;
use tetherd::store::{Store, StoreError, StoreOptions};
use tokio::sync::Notify;
use tonic::Code;

/// A fresh database with two probe rows and an attempt log. The deadlock
/// check runs 3 s into a lock wait (ample for the tests to close the cycle).
async fn fresh_database(base: &str) -> String {
    let url = common::fresh_database(base, "tether_retry", &["deadlock_timeout = '3s'"]).await;
    let mut db = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE probe (id INTEGER PRIMARY KEY, v INTEGER NOT NULL); \
         INSERT INTO probe VALUES (1, 0), (2, 0); \
         CREATE TABLE attempt_log (attempt INTEGER NOT NULL)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    url
}

async fn open(url: &str, retry_attempts: u32) -> Store {
    let options = StoreOptions { retry_attempts, ..StoreOptions::default() };
    Store::open_with(url, &options).await.unwrap()
}

/// The other party: a plain connection whose own deadlock check waits a
/// minute, so the transaction under test is always the one PostgreSQL aborts.
async fn rival(url: &str) -> PgConnection {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("SET deadlock_timeout = '60s'").execute(&mut c).await.unwrap();
    c
}

async fn probe(store: &Store) -> (Vec<i32>, i32, i32) {
    let log: Vec<i32> =
        sqlx::query_scalar("SELECT attempt FROM attempt_log ORDER BY attempt").fetch_all(store.pool()).await.unwrap();
    let v = |id: i32| async move {
        sqlx::query_scalar::<_, i32>("SELECT v FROM probe WHERE id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    (log, v(1).await, v(2).await)
}

#[tokio::test]
async fn a_deadlock_victim_runs_again_and_commits_once() {
    let Some(base) = postgres_base("a_deadlock_victim_runs_again_and_commits_once") else { return };
    let url = fresh_database(&base).await;
    let store = open(&url, 3).await;
    let (op_holds_1, rival_holds_2) = (Arc::new(Notify::new()), Arc::new(Notify::new()));

    // The rival locks row 2, then (once the unit of work holds row 1) row 1.
    let mut other = rival(&url).await;
    let (op_holds, rival_holds) = (Arc::clone(&op_holds_1), Arc::clone(&rival_holds_2));
    let rival_task = tokio::spawn(async move {
        let mut tx = other.begin().await.unwrap();
        sqlx::query("UPDATE probe SET v = v + 10 WHERE id = 2").execute(&mut *tx).await.unwrap();
        rival_holds.notify_one();
        op_holds.notified().await;
        sqlx::query("UPDATE probe SET v = v + 10 WHERE id = 1").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    });

    // The unit of work locks row 1 then row 2: the opposite order.
    let runs = AtomicU32::new(0);
    let result: Result<u32, StoreError> = store
        .retrying("test.deadlock", || async {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let mut tx = store.begin().await?;
            sqlx::query("INSERT INTO attempt_log VALUES ($1)").bind(run as i32).execute(&mut *tx).await?;
            sqlx::query("UPDATE probe SET v = v + 1 WHERE id = 1").execute(&mut *tx).await?;
            if run == 1 {
                op_holds_1.notify_one();
                rival_holds_2.notified().await;
            }
            sqlx::query("UPDATE probe SET v = v + 1 WHERE id = 2").execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(run)
        })
        .await;
    rival_task.await.unwrap();

    assert_eq!(result.unwrap(), 2, "the second run committed");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let (log, v1, v2) = probe(&store).await;
    assert_eq!(log, vec![2], "the deadlocked run was rolled back whole");
    assert_eq!((v1, v2), (11, 11), "both transactions applied exactly once");
}

#[tokio::test]
async fn a_serialization_failure_runs_again_on_fresh_data() {
    let Some(base) = postgres_base("a_serialization_failure_runs_again_on_fresh_data") else { return };
    let url = fresh_database(&base).await;
    let store = open(&url, 3).await;
    let mut other = rival(&url).await;
    let other = tokio::sync::Mutex::new(&mut other);

    // A read-modify-write under SERIALIZABLE; during the first run a rival
    // commits a change to the row it read, so its write cannot serialize.
    let runs = AtomicU32::new(0);
    let result: Result<(), StoreError> = store
        .retrying("test.serialization", || async {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let mut tx = store.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").execute(&mut *tx).await?;
            sqlx::query("INSERT INTO attempt_log VALUES ($1)").bind(run as i32).execute(&mut *tx).await?;
            let seen: i32 = sqlx::query_scalar("SELECT v FROM probe WHERE id = 1").fetch_one(&mut *tx).await?;
            if run == 1 {
                let mut other = other.lock().await;
                sqlx::query("UPDATE probe SET v = 100 WHERE id = 1").execute(&mut **other).await.unwrap();
            }
            sqlx::query("UPDATE probe SET v = $1 WHERE id = 1").bind(seen + 1).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;

    result.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let (log, v1, _) = probe(&store).await;
    assert_eq!(log, vec![2], "the failed run was rolled back whole");
    assert_eq!(v1, 101, "the second run read the rival's value: no lost update");
}

/// Raises a real SQLSTATE 40001 from the server on every run.
async fn always_conflicting(store: &Store, runs: &AtomicU32) -> Result<(), ApiError> {
    store
        .retrying("test.exhausted", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            let mut tx = store.begin().await?;
            sqlx::query("INSERT INTO attempt_log VALUES (1)").execute(&mut *tx).await.map_err(StoreError::from)?;
            sqlx::raw_sql("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(())
        })
        .await
}

#[tokio::test]
async fn when_attempts_run_out_the_call_fails_aborted() {
    let Some(base) = postgres_base("when_attempts_run_out_the_call_fails_aborted") else { return };
    let url = fresh_database(&base).await;
    for attempts in [1, 3] {
        let store = open(&url, attempts).await;
        let runs = AtomicU32::new(0);
        let error = always_conflicting(&store, &runs).await.unwrap_err();
        assert_eq!(runs.load(Ordering::SeqCst), attempts, "ran exactly --db-retry-attempts times");
        match &error {
            ApiError::Store(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(matches!(e, StoreError::Conflict { attempts: a, .. } if *a == attempts), "{e}");
            }
            other => panic!("not a storage error: {other}"),
        }
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        assert!(status.message().contains(&format!("{attempts} time(s)")), "{}", status.message());
        assert!(status.message().contains("retry the call"), "{}", status.message());
        assert!(probe(&store).await.0.is_empty(), "no run left a row behind");
    }
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let Some(base) = postgres_base("other_errors_are_not_retried") else { return };
    let url = fresh_database(&base).await;
    let store = open(&url, 5).await;
    let runs = AtomicU32::new(0);
    let error = store
        .retrying("test.unique", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            sqlx::query("INSERT INTO probe VALUES (1, 0)").execute(store.pool()).await?;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap_err();
    assert!(error.is_unique_violation(), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(tonic::Status::from(ApiError::Store(error)).code(), Code::Internal);
}

/// SQLite's busy timeout has already waited the whole statement timeout for
/// the write lock: that is reported, not waited out again.
#[tokio::test]
async fn sqlite_busy_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let options = |ms| StoreOptions {
        statement_timeout: Duration::from_millis(ms),
        retry_attempts: 5,
        ..StoreOptions::default()
    };
    let holder = Store::open_with(&url, &options(10_000)).await.unwrap();
    let waiter = Store::open_with(&url, &options(200)).await.unwrap();
    let lock = holder.begin().await.unwrap();
    let runs = AtomicU32::new(0);
    let started = Instant::now();
    let error = waiter
        .retrying("test.busy", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            waiter.begin().await.map(drop)
        })
        .await
        .unwrap_err();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "busy was retried: {error}");
    assert!(!error.is_retryable(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3), "waited past one busy timeout");
    drop(lock);
}

fn serve_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tetherd"));
    command.env("RUST_LOG", "warn").env_remove("TETHER_DB_RETRY_ATTEMPTS");
    for (k, v) in env {
        command.env(k, v);
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = command.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url]).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_retry_count_is_refused_at_start_naming_the_flag() {
    for bad in ["0", "abc", "11", "-1"] {
        let (ok, stderr) = serve_with(&[&format!("--db-retry-attempts={bad}")], &[]);
        assert!(!ok, "--db-retry-attempts {bad} was accepted");
        assert!(stderr.contains("--db-retry-attempts"), "{bad}: {stderr}");
    }
    let (ok, stderr) = serve_with(&[], &[("TETHER_DB_RETRY_ATTEMPTS", "0")]);
    assert!(!ok, "TETHER_DB_RETRY_ATTEMPTS=0 was accepted");
    assert!(stderr.contains("--db-retry-attempts"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tether.toml");
    std::fs::write(&file, "db_retry_attempts = 0\n").unwrap();
    let (ok, stderr) = serve_with(&["--config", file.to_str().unwrap()], &[]);
    assert!(!ok, "db_retry_attempts = 0 in the file was accepted");
    assert!(stderr.contains("db_retry_attempts"), "{stderr}");
}
