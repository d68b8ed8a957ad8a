//! `presence_missed_pattern`: repeated missed presence during declared working hours.

use serde_json::json;

use crate::Millis;
use crate::engine::{Engine, Finding, HOUR};
use crate::event::{Presence, format_time};
use crate::flag::{FlagKind, Severity};

const MAX_MISSES_KEPT: usize = 64;

impl Engine {
    pub(crate) fn on_presence_missed(&mut self, d: u32, w: u32, p: &Presence, at: Millis, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.presence_missed;
        let when = p.issued_at.unwrap_or(at);
        let worker = &self.workers[w as usize];
        let home = worker.home().map(|(home, _)| home);
        // Declared hours win; otherwise the configured hours, local to the home's longitude.
        let offset_hours = home.map_or(0, |h| (h.lon / 15.0).round() as i64);
        let (in_hours, working_hours, utc_offset_hours) = match &worker.hours {
            Some(hours) => (
                hours.contains(when),
                format!("{} ({})", hours.schedule, hours.timezone),
                f64::from(hours.offset_seconds(when)) / 3600.0,
            ),
            None => {
                let local = when + offset_hours * HOUR;
                let hour = local.rem_euclid(24 * HOUR) / HOUR;
                // 1970-01-01 was a Thursday: day 0 → weekday index 3 (Monday = 0).
                let weekday = (local.div_euclid(24 * HOUR) + 3).rem_euclid(7);
                let in_range = if cfg.working_hours_start <= cfg.working_hours_end {
                    hour >= i64::from(cfg.working_hours_start) && hour < i64::from(cfg.working_hours_end)
                } else {
                    hour >= i64::from(cfg.working_hours_start) || hour < i64::from(cfg.working_hours_end)
                };
                let text = format!(
                    "{:02}:00-{:02}:00{}",
                    cfg.working_hours_start,
                    cfg.working_hours_end,
                    if cfg.weekdays_only { " Mon-Fri" } else { "" }
                );
                (in_range && !(cfg.weekdays_only && weekday >= 5), text, offset_hours as f64)
            }
        };
        let declared = worker.hours.is_some();
        let home_known = home.is_some();
        if !in_hours {
            return;
        }
        let window = Millis::from(cfg.window_hours) * HOUR;
        let wanted = self.would_emit(d, FlagKind::PresenceMissedPattern, Severity::Review, at);
        let misses = &mut self.devices[d as usize].missed;
        misses.push_back(when);
        while misses.len() > MAX_MISSES_KEPT || misses.front().is_some_and(|t| when - *t > window) {
            misses.pop_front();
        }
        if misses.len() >= cfg.threshold && wanted {
            out.push(Finding {
                device: d,
                kind: FlagKind::PresenceMissedPattern,
                severity: Severity::Review,
                evidence: json!({
                    "missed": misses.iter().map(|t| format_time(*t)).collect::<Vec<_>>(),
                    "threshold": cfg.threshold,
                    "window_hours": cfg.window_hours,
                    "working_hours": working_hours,
                    "working_hours_declared": declared,
                    "utc_offset_hours": utc_offset_hours,
                    "home_known": home_known,
                }),
            });
        }
    }
}
