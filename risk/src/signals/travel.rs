//! `relocated`, `impossible_travel`, and `clone_suspected` (one credential in two places at once).

use serde_json::json;

use crate::engine::{Engine, Finding, HOUR, Sighting};
use crate::flag::{FlagKind, Severity};
use crate::geo::haversine_km;
use crate::state::Point;

impl Engine {
    pub(crate) fn check_location(&mut self, d: u32, w: u32, s: &Sighting, out: &mut Vec<Finding>) {
        let Some(here) = s.point.clone() else { return };
        self.check_relocated(d, w, &here, out);

        let previous = self.devices[d as usize].last_point.replace(here.clone());
        if let Some(prev) = previous {
            self.check_speed(d, &prev, &here, "device", out);
        }
        let worker = &mut self.workers[w as usize];
        let other = worker.last_point.replace((here.clone(), d));
        if let Some((prev, other_device)) = other
            && other_device != d
        {
            self.check_speed(d, &prev, &here, "worker", out);
        }
    }

    fn check_relocated(&mut self, d: u32, w: u32, here: &Point, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.relocated;
        let Some((home, home_source)) = self.workers[w as usize].home() else { return };
        let km = haversine_km((home.lat, home.lon), here.coords());
        let effective = (km - here.accuracy_km).max(0.0);
        let far = effective > cfg.radius_km;
        let border = cfg.country_change
            && matches!((&home.country, &here.country), (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b));
        let dev = &mut self.devices[d as usize];
        if !(far || border) {
            dev.relocated_since = None;
            return;
        }
        let since = *dev.relocated_since.get_or_insert(here.at);
        let hours_away = (here.at - since) / HOUR;
        let severity = if hours_away >= i64::from(cfg.high_after_hours) { Severity::High } else { Severity::Review };
        if !self.would_emit(d, FlagKind::Relocated, severity, here.at) {
            return;
        }
        out.push(Finding {
            device: d,
            kind: FlagKind::Relocated,
            severity,
            evidence: json!({
                "home": {"lat": home.lat, "lon": home.lon, "country": home.country.as_deref()},
                "home_source": home_source,
                "location": here.to_json(),
                "distance_km": km.round(),
                "effective_km": effective.round(),
                "radius_km": cfg.radius_km,
                "country_changed": border,
                "relocated_since": crate::event::format_time(since),
                "hours_relocated": hours_away,
                "high_after_hours": cfg.high_after_hours,
            }),
        });
    }

    fn check_speed(&self, d: u32, prev: &Point, here: &Point, scope: &str, out: &mut Vec<Finding>) {
        let km = haversine_km(prev.coords(), here.coords());
        let effective = (km - prev.accuracy_km - here.accuracy_km).max(0.0);
        let travel = &self.cfg.impossible_travel;
        if effective <= travel.min_distance_km {
            return;
        }
        let seconds = (here.at - prev.at).abs() as f64 / 1000.0;
        let kmh = if seconds > 0.0 { effective / (seconds / 3600.0) } else { f64::INFINITY };
        let clone = &self.cfg.clone;
        let simultaneous =
            scope == "device" && seconds <= f64::from(clone.simultaneous_secs) && effective > clone.min_distance_km;
        let kind = if simultaneous {
            FlagKind::CloneSuspected
        } else if kmh > travel.max_kmh {
            FlagKind::ImpossibleTravel
        } else {
            return;
        };
        let severity = if simultaneous { Severity::High } else { Severity::Review };
        // Built only for a flag that will be emitted: a device that moved stays far from its last
        // point for many events, and each would build (and drop) this evidence.
        if !self.would_emit(d, kind, severity, here.at) {
            return;
        }
        let mut evidence = json!({
            "scope": scope,
            "from": prev.to_json(),
            "to": here.to_json(),
            "distance_km": km.round(),
            "effective_km": effective.round(),
            "hours": (seconds / 36.0).round() / 100.0,
            "kmh": if kmh.is_finite() { Some(kmh.round()) } else { None },
            "max_kmh": travel.max_kmh,
        });
        if simultaneous && let Some(map) = evidence.as_object_mut() {
            map.insert("reason".into(), "the same credential answered from two places at once".into());
            map.insert("simultaneous_secs".into(), clone.simultaneous_secs.into());
        }
        out.push(Finding { device: d, kind, severity, evidence });
    }
}
