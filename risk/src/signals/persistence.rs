//! Residency for persistent cross-employer clusters: which address a device lives
//! behind (see `state::Anchor`), judged in the worker's local days.

use crate::Millis;
use crate::engine::{Engine, HOUR};
use crate::network::EgressKey;

impl Engine {
    /// Milliseconds from UTC to the worker's local time, by the home's longitude (0 without a home).
    /// Clamped: a home that slipped past validation must not overflow the arithmetic.
    pub(crate) fn local_offset(&self, w: u32) -> Millis {
        self.workers[w as usize].home().map_or(0, |(h, _)| (h.lon.clamp(-180.0, 180.0) / 15.0).round() as Millis * HOUR)
    }

    /// Whether the device lives behind this egress: seen there on `min_days` days and
    /// (almost) nowhere else — a farm laptop, or a housemate; not a coworking member.
    pub(crate) fn resides(&self, d: u32, key: &EgressKey, at: Millis) -> bool {
        let p = &self.cfg.persistence;
        let at = at + self.local_offset(self.devices[d as usize].worker);
        self.devices[d as usize]
            .anchor
            .as_ref()
            .is_some_and(|a| a.key == *key && a.days_until(at) >= p.min_days && a.share_until(at) >= p.min_share)
    }

    /// Whether the device is parked at its anchor, wherever that is: seen there on `min_days`
    /// days and (almost) never off it — no other address, no mobile carrier. What a laptop in a
    /// farm is, and what a person who lives in a shared house is not for long: they tether,
    /// travel and work from elsewhere now and then.
    pub(crate) fn parked(&self, d: u32, at: Millis) -> bool {
        let p = &self.cfg.persistence;
        let at = at + self.local_offset(self.devices[d as usize].worker);
        self.devices[d as usize]
            .anchor
            .as_ref()
            .is_some_and(|a| a.days_until(at) >= p.min_days && a.share_until(at) >= p.min_share)
    }
}
