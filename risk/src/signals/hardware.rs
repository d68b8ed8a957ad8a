//! `unattested_hardware`, `clone_suspected` (counter regression) and `tpm_anomaly`.

use serde_json::json;

use crate::engine::{Engine, Finding, Sighting, home_point};
use crate::event::{Enrollment, Presence, TpmClock};
use crate::flag::{FlagKind, Severity};
use crate::geo::haversine_km;
use crate::state::{HomePoint, Point};

impl Engine {
    pub(crate) fn on_enrollment(&mut self, d: u32, w: u32, e: &Enrollment, s: &Sighting, out: &mut Vec<Finding>) {
        self.devices[d as usize].attested = Some(e.attested);
        let worker = &mut self.workers[w as usize];
        if let Some(home) = &e.home {
            worker.enrolled_home = Some(home_point(home));
            worker.home_stated = true;
            self.place_home(w);
        } else if worker.enrolled_home.is_none()
            && let Some(p) = &s.point
        {
            // Until a home is declared, where the first device enrolled stands in for it.
            worker.enrolled_home = Some(HomePoint { lat: p.lat, lon: p.lon, country: p.country.clone() });
        }
        if let Some(hash) = &e.hardware {
            let dev = &self.devices[d as usize];
            let me = crate::signals::shared_hardware::HardwareUse {
                device: d,
                worker: w,
                tenant: dev.tenant,
                attested: e.attested,
                at: s.at,
            };
            self.observe_hardware(hash, me, out);
        }
        if !e.attested {
            out.push(Finding {
                device: d,
                kind: FlagKind::UnattestedHardware,
                severity: Severity::Review,
                evidence: json!({
                    "reason": "enrolled without a verified attestation (self, none or untrusted root)",
                    "format": e.format,
                    "ip": s.ip.to_string(),
                }),
            });
        }
    }

    pub(crate) fn on_presence_answer(&mut self, d: u32, p: &Presence, s: &Sighting, out: &mut Vec<Finding>) {
        if let Some(count) = p.sign_count {
            self.check_sign_count(d, count, s, out);
        }
        if let Some(tpm) = p.tpm {
            self.check_tpm(d, tpm, s, out);
        }
        if let Some(posture) = &p.posture {
            self.check_posture(d, posture, s, out);
        }
        if let (Some(issued), Some(answered)) = (p.issued_at, p.answered_at) {
            let lan = p.posture.as_ref().and_then(|p| p.lan.as_ref());
            self.observe_answer(d, issued, answered, s, lan, out);
        }
    }

    fn check_sign_count(&mut self, d: u32, count: u64, s: &Sighting, out: &mut Vec<Finding>) {
        let dev = &mut self.devices[d as usize];
        let previous = dev.sign_count;
        // Authenticators without a counter always report 0; that is not a regression.
        if let Some(prev) = previous
            && count <= prev
            && !(count == 0 && prev == 0)
        {
            out.push(Finding {
                device: d,
                kind: FlagKind::CloneSuspected,
                severity: Severity::High,
                evidence: json!({
                    "reason": "signature counter did not move forward",
                    "previous_sign_count": prev,
                    "sign_count": count,
                    "ip": s.ip.to_string(),
                }),
            });
        }
        dev.sign_count = Some(previous.map_or(count, |p| p.max(count)));
    }

    fn check_tpm(&mut self, d: u32, tpm: TpmClock, s: &Sighting, out: &mut Vec<Finding>) {
        let max_km = self.cfg.tpm.location_change_km;
        let dev = &mut self.devices[d as usize];
        let here = s.point.clone();
        if let Some((prev, prev_point)) = &dev.tpm {
            let backwards = match (prev.reset_count, tpm.reset_count) {
                (Some(a), Some(b)) if b < a => Some("reset_count went backwards"),
                (Some(a), Some(b)) if a == b => match (prev.restart_count, tpm.restart_count, prev.clock, tpm.clock) {
                    (Some(x), Some(y), _, _) if y < x => Some("restart_count went backwards without a reset"),
                    (_, _, Some(x), Some(y)) if y < x => Some("clock went backwards without a reset"),
                    _ => None,
                },
                _ => None,
            };
            let evidence = |reason: &str, extra: serde_json::Value| {
                json!({
                    "reason": reason,
                    "previous": {"clock": prev.clock, "reset_count": prev.reset_count, "restart_count": prev.restart_count},
                    "current": {"clock": tpm.clock, "reset_count": tpm.reset_count, "restart_count": tpm.restart_count},
                    "ip": s.ip.to_string(),
                    "location_change": extra,
                })
            };
            if let Some(reason) = backwards {
                out.push(Finding {
                    device: d,
                    kind: FlagKind::TpmAnomaly,
                    severity: Severity::High,
                    evidence: evidence(reason, serde_json::Value::Null),
                });
            } else if let (Some(a), Some(b)) = (prev.reset_count, tpm.reset_count)
                && b > a
                && let (Some(from), Some(to)) = (prev_point, &here)
                && let Some(moved) = moved(from, to, max_km)
            {
                out.push(Finding {
                    device: d,
                    kind: FlagKind::TpmAnomaly,
                    severity: Severity::Review,
                    evidence: evidence("TPM reset together with a location change", moved),
                });
            }
        }
        let keep_point = here.or_else(|| dev.tpm.as_ref().and_then(|(_, p)| p.clone()));
        dev.tpm = Some((tpm, keep_point));
    }
}

/// Evidence of a move farther than `max_km` (after accuracy radii) or across a border.
fn moved(from: &Point, to: &Point, max_km: f64) -> Option<serde_json::Value> {
    let km = haversine_km(from.coords(), to.coords());
    let effective = (km - from.accuracy_km - to.accuracy_km).max(0.0);
    let border = matches!((&from.country, &to.country), (Some(a), Some(b)) if a != b);
    (effective > max_km || border).then(|| {
        json!({
            "from": from.to_json(),
            "to": to.to_json(),
            "distance_km": km.round(),
            "effective_km": effective.round(),
            "threshold_km": max_km,
            "country_changed": border,
        })
    })
}
