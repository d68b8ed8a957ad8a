//! A write transaction: PostgreSQL's own, or on SQLite a member of this
//! process's group commit (crate::store::group_commit).
//!
//! SQLite has one writer at a time. Writers that find the lock taken sleep in
//! SQLite's busy handler, in steps growing to 100 ms, and the lock sits idle
//! while they sleep: under load most of a call's time went there. So this
//! process hands the write lock to its own writers in turn (a FIFO async
//! mutex), and lets the writers queued together share one commit; only
//! writers of other processes on the same file still meet the busy handler.
//! PostgreSQL has neither: its writers lock rows, not the database, and its
//! server groups concurrent commits itself.

use super::group_commit::Member;
use sqlx::{Any, AnyConnection, Transaction};
use std::ops::{Deref, DerefMut};

/// A write transaction (`Store::begin`). Derefs to its connection, so queries
/// run on `&mut **tx`; dropping it without [`Tx::commit`] rolls it back.
pub struct Tx {
    inner: Inner,
}

enum Inner {
    Postgres(Transaction<'static, Any>),
    Sqlite(Member),
}

impl Tx {
    pub(super) fn postgres(inner: Transaction<'static, Any>) -> Tx {
        Tx { inner: Inner::Postgres(inner) }
    }

    pub(super) fn sqlite(member: Member) -> Tx {
        Tx { inner: Inner::Sqlite(member) }
    }

    /// Commits; on SQLite, returns once the batch holding this transaction is durable.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            Inner::Postgres(tx) => tx.commit().await,
            Inner::Sqlite(member) => member.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            Inner::Postgres(tx) => tx.rollback().await,
            Inner::Sqlite(member) => member.rollback().await,
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.inner {
            Inner::Postgres(tx) => tx,
            Inner::Sqlite(member) => member.connection(),
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            Inner::Postgres(tx) => tx,
            Inner::Sqlite(member) => member.connection_mut(),
        }
    }
}
