//! Running a transaction again when the database aborted it because of a
//! concurrent one.
//!
//! PostgreSQL breaks a deadlock by aborting one of the transactions in it
//! (SQLSTATE 40P01) and reports a serialization failure as 40001; CockroachDB
//! and YugabyteDB, whose default isolation is SERIALIZABLE, raise 40001 as
//! part of normal operation. Either way the transaction is rolled back whole
//! and the database asks the client to run it again. [`Store::retrying`] does
//! that for a unit of work that begins, writes and commits one transaction,
//! a bounded number of times with jittered exponential backoff.
//!
//! Not retried:
//! * SQLite `SQLITE_BUSY`: every write transaction starts with `BEGIN
//!   IMMEDIATE`, which has already waited the whole statement timeout for the
//!   write lock; running again would wait that long again, past what the
//!   operator configured, while whatever held the lock still holds it.
//!   (`SQLITE_LOCKED` concerns one connection's shared cache, which is not used.)
//! * CockroachDB's 40003 (statement completion unknown) and a connection lost
//!   during `COMMIT`: the transaction may have committed, so a second run
//!   could write twice.

use super::{Store, StoreError};
use std::future::Future;
use std::time::Duration;

/// Attempts when the operator does not choose (`--db-retry-attempts`).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// The most attempts accepted: beyond a handful, contention is an overload to fix, not to wait out.
pub const MAX_ATTEMPTS: u32 = 10;
/// The pause before the first re-run; it doubles for each further one.
const FIRST_DELAY: Duration = Duration::from_millis(20);
/// The longest pause between two runs.
const LONGEST_DELAY: Duration = Duration::from_secs(1);

/// PostgreSQL's codes for "this transaction lost a race; run it again".
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";

impl StoreError {
    /// True when the database rolled the transaction back because of a
    /// concurrent one and running it again may succeed: PostgreSQL's
    /// serialization failure (40001) and deadlock (40P01). See the module
    /// documentation for what is deliberately not included.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED))
            }
            StoreError::Conflict { .. } => true,
            _ => false,
        }
    }
}

/// An error type a retried unit of work may return: it says whether the
/// database aborted the transaction for a concurrent one, and records that
/// the attempts ran out.
pub trait Retryable: Sized {
    fn is_retryable(&self) -> bool;
    /// The error to report once `attempts` runs all failed with `self` last.
    fn exhausted(self, what: &'static str, attempts: u32) -> Self;
}

impl Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        StoreError::is_retryable(self)
    }

    fn exhausted(self, what: &'static str, attempts: u32) -> StoreError {
        match self {
            StoreError::Database(source) => StoreError::Conflict { what, attempts, source },
            other => other,
        }
    }
}

impl Store {
    /// Runs `op` until it succeeds, fails for another reason, or has run the
    /// configured number of times (`--db-retry-attempts`). `op` must be one
    /// whole unit of work: it begins its own transaction and commits it, and
    /// does nothing before the commit that a second run would repeat (no
    /// notifications, no in-memory state; the flag and presence counters are
    /// held until the run succeeds). `what` names the unit in logs and the
    /// `tether.db.retries` metric.
    pub async fn retrying<T, E, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let attempts = self.retry_attempts.max(1);
        let mut attempt = 1;
        loop {
            match crate::telemetry::held::attempt(op()).await {
                Ok(value) => {
                    if attempt > 1 {
                        crate::telemetry::record_db_retry(what, "recovered");
                    }
                    return Ok(value);
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let delay = backoff(attempt);
                    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(
                        what, attempt, attempts, delay_ms, error = %e,
                        "the database aborted the transaction for a concurrent one; running it again"
                    );
                    crate::telemetry::record_db_retry(what, "retried");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(what, attempts, error = %e, "the database aborted the transaction every time");
                    crate::telemetry::record_db_retry(what, "exhausted");
                    return Err(e.exhausted(what, attempts));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How many times [`Store::retrying`] runs a unit of work at most.
    pub fn retry_attempts(&self) -> u32 {
        self.retry_attempts
    }
}

/// The pause after failed attempt `attempt` (1-based): doubling from
/// [`FIRST_DELAY`] up to [`LONGEST_DELAY`], then a random point in its upper
/// half, so transactions that collided do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_DELAY.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(LONGEST_DELAY);
    let random = u32::from_be_bytes(crate::util::random_bytes::<4>());
    let half = ceiling / 2;
    half + half.mul_f64(f64::from(random) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(10) && first <= Duration::from_millis(20), "{first:?}");
            let third = backoff(3);
            assert!(third >= Duration::from_millis(40) && third <= Duration::from_millis(80), "{third:?}");
            let late = backoff(40);
            assert!(late >= Duration::from_millis(500) && late <= LONGEST_DELAY, "{late:?}");
        }
        let samples: std::collections::HashSet<Duration> = (0..20).map(|_| backoff(4)).collect();
        assert!(samples.len() > 1, "the pauses are not jittered");
    }

    #[test]
    fn only_conflicts_are_retryable() {
        assert!(!StoreError::Database(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!StoreError::Corrupt("x".into()).is_retryable());
        let conflict = StoreError::Conflict { what: "t", attempts: 3, source: sqlx::Error::PoolTimedOut };
        assert!(conflict.is_retryable(), "an exhausted conflict stays a conflict");
    }
}
