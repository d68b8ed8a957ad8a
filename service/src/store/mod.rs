//! Persistence through sqlx's `Any` driver, so one set of runtime queries
//! serves SQLite (the embedded default) and PostgreSQL. Queries use `$N`
//! placeholders, which both backends accept, and store times as epoch
//! milliseconds and booleans as 0/1 so the SQL stays portable.

mod migrations;

pub mod append_queue;
pub mod audit;
pub mod checkpoint;
mod columns;
pub mod credentials;
pub mod decision;
mod direct;
pub mod enrollment;
pub mod flags;
mod group_commit;
pub mod inventory;
pub mod keys;
pub mod mds;
pub mod outbox;
pub mod pcr_policy;
pub mod posture;
pub mod presence;
pub mod retry;
pub mod risk_events;
pub mod sessions;
pub mod tenants;
pub mod tpm;
pub mod trust;
mod tx;

pub use group_commit::GroupCommits;
pub use tx::Tx;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite hot path (crate::store::direct).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A retryable database error ([`StoreError::is_retryable`]) on every one of `attempts` runs.
    #[error("{what}: the database aborted the transaction for a concurrent one on all {attempts} attempt(s): {source}")]
    Conflict { what: &'static str, attempts: u32, source: sqlx::Error },
}

impl StoreError {
    /// True when SQLite's lock stayed taken for the whole busy timeout.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => e.code == rusqlite::ErrorCode::DatabaseBusy,
            _ => false,
        }
    }

    /// True when the database refused a row because a unique key exists.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Connection-pool and per-statement limits.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections this process opens (default 8 for SQLite, 16 for PostgreSQL).
    pub max_connections: Option<u32>,
    /// How long a call waits for a free connection before failing UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// PostgreSQL: the longest any statement may run (`statement_timeout`).
    /// SQLite: the longest a writer waits for the write lock (`busy_timeout`).
    pub statement_timeout: Duration,
    /// How many times a unit of work runs when the database aborts it for a
    /// concurrent transaction (deadlock, serialization failure); 1 = once.
    pub retry_attempts: u32,
    /// SQLite: how a commit reaches the disk (docs/operating.md#durability).
    pub sqlite_synchronous: SqliteSynchronous,
}

/// SQLite's `synchronous` setting, in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit waits for `fsync`: a commit that returned survives a power loss.
    #[default]
    Full,
    /// Commits are written to the log without `fsync`: they survive `kill -9`
    /// of tetherd, but an OS crash or power loss can undo the last ones.
    Normal,
}

impl SqliteSynchronous {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL",
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: None,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(10),
            retry_attempts: retry::DEFAULT_ATTEMPTS,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    retry_attempts: u32,
    /// SQLite: this process's writers take turns and share commits (crate::store::group_commit).
    writers: group_commit::GroupCommit,
    /// Rows of access checks waiting to be appended together (crate::store::append_queue).
    queues: Arc<append_queue::Queues>,
    /// SQLite on a file: the hot path's statements without sqlx's threads (crate::store::direct).
    direct: Option<Arc<direct::Direct>>,
}

impl Store {
    /// Connects with default options and applies pending migrations.
    pub async fn open(database_url: &str) -> StoreResult<Store> {
        Store::open_with(database_url, &StoreOptions::default()).await
    }

    /// Connects and applies pending migrations.
    pub async fn open_with(database_url: &str, options: &StoreOptions) -> StoreResult<Store> {
        install_default_drivers();
        let (backend, url) = normalize_url(database_url)?;
        let max_connections = options.max_connections.unwrap_or(match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        });
        // Migrations run on a pool of their own, closed before the serving pool opens: a SQLite
        // connection that was open while a migration altered a table can prepare `SELECT *`
        // with the old column list and then read rows of the new one (sqlx-sqlite panics in its
        // worker and the query returns nothing; service/tests/migration_tiers.rs).
        let migrating = connect(&url, backend, options, 1).await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while one writer commits; the mode is
            // stored in the file, so setting it once at open is enough.
            sqlx::query("PRAGMA journal_mode = WAL").fetch_optional(&migrating).await?;
        }
        let migrated = migrations::run(&migrating, backend).await;
        migrating.close().await;
        migrated?;
        let pool = connect(&url, backend, options, max_connections).await?;
        let direct = match backend {
            Backend::Sqlite => direct::Direct::for_url(&url, options)?.map(Arc::new),
            Backend::Postgres => None,
        };
        let store = Store {
            direct,
            backend,
            retry_attempts: options.retry_attempts,
            writers: group_commit::GroupCommit::new(pool.clone(), options.statement_timeout),
            queues: Arc::default(),
            pool,
        };
        Ok(store)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn direct(&self) -> Option<&direct::Direct> {
        self.direct.as_deref()
    }

    /// The row `sql` finds for `keys` (bound to `$1`, `$2`, …): on a SQLite
    /// file through crate::store::direct, on the calling thread; else through
    /// the pool. For the reads of every request (keys, credentials,
    /// challenges, tenants and devices by id).
    pub(crate) async fn get_by_key<T: columns::FromColumns>(
        &self,
        sql: &'static str,
        keys: &[&str],
    ) -> StoreResult<Option<T>> {
        if let Some(direct) = self.direct() {
            return direct.read(|conn| {
                let mut statement = conn.prepare_cached(sql)?;
                let values: Vec<&dyn rusqlite::ToSql> = keys.iter().map(|k| k as &dyn rusqlite::ToSql).collect();
                let mut rows = direct::query(&mut statement, &values)?;
                rows.next()?.map(T::from_columns).transpose()
            });
        }
        let mut query = sqlx::query(sql);
        for key in keys {
            query = query.bind(*key);
        }
        let row = query.fetch_optional(&self.pool).await?;
        row.as_ref().map(T::from_columns).transpose()
    }

    /// SQLite: how many batches this process committed and how many write
    /// transactions they held (crate::store::group_commit); zeros on PostgreSQL.
    pub fn group_commits(&self) -> GroupCommits {
        self.writers.counts()
    }

    /// Starts a write transaction. On SQLite it waits for this process's turn
    /// to write and joins the batch that commits next (crate::store::group_commit),
    /// whose transaction took the write lock up front (`BEGIN IMMEDIATE`) so
    /// that writers of other processes wait on the busy timeout instead of
    /// failing when a read lock cannot be upgraded.
    pub async fn begin(&self) -> StoreResult<Tx> {
        let _waiting = crate::telemetry::waiting_for_connection();
        match self.backend {
            Backend::Sqlite => Ok(Tx::sqlite(self.writers.begin().await?)),
            Backend::Postgres => Ok(Tx::postgres(self.pool.begin().await?)),
        }
    }

    pub async fn close(&self) {
        if let Some(direct) = self.direct() {
            direct.close();
        }
        self.pool.close().await;
    }
}

/// Which backend a database URL names, or why it names none.
pub fn backend_of(database_url: &str) -> StoreResult<Backend> {
    normalize_url(database_url).map(|(backend, _)| backend)
}

/// A pool whose every connection carries the statement timeout (and SQLite's synchronous mode).
async fn connect(url: &str, backend: Backend, options: &StoreOptions, max_connections: u32) -> StoreResult<AnyPool> {
    let timeout_ms = u64::try_from(options.statement_timeout.as_millis()).unwrap_or(u64::MAX);
    // Integers only: the statement text cannot carry anything else.
    let setting = match backend {
        Backend::Sqlite => format!("PRAGMA busy_timeout = {timeout_ms}"),
        Backend::Postgres => format!("SET statement_timeout = {timeout_ms}"),
    };
    let synchronous = (backend == Backend::Sqlite).then(|| options.sqlite_synchronous.pragma());
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(options.acquire_timeout)
        .after_connect(move |connection, _| {
            let setting = setting.clone();
            Box::pin(async move {
                sqlx::query(sqlx::AssertSqlSafe(setting)).execute(&mut *connection).await?;
                if let Some(pragma) = synchronous {
                    sqlx::query(pragma).execute(&mut *connection).await?;
                    // Checkpoints run in the background (store::checkpoint); this is the backstop.
                    sqlx::query(checkpoint::AUTOCHECKPOINT_PRAGMA).execute(&mut *connection).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

fn normalize_url(database_url: &str) -> StoreResult<(Backend, String)> {
    if database_url.starts_with("sqlite:") {
        // Create the file on first start unless the operator chose a mode.
        let url = if database_url.contains("mode=") {
            database_url.to_string()
        } else if database_url.contains('?') {
            format!("{database_url}&mode=rwc")
        } else {
            format!("{database_url}?mode=rwc")
        };
        Ok((Backend::Sqlite, url))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok((Backend::Postgres, database_url.to_string()))
    } else {
        Err(StoreError::UnsupportedUrl(database_url.to_string()))
    }
}

/// Converts a stored 0/1 column.
pub(crate) fn flag(value: i64) -> bool {
    value != 0
}

/// A column's name as a join selects it, `<prefix><name>`: borrowed when there is no prefix.
pub(crate) fn prefixed<'a>(prefix: &str, name: &'a str) -> std::borrow::Cow<'a, str> {
    if prefix.is_empty() {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(format!("{prefix}{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        let (backend, url) = normalize_url("sqlite://tether.db").unwrap();
        assert_eq!(backend, Backend::Sqlite);
        assert_eq!(url, "sqlite://tether.db?mode=rwc");
        let (_, url) = normalize_url("sqlite://t.db?mode=ro").unwrap();
        assert_eq!(url, "sqlite://t.db?mode=ro");
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!(matches!(normalize_url("mysql://x"), Err(StoreError::UnsupportedUrl(_))));
    }
}
