//! Bounded per-device and per-worker state, and the id interner.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::Millis;
use super::event::TpmClock;
use super::flag::{FlagKind, FlagSet, Severity};

/// A located sighting of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_km: f64,
    pub country: Option<Box<str>>,
    pub at: Millis,
    pub ip: IpAddr,
}

impl Point {
    pub fn coords(&self) -> (f64, f64) {
        (self.lat, self.lon)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ip": self.ip.to_string(),
            "lat": self.lat,
            "lon": self.lon,
            "accuracy_km": self.accuracy_km,
            "country": self.country.as_deref(),
            "at": super::event::format_time(self.at),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HomePoint {
    pub lat: f64,
    pub lon: f64,
    pub country: Option<Box<str>>,
}

/// Everything remembered about one device; fixed size apart from the capped deque.
#[derive(Debug)]
pub struct DeviceState {
    pub name: Box<str>,
    pub tenant: u32,
    pub worker: u32,
    pub attested: Option<bool>,
    pub flags: FlagSet,
    /// Per kind: the last severity emitted and when.
    pub emitted: [Option<(Severity, Millis)>; crate::flag::KINDS],
    pub last_point: Option<Point>,
    pub relocated_since: Option<Millis>,
    pub sign_count: Option<u64>,
    pub tpm: Option<(TpmClock, Option<Point>)>,
    /// Missed presence in working hours (capped).
    pub missed: VecDeque<Millis>,
    /// Presence answers behind public addresses and whether each was part of a sweep (capped).
    pub answers: VecDeque<(Millis, bool)>,
    /// Where the device is seen most (for `persistence`).
    pub anchor: Option<Anchor>,
    /// Since the device was last located in its home country: sightings, those through
    /// anonymizing exits (VPN services, hosting), when it was first located abroad, and
    /// the latest such location.
    pub sightings: u32,
    pub hidden: u32,
    pub abroad_since: Option<Millis>,
    pub abroad: Option<Point>,
    /// When the device was last located in its home country.
    pub home_last: Option<Millis>,
    /// Its habit up to then: sightings, and those through anonymizing exits (halved past a cap,
    /// so the habit follows the recent months).
    pub habit_sightings: u32,
    pub habit_hidden: u32,
}

impl DeviceState {
    pub fn new(name: &str, tenant: u32, worker: u32) -> Self {
        Self {
            name: name.into(),
            tenant,
            worker,
            attested: None,
            flags: FlagSet::default(),
            emitted: [None; crate::flag::KINDS],
            last_point: None,
            relocated_since: None,
            sign_count: None,
            tpm: None,
            missed: VecDeque::new(),
            answers: VecDeque::new(),
            anchor: None,
            sightings: 0,
            hidden: 0,
            abroad_since: None,
            abroad: None,
            home_last: None,
            habit_sightings: 0,
            habit_hidden: 0,
        }
    }

    /// Folds the sightings since the device was last located at home into its habit, once it is
    /// located at home again: what it did between two home locations was its habit, not a trip.
    pub fn located_at_home(&mut self, at: Millis) {
        const CAP: u32 = 4096;
        self.habit_sightings = self.habit_sightings.saturating_add(self.sightings.saturating_add(1));
        self.habit_hidden = self.habit_hidden.saturating_add(self.hidden);
        if self.habit_sightings > CAP {
            (self.habit_sightings, self.habit_hidden) = (self.habit_sightings / 2, self.habit_hidden / 2);
        }
        (self.sightings, self.hidden, self.abroad_since, self.abroad) = (0, 0, None, None);
        self.home_last = Some(at);
    }

    /// The share of its sightings up to its last home location that went through anonymizing exits.
    pub fn habit_hidden_share(&self) -> f64 {
        f64::from(self.habit_hidden) / f64::from(self.habit_sightings.max(1))
    }

    /// Whether a flag of this kind and severity would be new: a higher severity
    /// than before, or the same after the cooldown.
    pub fn wants(&self, kind: FlagKind, severity: Severity, at: Millis, cooldown: Millis) -> bool {
        match self.emitted[kind.index()] {
            None => true,
            Some((prev, last)) => severity > prev || (severity == prev && at.saturating_sub(last) >= cooldown),
        }
    }
}

/// The address a device is seen behind most, and on which of the last 32 days it
/// was seen there and on which elsewhere. Sightings through networks that hide
/// the place (VPNs, hosting) are neither; a mobile carrier is a day off the line
/// ([`Anchor::observe_off_line`]) without moving the anchor.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub key: crate::network::EgressKey,
    /// Bit `i`: seen there on day `last_day - i`.
    pub here_days: u32,
    /// Bit `i`: seen behind another address on day `last_day - i`.
    pub away_days: u32,
    pub last_day: i64,
    /// Sightings here and elsewhere since this became the anchor (which place is the anchor).
    here: u32,
    away: u32,
}

impl Anchor {
    const DAY: Millis = 24 * 3_600_000;

    pub fn new(key: crate::network::EgressKey, at: Millis) -> Self {
        Self { key, here_days: 1, away_days: 0, last_day: at.div_euclid(Self::DAY), here: 1, away: 0 }
    }

    /// Moves the window to `at`'s day and returns that day's bit.
    fn day_bit(&mut self, at: Millis) -> u32 {
        let day = at.div_euclid(Self::DAY);
        if day > self.last_day {
            let shift = day - self.last_day;
            self.here_days = if shift >= 32 { 0 } else { self.here_days << shift };
            self.away_days = if shift >= 32 { 0 } else { self.away_days << shift };
            self.last_day = day;
        }
        1u32 << (self.last_day - day).clamp(0, 31)
    }

    /// Counts a sighting through a mobile carrier (tethering): not a place, so the anchor stays,
    /// but a day the laptop was off its line. A laptop parked in a farm is plugged into the
    /// facilitator's line all day every day; a person tethers when out, or when the line is down.
    pub fn observe_off_line(&mut self, at: Millis) {
        let bit = self.day_bit(at);
        self.away_days |= bit;
    }

    /// Counts a sighting; the anchor moves when sightings elsewhere outnumber those here.
    pub fn observe(&mut self, key: &crate::network::EgressKey, at: Millis) {
        let bit = self.day_bit(at);
        if *key == self.key {
            self.here_days |= bit;
            self.here = self.here.saturating_add(1);
        } else {
            self.away_days |= bit;
            self.away = self.away.saturating_add(1);
            if self.away > self.here {
                *self = Self::new(key.clone(), at);
            }
        }
    }

    fn mask(bits: u32, shift: i64) -> u32 {
        if shift >= 32 { 0 } else { bits << shift.max(0) }
    }

    /// Distinct days seen there among the 32 ending at `at`.
    pub fn days_until(&self, at: Millis) -> u32 {
        Self::mask(self.here_days, at.div_euclid(Self::DAY) - self.last_day).count_ones()
    }

    /// Of the days it was seen there or elsewhere, the share with no sighting elsewhere.
    pub fn share_until(&self, at: Millis) -> f64 {
        let shift = at.div_euclid(Self::DAY) - self.last_day;
        let (here, away) = (Self::mask(self.here_days, shift), Self::mask(self.away_days, shift));
        f64::from((here & !away).count_ones()) / f64::from((here | away).count_ones().max(1))
    }
}

#[derive(Debug)]
pub struct WorkerState {
    pub name: Box<str>,
    pub tenant: u32,
    /// What an administrator declared; wins over the enrollment's.
    pub declared_home: Option<HomePoint>,
    /// The enrollment's stated home (event logs) or where the worker's first
    /// device enrolled from, when it could be located.
    pub enrolled_home: Option<HomePoint>,
    /// Whether `enrolled_home` was stated (a log's enrollment `home`) rather than located from
    /// an address: only stated homes are places precise enough for `home_collision`.
    pub home_stated: bool,
    /// Where the stated home is filed for `home_collision` (grid cell, lat, lon).
    pub placed: Option<((i32, i32), f64, f64)>,
    /// Declared working hours (else `presence_missed` hours local to the home's longitude).
    pub hours: Option<crate::WorkingHours>,
    /// The last located sighting of any of the worker's devices, and which device.
    pub last_point: Option<(Point, u32)>,
}

impl WorkerState {
    /// The home `relocated` and working hours measure from, and where it came from.
    pub fn home(&self) -> Option<(&HomePoint, &'static str)> {
        match (&self.declared_home, &self.enrolled_home) {
            (Some(declared), _) => Some((declared, "declared")),
            (None, Some(enrolled)) => Some((enrolled, "enrollment")),
            (None, None) => None,
        }
    }
}

/// Interns tenant, worker and device ids to small integers.
#[derive(Debug, Default)]
pub struct Ids {
    tenants: HashMap<String, u32>,
    pub tenant_names: Vec<Box<str>>,
    per_tenant: Vec<TenantIds>,
}

#[derive(Debug, Default)]
struct TenantIds {
    devices: HashMap<String, u32>,
    workers: HashMap<String, u32>,
}

impl Ids {
    pub fn tenant(&mut self, name: &str) -> u32 {
        if let Some(id) = self.tenants.get(name) {
            return *id;
        }
        let id = u32::try_from(self.tenant_names.len()).unwrap_or(u32::MAX);
        self.tenants.insert(name.to_owned(), id);
        self.tenant_names.push(name.into());
        self.per_tenant.push(TenantIds::default());
        id
    }

    /// Returns the device index and whether it is new; `next` is the index a new device gets.
    pub fn device(&mut self, tenant: u32, name: &str, next: usize) -> (u32, bool) {
        Self::intern(&mut self.per_tenant[tenant as usize].devices, name, next)
    }

    pub fn worker(&mut self, tenant: u32, name: &str, next: usize) -> (u32, bool) {
        Self::intern(&mut self.per_tenant[tenant as usize].workers, name, next)
    }

    pub fn find_device(&self, tenant: &str, name: &str) -> Option<u32> {
        let t = *self.tenants.get(tenant)?;
        self.per_tenant.get(t as usize)?.devices.get(name).copied()
    }

    fn intern(map: &mut HashMap<String, u32>, name: &str, next: usize) -> (u32, bool) {
        if let Some(id) = map.get(name) {
            return (*id, false);
        }
        let id = u32::try_from(next).unwrap_or(u32::MAX);
        map.insert(name.to_owned(), id);
        (id, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::EgressKey;

    const DAY: Millis = Anchor::DAY;

    #[test]
    fn a_mobile_day_is_a_day_off_the_line_that_leaves_the_anchor_where_it_is() {
        let home = EgressKey::for_ip("198.51.100.7".parse().expect("ip"), 64);
        let mut anchor = Anchor::new(home.clone(), 0);
        for day in 1..10 {
            anchor.observe(&home, day * DAY + 1);
        }
        assert_eq!((anchor.days_until(9 * DAY), anchor.share_until(9 * DAY)), (10, 1.0));
        // Tethering on two of those days, many times: the anchor stays, the share falls.
        for _ in 0..50 {
            anchor.observe_off_line(3 * DAY + 5);
            anchor.observe_off_line(7 * DAY + 5);
        }
        assert_eq!(anchor.key, home);
        assert_eq!(anchor.days_until(9 * DAY), 10);
        assert!((anchor.share_until(9 * DAY) - 0.8).abs() < 1e-9, "{}", anchor.share_until(9 * DAY));
    }
}
