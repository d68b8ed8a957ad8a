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
    /// When tetherd itself last saw this device here (see [`Sighting::observed`]); None when
    /// only a gateway or the device's own posture report placed it here.
    pub observed_at: Option<Millis>,
}

impl Member {
    fn observed_within(&self, at: Millis, window: Millis) -> bool {
        self.observed_at.is_some_and(|seen| at - seen <= window)
    }
}

/// The cluster as one tenant may be judged by it. Tenants are adversaries: another
/// tenant's gateway can report any address for its own devices, and its devices can claim
/// any LAN, so another tenant's members count only where tetherd itself observed them.
/// A tenant's own members count however they were placed: it can only frame itself.
#[derive(Debug, Default)]
struct View {
    workers: usize,
    tenants: usize,
    members: usize,
    remote: usize,
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
            self.observe_key(EgressKey::for_ip(s.ip, prefix), d, s, s.observed, out);
        }
        if self.cfg.shared_egress.use_lan_fingerprint
            && let Some(lan) = lan
        {
            for hash in [&lan.gateway_mac_hash, &lan.wifi_bssid_hash].into_iter().flatten() {
                // A LAN fingerprint is the device's own claim (a BSSID is even broadcast).
                if !hash.is_empty() {
                    self.observe_key(EgressKey::Lan(hash.as_str().into()), d, s, false, out);
                }
            }
        }
    }

    fn view(&self, members: &[Member], viewer: Option<u32>, at: Millis, window: Millis) -> View {
        let counted: Vec<&Member> =
            members.iter().filter(|m| viewer == Some(m.tenant) || m.observed_within(at, window)).collect();
        let mut workers: Vec<(u32, u32)> = counted.iter().map(|m| (m.tenant, m.worker)).collect();
        workers.sort_unstable();
        workers.dedup();
        let mut tenants: Vec<u32> = workers.iter().map(|(t, _)| *t).collect();
        tenants.dedup();
        // Remote-control tools on several employers' laptops behind one egress is how farms are run.
        let remote = counted
            .iter()
            .filter(|m| self.devices[m.device as usize].flags.get(FlagKind::RemoteControl).is_some())
            .count();
        View { workers: workers.len(), tenants: tenants.len(), members: counted.len(), remote }
    }

    /// The severity a view supports, and whether it is a farm cluster (remote-control tools on
    /// most members of several employers).
    fn judge(&self, view: &View) -> Option<(Severity, bool)> {
        let cfg = &self.cfg.shared_egress;
        let (nw, nt) = (view.workers, view.tenants);
        let remote_cluster =
            nt >= 2 && view.remote >= cfg.high_remote_control_members && view.remote * 2 >= view.members;
        let severity = if nt >= 2 && ((nw >= cfg.high_devices && nt >= cfg.high_min_tenants) || remote_cluster) {
            Severity::High
        } else if nt >= 2 && (nw >= cfg.review_devices || nt >= cfg.review_tenants) {
            Severity::Review
        } else if nt == 1 && nw >= cfg.review_devices {
            Severity::Info
        } else {
            return None;
        };
        // Many employers' laptops on one residential line alone is not enough: co-living houses exist.
        Some((severity, severity == Severity::High && remote_cluster))
    }

    fn observe_key(&mut self, key: EgressKey, d: u32, s: &Sighting, observed: bool, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.shared_egress;
        let window = Millis::from(cfg.window_hours) * HOUR;
        let max_members = cfg.max_devices_per_egress;
        let dev = &self.devices[d as usize];
        let entry = self.egress.entry(key.clone()).or_insert_with(|| EgressState::new(s.ip, s.class, s.at));
        entry.ip = s.ip;
        entry.class = s.class;
        entry.last_seen = entry.last_seen.max(s.at);
        entry.members.retain(|m| s.at - m.last_seen <= window);
        let earlier = entry.members.iter().position(|m| m.device == d);
        let observed_at = if observed { Some(s.at) } else { earlier.and_then(|i| entry.members[i].observed_at) };
        let me = Member { device: d, worker: dev.worker, tenant: dev.tenant, last_seen: s.at, observed_at };
        match earlier {
            Some(i) => entry.members[i] = me,
            None => {
                if entry.members.len() >= max_members
                    && let Some(oldest) =
                        entry.members.iter().enumerate().min_by_key(|(_, m)| m.last_seen).map(|(i, _)| i)
                {
                    entry.members.swap_remove(oldest);
                }
                entry.members.push(me);
            }
        }
        let members = entry.members.clone();
        let (class, probed_at) = (entry.class, entry.probed_at);
        let cooldown = Millis::from(self.cfg.flags.cooldown_hours) * HOUR;
        let mut tenants: Vec<u32> = members.iter().map(|m| m.tenant).collect();
        tenants.sort_unstable();
        tenants.dedup();
        // Each tenant's devices are judged by that tenant's view of the cluster.
        let mut judged: Vec<(u32, View, Severity, bool)> = Vec::new();
        let mut due: Vec<(u32, usize)> = Vec::new();
        for tenant in tenants {
            let view = self.view(&members, Some(tenant), s.at, window);
            let Some((severity, farm_cluster)) = self.judge(&view) else { continue };
            let wanted = members.iter().filter(|m| m.tenant == tenant).map(|m| m.device).filter(|m| {
                let dev = &self.devices[*m as usize];
                dev.wants(FlagKind::SharedEgress, severity, s.at, cooldown)
                    || (farm_cluster && !dev.flags.farm_suspected())
            });
            due.extend(wanted.map(|device| (device, judged.len())));
            judged.push((tenant, view, severity, farm_cluster));
        }
        // Probes challenge every member, so only what tetherd observed may start them.
        let observed_view = self.view(&members, None, s.at, window);
        let probe = self.judge(&observed_view).is_some_and(|(severity, _)| severity >= Severity::Review)
            && probed_at.is_none_or(|p| s.at - p >= window);
        if due.is_empty() && !probe {
            return;
        }
        if probe && let Some(entry) = self.egress.get_mut(&key) {
            entry.probed_at = Some(s.at);
        }
        let name = key.describe(cfg.ipv6_prefix);
        let listed: Vec<serde_json::Value> = members
            .iter()
            .take(50)
            .map(|m| {
                let mut v = self.describe_device(m.device);
                if let Some(map) = v.as_object_mut() {
                    map.insert("last_seen".into(), crate::event::format_time(m.last_seen).into());
                    map.insert("observed_by_tether".into(), m.observed_within(s.at, window).into());
                }
                v
            })
            .collect();
        for (device, judgement) in due {
            let (_, view, severity, farm_cluster) = &judged[judgement];
            let (severity, farm_cluster) = (*severity, *farm_cluster);
            let evidence = json!({
                "egress": name,
                "ip": s.ip.to_string(),
                "lan_fingerprint": key.is_lan(),
                "network_class": class,
                "workers": view.workers,
                "tenants": view.tenants,
                "remote_control_members": view.remote,
                "farm_cluster": if farm_cluster {
                    Some("remote-control tools on most members")
                } else {
                    None
                },
                "counted": "this tenant's devices, and other tenants' devices only where tetherd itself saw them \
                            (presence answers and enrollments, not gateway-reported addresses or LAN claims)",
                "window_hours": cfg.window_hours,
                "thresholds": {
                    "review_devices": cfg.review_devices, "review_tenants": cfg.review_tenants,
                    "high_devices": cfg.high_devices, "high_min_tenants": cfg.high_min_tenants,
                    "high_remote_control_members": cfg.high_remote_control_members,
                },
                "note": if view.tenants == 1 {
                    Some("one tenant only: register its office egress to silence this")
                } else {
                    None
                },
                "members": listed,
                "members_total": members.len(),
            });
            if farm_cluster {
                self.devices[device as usize].flags.mark_farm_cluster();
            }
            out.push(Finding { device, kind: FlagKind::SharedEgress, severity, evidence });
        }
        if probe && !key.is_lan() {
            let devices = members
                .iter()
                .filter(|m| m.observed_within(s.at, window))
                .map(|m| {
                    let dev = &self.devices[m.device as usize];
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
