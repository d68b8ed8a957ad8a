//! Slots for open `WatchChallenges` streams. The call needs no API key and a
//! stream lasts as long as its caller wants, so every stream holds a slot
//! counted against three bounds: the process, its HTTP/2 connection and its
//! credential. The slot is released when its guard drops, however the
//! stream's task ends. Opening and closing are O(1); the maps only hold keys
//! with a live slot, so they never exceed the process-wide bound.

use crate::domain::app::StreamLimits;
use crate::domain::error::ApiError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What a refused agent is told to wait before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Credentials are keyed by their hash: the id is caller-supplied text of any
/// length, and the slot is taken before the database says whether it exists.
type CredentialKey = [u8; 32];

#[derive(Default)]
struct Counts {
    total: usize,
    per_connection: HashMap<Option<SocketAddr>, usize>,
    per_credential: HashMap<CredentialKey, usize>,
}

pub struct StreamSlots {
    limits: StreamLimits,
    counts: Mutex<Counts>,
}

/// One open stream's place; dropping it gives the place back.
pub struct Slot {
    slots: Arc<StreamSlots>,
    connection: Option<SocketAddr>,
    credential: CredentialKey,
}

fn credential_key(credential_id: &str) -> CredentialKey {
    let digest = crate::util::sha256(credential_id.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(&digest[..32]);
    key
}

fn exhausted(message: String) -> ApiError {
    ApiError::ResourceExhausted { message, retry_after: RETRY_AFTER }
}

impl StreamSlots {
    pub fn new(limits: StreamLimits) -> Arc<StreamSlots> {
        Arc::new(StreamSlots { limits, counts: Mutex::new(Counts::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        match self.counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A slot for a stream of `credential_id` on the connection from
    /// `connection` (the peer's socket address, unique per TCP connection),
    /// or RESOURCE_EXHAUSTED naming the bound that is reached.
    pub fn acquire(self: &Arc<Self>, connection: Option<SocketAddr>, credential_id: &str) -> Result<Slot, ApiError> {
        let credential = credential_key(credential_id);
        let limits = self.limits;
        let mut counts = self.lock();
        if counts.per_credential.get(&credential).copied().unwrap_or(0) >= limits.watch_per_credential {
            return Err(exhausted(format!(
                "this credential already has {} open challenge streams, the most allowed \
                 (--watch-streams-per-credential); close the others: an agent needs one",
                limits.watch_per_credential
            )));
        }
        if counts.per_connection.get(&connection).copied().unwrap_or(0) >= limits.watch_per_connection {
            return Err(exhausted(format!(
                "this connection already has {} open challenge streams, the most allowed \
                 (--watch-streams-per-connection); close some or use another connection",
                limits.watch_per_connection
            )));
        }
        if counts.total >= limits.watch_total {
            return Err(exhausted(format!(
                "this server already holds {} open challenge streams, its limit (--watch-streams-max); \
                 retry later, or use PollChallenges",
                limits.watch_total
            )));
        }
        counts.total += 1;
        *counts.per_connection.entry(connection).or_default() += 1;
        *counts.per_credential.entry(credential).or_default() += 1;
        Ok(Slot { slots: Arc::clone(self), connection, credential })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        release(&mut counts.per_connection, &self.connection);
        release(&mut counts.per_credential, &self.credential);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(total: usize, per_connection: usize, per_credential: usize) -> Arc<StreamSlots> {
        StreamSlots::new(StreamLimits {
            watch_total: total,
            watch_per_connection: per_connection,
            watch_per_credential: per_credential,
            ..StreamLimits::default()
        })
    }

    fn peer(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn refusal(result: Result<Slot, ApiError>) -> String {
        match result {
            Err(ApiError::ResourceExhausted { message, .. }) => message,
            Err(other) => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
            Ok(_) => panic!("expected a refusal"),
        }
    }

    #[test]
    fn each_bound_refuses_with_its_own_sentence() {
        let slots = slots(4, 2, 1);
        let a = slots.acquire(peer(1), "cred-a").unwrap();
        assert!(refusal(slots.acquire(peer(2), "cred-a")).contains("--watch-streams-per-credential"));
        let _b = slots.acquire(peer(1), "cred-b").unwrap();
        assert!(refusal(slots.acquire(peer(1), "cred-c")).contains("--watch-streams-per-connection"));
        let _c = slots.acquire(peer(2), "cred-c").unwrap();
        let _d = slots.acquire(peer(2), "cred-d").unwrap();
        assert!(refusal(slots.acquire(peer(3), "cred-e")).contains("--watch-streams-max"));
        drop(a);
        assert_eq!(slots.open(), 3);
        let _e = slots.acquire(peer(3), "cred-e").unwrap();
    }

    #[test]
    fn dropped_slots_leave_nothing_behind() {
        let slots = slots(1000, 1000, 1000);
        let held: Vec<Slot> = (0..500).map(|i| slots.acquire(peer(i), &format!("cred-{i}")).unwrap()).collect();
        assert_eq!(slots.open(), 500);
        drop(held);
        let counts = slots.lock();
        assert_eq!((counts.total, counts.per_connection.len(), counts.per_credential.len()), (0, 0, 0));
    }
}
