//! `anonymized_egress` high: a laptop reshipped abroad, hidden behind VPN or hosting exits.

use serde_json::json;

use crate::engine::{Engine, Finding, HOUR, Sighting};
use crate::flag::{FlagKind, Severity};
use crate::geo::NetworkClass;

/// Sightings up to the last home location (about a working day) before the habit counts as known.
const HABIT_MIN_SIGHTINGS: u32 = 8;

impl Engine {
    /// A laptop shipped abroad reaches its employer through VPN or hosting exits that hide
    /// where it is; now and then it leaks its real address, in another country, and it is
    /// never located at home again. Honest VPN users leak their home; a traveller abroad
    /// comes home within days.
    ///
    /// The clock runs from when the laptop was last located at home: a reshipped laptop is
    /// silent in transit and may leak only days after it arrived, so timing from the first leak
    /// lets it work abroad for a week unflagged. That is safe only for a laptop that did not hide
    /// before: one that went through anonymizing exits on a good share of its sightings at home
    /// (a privacy-VPN user) hides on a trip as well, and the leak is all that says where it is,
    /// so for it the clock runs from the first leak and needs a week (`high_after_hours`). One seen
    /// too little at home to know its habit keeps the first-leak clock of 96 hours.
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
                dev.located_at_home(s.at);
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
        let habit = dev.habit_hidden_share();
        let known = dev.habit_sightings >= HABIT_MIN_SIGHTINGS;
        let (from, needed) = match dev.home_last {
            _ if habit >= cfg.reshipped_habit_hidden_share => {
                (since, cfg.reshipped_after_hours.max(cfg.high_after_hours))
            }
            Some(home) if known => (home.min(since), cfg.reshipped_after_hours),
            // Too little seen at home to know its habit: from the first leak, as for everyone before.
            _ => (since, cfg.reshipped_after_hours),
        };
        let hours = (s.at - from) / HOUR;
        if dev.sightings < cfg.reshipped_min_sightings
            || share < cfg.reshipped_hidden_share
            || hours < i64::from(needed)
            || !wanted
        {
            return;
        }
        let fmt = crate::event::format_time;
        out.push(Finding {
            device: d,
            kind: FlagKind::AnonymizedEgress,
            severity: Severity::High,
            evidence: json!({
                "pattern": "reshipped: located abroad and never at home since, otherwise seen almost only \
                            through VPN or hosting exits",
                "abroad_since": fmt(since),
                "hours_abroad": (s.at - since) / HOUR,
                "last_at_home": dev.home_last.map(fmt),
                "hours_since_home": dev.home_last.map(|h| (s.at - h) / HOUR),
                "counted_from": if from == since { "first located abroad" } else { "last located at home" },
                "latest_leak": leak.to_json(),
                "home_country": home_country.as_deref(),
                "hidden_sightings": dev.hidden,
                "sightings": dev.sightings,
                "hidden_share": (share * 100.0).round() / 100.0,
                "hidden_share_before": (habit * 100.0).round() / 100.0,
                "thresholds": {"reshipped_hidden_share": cfg.reshipped_hidden_share,
                    "reshipped_min_sightings": cfg.reshipped_min_sightings,
                    "reshipped_after_hours": cfg.reshipped_after_hours,
                    "reshipped_habit_hidden_share": cfg.reshipped_habit_hidden_share,
                    "hours_needed": needed},
            }),
        });
    }
}
