//! `shared_egress` (cross-tenant, the multi-employer view) and `anonymized_egress`.

use std::net::IpAddr;

use serde_json::json;

use super::burst::Rounds;
use crate::Millis;
use crate::engine::{Engine, Finding, HOUR, ProbeRequest, Sighting};
use crate::event::Lan;
use crate::flag::{FlagKind, Severity};
use crate::geo::NetworkClass;
use crate::network::EgressKey;

/// Devices seen behind one egress within the window (capped), plus presence rounds.
#[derive(Debug)]
pub struct EgressState {
    pub(crate) members: Vec<Member>,
    pub(crate) ip: IpAddr,
    pub(crate) class: Option<NetworkClass>,
    pub(crate) last_seen: Millis,
    pub(crate) probed_at: Option<Millis>,
    pub(crate) rounds: Rounds,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub device: u32,
    pub worker: u32,
    pub tenant: u32,
    pub last_seen: Millis,
}

impl EgressState {
    pub(crate) fn new(ip: IpAddr, class: Option<NetworkClass>, at: Millis) -> Self {
        Self { members: Vec::new(), ip, class, last_seen: at, probed_at: None, rounds: Rounds::default() }
    }
}

impl Engine {
    pub(crate) fn check_network(&mut self, d: u32, s: &Sighting, out: &mut Vec<Finding>) {
        if let Some(class) = s.class.filter(|c| c.is_anonymizing()) {
            out.push(Finding {
                device: d,
                kind: FlagKind::AnonymizedEgress,
                severity: Severity::Review,
                evidence: json!({
                    "ip": s.ip.to_string(),
                    "network_class": class,
                    "asn": s.geo.and_then(|g| g.asn),
                    "country": s.geo.and_then(|g| g.country.as_deref()),
                }),
            });
        }
    }

    /// Whether this device at this address counts towards shared egress.
    pub(crate) fn counts_at(&self, d: u32, s: &Sighting) -> bool {
        let dev = &self.devices[d as usize];
        dev.attested != Some(false) && !self.networks.is_office_of(&self.ids.tenant_names[dev.tenant as usize], s.ip)
    }

    pub(crate) fn observe_egress(&mut self, d: u32, s: &Sighting, lan: Option<&Lan>, out: &mut Vec<Finding>) {
        if !self.counts_at(d, s) {
            return;
        }
        let prefix = self.cfg.shared_egress.ipv6_prefix;
        if !s.class.is_some_and(NetworkClass::skips_shared_egress) {
            self.observe_key(EgressKey::for_ip(s.ip, prefix), d, s, out);
        }
        if self.cfg.shared_egress.use_lan_fingerprint
            && let Some(lan) = lan
        {
            for hash in [&lan.gateway_mac_hash, &lan.wifi_bssid_hash].into_iter().flatten() {
                if !hash.is_empty() {
                    self.observe_key(EgressKey::Lan(hash.as_str().into()), d, s, out);
                }
            }
        }
    }

    fn observe_key(&mut self, key: EgressKey, d: u32, s: &Sighting, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.shared_egress;
        let window = Millis::from(cfg.window_hours) * HOUR;
        let dev = &self.devices[d as usize];
        let me = Member { device: d, worker: dev.worker, tenant: dev.tenant, last_seen: s.at };
        let entry = self.egress.entry(key.clone()).or_insert_with(|| EgressState::new(s.ip, s.class, s.at));
        entry.ip = s.ip;
        entry.class = s.class;
        entry.last_seen = entry.last_seen.max(s.at);
        entry.members.retain(|m| s.at - m.last_seen <= window);
        match entry.members.iter_mut().find(|m| m.device == d) {
            Some(m) => *m = me,
            None => {
                if entry.members.len() >= cfg.max_devices_per_egress
                    && let Some(oldest) =
                        entry.members.iter().enumerate().min_by_key(|(_, m)| m.last_seen).map(|(i, _)| i)
                {
                    entry.members.swap_remove(oldest);
                }
                entry.members.push(me);
            }
        }
        let mut workers: Vec<(u32, u32)> = entry.members.iter().map(|m| (m.tenant, m.worker)).collect();
        workers.sort_unstable();
        workers.dedup();
        let mut tenants: Vec<u32> = workers.iter().map(|(t, _)| *t).collect();
        tenants.dedup();
        let (nw, nt) = (workers.len(), tenants.len());
        // Remote-control tools on several employers' laptops behind one egress is how farms are run.
        let remote = entry
            .members
            .iter()
            .filter(|m| self.devices[m.device as usize].flags.get(FlagKind::RemoteControl).is_some())
            .count();
        let remote_cluster = nt >= 2 && remote >= cfg.high_remote_control_members && remote * 2 >= entry.members.len();
        let severity = if nt >= 2 && ((nw >= cfg.high_devices && nt >= cfg.high_min_tenants) || remote_cluster) {
            Severity::High
        } else if nt >= 2 && (nw >= cfg.review_devices || nt >= cfg.review_tenants) {
            Severity::Review
        } else if nt == 1 && nw >= cfg.review_devices {
            Severity::Info
        } else {
            return;
        };
        // Many employers' laptops on one residential line alone is not enough: co-living houses exist.
        let farm_cluster = severity == Severity::High && remote_cluster;
        let cooldown = Millis::from(self.cfg.flags.cooldown_hours) * HOUR;
        let due: Vec<u32> = entry
            .members
            .iter()
            .map(|m| m.device)
            .filter(|m| {
                let dev = &self.devices[*m as usize];
                dev.wants(FlagKind::SharedEgress, severity, s.at, cooldown)
                    || (farm_cluster && !dev.flags.farm_suspected())
            })
            .collect();
        let probe = severity >= Severity::Review && entry.probed_at.is_none_or(|p| s.at - p >= window);
        if due.is_empty() && !probe {
            return;
        }
        let members: Vec<(u32, Millis)> = entry.members.iter().map(|m| (m.device, m.last_seen)).collect();
        let class = entry.class;
        if probe {
            entry.probed_at = Some(s.at);
        }
        let name = key.describe(cfg.ipv6_prefix);
        let listed: Vec<serde_json::Value> = members
            .iter()
            .take(50)
            .map(|(m, seen)| {
                let mut v = self.describe_device(*m);
                if let Some(map) = v.as_object_mut() {
                    map.insert("last_seen".into(), crate::event::format_time(*seen).into());
                }
                v
            })
            .collect();
        let evidence = json!({
            "egress": name,
            "ip": s.ip.to_string(),
            "lan_fingerprint": key.is_lan(),
            "network_class": class,
            "workers": nw,
            "tenants": nt,
            "remote_control_members": remote,
            "farm_cluster": if farm_cluster {
                Some("remote-control tools on most members")
            } else {
                None
            },
            "window_hours": cfg.window_hours,
            "thresholds": {
                "review_devices": cfg.review_devices, "review_tenants": cfg.review_tenants,
                "high_devices": cfg.high_devices, "high_min_tenants": cfg.high_min_tenants,
                "high_remote_control_members": cfg.high_remote_control_members,
            },
            "note": if nt == 1 { Some("one tenant only: register its office egress to silence this") } else { None },
            "members": listed,
            "members_total": members.len(),
        });
        for m in due {
            if farm_cluster {
                self.devices[m as usize].flags.mark_farm_cluster();
            }
            out.push(Finding { device: m, kind: FlagKind::SharedEgress, severity, evidence: evidence.clone() });
        }
        if probe && !key.is_lan() {
            let devices = members
                .iter()
                .map(|(m, _)| {
                    let dev = &self.devices[*m as usize];
                    (self.ids.tenant_names[dev.tenant as usize].to_string(), dev.name.to_string())
                })
                .collect();
            self.probes.push(ProbeRequest { at: s.at, egress: name, devices });
        }
    }

    /// Drops egress entries that fell out of every window and closes stale rounds.
    pub(crate) fn sweep_egress(&mut self, at: Millis, out: &mut Vec<Finding>) {
        let keep = Millis::from(self.cfg.shared_egress.window_hours.max(self.cfg.presence_burst.window_hours)) * HOUR;
        let mut keys: Vec<EgressKey> =
            self.egress.iter().filter(|(_, e)| !e.rounds.is_idle()).map(|(k, _)| k.clone()).collect();
        keys.sort_unstable();
        for key in keys {
            self.close_rounds(&key, at, false, out);
        }
        self.egress.retain(|_, e| at - e.last_seen <= keep || !e.rounds.is_idle());
    }

    pub(crate) fn close_all_rounds(&mut self, out: &mut Vec<Finding>) {
        let mut keys: Vec<EgressKey> =
            self.egress.iter().filter(|(_, e)| !e.rounds.is_idle()).map(|(k, _)| k.clone()).collect();
        keys.sort_unstable();
        for key in keys {
            self.close_rounds(&key, Millis::MAX, true, out);
        }
    }
}
