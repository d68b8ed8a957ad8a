//! Shared by the service's PostgreSQL tests: each gets a database of its own
//! on the server named by TETHER_TEST_POSTGRES_URL, or skips with a notice.
#![allow(clippy::unwrap_used, dead_code)]

use sqlx::{Connection, PgConnection};

/// The server URL without a trailing slash, or None (with a printed notice)
/// when TETHER_TEST_POSTGRES_URL is unset.
pub fn postgres_base(test: &str) -> Option<String> {
    match std::env::var("TETHER_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => Some(base.trim_end_matches('/').to_string()),
        _ => {
            eprintln!("NOTICE: TETHER_TEST_POSTGRES_URL is not set; skipping the PostgreSQL test {test}");
            None
        }
    }
}

/// Creates a fresh database with these `SET` defaults (for example
/// `deadlock_timeout = '3s'`) and returns its URL.
pub async fn fresh_database(base: &str, prefix: &str, settings: &[&str]) -> String {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    for setting in settings {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} SET {setting}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    format!("{base}/{name}")
}
