//! `presence_burst` from answer times alone: one hand walking a room of laptops
//! and answering each pending challenge in turn, a few seconds apart, every
//! quarter of an hour or so — whatever times the challenges were issued at.
//! No probe round is needed, so it works on any event log.
//!
//! Behind one public address, answers of distinct workers' devices that follow
//! each other `min_gap_secs`..`max_gap_secs` apart (never two at once) form a
//! sweep, provided their challenges were issued at unrelated times (more than
//! `max_gap_secs` apart). Strangers behind a carrier NAT or in a coworking space fall into such
//! a chain now and then by chance; a farm laptop is answered that way most of
//! the time. So a device is flagged on its own record: at least `min_sweeps`
//! sweeps and `min_ratio` of its last answers there in the window.
//! Across tenants only the address tetherd saw counts (a LAN fingerprint is the
//! device's own claim), so another tenant cannot place answers into a chain; a
//! LAN fingerprint chains one tenant's own devices, which can only frame it.

use std::collections::VecDeque;

use serde_json::json;

use crate::Millis;
use crate::engine::{Engine, Finding, HOUR};
use crate::event::format_time;
use crate::flag::{FlagKind, Severity};
use crate::network::EgressKey;

/// Answers remembered per device (for its sweep ratio).
pub(crate) const MAX_DEVICE_ANSWERS: usize = 64;
const MAX_CHAIN: usize = 64;
const MAX_RECENT_SWEEPS: usize = 4;

/// One answer of a chain: when, which device and worker, and the LAN it reported.
#[derive(Debug, Clone, Copy)]
struct Link {
    at: Millis,
    device: u32,
    worker: u32,
    issued: Millis,
    lan: Option<u64>,
}

/// The open chain of answers behind one egress and its latest sweeps.
#[derive(Debug, Default)]
pub struct Sweeps {
    chain: Vec<Link>,
    recent: VecDeque<Vec<(Millis, u32)>>,
}

impl Sweeps {
    fn last_at(&self) -> Option<Millis> {
        self.chain.last().map(|l| l.at)
    }
}

impl Engine {
    /// Adds an answer behind an egress address to its chain; closes the chain first
    /// when this answer cannot continue it.
    pub(crate) fn observe_sweep(
        &mut self,
        key: &EgressKey,
        d: u32,
        issued: Millis,
        answered: Millis,
        lan: Option<u64>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &self.cfg.presence_sweep;
        // A LAN fingerprint chains only as one tenant's claim (`TenantLan`), never across tenants.
        if !cfg.enabled || matches!(key, EgressKey::Lan(_)) {
            return;
        }
        let (min_gap, max_gap) = ((cfg.min_gap_secs * 1000.0) as Millis, (cfg.max_gap_secs * 1000.0) as Millis);
        let worker = self.devices[d as usize].worker;
        let answers = &mut self.devices[d as usize].answers;
        // One answer feeds the address's chain and its LAN's: it is one answer of the device's record.
        if answers.back().is_none_or(|(at, _)| *at != answered) {
            if answers.len() >= MAX_DEVICE_ANSWERS {
                answers.pop_front();
            }
            answers.push_back((answered, false));
        }
        let Some(egress) = self.egress.get_mut(key) else { return };
        // Two answers that report different LANs were not made in one room; two challenges
        // issued together and answered together are what probe rounds judge (and people
        // challenged at the same moment answer close together on their own).
        let continues = egress.sweeps.chain.last().is_some_and(|last| {
            let gap = answered - last.at;
            gap >= min_gap
                && gap <= max_gap
                && (issued - last.issued).abs() > max_gap
                && !(lan.is_some() && last.lan.is_some() && lan != last.lan)
                && !egress.sweeps.chain.iter().any(|l| l.device == d)
        });
        if !continues {
            self.close_chain(key, out);
        }
        if let Some(egress) = self.egress.get_mut(key)
            && egress.sweeps.chain.len() < MAX_CHAIN
        {
            egress.sweeps.chain.push(Link { at: answered, device: d, worker, issued, lan });
        }
    }

    /// Closes chains whose last answer is more than `max_gap_secs` before `now`.
    pub(crate) fn close_stale_chains(&mut self, now: Millis, out: &mut Vec<Finding>) {
        let max_gap = (self.cfg.presence_sweep.max_gap_secs * 1000.0) as Millis;
        let mut keys: Vec<EgressKey> = self
            .egress
            .iter()
            .filter(|(_, e)| e.sweeps.last_at().is_some_and(|t| now.saturating_sub(t) > max_gap))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        for key in keys {
            self.close_chain(&key, out);
        }
    }

    /// As [`Engine::close_stale_chains`], grouped by when each chain could no
    /// longer be continued (its last answer plus `max_gap_secs`).
    pub(crate) fn close_stale_chains_dated(&mut self, now: Millis) -> Vec<(Millis, Vec<Finding>)> {
        let max_gap = (self.cfg.presence_sweep.max_gap_secs * 1000.0) as Millis;
        let mut keys: Vec<(Millis, EgressKey)> = self
            .egress
            .iter()
            .filter_map(|(k, e)| e.sweeps.last_at().map(|t| (t.saturating_add(max_gap), k.clone())))
            .filter(|(due, _)| *due < now)
            .collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|(due, key)| {
                let mut findings = Vec::new();
                self.close_chain(&key, &mut findings);
                (due, findings)
            })
            .collect()
    }

    /// Judges the open chain: a sweep when it spans enough distinct workers; then
    /// each of its devices is judged on its own record.
    fn close_chain(&mut self, key: &EgressKey, out: &mut Vec<Finding>) {
        let Some(egress) = self.egress.get_mut(key) else { return };
        let chain = std::mem::take(&mut egress.sweeps.chain);
        let mut workers: Vec<u32> = chain.iter().map(|l| l.worker).collect();
        workers.sort_unstable();
        workers.dedup();
        if workers.len() < self.cfg.presence_sweep.min_workers {
            return;
        }
        // Behind a carrier NAT, strangers' answers chain by chance: only one LAN reported by all counts.
        let last = chain.last().map_or(0, |l| l.at);
        if egress.recent_lans(last) >= self.cfg.shared_egress.carrier_nat_lans
            && !(chain[0].lan.is_some() && chain.iter().all(|l| l.lan == chain[0].lan))
        {
            return;
        }
        if egress.sweeps.recent.len() >= MAX_RECENT_SWEEPS {
            egress.sweeps.recent.pop_front();
        }
        egress.sweeps.recent.push_back(chain.iter().map(|l| (l.at, l.device)).collect());
        for l in &chain {
            if let Some(entry) = self.devices[l.device as usize].answers.iter_mut().rev().find(|(at, _)| *at == l.at) {
                entry.1 = true;
            }
        }
        for l in &chain {
            self.judge_sweeps(key, l.device, l.at, out);
        }
    }

    fn judge_sweeps(&self, key: &EgressKey, d: u32, now: Millis, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.presence_sweep;
        let window = Millis::from(cfg.window_hours) * HOUR;
        let recent: Vec<&(Millis, bool)> =
            self.devices[d as usize].answers.iter().filter(|(t, _)| now - *t <= window).collect();
        let swept = recent.iter().filter(|(_, s)| *s).count();
        let ratio = swept as f64 / recent.len().max(1) as f64;
        if recent.len() < cfg.min_answers || swept < cfg.min_sweeps || ratio < cfg.min_ratio {
            return;
        }
        let Some(egress) = self.egress.get(key) else { return };
        let sweeps: Vec<serde_json::Value> = egress
            .sweeps
            .recent
            .iter()
            .rev()
            .map(|s| {
                let first = s.first().map_or(0, |(t, _)| *t);
                json!({
                    "started_at": format_time(first),
                    // Members as {tenant, worker, device}: tetherd drops other tenants' from each report.
                    "answers": s.iter().map(|(t, dev)| {
                        let mut v = self.describe_device(*dev);
                        if let Some(map) = v.as_object_mut() {
                            map.insert("after_secs".into(), ((*t - first) as f64 / 1000.0).into());
                        }
                        v
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        let pattern = if key.is_lan() {
            "answer sweeps: this laptop's presence answers keep arriving in a chain with other workers' laptops \
             of this employer reporting the same LAN, a few seconds apart, one at a time"
        } else {
            "answer sweeps: this laptop's presence answers keep arriving in a chain with other \
             workers' laptops behind the same address, a few seconds apart, one at a time"
        };
        out.push(Finding {
            device: d,
            kind: FlagKind::PresenceBurst,
            severity: Severity::High,
            evidence: json!({
                "pattern": pattern,
                "egress": key.describe(self.cfg.shared_egress.ipv6_prefix),
                "device": self.describe_device(d),
                "answers_in_window": recent.len(),
                "answers_in_sweeps": swept,
                "ratio": (ratio * 100.0).round() / 100.0,
                "recent_sweeps": sweeps,
                "thresholds": {
                    "min_gap_secs": cfg.min_gap_secs, "max_gap_secs": cfg.max_gap_secs,
                    "min_workers": cfg.min_workers, "min_sweeps": cfg.min_sweeps,
                    "min_answers": cfg.min_answers, "min_ratio": cfg.min_ratio, "window_hours": cfg.window_hours,
                },
            }),
        });
    }
}
