//! Abuse limits: token buckets per tenant (access checks), per device
//! (presence answers) and per source address and token (enrollment). A
//! bucket refills continuously; an empty one answers RESOURCE_EXHAUSTED with
//! the time to wait. Buckets are per process: N replicas allow N times the
//! rate, which bounds abuse without coordination.

use crate::domain::error::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    AccessPerTenant,
    PresencePerDevice,
    EnrollmentPerAddress,
    EnrollmentPerToken,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::AccessPerTenant => "access checks per second for this tenant",
            Kind::PresencePerDevice => "presence answers per second for this device",
            Kind::EnrollmentPerAddress => "enrollment calls per second from this address",
            Kind::EnrollmentPerToken => "enrollment calls per second with this token",
        }
    }
}

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub access_per_tenant: Rate,
    pub presence_per_device: Rate,
    pub enrollment_per_address: Rate,
    pub enrollment_per_token: Rate,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            access_per_tenant: Rate { per_second: 1000.0, burst: 2000.0 },
            presence_per_device: Rate { per_second: 2.0, burst: 10.0 },
            enrollment_per_address: Rate { per_second: 5.0, burst: 20.0 },
            enrollment_per_token: Rate { per_second: 0.5, burst: 10.0 },
        }
    }
}

impl LimitSettings {
    fn rate(&self, kind: Kind) -> Rate {
        match kind {
            Kind::AccessPerTenant => self.access_per_tenant,
            Kind::PresencePerDevice => self.presence_per_device,
            Kind::EnrollmentPerAddress => self.enrollment_per_address,
            Kind::EnrollmentPerToken => self.enrollment_per_token,
        }
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Beyond this many buckets, idle ones are dropped so memory stays bounded.
const MAX_BUCKETS: usize = 100_000;

pub struct Limiter {
    settings: LimitSettings,
    buckets: Mutex<HashMap<(Kind, String), Bucket>>,
}

impl Limiter {
    pub fn new(settings: LimitSettings) -> Limiter {
        Limiter { settings, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, kind: Kind, key: &str) -> Result<(), ApiError> {
        let rate = self.settings.rate(kind);
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| now.duration_since(b.updated) < Duration::from_secs(60));
        }
        let bucket = buckets.entry((kind, key.to_string())).or_insert(Bucket { tokens: rate.burst, updated: now });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if rate.per_second > 0.0 { (1.0 - bucket.tokens) / rate.per_second } else { 60.0 };
        Err(ApiError::ResourceExhausted {
            message: format!(
                "rate limit reached: at most {} {}; retry in {} ms",
                rate.per_second,
                kind.describe(),
                (wait * 1000.0).ceil()
            ),
            retry_after: Duration::from_secs_f64(wait.min(3600.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> Limiter {
        let rate = Rate { per_second, burst };
        Limiter::new(LimitSettings {
            access_per_tenant: rate,
            presence_per_device: rate,
            enrollment_per_address: rate,
            enrollment_per_token: rate,
        })
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let limiter = limiter(1.0, 3.0);
        for _ in 0..3 {
            assert!(limiter.check(Kind::AccessPerTenant, "t1").is_ok());
        }
        match limiter.check(Kind::AccessPerTenant, "t1") {
            Err(ApiError::ResourceExhausted { retry_after, message }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1), "{retry_after:?}");
                assert!(message.contains("retry in"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn keys_and_kinds_have_their_own_buckets() {
        let limiter = limiter(0.001, 1.0);
        assert!(limiter.check(Kind::AccessPerTenant, "a").is_ok());
        assert!(limiter.check(Kind::AccessPerTenant, "a").is_err());
        assert!(limiter.check(Kind::AccessPerTenant, "b").is_ok());
        assert!(limiter.check(Kind::PresencePerDevice, "a").is_ok());
    }

    #[test]
    fn buckets_refill_over_time() {
        let limiter = limiter(50.0, 1.0);
        assert!(limiter.check(Kind::PresencePerDevice, "d").is_ok());
        assert!(limiter.check(Kind::PresencePerDevice, "d").is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(limiter.check(Kind::PresencePerDevice, "d").is_ok());
    }
}
