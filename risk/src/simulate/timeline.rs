//! Hour by hour: where every device is, its sessions and presence answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::population::World;
use super::rng::Rng;
use super::world::{HOME_CITIES, Net, Place, local_offset_hours};
use crate::Millis;
use crate::event::{
    Enrollment, Event, EventBody, Home, Lan, Outcome, Posture, Presence, Session, TpmClock, UsbDevice, UsbInterface,
};
use crate::geo::{Geo, NetworkClass};

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

pub struct Timeline<'a> {
    pub world: &'a World,
    pub start: Millis,
    pub seed: u64,
}

impl<'a> Timeline<'a> {
    pub fn new(world: &'a World, start: Millis, seed: u64) -> Self {
        Self { world, start, seed }
    }

    /// Local hour and local day (day 0 = the simulation's first Monday).
    fn local(&self, w: usize, hour: i64) -> (i64, i64) {
        let lon = HOME_CITIES[self.world.workers[w].city].lon;
        let local = hour + local_offset_hours(lon);
        (local.rem_euclid(24), local.div_euclid(24))
    }

    fn day_rng(&self, w: usize, day: i64, salt: u64) -> Rng {
        Rng::new(self.seed ^ (w as u64).wrapping_mul(0x9E37_79B9) ^ (day as u64).wrapping_mul(0x85EB_CA6B) ^ salt)
    }

    /// Where worker `w` is during UTC hour `hour`, if connected at all.
    pub fn place(&self, w: usize, hour: i64) -> Option<&'a Place> {
        let world = self.world;
        let worker = &world.workers[w];
        let (lh, day) = self.local(w, hour);
        if let Some(f) = worker.farm {
            let farm = &world.farms[f];
            return match &farm.reship {
                Some(r) if day >= r.day => {
                    let mut rng = self.day_rng(w, hour, 5);
                    (day >= r.day + r.transit_days).then_some(if rng.chance(r.leak) { &r.real } else { &r.exit })
                }
                _ => Some(&farm.house),
            };
        }
        let mut place = &worker.home;
        let mut city = worker.city;
        if let Some(trip) = &worker.trip {
            if day == trip.start_day && lh >= 11 || day == trip.start_day + trip.days + 1 && lh < 14 {
                return None;
            }
            if day > trip.start_day && day <= trip.start_day + trip.days {
                place = &world.venues[trip.venue];
                city = trip.venue;
            }
        }
        let weekday = day.rem_euclid(7) < 5;
        let mut rng = self.day_rng(w, day, 1);
        if std::ptr::eq(place, &worker.home) && weekday {
            if let Some(o) = worker.office {
                if (1..=3).contains(&day.rem_euclid(7)) {
                    place = &world.tenants[worker.tenant].offices[o].1;
                }
            } else if worker.coworking && rng.chance(0.5) {
                place = &world.coworking[worker.city];
            }
        }
        let mut hour_rng = self.day_rng(w, hour, 2);
        if let Some(vpn) = &world.tenants[worker.tenant].vpn
            && hour_rng.chance(0.9)
        {
            return Some(vpn);
        }
        if hour_rng.chance(worker.vpn_share) {
            return Some(&world.exits[hour_rng.index(world.exits.len())]);
        }
        if hour_rng.chance(worker.mobile_share) {
            let pool = &world.mobile[city];
            return Some(&pool[hour_rng.index(pool.len())]);
        }
        Some(place)
    }

    pub fn enrollment(&self, w: usize) -> Event {
        let worker = &self.world.workers[w];
        let place = &worker.home;
        let (lat, lon, country) = worker.declared;
        let body = EventBody::Enrollment(Enrollment {
            attested: worker.attested,
            format: Some(if worker.attested { "packed" } else { "none" }.into()),
            home: Some(Home { lat, lon, country: Some(country.into()) }),
            hardware: Some(format!("{:016x}", worker.hardware)),
        });
        self.event(w, self.start + (w as Millis % 3600) * 1000, place, body, 0)
    }

    /// All events of UTC hour `hour`, unsorted. Every device is challenged once an
    /// hour at its own minute; no probe rounds (an event log has none).
    pub fn hour(&mut self, hour: i64, out: &mut Vec<Event>) {
        let world = self.world;
        let hour_start = self.start + hour * HOUR;
        let mut sweeping: HashMap<usize, Vec<usize>> = HashMap::new();
        for w in 0..world.workers.len() {
            let (lh, day) = self.local(w, hour);
            if day.rem_euclid(7) >= 5 || !(9..17).contains(&lh) {
                continue;
            }
            let Some(place) = self.place(w, hour) else { continue };
            if lh == 9 || lh == 13 {
                let mut rng = self.day_rng(w, hour, 3);
                let at = hour_start + rng.int(0, 1_799_000) as Millis;
                out.push(self.event(
                    w,
                    at,
                    place,
                    EventBody::Session(Session { gateway: Some("vpn-1".into()) }),
                    rng.next_u64(),
                ));
            }
            let worker = &world.workers[w];
            if let Some(f) = worker.farm.filter(|f| world.farms[*f].style.sweeps()) {
                // The facilitator's day is generated at once, when the room opens.
                if lh == 9 {
                    sweeping.entry(f).or_default().push(w);
                }
                continue;
            }
            let mut rng = self.day_rng(w, hour, 4);
            let issued = hour_start + worker.phase_secs * 1000;
            let deadline = world.tenants[worker.tenant].deadline_ms;
            let miss = rng.chance(if worker.flaky { 0.15 } else { 0.02 });
            // Farm operators abroad answer each laptop on their own, somewhat slower.
            let median = if worker.farm.is_some() { 90_000.0 } else { 40_000.0 };
            let delay = (rng.lognormal(median, 1.0) as Millis).max(2_000);
            let answered = (!miss && delay <= deadline).then_some(issued + delay);
            out.push(self.presence(w, issued, answered, place, &mut rng));
        }
        let mut farms: Vec<_> = sweeping.into_iter().collect();
        farms.sort_unstable();
        for (f, members) in farms {
            self.sweep_day(f, &members, hour, out);
        }
    }

    /// One working day of a walked room: every member challenged hourly at its own
    /// minute; the facilitator walks in every so often and answers each pending
    /// laptop in turn, a few seconds apart; challenges that expire before the next
    /// walk are missed.
    fn sweep_day(&self, f: usize, members: &[usize], hour: i64, out: &mut Vec<Event>) {
        let world = self.world;
        let farm = &world.farms[f];
        let day_start = self.start + hour * HOUR;
        let mut rng = Rng::new(self.seed ^ (f as u64) << 24 ^ hour as u64);
        let mut walks = Vec::new();
        let mut t = rng.range(0.0, farm.walk_minutes.1) * 60_000.0;
        while t < 8.5 * HOUR as f64 {
            walks.push(day_start + t as Millis);
            t += rng.range(farm.walk_minutes.0, farm.walk_minutes.1) * 60_000.0;
        }
        let mut pending: Vec<Vec<(usize, Millis, i64)>> = vec![Vec::new(); walks.len()];
        for &w in members {
            let worker = &world.workers[w];
            let deadline = world.tenants[worker.tenant].deadline_ms;
            for h in 0..8 {
                let issued = day_start + h * HOUR + worker.phase_secs * 1000;
                match walks.iter().position(|walk| *walk >= issued) {
                    Some(i) if walks[i] - issued <= deadline && !rng.chance(0.02) => pending[i].push((w, issued, h)),
                    _ => {
                        if let Some(place) = self.place(w, hour + h) {
                            out.push(self.presence(w, issued, None, place, &mut rng));
                        }
                    }
                }
            }
        }
        for (walk, mut laptops) in walks.into_iter().zip(pending) {
            rng.shuffle(&mut laptops);
            let mut at = walk + rng.range(5_000.0, 30_000.0) as Millis;
            for (w, issued, h) in laptops {
                let Some(place) = self.place(w, hour + h) else { continue };
                out.push(self.presence(w, issued, Some(at), place, &mut rng));
                at += (rng.range(farm.gap_secs.0, farm.gap_secs.1) * 1000.0) as Millis;
            }
        }
    }

    fn presence(&self, w: usize, issued: Millis, answered: Option<Millis>, place: &Place, rng: &mut Rng) -> Event {
        let worker = &self.world.workers[w];
        let ok = answered.is_some();
        // Rebooted every night: the reset count is the day, the clock runs from the reboot.
        let since_start = answered.unwrap_or(issued) - self.start;
        let (tpm_reset, tpm_clock) = (since_start.div_euclid(DAY) as u32, since_start.rem_euclid(DAY) as u64);
        let posture = Posture {
            usb: worker
                .usb
                .iter()
                .map(|u| UsbDevice {
                    vid: Some(u.vid.into()),
                    pid: Some(u.pid.into()),
                    manufacturer: Some(u.manufacturer.into()),
                    product: Some(u.product.into()),
                    serial: u.serial.map(Into::into),
                    interfaces: u
                        .interfaces
                        .iter()
                        .map(|(class, subclass, protocol)| UsbInterface {
                            class: *class,
                            subclass: *subclass,
                            protocol: *protocol,
                        })
                        .collect(),
                })
                .collect(),
            processes: std::iter::once("explorer.exe").chain(worker.remote_tool).map(String::from).collect(),
            timezone: None,
            displays: vec!["Built-in Retina Display".into()],
            lan: place
                .lan
                .filter(|_| worker.reports_lan)
                .map(|h| Lan { gateway_mac_hash: Some(format!("{h:016x}")), wifi_bssid_hash: None }),
        };
        let body = EventBody::Presence(Presence {
            outcome: if ok { Outcome::Ok } else { Outcome::Missed },
            issued_at: Some(issued),
            answered_at: answered,
            // Counting authenticators get their counter when the events are put in time order.
            sign_count: ok.then_some(u64::from(worker.counter)),
            tpm: (ok && worker.tpm).then_some(TpmClock {
                clock: Some(tpm_clock),
                reset_count: Some(tpm_reset),
                restart_count: Some(0),
            }),
            posture: ok.then_some(posture),
            probe: false,
        });
        let deadline = self.world.tenants[worker.tenant].deadline_ms;
        self.event(w, answered.unwrap_or(issued + deadline), place, body, rng.next_u64())
    }

    fn event(&self, w: usize, at: Millis, place: &Place, body: EventBody, iid: u64) -> Event {
        let worker = &self.world.workers[w];
        let ip = if place.v6 {
            let a = place.addr;
            IpAddr::V6(Ipv6Addr::new(
                0x2a02,
                (a >> 16) as u16,
                a as u16,
                0,
                (iid >> 48) as u16,
                (iid >> 32) as u16,
                (iid >> 16) as u16,
                iid as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(place.addr))
        };
        let class = match place.net {
            Net::Residential => Some(NetworkClass::Residential),
            Net::Business => Some(NetworkClass::Business),
            Net::Mobile => Some(NetworkClass::Mobile),
            Net::Anonymizer => Some(NetworkClass::Anonymizer),
            Net::Hosting => Some(NetworkClass::Hosting),
            Net::CorporateVpn => None, // classified by the operator's CIDR list
        };
        Event {
            at,
            tenant: format!("t{}", worker.tenant),
            worker: format!("w{w}"),
            device: format!("d{w}"),
            ip,
            geo: Some(Geo {
                lat: Some(place.lat),
                lon: Some(place.lon),
                accuracy_km: Some(place.accuracy_km),
                country: Some(place.country.into()),
                asn: Some(place.asn),
                network_class: class,
            }),
            body,
        }
    }
}
