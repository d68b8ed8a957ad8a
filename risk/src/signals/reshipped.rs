//! `anonymized_egress` high: a laptop reshipped abroad, hidden behind VPN or hosting exits.

use serde_json::json;

use crate::engine::{Engine, Finding, HOUR, Sighting};
use crate::flag::{FlagKind, Severity};
use crate::geo::NetworkClass;

impl Engine {
    /// A laptop shipped abroad reaches its employer through VPN or hosting exits that hide
    /// where it is; now and then it leaks its real address, in another country, and it is
    /// never located at home again. Honest VPN users leak their home; a traveller abroad
    /// comes home within days.
    pub(crate) fn check_reshipped(&mut self, d: u32, s: &Sighting, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.relocated;
        let worker = self.devices[d as usize].worker as usize;
        let home_country = self.workers[worker].home().and_then(|(h, _)| h.country.as_deref());
        // Some(true): located at home; Some(false): located abroad; None: not located.
        let at_home = s.point.as_ref().and_then(|p| {
            let (here, home) = (p.country.as_deref()?, home_country?);
            Some(here.eq_ignore_ascii_case(home))
        });
        let home_country = if at_home == Some(false) || self.devices[d as usize].abroad_since.is_some() {
            home_country.map(str::to_owned)
        } else {
            None
        };
        // Asked before the sighting is counted: only emitting changes the answer.
        let wanted = self.would_emit(d, FlagKind::AnonymizedEgress, Severity::High, s.at);
        let dev = &mut self.devices[d as usize];
        match (at_home, &s.point) {
            (Some(true), _) => {
                (dev.sightings, dev.hidden, dev.abroad_since, dev.abroad) = (0, 0, None, None);
                return;
            }
            (Some(false), Some(p)) => {
                dev.abroad_since.get_or_insert(s.at);
                dev.abroad = Some(p.clone());
            }
            _ => {}
        }
        dev.sightings = dev.sightings.saturating_add(1);
        if s.class.is_some_and(NetworkClass::is_anonymizing) {
            dev.hidden = dev.hidden.saturating_add(1);
        }
        let (Some(since), Some(leak)) = (dev.abroad_since, dev.abroad.as_ref()) else { return };
        let share = f64::from(dev.hidden) / f64::from(dev.sightings.max(1));
        let hours = (s.at - since) / HOUR;
        if dev.sightings < cfg.reshipped_min_sightings
            || share < cfg.reshipped_hidden_share
            || hours < i64::from(cfg.reshipped_after_hours)
            || !wanted
        {
            return;
        }
        out.push(Finding {
            device: d,
            kind: FlagKind::AnonymizedEgress,
            severity: Severity::High,
            evidence: json!({
                "pattern": "reshipped: located abroad and never at home since, otherwise seen almost only \
                            through VPN or hosting exits",
                "abroad_since": crate::event::format_time(since),
                "hours_abroad": hours,
                "latest_leak": leak.to_json(),
                "home_country": home_country.as_deref(),
                "hidden_sightings": dev.hidden,
                "sightings": dev.sightings,
                "hidden_share": (share * 100.0).round() / 100.0,
                "thresholds": {"reshipped_hidden_share": cfg.reshipped_hidden_share,
                    "reshipped_min_sightings": cfg.reshipped_min_sightings,
                    "reshipped_after_hours": cfg.reshipped_after_hours},
            }),
        });
    }
}
