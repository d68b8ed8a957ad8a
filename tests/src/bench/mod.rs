//! The benchmark kit behind `tether-bench`: seeding large populations
//! (`seed`) and driving timed presence and access load against one or more
//! `tetherd` replicas (`load`).

pub mod load;
pub mod seed;

/// Milliseconds since the Unix epoch, as the store keeps times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
