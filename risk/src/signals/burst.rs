//! `presence_burst`: one person answering for many devices. Challenges issued
//! together (a round) to devices behind one egress are answered one after
//! another, a few seconds apart, never two at once — and that repeats.
//! Probe challenges that one person could not get to in time are missed: a
//! missed probe counts in its round as a device the answers did not reach.

use std::collections::VecDeque;

use serde_json::json;

use crate::Millis;
use crate::engine::{Engine, Finding, HOUR, Sighting};
use crate::event::{Lan, format_time};
use crate::flag::{FlagKind, Severity};
use crate::geo::NetworkClass;
use crate::network::EgressKey;

const MAX_OPEN_ROUNDS: usize = 16;
const MAX_ANSWERS_PER_ROUND: usize = 64;
const MAX_CLOSED_ROUNDS: usize = 64;

#[derive(Debug, Default)]
pub struct Rounds {
    open: Vec<OpenRound>,
    closed: VecDeque<ClosedRound>,
}

#[derive(Debug)]
struct OpenRound {
    issued_at: Millis,
    answers: Vec<(Millis, u32)>,
    /// Devices that missed this round's probe challenge.
    missed: Vec<u32>,
}

#[derive(Debug)]
struct ClosedRound {
    issued_at: Millis,
    serial: bool,
    answers: Vec<(Millis, u32)>,
    missed: Vec<u32>,
}

impl Rounds {
    pub(crate) fn is_idle(&self) -> bool {
        self.open.is_empty()
    }
}

impl Engine {
    /// Records an answer in its round, per egress address and per LAN fingerprint.
    pub(crate) fn observe_answer(
        &mut self,
        d: u32,
        issued: Millis,
        answered: Millis,
        s: &Sighting,
        lan: Option<&Lan>,
        out: &mut Vec<Finding>,
    ) {
        if !self.counts_at(d, s) {
            return;
        }
        let mut keys = Vec::with_capacity(3);
        if !s.class.is_some_and(NetworkClass::skips_shared_egress) {
            keys.push(EgressKey::for_ip(s.ip, self.cfg.shared_egress.ipv6_prefix));
        }
        if self.cfg.shared_egress.use_lan_fingerprint
            && let Some(lan) = lan
        {
            keys.extend(
                [&lan.gateway_mac_hash, &lan.wifi_bssid_hash]
                    .into_iter()
                    .flatten()
                    .filter(|h| !h.is_empty())
                    .map(|h| EgressKey::Lan(h.as_str().into())),
            );
        }
        let lan_id = super::egress::lan_id(lan);
        for key in keys {
            self.add_answer(key.clone(), d, issued, answered, s, out);
            if !key.is_lan() {
                self.observe_sweep(&key, d, issued, answered, lan_id, out);
            }
        }
        // Sweeps on a LAN chain one tenant's devices only: the fingerprint is the devices' claim, so
        // another tenant's devices claiming it must not place answers into this tenant's chain.
        let preferred = lan.and_then(|l| l.gateway_mac_hash.as_deref().or(l.wifi_bssid_hash.as_deref()));
        if self.cfg.shared_egress.use_lan_fingerprint
            && let Some(hash) = preferred.filter(|h| !h.is_empty())
        {
            let key = EgressKey::TenantLan(self.devices[d as usize].tenant, hash.into());
            let entry =
                self.egress.entry(key.clone()).or_insert_with(|| super::egress::EgressState::new(s.ip, None, s.at));
            entry.last_seen = entry.last_seen.max(s.at);
            self.observe_sweep(&key, d, issued, answered, lan_id, out);
        }
    }

    fn add_answer(
        &mut self,
        key: EgressKey,
        d: u32,
        issued: Millis,
        answered: Millis,
        s: &Sighting,
        out: &mut Vec<Finding>,
    ) {
        self.close_rounds(&key, answered, false, out);
        let tolerance = Millis::from(self.cfg.presence_burst.round_tolerance_secs) * 1000;
        let egress = self.egress.entry(key).or_insert_with(|| super::egress::EgressState::new(s.ip, s.class, s.at));
        let rounds = &mut egress.rounds;
        match rounds.open.iter_mut().find(|r| (r.issued_at - issued).abs() <= tolerance) {
            Some(r) if r.answers.len() < MAX_ANSWERS_PER_ROUND => r.answers.push((answered, d)),
            Some(_) => {}
            None => {
                if rounds.open.len() >= MAX_OPEN_ROUNDS {
                    rounds.open.remove(0);
                }
                rounds.open.push(OpenRound { issued_at: issued, answers: vec![(answered, d)], missed: Vec::new() });
            }
        }
    }

    /// Records a missed probe challenge in the open round it belongs to, behind
    /// every egress the device is a member of. A miss carries no address, and
    /// a round nobody answered is not a round: it opens with its first answer.
    pub(crate) fn observe_probe_miss(&mut self, d: u32, issued: Millis) {
        let tolerance = Millis::from(self.cfg.presence_burst.round_tolerance_secs) * 1000;
        for egress in self.egress.values_mut() {
            if egress.rounds.open.is_empty() || !egress.members.iter().any(|m| m.device == d) {
                continue;
            }
            let round = egress.rounds.open.iter_mut().find(|r| (r.issued_at - issued).abs() <= tolerance);
            if let Some(r) = round.filter(|r| r.missed.len() < MAX_ANSWERS_PER_ROUND && !r.missed.contains(&d)) {
                r.missed.push(d);
            }
        }
    }

    /// Egress entries with a round issued at least `round_close_secs` before `now`.
    pub(crate) fn keys_with_due_rounds(&self, now: Millis) -> Vec<EgressKey> {
        let close_after = Millis::from(self.cfg.presence_burst.round_close_secs) * 1000;
        let mut keys: Vec<EgressKey> = self
            .egress
            .iter()
            .filter(|(_, e)| e.rounds.open.iter().any(|r| now.saturating_sub(r.issued_at) >= close_after))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Closes rounds issued more than `round_close_secs` before `now` (all when `all`),
    /// then flags the egress if its serialized rounds cross the thresholds.
    /// Returns when the newest round it closed was due to close (its issue plus
    /// `round_close_secs`), a time every replica computes alike.
    pub(crate) fn close_rounds(
        &mut self,
        key: &EgressKey,
        now: Millis,
        all: bool,
        out: &mut Vec<Finding>,
    ) -> Option<Millis> {
        let cfg = &self.cfg.presence_burst;
        let close_after = Millis::from(cfg.round_close_secs) * 1000;
        let window = Millis::from(cfg.window_hours) * HOUR;
        let egress = self.egress.get_mut(key)?;
        let rounds = &mut egress.rounds;
        let mut closed_any = false;
        let mut due_at: Option<Millis> = None;
        let mut i = 0;
        while i < rounds.open.len() {
            if all || now.saturating_sub(rounds.open[i].issued_at) >= close_after {
                let r = rounds.open.swap_remove(i);
                due_at = due_at.max(Some(r.issued_at.saturating_add(close_after)));
                if let Some(closed) = judge(r, cfg) {
                    rounds.closed.push_back(closed);
                    closed_any = true;
                }
            } else {
                i += 1;
            }
        }
        if !closed_any {
            return due_at;
        }
        let newest = rounds.closed.iter().map(|r| r.issued_at).max().unwrap_or(now);
        while rounds.closed.len() > MAX_CLOSED_ROUNDS
            || rounds.closed.front().is_some_and(|r| newest - r.issued_at > window)
        {
            rounds.closed.pop_front();
        }
        let serial: Vec<&ClosedRound> = rounds.closed.iter().filter(|r| r.serial).collect();
        let ratio = serial.len() as f64 / rounds.closed.len().max(1) as f64;
        if serial.len() < cfg.min_rounds || ratio < cfg.min_ratio {
            return due_at;
        }
        // Probed members that missed a serialized round were challenged with the rest: part of the cluster.
        let mut devices: Vec<u32> =
            serial.iter().flat_map(|r| r.answers.iter().map(|(_, d)| *d).chain(r.missed.iter().copied())).collect();
        devices.sort_unstable();
        devices.dedup();
        let examples: Vec<serde_json::Value> = serial
            .iter()
            .rev()
            .take(3)
            .map(|r| {
                json!({
                    "issued_at": format_time(r.issued_at),
                    "answers": r.answers.iter().map(|(t, d)| json!({
                        "device": &*self.devices[*d as usize].name,
                        "after_secs": (*t - r.issued_at) as f64 / 1000.0,
                    })).collect::<Vec<_>>(),
                    "missed": r.missed.iter().map(|d| &*self.devices[*d as usize].name).collect::<Vec<_>>(),
                })
            })
            .collect();
        let issued: Vec<String> = serial.iter().map(|r| format_time(r.issued_at)).collect();
        let evidence = json!({
            "egress": key.describe(self.cfg.shared_egress.ipv6_prefix),
            "ip": egress.ip.to_string(),
            "serialized_rounds": serial.len(),
            "counted_rounds": rounds.closed.len(),
            "ratio": (ratio * 100.0).round() / 100.0,
            "serialized_rounds_issued_at": issued,
            "thresholds": {
                "min_devices": cfg.min_devices, "min_gap_secs": cfg.min_gap_secs, "max_gap_secs": cfg.max_gap_secs,
                "min_rounds": cfg.min_rounds, "min_ratio": cfg.min_ratio, "window_hours": cfg.window_hours,
            },
            "cluster": devices.iter().map(|d| self.describe_device(*d)).collect::<Vec<_>>(),
            "recent_rounds": examples,
        });
        for d in devices {
            out.push(Finding {
                device: d,
                kind: FlagKind::PresenceBurst,
                severity: Severity::High,
                evidence: evidence.clone(),
            });
        }
        due_at
    }
}

/// A round counts when enough distinct devices answered or missed, at least
/// two of them answering; it is serialized when consecutive answers are all
/// between the minimum and maximum gap — the misses being the devices one
/// person did not reach before the deadline.
fn judge(mut r: OpenRound, cfg: &crate::config::BurstConfig) -> Option<ClosedRound> {
    r.answers.sort_unstable();
    let mut seen = Vec::with_capacity(r.answers.len());
    r.answers.retain(|(_, d)| {
        let new = !seen.contains(d);
        seen.push(*d);
        new
    });
    r.missed.retain(|d| !seen.contains(d));
    if r.answers.len() < 2 || r.answers.len() + r.missed.len() < cfg.min_devices {
        return None;
    }
    let serial = r.answers.windows(2).all(|w| {
        let gap = (w[1].0 - w[0].0) as f64 / 1000.0;
        gap >= cfg.min_gap_secs && gap <= cfg.max_gap_secs
    });
    Some(ClosedRound { issued_at: r.issued_at, serial, answers: r.answers, missed: r.missed })
}
