//! A write transaction, and the gate that queues SQLite writers in-process.
//!
//! SQLite has one writer at a time. Writers that find the lock taken sleep in
//! SQLite's busy handler, in steps growing to 100 ms, and the lock sits idle
//! while they sleep: under load most of a call's time went there. So this
//! process hands the write lock to its own writers in turn (a FIFO async
//! mutex held from `BEGIN IMMEDIATE` to commit or rollback); only writers of
//! other processes on the same file still meet the busy handler.
//! PostgreSQL has no gate: its writers lock rows, not the database.

use sqlx::{Any, AnyConnection, Transaction};
use std::ops::{Deref, DerefMut};
use tokio::sync::OwnedMutexGuard;

/// A write transaction (`Store::begin`). Derefs to its connection, so queries
/// run on `&mut **tx`; dropping it without [`Tx::commit`] rolls it back.
pub struct Tx {
    inner: Transaction<'static, Any>,
    // Field order matters: the transaction drops (and queues its rollback) first.
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Tx {
    pub(super) fn new(inner: Transaction<'static, Any>, turn: Option<OwnedMutexGuard<()>>) -> Tx {
        Tx { inner, _turn: turn }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}
