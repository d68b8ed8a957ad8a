//! `shared_egress` (cross-tenant, the multi-employer view) and `anonymized_egress`.

use std::net::IpAddr;

use serde_json::json;

use super::burst::Rounds;
use super::egress_view::{View, Views};
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
    pub(crate) sweeps: super::sweep::Sweeps,
    /// LANs reported behind this address lately (capped): many means a carrier NAT.
    pub(crate) lans: Vec<(u64, Millis)>,
}

/// How long a LAN reported behind an address keeps counting, and how many are remembered.
const LAN_MEMORY: Millis = 7 * 24 * HOUR;
const MAX_LANS: usize = 8;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub device: u32,
    pub worker: u32,
    pub tenant: u32,
    pub last_seen: Millis,
    /// When tetherd itself last saw this device here (see [`Sighting::observed`]); None when
    /// only a gateway or the device's own posture report placed it here.
    pub observed_at: Option<Millis>,
    /// The LAN (gateway MAC, else BSSID hash) the device last reported here, hashed small.
    pub lan: Option<u64>,
    /// Whether it lived here ([`Engine::resides`]) when last seen here: residency changes only
    /// with the device's own sightings, so it is judged then, once.
    pub resident: bool,
}

impl Member {
    pub(crate) fn observed_within(&self, at: Millis, window: Millis) -> bool {
        self.observed_at.is_some_and(|seen| at - seen <= window)
    }
}

#[derive(Debug, Clone, Copy)]
struct Judgement {
    severity: Severity,
    farm_cluster: bool,
    /// High for the residents (and farm evidence): see [`Engine::resides`].
    persistent: bool,
    carrier_nat: bool,
}

impl EgressState {
    pub(crate) fn new(ip: IpAddr, class: Option<NetworkClass>, at: Millis) -> Self {
        Self {
            members: Vec::new(),
            ip,
            class,
            last_seen: at,
            probed_at: None,
            rounds: Rounds::default(),
            sweeps: super::sweep::Sweeps::default(),
            lans: Vec::new(),
        }
    }
}

/// A small stand-in for the LAN a device reported (gateway MAC hash, else BSSID hash).
pub(crate) fn lan_id(lan: Option<&Lan>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let hash = lan.and_then(|l| l.gateway_mac_hash.as_deref().or(l.wifi_bssid_hash.as_deref()))?;
    (!hash.is_empty()).then(|| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hash.hash(&mut hasher);
        hasher.finish()
    })
}

impl EgressState {
    /// Different LANs reported behind this address in the last week.
    pub(crate) fn recent_lans(&self, at: Millis) -> usize {
        self.lans.iter().filter(|(_, t)| at - *t <= LAN_MEMORY).count()
    }
}

impl Engine {
    pub(crate) fn check_network(&mut self, d: u32, s: &Sighting, out: &mut Vec<Finding>) {
        self.check_reshipped(d, s, out);
        // Every sighting through such an exit finds it; its evidence is built only when emitted.
        if let Some(class) = s.class.filter(|c| c.is_anonymizing())
            && self.would_emit(d, FlagKind::AnonymizedEgress, Severity::Review, s.at)
        {
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
        let prefix = self.cfg.shared_egress.ipv6_prefix;
        let ip_key = EgressKey::for_ip(s.ip, prefix);
        // A VPN says nothing about where the laptop is: neither home nor away. A mobile carrier
        // is no place either, but it is a day off the line (see `Anchor::observe_off_line`).
        // Days are the worker's local days (by the home's longitude), or a working day in the
        // Americas would count as two UTC days.
        let local = s.at + self.local_offset(self.devices[d as usize].worker);
        let dev = &mut self.devices[d as usize];
        if !s.class.is_some_and(NetworkClass::skips_shared_egress) {
            match dev.anchor.as_mut() {
                Some(anchor) => anchor.observe(&ip_key, local),
                None => dev.anchor = Some(crate::state::Anchor::new(ip_key.clone(), local)),
            }
        } else if s.class == Some(NetworkClass::Mobile)
            && let Some(anchor) = dev.anchor.as_mut()
        {
            anchor.observe_off_line(local);
        }
        if !self.counts_at(d, s) {
            return;
        }
        let lan_id = lan_id(lan);
        if !s.class.is_some_and(NetworkClass::skips_shared_egress) {
            self.observe_key(ip_key, d, s, s.observed, lan_id, out);
        }
        if self.cfg.shared_egress.use_lan_fingerprint
            && let Some(lan) = lan
        {
            for hash in [&lan.gateway_mac_hash, &lan.wifi_bssid_hash].into_iter().flatten() {
                // A LAN fingerprint is the device's own claim (a BSSID is even broadcast).
                if !hash.is_empty() {
                    self.observe_key(EgressKey::Lan(hash.as_str().into()), d, s, false, None, out);
                }
            }
        }
    }

    /// The severity a view supports, and whether it is a farm cluster (remote-control tools on
    /// most members of several employers), and whether its residents form a persistent one.
    fn judge(&self, view: &View, class: Option<NetworkClass>) -> Option<Judgement> {
        let cfg = &self.cfg.shared_egress;
        let p = &self.cfg.persistence;
        let (nw, nt) = (view.workers, view.tenants);
        // Many households behind one carrier-grade NAT each report their own LAN: not one room.
        let carrier_nat = view.lans >= cfg.carrier_nat_lans;
        let remote_cluster =
            nt >= 2 && view.remote >= cfg.high_remote_control_members && view.remote * 2 >= view.members;
        // A venue, hotel or coworking space holds many employers for a day or two: review, not deny.
        let venue = class == Some(NetworkClass::Business);
        // Size alone denies only where one room is confirmed: the members that report a LAN report
        // one LAN. A located residential address without LAN reports may be a carrier NAT; an
        // address no IP database classified keeps the size rule (nothing else to go on).
        let one_lan = view.lans == 1 && view.lan_reporters >= 2 && view.lan_reporters * 2 >= view.members;
        let crowd = nw >= cfg.high_devices
            && nt >= cfg.high_min_tenants
            && !carrier_nat
            && !venue
            && (one_lan || class.is_none());
        let persistent = p.enabled
            && !carrier_nat
            && view.resident_workers >= p.min_workers
            && view.resident_tenants >= p.min_tenants;
        let severity = if nt >= 2 && (crowd || remote_cluster) {
            Severity::High
        } else if nt >= 2 && (nw >= cfg.review_devices || nt >= cfg.review_tenants) {
            Severity::Review
        } else if nt == 1 && nw >= cfg.review_devices {
            Severity::Info
        } else {
            return None;
        };
        // Many employers' laptops on one residential line alone is not enough: co-living houses exist.
        Some(Judgement {
            severity,
            farm_cluster: severity == Severity::High && remote_cluster,
            persistent,
            carrier_nat,
        })
    }

    fn observe_key(
        &mut self,
        key: EgressKey,
        d: u32,
        s: &Sighting,
        observed: bool,
        lan: Option<u64>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &self.cfg.shared_egress;
        let window = Millis::from(cfg.window_hours) * HOUR;
        let max_members = cfg.max_devices_per_egress;
        let lives_here = !key.is_lan() && self.cfg.persistence.enabled && self.resides(d, &key, s.at);
        let dev = &self.devices[d as usize];
        let entry = self.egress.entry(key.clone()).or_insert_with(|| EgressState::new(s.ip, s.class, s.at));
        entry.ip = s.ip;
        entry.class = s.class;
        entry.last_seen = entry.last_seen.max(s.at);
        entry.members.retain(|m| s.at - m.last_seen <= window);
        let earlier = entry.members.iter().position(|m| m.device == d);
        let observed_at = if observed { Some(s.at) } else { earlier.and_then(|i| entry.members[i].observed_at) };
        if let Some(id) = lan {
            entry.lans.retain(|(l, t)| *l != id && s.at - *t <= LAN_MEMORY);
            if entry.lans.len() >= MAX_LANS {
                entry.lans.remove(0);
            }
            entry.lans.push((id, s.at));
        }
        let recent_lans = entry.recent_lans(s.at);
        let lan = lan.or_else(|| earlier.and_then(|i| entry.members[i].lan));
        let me = Member {
            device: d,
            worker: dev.worker,
            tenant: dev.tenant,
            last_seen: s.at,
            observed_at,
            lan,
            resident: lives_here,
        };
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
        // Remote-control tools on several employers' laptops behind one egress is how farms are run.
        let remote: Vec<bool> = members
            .iter()
            .map(|m| self.devices[m.device as usize].flags.get(FlagKind::RemoteControl).is_some())
            .collect();
        let views = Views::new(&members, &remote, s.at, window);
        // Member indices by tenant, each tenant's in member order (the order flags come out in).
        let mut by_tenant: Vec<usize> = (0..members.len()).collect();
        by_tenant.sort_unstable_by_key(|&i| (members[i].tenant, i));
        // Each tenant's devices are judged by that tenant's view of the cluster.
        let mut judged: Vec<(View, Judgement)> = Vec::new();
        let mut due: Vec<(u32, usize, Severity, bool)> = Vec::new();
        for own in by_tenant.chunk_by(|a, b| members[*a].tenant == members[*b].tenant) {
            let tenant = members[own[0]].tenant;
            let mut view = views.for_tenant(tenant, own);
            view.lans = view.lans.max(recent_lans);
            let Some(judgement) = self.judge(&view, class) else { continue };
            for m in own.iter().map(|&i| &members[i]) {
                let dev = &self.devices[m.device as usize];
                // Only the residents of a persistent cluster are farm laptops; a visitor is not.
                let resident = judgement.persistent && m.resident;
                let severity = if resident { Severity::High } else { judgement.severity };
                let farm = judgement.farm_cluster || resident;
                if dev.wants(FlagKind::SharedEgress, severity, s.at, cooldown) || (farm && !dev.flags.farm_suspected())
                {
                    due.push((m.device, judged.len(), severity, resident));
                }
            }
            judged.push((view, judgement));
        }
        // Probes challenge every member, so only what tetherd observed may start them.
        let mut observed_view = views.observed();
        observed_view.lans = observed_view.lans.max(recent_lans);
        let probe = self.judge(&observed_view, class).is_some_and(|j| j.severity >= Severity::Review)
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
                    if judged.iter().any(|(_, j)| j.persistent) {
                        map.insert("resident".into(), m.resident.into());
                    }
                }
                v
            })
            .collect();
        let p = &self.cfg.persistence;
        let mut listed = Some(listed);
        let last = due.len().saturating_sub(1);
        for (i, (device, judgement, severity, resident)) in due.into_iter().enumerate() {
            let (view, j) = &judged[judgement];
            let pattern = if resident {
                "persistent cross-employer cluster: laptops of several employers living behind one address for days, \
                 seen (almost) nowhere else"
            } else if j.farm_cluster {
                "cross-employer cluster with remote-control tools on most members"
            } else if j.carrier_nat {
                "many households behind one carrier-grade NAT (each its own LAN): not one room"
            } else {
                "devices of different workers behind one egress"
            };
            let farm_marks: Vec<&str> = [
                j.farm_cluster.then_some(crate::flag::FarmMark::RemoteCluster.as_str()),
                resident.then_some(crate::flag::FarmMark::Persistent.as_str()),
            ]
            .into_iter()
            .flatten()
            .collect();
            let evidence = json!({
                "pattern": pattern,
                "egress": name,
                "ip": s.ip.to_string(),
                "lan_fingerprint": key.is_lan(),
                "network_class": class,
                "workers": view.workers,
                "tenants": view.tenants,
                "remote_control_members": view.remote,
                "resident_workers": view.resident_workers,
                "resident_tenants": view.resident_tenants,
                "lans_reported": view.lans,
                "carrier_nat": j.carrier_nat,
                "farm_cluster": if j.farm_cluster {
                    Some("remote-control tools on most members")
                } else if resident {
                    Some("persistent residential cluster")
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
                    "carrier_nat_lans": cfg.carrier_nat_lans,
                    "persistence": {"min_days": p.min_days, "min_share": p.min_share,
                        "min_workers": p.min_workers, "min_tenants": p.min_tenants},
                },
                "note": if view.tenants == 1 {
                    Some("one tenant only: register its office egress to silence this")
                } else if class == Some(NetworkClass::Business) && severity < Severity::High {
                    Some("a business network (venue, hotel, coworking): many employers there is review, not high")
                } else {
                    None
                },
                // Filled in below: moved into the last flag, cloned for the others (`json!` would
                // rebuild the whole list through a serializer for every flag).
                "members": null,
                "members_total": members.len(),
                "farm_marks": farm_marks,
            });
            let mut evidence = evidence;
            let members_listed = if i == last { listed.take() } else { listed.clone() };
            if let (Some(slot), Some(list)) = (evidence.get_mut("members"), members_listed) {
                *slot = serde_json::Value::Array(list);
            }
            if j.farm_cluster {
                self.devices[device as usize].flags.mark(crate::flag::FarmMark::RemoteCluster);
            }
            if resident {
                self.devices[device as usize].flags.mark(crate::flag::FarmMark::Persistent);
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
        self.close_stale_chains(at, out);
        // An address known to hide several LANs keeps that knowledge for a week (over weekends).
        self.egress.retain(|_, e| at - e.last_seen <= keep || !e.rounds.is_idle() || e.recent_lans(at) >= 2);
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
