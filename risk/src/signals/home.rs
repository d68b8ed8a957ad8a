//! `home_collision`: workers of different employers declaring the same home
//! (within `radius_m`), more of them than a household holds.
//!
//! A declared home is typed by the tenant's admin, so another tenant's
//! declarations are its own claims: on their own they raise nothing (a finding
//! would be planted, and an oracle for where other employers' workers live).
//! The finding (counting the other employers without naming them) needs the
//! colliding workers' laptops seen together where
//! another tenant cannot place them: behind one address
//! tetherd itself observed (other tenants' members), or, for the tenant's own
//! members, wherever its own reports put them (it can only frame itself).
//! Homes located from an enrollment address are a city-level IP-database guess,
//! never a place within 100 m, so only stated homes are filed. It is `high` and farm
//! evidence only for a laptop parked there (`Engine::parked`): a co-living house
//! of several employers' remote workers is the same collision until its residents
//! have had time to leave the line now and then; `review` before.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Millis;
use crate::engine::{Engine, Finding, HOUR, Sighting};
use crate::event::Lan;
use crate::flag::{FarmMark, FlagKind, Severity};
use crate::geo::{NetworkClass, haversine_km};
use crate::network::EgressKey;

const KM_PER_DEGREE: f64 = 111.195;
/// Homes filed per grid cell; past it the tenant holding most of the cell loses its oldest entry,
/// so one tenant filling a cell with declarations evicts its own.
const MAX_PER_CELL: usize = 256;
/// Own workers named in the evidence.
const MAX_NAMED: usize = 20;

/// `[home_collision]` in the risk configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HomeCollisionConfig {
    /// Default true.
    pub enabled: bool,
    /// Homes this close (metres) are one place: geocoders put one address a few tens of metres
    /// apart. Default 100.
    pub radius_m: f64,
    /// A collision is this many workers at one place (more than a household) ... Default 4.
    pub min_workers: usize,
    /// ... of at least this many employers. Default 2.
    pub min_tenants: usize,
}

impl Default for HomeCollisionConfig {
    fn default() -> Self {
        Self { enabled: true, radius_m: 100.0, min_workers: 4, min_tenants: 2 }
    }
}

impl HomeCollisionConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.radius_m >= 1.0 && self.radius_m <= 5_000.0) {
            return Err("home_collision.radius_m must be 1-5000".into());
        }
        if self.min_workers < 2 || self.min_tenants < 2 {
            return Err("home_collision: min_workers and min_tenants must be at least 2".into());
        }
        Ok(())
    }
}

/// A stated home filed in the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placed {
    pub worker: u32,
    pub tenant: u32,
    pub lat: f64,
    pub lon: f64,
}

type Cell = (i32, i32);

/// Homes by cells at least `radius` wide in both directions, so every home within
/// the radius of a point lies in the point's row or the rows either side, within a
/// longitude span found by arithmetic: a lookup touches a handful of cells.
#[derive(Debug, Default)]
pub struct HomeGrid {
    cells: HashMap<Cell, Vec<Placed>>,
}

/// Rows of `dlat` degrees; each row has as many columns as fit cells `radius_km` wide at its
/// poleward edge (at least one).
fn row_of(lat: f64, dlat: f64) -> i32 {
    ((lat + 90.0) / dlat).floor() as i32
}

fn columns(row: i32, dlat: f64, radius_km: f64) -> i32 {
    let edge = (f64::from(row) * dlat - 90.0).abs().max((f64::from(row + 1) * dlat - 90.0).abs()).min(90.0);
    let width_km = 360.0 * KM_PER_DEGREE * edge.to_radians().cos();
    ((width_km / radius_km).floor() as i32).max(1)
}

fn column_of(lon: f64, n: i32) -> i32 {
    (((lon + 180.0) / 360.0 * f64::from(n)).floor() as i32).rem_euclid(n)
}

fn on_earth(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
}

impl HomeGrid {
    fn cell(lat: f64, lon: f64, radius_km: f64) -> Cell {
        let dlat = radius_km / KM_PER_DEGREE;
        let row = row_of(lat, dlat);
        (row, column_of(lon, columns(row, dlat, radius_km)))
    }

    fn remove(&mut self, cell: Cell, worker: u32) {
        if let Some(list) = self.cells.get_mut(&cell) {
            list.retain(|p| p.worker != worker);
            if list.is_empty() {
                self.cells.remove(&cell);
            }
        }
    }

    fn insert(&mut self, cell: Cell, placed: Placed) -> Option<u32> {
        let list = self.cells.entry(cell).or_default();
        let mut evicted = None;
        if list.len() >= MAX_PER_CELL {
            let mut counts: HashMap<u32, usize> = HashMap::new();
            for p in list.iter() {
                *counts.entry(p.tenant).or_default() += 1;
            }
            let top = counts.into_iter().max_by_key(|(t, n)| (*n, std::cmp::Reverse(*t))).map(|(t, _)| t);
            if let Some(i) = list.iter().position(|p| Some(p.tenant) == top) {
                evicted = Some(list.remove(i).worker);
            }
        }
        list.push(placed);
        evicted
    }

    /// Homes within `radius_km` of the point (the point's own included).
    pub(crate) fn near(&self, lat: f64, lon: f64, radius_km: f64) -> Vec<Placed> {
        let dlat = radius_km / KM_PER_DEGREE;
        let row = row_of(lat, dlat);
        let rows: Vec<i32> = (row - 1..=row + 1).filter(|r| f64::from(*r) * dlat - 90.0 <= 90.0 && *r >= 0).collect();
        // The narrowest longitude span of a kilometre among the three rows bounds them all.
        let poleward = rows
            .iter()
            .map(|r| (f64::from(*r) * dlat - 90.0).abs().max((f64::from(r + 1) * dlat - 90.0).abs()).min(90.0))
            .fold(0.0, f64::max);
        let span = (radius_km / (KM_PER_DEGREE * poleward.to_radians().cos().max(1e-6))) * 1.1;
        let mut out = Vec::new();
        for r in rows {
            let n = columns(r, dlat, radius_km);
            let lo = ((lon - span + 180.0) / 360.0 * f64::from(n)).floor() as i64;
            let hi = ((lon + span + 180.0) / 360.0 * f64::from(n)).floor() as i64;
            let count = (hi - lo + 1).clamp(1, i64::from(n));
            for c in lo..lo + count {
                let c = c.rem_euclid(i64::from(n)) as i32;
                if let Some(list) = self.cells.get(&(r, c)) {
                    out.extend(list.iter().filter(|p| haversine_km((lat, lon), (p.lat, p.lon)) <= radius_km).copied());
                }
            }
        }
        out
    }
}

impl Engine {
    /// Files the worker's stated home (declared, else stated at enrollment in a log) in the
    /// grid, or takes it out. Called before every event with the same declaration: unchanged
    /// homes cost a comparison.
    pub(crate) fn place_home(&mut self, w: u32) {
        let radius_km = self.cfg.home_collision.radius_m / 1000.0;
        let worker = &self.workers[w as usize];
        let stated = worker.declared_home.as_ref().or(worker.enrolled_home.as_ref().filter(|_| worker.home_stated));
        let want =
            stated.filter(|h| on_earth(h.lat, h.lon)).map(|h| (HomeGrid::cell(h.lat, h.lon, radius_km), h.lat, h.lon));
        if want == worker.placed {
            return;
        }
        let tenant = worker.tenant;
        if let Some((cell, _, _)) = worker.placed {
            self.homes.remove(cell, w);
        }
        self.workers[w as usize].placed = want;
        if let Some((cell, lat, lon)) = want
            && let Some(evicted) = self.homes.insert(cell, Placed { worker: w, tenant, lat, lon })
        {
            self.workers[evicted as usize].placed = None;
        }
    }

    /// Judges the declared home of the device's worker after the device was seen.
    pub(crate) fn check_home_collision(&self, d: u32, w: u32, s: &Sighting, lan: Option<&Lan>, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.home_collision;
        let Some((_, lat, lon)) = self.workers[w as usize].placed.filter(|_| cfg.enabled) else { return };
        let me = self.devices[d as usize].tenant;
        let near = self.homes.near(lat, lon, cfg.radius_m / 1000.0);
        let mut own: Vec<u32> = near.iter().filter(|p| p.tenant == me).map(|p| p.worker).collect();
        own.sort_unstable();
        let mut others: Vec<u32> = near.iter().filter(|p| p.tenant != me).map(|p| p.tenant).collect();
        let other_workers = others.len();
        others.sort_unstable();
        others.dedup();
        let (workers, tenants) = (own.len() + other_workers, 1 + others.len());
        if workers < cfg.min_workers || tenants < cfg.min_tenants {
            return;
        }
        // Declarations alone are never reported: other employers' declarations are their own
        // claims, and a finding on them would let any tenant learn, by declaring a home, whether
        // another employer's workers live there (and plant findings on them).
        let Some(seen) = self
            .seen_together(me, w, &near, s, lan)
            .filter(|c| c.workers >= cfg.min_workers && c.tenants >= cfg.min_tenants)
        else {
            return;
        };
        // A co-living house is the same collision on its first day: only a laptop parked there (a
        // working week, never off the line) is farm evidence; until then the analyst reviews it.
        let parked = self.cfg.persistence.enabled && self.parked(d, s.at);
        let severity = if parked { Severity::High } else { Severity::Review };
        let pattern = if parked {
            "declared-home collision seen together: laptops of workers of several employers who declare \
             one home are seen together behind one address tetherd observed, this one parked there"
        } else {
            "declared-home collision seen together, this laptop not (yet) parked at one address: review"
        };
        let p = &self.cfg.persistence;
        let names: Vec<&str> = own.iter().take(MAX_NAMED).map(|o| &*self.workers[*o as usize].name).collect();
        let egress = &self.cfg.shared_egress;
        let evidence = json!({
            "pattern": pattern,
            // Rounded (~1 km): the place is this tenant's own declaration, never another's coordinates.
            "place": {"lat": (lat * 100.0).round() / 100.0, "lon": (lon * 100.0).round() / 100.0},
            "workers": workers,
            "own_workers": names,
            "own_workers_total": own.len(),
            "other_employers": others.len(),
            "other_workers": other_workers,
            "seen_together": {
                "egress": seen.egress,
                "workers": seen.workers,
                "employers": seen.tenants,
                "workers_there": seen.there,
                "own_lans_reported": seen.own_lans,
                "counted": "this employer's laptops, and other employers' only where tetherd itself saw them \
                            (not gateway-reported addresses or LAN claims)",
            },
            "parked": parked,
            "thresholds": {
                "radius_m": cfg.radius_m, "min_workers": cfg.min_workers, "min_tenants": cfg.min_tenants,
                "window_hours": egress.window_hours, "carrier_nat_lans": egress.carrier_nat_lans,
                "parked": {"min_days": p.min_days, "min_share": p.min_share},
            },
        });
        out.push(Finding { device: d, kind: FlagKind::HomeCollision, severity, evidence });
    }

    /// Of the colliding workers, those whose laptops are seen with this device: behind its
    /// address (other tenants' only where tetherd observed them there) or, for its own
    /// tenant, on a LAN its devices reported. Not on a carrier NAT or a business network.
    fn seen_together(&self, me: u32, w: u32, near: &[Placed], s: &Sighting, lan: Option<&Lan>) -> Option<SeenTogether> {
        let egress_cfg = &self.cfg.shared_egress;
        let window = Millis::from(egress_cfg.window_hours) * HOUR;
        let mut keys = Vec::new();
        if !s.class.is_some_and(|c| c.skips_shared_egress() || c == NetworkClass::Business) {
            keys.push(EgressKey::for_ip(s.ip, egress_cfg.ipv6_prefix));
        }
        if egress_cfg.use_lan_fingerprint
            && let Some(lan) = lan
        {
            let hashes = [&lan.gateway_mac_hash, &lan.wifi_bssid_hash].into_iter().flatten();
            keys.extend(hashes.filter(|h| !h.is_empty()).map(|h| EgressKey::Lan(h.as_str().into())));
        }
        let mut together: Vec<(u32, u32)> = Vec::new();
        let mut own_lans: Vec<u64> = Vec::new();
        let mut described = None;
        let mut there = 0;
        for key in keys {
            let Some(entry) = self.egress.get(&key) else { continue };
            let lans = entry.members.iter().filter_map(|m| m.lan).collect::<std::collections::BTreeSet<_>>();
            if !key.is_lan()
                && (entry.recent_lans(s.at) >= egress_cfg.carrier_nat_lans || lans.len() >= egress_cfg.carrier_nat_lans)
            {
                continue;
            }
            let counted: Vec<&super::egress::Member> = entry
                .members
                .iter()
                .filter(|m| {
                    s.at - m.last_seen <= window
                        && (m.tenant == me || (!key.is_lan() && m.observed_within(s.at, window)))
                })
                .collect();
            let mut all: Vec<(u32, u32)> = counted.iter().map(|m| (m.tenant, m.worker)).collect();
            all.sort_unstable();
            all.dedup();
            let mut here: Vec<&super::egress::Member> = counted
                .into_iter()
                .filter(|m| near.iter().any(|p| p.worker == m.worker && p.tenant == m.tenant))
                .collect();
            here.sort_unstable_by_key(|m| (m.tenant, m.worker));
            here.dedup_by_key(|m| (m.tenant, m.worker));
            // A farm's address is its laptops' home; an exit shared by many households (a carrier
            // NAT whose LANs went unreported, an apartment block's ISP) holds mostly other workers.
            if here.len() * 2 < all.len() {
                continue;
            }
            there = there.max(all.len());
            together.extend(here.iter().map(|m| (m.tenant, m.worker)));
            own_lans.extend(here.iter().filter(|m| m.tenant == me).filter_map(|m| m.lan));
            described.get_or_insert_with(|| key.describe(egress_cfg.ipv6_prefix));
        }
        together.sort_unstable();
        together.dedup();
        own_lans.sort_unstable();
        own_lans.dedup();
        let mut tenants: Vec<u32> = together.iter().map(|(t, _)| *t).collect();
        tenants.dedup();
        let egress = described?;
        // This worker's own laptop must be one of them: one left out there (its employer's
        // registered office, an unattested enrollment) is not seen together with anyone.
        if together.binary_search(&(me, w)).is_err() {
            return None;
        }
        Some(SeenTogether { egress, workers: together.len(), tenants: tenants.len(), own_lans: own_lans.len(), there })
    }
}

struct SeenTogether {
    egress: String,
    /// Workers counted behind that address or LAN, colliding or not.
    there: usize,
    workers: usize,
    tenants: usize,
    own_lans: usize,
}

impl Engine {
    /// Marks the farm evidence of a corroborated collision (kept apart so the judge stays `&self`).
    pub(crate) fn mark_home_clusters(&mut self, findings: &[Finding]) {
        for f in findings.iter().filter(|f| f.kind == FlagKind::HomeCollision && f.severity == Severity::High) {
            self.devices[f.device as usize].flags.mark(FarmMark::HomeCluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(points: &[(u32, u32, f64, f64)]) -> HomeGrid {
        let mut g = HomeGrid::default();
        for (worker, tenant, lat, lon) in points {
            g.insert(
                HomeGrid::cell(*lat, *lon, 0.1),
                Placed { worker: *worker, tenant: *tenant, lat: *lat, lon: *lon },
            );
        }
        g
    }

    fn found(g: &HomeGrid, lat: f64, lon: f64) -> Vec<u32> {
        let mut w: Vec<u32> = g.near(lat, lon, 0.1).iter().map(|p| p.worker).collect();
        w.sort_unstable();
        w
    }

    #[test]
    fn neighbours_are_found_across_cell_edges_the_antimeridian_and_near_the_poles() {
        // Every pair 80 m apart, straddling whatever cell edge lies between them; one 150 m away.
        for (lat, lon) in [(40.7128, -74.006), (0.0, 0.0), (-33.8688, 151.2093), (60.0, 179.9995), (89.9995, 10.0)] {
            for step in 0..40 {
                let (dlat, dlon) = (f64::from(step) * 0.000_05, f64::from(step) * 0.000_07);
                let a = (lat - dlat.min(0.0009), lon + dlon);
                let east = 0.08 / (KM_PER_DEGREE * a.0.to_radians().cos().max(0.01));
                let b = (a.0 + 0.08 / KM_PER_DEGREE * 0.6, a.1 + east * 0.8);
                let b = (b.0.min(90.0), if b.1 > 180.0 { b.1 - 360.0 } else { b.1 });
                let far = ((a.0 - 0.15 / KM_PER_DEGREE).max(-90.0), a.1);
                let g = grid(&[(1, 1, a.0, a.1), (2, 2, b.0, b.1), (3, 3, far.0, far.1)]);
                assert!(haversine_km(a, b) <= 0.1 && haversine_km(a, far) > 0.1, "{a:?} {b:?}");
                assert_eq!(found(&g, a.0, a.1), vec![1, 2], "{a:?} {b:?}");
                assert_eq!(found(&g, b.0, b.1), vec![1, 2], "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn a_full_cell_evicts_from_the_tenant_holding_most_of_it() {
        let mut points: Vec<(u32, u32, f64, f64)> = vec![(0, 7, 40.7128, -74.006)];
        points.extend((1..MAX_PER_CELL as u32 + 10).map(|w| (w, 9, 40.7128, -74.006)));
        let g = grid(&points);
        let kept = found(&g, 40.7128, -74.006);
        assert_eq!(kept.len(), MAX_PER_CELL);
        assert!(kept.contains(&0), "the flooding tenant loses its own entries");
    }
}
