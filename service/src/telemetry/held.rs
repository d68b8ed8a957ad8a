//! Counts of writes that have not committed yet.
//!
//! `record_flag` and `record_presence` are called next to the INSERT they
//! count, inside a transaction. Under [`crate::store::Store::retrying`] that
//! transaction may be rolled back and run again, which would count one flag
//! twice (and a rolled-back one that never existed). There the counts are
//! held and recorded only when the unit of work succeeds.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// One count waiting for its unit of work to succeed.
pub(crate) enum Held {
    Flag { kind: String, severity: String },
    Presence { outcome: String },
}

type Slot = Arc<Mutex<Vec<Held>>>;

tokio::task_local! {
    static HELD: Slot;
}

fn lock(slot: &Slot) -> MutexGuard<'_, Vec<Held>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Holds the count if a unit of work is running in this task; false (the
/// caller records it now) otherwise.
pub(crate) fn hold(entry: impl FnOnce() -> Held) -> bool {
    HELD.try_with(|slot| lock(slot).push(entry())).is_ok()
}

/// Runs one attempt of a unit of work; its held counts are recorded if it
/// succeeds and dropped if it fails.
pub(crate) async fn attempt<T, E>(work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let slot = Slot::default();
    let result = HELD.scope(Arc::clone(&slot), work).await;
    if result.is_ok() {
        let held = std::mem::take(&mut *lock(&slot));
        for entry in held {
            match entry {
                Held::Flag { kind, severity } => super::record_flag(&kind, &severity),
                Held::Presence { outcome } => super::record_presence(&outcome),
            }
        }
    }
    result
}
