//! One kind's token buckets, at most `cap` of them, with every call's work
//! independent of how many there are: a hash map finds the caller's bucket,
//! and an ordered index by the instant each bucket will be full again finds
//! the ones that may be forgotten (O(log n) per call, a few buckets visited).
//!
//! Forgetting a bucket is only ever lossless: a bucket is dropped once it has
//! refilled, when it is indistinguishable from one never created. A key that
//! comes back after that gets exactly what it would have had anyway, so
//! evicting cannot be farmed for fresh bursts. When the table is full of
//! buckets still refilling, a new key is refused (fail closed) until the
//! first of them is full, instead of dropping one that still holds a debt.

use super::Rate;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Buckets already full that one call forgets besides its own work, so the
/// table shrinks back to the active keys after a flood without a sweep.
const FORGET_PER_CALL: usize = 2;

struct Bucket {
    key: Arc<str>,
    tokens: f64,
    updated_us: u64,
    full_at_us: u64,
    /// Tells apart buckets full at the same microsecond in the index.
    seq: u64,
}

/// What a call got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Taken {
    Allowed,
    /// The key's own bucket is empty: wait this long for the next token.
    Empty {
        wait_s: f64,
    },
    /// The table holds `cap` buckets, none refilled yet: a new key waits this long.
    Saturated {
        wait_s: f64,
    },
}

pub struct Table {
    cap: usize,
    buckets: HashMap<Arc<str>, Bucket>,
    by_full_at: BTreeMap<(u64, u64), Arc<str>>,
    next_seq: u64,
    /// Buckets looked at by calls so far (tests read it: the work per call).
    #[cfg(test)]
    pub(super) visited: usize,
}

impl Table {
    pub fn new(cap: usize) -> Table {
        Table {
            cap: cap.max(1),
            buckets: HashMap::new(),
            by_full_at: BTreeMap::new(),
            // 0 marks a bucket not yet in the index.
            next_seq: 1,
            #[cfg(test)]
            visited: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token for `key` at `now_us` (microseconds on the limiter's clock).
    pub fn take(&mut self, rate: Rate, key: &str, now_us: u64) -> Taken {
        self.forget_full(now_us, FORGET_PER_CALL);
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.cap {
                // forget_full left the earliest-full bucket in place: it is still refilling.
                let first = self.by_full_at.keys().next().map(|(at, _)| *at).unwrap_or(now_us);
                return Taken::Saturated { wait_s: first.saturating_sub(now_us) as f64 / 1e6 };
            }
            let key: Arc<str> = Arc::from(key);
            let bucket =
                Bucket { key: Arc::clone(&key), tokens: rate.burst, updated_us: now_us, full_at_us: 0, seq: 0 };
            self.buckets.insert(key, bucket);
        }
        let Some(bucket) = self.buckets.get_mut(key) else {
            return Taken::Saturated { wait_s: 0.0 };
        };
        #[cfg(test)]
        {
            self.visited += 1;
        }
        self.by_full_at.remove(&(bucket.full_at_us, bucket.seq));
        let elapsed_s = now_us.saturating_sub(bucket.updated_us) as f64 / 1e6;
        bucket.tokens = (bucket.tokens + elapsed_s * rate.per_second).min(rate.burst);
        bucket.updated_us = now_us;
        let taken = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Taken::Allowed
        } else {
            Taken::Empty { wait_s: refill_s(rate, 1.0 - bucket.tokens) }
        };
        let to_full_us = (refill_s(rate, rate.burst - bucket.tokens) * 1e6).ceil();
        bucket.full_at_us = now_us.saturating_add(if to_full_us.is_finite() { to_full_us as u64 } else { u64::MAX });
        bucket.seq = self.next_seq;
        self.next_seq += 1;
        self.by_full_at.insert((bucket.full_at_us, bucket.seq), Arc::clone(&bucket.key));
        taken
    }

    /// Drops up to `most` buckets that have refilled by `now_us`, earliest first.
    fn forget_full(&mut self, now_us: u64, most: usize) {
        for _ in 0..most {
            let Some(entry) = self.by_full_at.first_entry() else { return };
            if entry.key().0 > now_us {
                return;
            }
            #[cfg(test)]
            {
                self.visited += 1;
            }
            let key = entry.remove();
            self.buckets.remove(&key);
        }
    }
}

/// Seconds until `tokens` more have dripped in (forever at a zero rate).
fn refill_s(rate: Rate, tokens: f64) -> f64 {
    if tokens <= 0.0 {
        0.0
    } else if rate.per_second > 0.0 {
        tokens / rate.per_second
    } else {
        f64::INFINITY
    }
}
