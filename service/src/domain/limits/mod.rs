//! Abuse limits: token buckets per tenant (access checks), per device
//! (verified presence answers), per source address (unverifiable presence
//! answers, enrollment) and per token (enrollment). A bucket refills
//! continuously; an empty one answers RESOURCE_EXHAUSTED with the time to
//! wait. Buckets are per process: N replicas allow N times the rate, which
//! bounds abuse without coordination.
//!
//! Each kind has its own table and lock, at most `max_buckets` buckets, and
//! a call's work does not grow with their number (see `table.rs`, which also
//! says why forgetting a bucket hands nobody a fresh burst). Source
//! addresses are keyed by what one subscriber cannot multiply: an IPv4
//! address whole, an IPv6 address by its /64.

mod table;

use crate::domain::error::ApiError;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use table::{Table, Taken};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    AccessPerTenant,
    PresencePerDevice,
    /// Presence answers whose signature does not verify, charged to their sender.
    UnverifiedAnswersPerAddress,
    EnrollmentPerAddress,
    EnrollmentPerToken,
}

const KINDS: usize = 5;

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::AccessPerTenant => 0,
            Kind::PresencePerDevice => 1,
            Kind::UnverifiedAnswersPerAddress => 2,
            Kind::EnrollmentPerAddress => 3,
            Kind::EnrollmentPerToken => 4,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::AccessPerTenant => "access checks per second for this tenant",
            Kind::PresencePerDevice => "presence answers per second for this device",
            Kind::UnverifiedAnswersPerAddress => {
                "presence answers per second that do not verify, from this address (IPv6: its /64)"
            }
            Kind::EnrollmentPerAddress => "enrollment calls per second from this address (IPv6: its /64)",
            Kind::EnrollmentPerToken => "enrollment calls per second with this token",
        }
    }

    /// What a full table of this kind is full of, for the refusal.
    fn keys(self) -> &'static str {
        match self {
            Kind::AccessPerTenant => "tenants",
            Kind::PresencePerDevice => "devices",
            Kind::UnverifiedAnswersPerAddress | Kind::EnrollmentPerAddress => "source addresses",
            Kind::EnrollmentPerToken => "enrollment tokens",
        }
    }

    fn per_address(self) -> bool {
        matches!(self, Kind::UnverifiedAnswersPerAddress | Kind::EnrollmentPerAddress)
    }
}

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Default most buckets kept per kind.
pub const DEFAULT_MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub access_per_tenant: Rate,
    pub presence_per_device: Rate,
    pub unverified_answers_per_address: Rate,
    pub enrollment_per_address: Rate,
    pub enrollment_per_token: Rate,
    /// The most buckets one kind keeps (memory stays bounded under a flood of new keys).
    pub max_buckets: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            access_per_tenant: Rate { per_second: 1000.0, burst: 2000.0 },
            presence_per_device: Rate { per_second: 2.0, burst: 10.0 },
            unverified_answers_per_address: Rate { per_second: 1.0, burst: 10.0 },
            enrollment_per_address: Rate { per_second: 5.0, burst: 20.0 },
            enrollment_per_token: Rate { per_second: 0.5, burst: 10.0 },
            max_buckets: DEFAULT_MAX_BUCKETS,
        }
    }
}

impl LimitSettings {
    /// Every kind at one rate (the console's login limiter uses one kind of these).
    pub fn uniform(rate: Rate) -> LimitSettings {
        LimitSettings {
            access_per_tenant: rate,
            presence_per_device: rate,
            unverified_answers_per_address: rate,
            enrollment_per_address: rate,
            enrollment_per_token: rate,
            max_buckets: DEFAULT_MAX_BUCKETS,
        }
    }

    fn rate(&self, kind: Kind) -> Rate {
        match kind {
            Kind::AccessPerTenant => self.access_per_tenant,
            Kind::PresencePerDevice => self.presence_per_device,
            Kind::UnverifiedAnswersPerAddress => self.unverified_answers_per_address,
            Kind::EnrollmentPerAddress => self.enrollment_per_address,
            Kind::EnrollmentPerToken => self.enrollment_per_token,
        }
    }
}

/// The bucket key of a source address: an IPv4 address (or IPv4-mapped IPv6)
/// as is, an IPv6 address as its /64, which one subscriber usually gets
/// whole. Anything unparsable (an unknown peer: "") is its own single key.
pub fn address_key(address: &str) -> String {
    match address.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Err(_) => address.to_string(),
    }
}

pub struct Limiter {
    settings: LimitSettings,
    /// One table and lock per kind: one kind's flood never waits on another's lock.
    tables: [Mutex<Table>; KINDS],
    epoch: Instant,
}

impl Limiter {
    pub fn new(settings: LimitSettings) -> Limiter {
        let tables = std::array::from_fn(|_| Mutex::new(Table::new(settings.max_buckets)));
        Limiter { settings, tables, epoch: Instant::now() }
    }

    /// Takes one token for `key` (for per-address kinds: a source address,
    /// keyed by [`address_key`]), or says how long to wait.
    pub fn check(&self, kind: Kind, key: &str) -> Result<(), ApiError> {
        self.check_at(kind, key, Instant::now())
    }

    fn check_at(&self, kind: Kind, key: &str, now: Instant) -> Result<(), ApiError> {
        let rate = self.settings.rate(kind);
        let key = self.key(kind, key);
        let taken = self.table(kind).take(rate, &key, self.micros(now));
        let (message, wait_s) = match taken {
            Taken::Allowed => return Ok(()),
            Taken::Empty { wait_s } => {
                (format!("rate limit reached: at most {} {}", rate.per_second, kind.describe()), wait_s)
            }
            Taken::Saturated { wait_s } => (
                format!(
                    "rate limit reached: {} {} are being limited at once, the most this server tracks",
                    self.settings.max_buckets,
                    kind.keys()
                ),
                wait_s,
            ),
        };
        let wait_s = if wait_s.is_finite() { wait_s.clamp(0.001, 3600.0) } else { 3600.0 };
        Err(ApiError::ResourceExhausted {
            message: format!("{message}; retry in {} ms", (wait_s * 1000.0).ceil()),
            retry_after: Duration::from_secs_f64(wait_s),
        })
    }

    fn key<'a>(&self, kind: Kind, key: &'a str) -> std::borrow::Cow<'a, str> {
        if kind.per_address() { address_key(key).into() } else { key.into() }
    }

    fn table(&self, kind: Kind) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a table that is still consistent enough to limit.
        match self.tables[kind.index()].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> Limiter {
        Limiter::new(LimitSettings::uniform(Rate { per_second, burst }))
    }

    fn capped(per_second: f64, burst: f64, max_buckets: usize) -> Limiter {
        Limiter::new(LimitSettings { max_buckets, ..LimitSettings::uniform(Rate { per_second, burst }) })
    }

    fn at(limiter: &Limiter, seconds: f64) -> Instant {
        limiter.epoch + Duration::from_secs_f64(seconds)
    }

    fn buckets(limiter: &Limiter, kind: Kind) -> usize {
        limiter.table(kind).len()
    }

    fn visited(limiter: &Limiter, kind: Kind) -> usize {
        limiter.table(kind).visited
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

    #[test]
    fn a_kind_never_holds_more_buckets_than_its_cap() {
        let limiter = capped(1.0, 5.0, 100);
        let kind = Kind::EnrollmentPerToken;
        let mut saturated = 0;
        for i in 0..1000 {
            match limiter.check_at(kind, &format!("token-{i}"), at(&limiter, 0.0)) {
                Ok(()) => {}
                Err(ApiError::ResourceExhausted { message, retry_after }) => {
                    assert!(message.contains("100 enrollment tokens are being limited at once"), "{message}");
                    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1), "{retry_after:?}");
                    saturated += 1;
                }
                Err(other) => panic!("{other:?}"),
            }
            assert!(buckets(&limiter, kind) <= 100);
        }
        assert_eq!(saturated, 900, "keys beyond the cap are refused while every bucket is refilling");
        // Once buckets have refilled they are forgotten for new keys, still within the cap.
        for i in 1000..1100 {
            assert!(limiter.check_at(kind, &format!("token-{i}"), at(&limiter, 2.0)).is_ok(), "{i}");
            assert!(buckets(&limiter, kind) <= 100);
        }
        assert!(limiter.check_at(kind, "token-1100", at(&limiter, 2.0)).is_err());
        // Other kinds have tables of their own.
        assert!(limiter.check_at(Kind::AccessPerTenant, "t", at(&limiter, 0.0)).is_ok());
    }

    #[test]
    fn the_work_per_call_does_not_grow_with_the_number_of_buckets() {
        let kind = Kind::EnrollmentPerToken;
        let mut per_call = Vec::new();
        for n in [10, 50_000] {
            let limiter = capped(1.0, 2.0, 100_000);
            for i in 0..n {
                limiter.check_at(kind, &format!("k{i}"), at(&limiter, 0.0)).unwrap();
            }
            assert_eq!(buckets(&limiter, kind), n);
            // Every bucket has refilled by now: a sweep would visit them all.
            let before = visited(&limiter, kind);
            limiter.check_at(kind, "k0", at(&limiter, 10.0)).unwrap();
            limiter.check_at(kind, "new", at(&limiter, 10.0)).unwrap();
            for _ in 0..3 {
                let _ = limiter.check_at(kind, "new", at(&limiter, 10.0));
            }
            per_call.push((visited(&limiter, kind) - before) as f64 / 5.0);
        }
        assert!(per_call.iter().all(|&v| v <= 3.0), "buckets visited per call: {per_call:?}");
        assert_eq!(per_call[0], per_call[1], "buckets visited per call, 10 vs 50,000 buckets: {per_call:?}");
    }

    #[test]
    fn forgetting_a_bucket_hands_out_no_fresh_burst() {
        let limiter = capped(1.0, 3.0, 2);
        let kind = Kind::EnrollmentPerAddress;
        for _ in 0..3 {
            limiter.check_at(kind, "192.0.2.1", at(&limiter, 0.0)).unwrap();
        }
        assert!(limiter.check_at(kind, "192.0.2.1", at(&limiter, 0.0)).is_err());
        // New keys cannot push the empty bucket out while it still refills.
        limiter.check_at(kind, "192.0.2.2", at(&limiter, 0.0)).unwrap();
        assert!(limiter.check_at(kind, "192.0.2.3", at(&limiter, 0.5)).is_err());
        assert!(limiter.check_at(kind, "192.0.2.1", at(&limiter, 0.5)).is_err(), "still empty");
        // After it refilled (3 s), being forgotten gives exactly the burst it had earned.
        limiter.check_at(kind, "192.0.2.3", at(&limiter, 3.5)).unwrap();
        for _ in 0..3 {
            limiter.check_at(kind, "192.0.2.1", at(&limiter, 3.5)).unwrap();
        }
        assert!(limiter.check_at(kind, "192.0.2.1", at(&limiter, 3.5)).is_err());
    }

    #[test]
    fn an_ipv6_64_shares_one_bucket_and_ipv4_addresses_do_not() {
        let limiter = limiter(0.001, 1.0);
        let kind = Kind::EnrollmentPerAddress;
        assert!(limiter.check(kind, "2001:db8:1:2::1").is_ok());
        assert!(limiter.check(kind, "2001:db8:1:2:ffff:ffff:ffff:9").is_err(), "same /64");
        assert!(limiter.check(kind, "2001:db8:1:3::1").is_ok(), "another /64");
        assert!(limiter.check(kind, "127.0.0.1").is_ok());
        assert!(limiter.check(kind, "::ffff:127.0.0.1").is_err(), "IPv4-mapped is the IPv4 address");
        assert!(limiter.check(kind, "127.0.0.2").is_ok());
        // Only per-address kinds are keyed by prefix.
        assert!(limiter.check(Kind::EnrollmentPerToken, "2001:db8:1:2::1").is_ok());
        assert!(limiter.check(Kind::EnrollmentPerToken, "2001:db8:1:2::2").is_ok());
        assert_eq!(address_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(address_key(""), "");
    }
}
