//! SQLite without sqlx's connection threads, for the access check's hot path
//! (issue #17).
//!
//! sqlx runs each SQLite connection on a thread of its own and passes every
//! statement, and every result, through a channel: two thread hand-offs per
//! statement, which were most of an access check's cost (BENCHMARKS.md,
//! "What limits it now"). Here the hot path's statements run on rusqlite
//! connections to the same file:
//!
//! * reads on the calling thread: a key or index search takes tens of
//!   microseconds, less than the hand-offs it replaces, and in WAL mode a
//!   reader never waits for the writer;
//! * the append queue's batches (crate::store::append_queue) on a blocking
//!   thread, one hand-off per batch instead of two per statement, inside
//!   this process's write turn (crate::store::group_commit) so they never
//!   meet this process's other writers in SQLite's busy handler.
//!
//! The connections carry the pool's settings (crate::store::connect): busy
//! timeout, `synchronous`, foreign keys, the WAL autocheckpoint backstop. An
//! in-memory or read-only database gets no direct path: another connection
//! would not see the same in-memory database, and a read-only one takes no
//! appends.

use super::{SqliteSynchronous, StoreError, StoreOptions, StoreResult, checkpoint, group_commit::Turn};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Reader connections kept open between reads. Reads run on the calling
/// thread, so at most one per thread is in use at once; a thread that finds
/// none idle opens one, and it is closed after the read when this many are
/// idle already.
const IDLE_READERS: usize = 4;

/// When a direct write's commit must reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// At the store's `synchronous` setting, like every other commit.
    Configured,
    /// Written to the log without `fsync` even at `FULL`, for rows whose
    /// caller acknowledges nothing before a later commit of its own at the
    /// configured setting: that `fsync` of the log covers every frame before
    /// it, so the later commit makes this one durable too (an access check's
    /// risk event, made durable by its session row).
    CoveredByLater,
}

/// The longest a read on the calling thread waits for a lock (see [`Settings::connect_reader`]).
const READ_BUSY_WAIT: Duration = Duration::from_millis(250);

/// rusqlite connections to the store's SQLite file.
pub(super) struct Direct {
    settings: Arc<Settings>,
    readers: Mutex<Vec<Connection>>,
    /// None until the first write, and again after a write left it unusable.
    writer: Arc<Mutex<Option<Connection>>>,
}

/// What every direct connection is opened with.
struct Settings {
    path: PathBuf,
    busy_timeout: Duration,
    synchronous: SqliteSynchronous,
}

impl Settings {
    /// A connection for writes, which run on a blocking thread and may wait
    /// the whole busy timeout for another process's writer.
    fn connect(&self) -> rusqlite::Result<Connection> {
        self.open(self.busy_timeout)
    }

    /// A connection for reads on the calling (runtime) thread. In WAL mode a
    /// reader meets a lock only while another process recovers the log; it
    /// then waits at most [`READ_BUSY_WAIT`] and the call fails UNAVAILABLE,
    /// rather than hold up every request on this thread.
    fn connect_reader(&self) -> rusqlite::Result<Connection> {
        self.open(self.busy_timeout.min(READ_BUSY_WAIT))
    }

    fn open(&self, busy_timeout: Duration) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = ON; {}; {};",
            self.synchronous.pragma(),
            checkpoint::AUTOCHECKPOINT_PRAGMA
        ))?;
        Ok(conn)
    }
}

impl Direct {
    /// The direct path to the file `url` names; None for an in-memory or read-only database.
    pub(super) fn for_url(url: &str, options: &StoreOptions) -> StoreResult<Option<Direct>> {
        let parsed = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
        let path = parsed.get_filename().to_path_buf();
        let in_memory = path.to_string_lossy().starts_with("file:sqlx-in-memory") || url.contains("mode=memory");
        if in_memory || url.contains("mode=ro") {
            return Ok(None);
        }
        let settings =
            Settings { path, busy_timeout: options.statement_timeout, synchronous: options.sqlite_synchronous };
        Ok(Some(Direct { settings: Arc::new(settings), readers: Mutex::default(), writer: Arc::default() }))
    }

    /// Runs `read` on an idle reader connection, on the calling thread.
    pub(super) fn read<R>(&self, read: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        let idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.settings.connect_reader()?,
        };
        let result = read(&conn);
        // A connection left inside a transaction (it never should be) is not reused.
        if conn.is_autocommit() {
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < IDLE_READERS {
                readers.push(conn);
            }
        }
        result
    }

    /// Writes `rows` in one transaction in `turn` (this process's write
    /// turn), on a blocking thread; returns each row's result once the
    /// transaction committed, or the first error with nothing written.
    pub(super) async fn write<T, R>(
        &self,
        turn: Turn,
        rows: Arc<Vec<T>>,
        durability: Durability,
        insert: fn(&Connection, &T) -> StoreResult<R>,
    ) -> StoreResult<Vec<R>>
    where
        T: Send + Sync + 'static,
        R: Send + 'static,
    {
        let (writer, settings) = (Arc::clone(&self.writer), Arc::clone(&self.settings));
        let unsynced = durability == Durability::CoveredByLater && settings.synchronous == SqliteSynchronous::Full;
        // The turn moves into the thread: a caller that stops waiting cannot
        // hand it on while the transaction is still open.
        let written = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut slot = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let conn = match slot.take() {
                Some(conn) => conn,
                None => settings.connect()?,
            };
            if unsynced {
                conn.execute_batch(SqliteSynchronous::Normal.pragma())?;
            }
            let result = write_in_transaction(&conn, &rows, insert);
            // A connection whose setting could not be restored is not reused.
            let restored = !unsynced || conn.execute_batch(settings.synchronous.pragma()).is_ok();
            if conn.is_autocommit() && restored {
                *slot = Some(conn);
            }
            result
        })
        .await;
        written.map_err(|e| StoreError::Corrupt(format!("the row writer stopped: {e}")))?
    }

    /// Closes the idle connections (the writer's after its current batch).
    pub(super) fn close(&self) {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

fn write_in_transaction<T, R>(
    conn: &Connection,
    rows: &[T],
    insert: fn(&Connection, &T) -> StoreResult<R>,
) -> StoreResult<Vec<R>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let written = rows.iter().map(|row| insert(conn, row)).collect::<StoreResult<Vec<R>>>();
    let committed = match written {
        Ok(results) => conn.execute_batch("COMMIT").map(|()| results).map_err(StoreError::from),
        Err(e) => Err(e),
    };
    if committed.is_err() && !conn.is_autocommit() {
        // If even this fails the connection is still in a transaction, and the caller drops it.
        let _ = conn.execute_batch("ROLLBACK");
    }
    committed
}

/// Binds `values` to the statement's `$1`, `$2`, … (the numbered placeholders
/// every query of the store uses, which SQLite numbers by first appearance).
fn bind(statement: &mut rusqlite::Statement<'_>, values: &[&dyn ToSql]) -> StoreResult<()> {
    if values.len() > PLACEHOLDERS.len() {
        return Err(StoreError::Corrupt(format!("a statement was given {} values", values.len())));
    }
    for (name, value) in PLACEHOLDERS.iter().zip(values) {
        let index = statement
            .parameter_index(name)?
            .ok_or_else(|| StoreError::Corrupt(format!("a statement has no parameter {name}")))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// The names [`bind`] looks up, spelled out so that binding allocates nothing.
const PLACEHOLDERS: [&str; 12] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12"];

/// Runs a cached statement with `values` bound to `$1`, `$2`, ….
pub(super) fn query<'s>(
    statement: &'s mut rusqlite::CachedStatement<'_>,
    values: &[&dyn ToSql],
) -> StoreResult<rusqlite::Rows<'s>> {
    bind(statement, values)?;
    Ok(statement.raw_query())
}

/// As [`query`], for a statement that returns no rows; the rows it changed.
pub(super) fn execute(statement: &mut rusqlite::CachedStatement<'_>, values: &[&dyn ToSql]) -> StoreResult<usize> {
    bind(statement, values)?;
    Ok(statement.raw_execute()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct_on(dir: &tempfile::TempDir) -> Direct {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let direct = Direct::for_url(&url, &StoreOptions::default()).unwrap().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (a TEXT, b INTEGER);").unwrap();
        direct
    }

    #[test]
    fn numbered_placeholders_bind_by_number_wherever_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let direct = direct_on(&dir);
        let (second, first) = direct
            .read(|conn| {
                let mut statement = conn.prepare_cached("SELECT $2 AS second, $1 AS first, $2 AS again")?;
                let mut rows = query(&mut statement, &[&"one", &"two"])?;
                let row = rows.next()?.ok_or_else(|| StoreError::Corrupt("no row".into()))?;
                Ok((row.get::<_, String>("second")?, row.get::<_, String>("first")?))
            })
            .unwrap();
        assert_eq!((second.as_str(), first.as_str()), ("two", "one"));
    }

    #[test]
    fn a_value_without_its_placeholder_is_an_error_not_a_silent_shift() {
        let dir = tempfile::tempdir().unwrap();
        let direct = direct_on(&dir);
        let refused = direct.read(|conn| {
            let mut statement = conn.prepare_cached("SELECT $1")?;
            query(&mut statement, &[&1_i64, &2_i64]).map(|_| ())
        });
        assert!(matches!(refused, Err(StoreError::Corrupt(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn a_write_covered_by_a_later_one_leaves_the_writer_at_the_configured_setting() {
        let dir = tempfile::tempdir().unwrap();
        let direct = direct_on(&dir);
        sqlx::any::install_default_drivers();
        let group = super::super::group_commit::GroupCommit::new(
            sqlx::AnyPool::connect_lazy("sqlite::memory:").unwrap(),
            Duration::from_secs(1),
        );
        let insert: fn(&Connection, &i64) -> StoreResult<i64> = |conn, b| {
            let mut statement = conn.prepare_cached("INSERT INTO t (a, b) VALUES ('x', $1)")?;
            execute(&mut statement, &[b])?;
            conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(StoreError::from)
        };
        let turn = group.exclusive().await.unwrap();
        let during = direct.write(turn, Arc::new(vec![1]), Durability::CoveredByLater, insert).await.unwrap();
        let turn = group.exclusive().await.unwrap();
        let after = direct.write(turn, Arc::new(vec![2]), Durability::Configured, insert).await.unwrap();
        // 1 = NORMAL, 2 = FULL (the default here).
        assert_eq!((during, after), (vec![1], vec![2]));
    }

    #[test]
    fn in_memory_and_read_only_databases_get_no_direct_path() {
        let options = StoreOptions::default();
        assert!(Direct::for_url("sqlite::memory:", &options).unwrap().is_none());
        assert!(Direct::for_url("sqlite://x.db?mode=memory", &options).unwrap().is_none());
        assert!(Direct::for_url("sqlite://x.db?mode=ro", &options).unwrap().is_none());
    }

    #[test]
    fn a_failed_row_leaves_nothing_of_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let direct = direct_on(&dir);
        let conn = direct.settings.connect().unwrap();
        let insert: fn(&Connection, &i64) -> StoreResult<()> = |conn, b| {
            if *b < 0 {
                return Err(StoreError::Corrupt("refused".into()));
            }
            let mut statement = conn.prepare_cached("INSERT INTO t (a, b) VALUES ('x', $1)")?;
            execute(&mut statement, &[b]).map(|_| ())
        };
        assert!(write_in_transaction(&conn, &[1, 2, -1], insert).is_err());
        assert!(conn.is_autocommit(), "the transaction was not rolled back");
        write_in_transaction(&conn, &[3], insert).unwrap();
        let stored: Vec<i64> =
            conn.prepare("SELECT b FROM t").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(stored, vec![3]);
    }
}
