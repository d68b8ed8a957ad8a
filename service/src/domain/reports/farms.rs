//! The farm view: every suspected laptop farm or device cluster touching the
//! tenant, from its unresolved flags, and its own devices' presence answers
//! over one day.
//!
//! tetherd stores no `farm_suspected` flag: the risk engine decides it per
//! device from the flags it raised. This view decides it the same way, with
//! the engine's own rule ([`FlagSet::farm_signals`]) over each device's
//! unresolved flags, so it names the very signals that combined. Clusters are
//! grouped by the egress address (or LAN fingerprint) their `shared_egress`
//! and `presence_burst` flags name; a device suspected on its own (KVM
//! hardware, shared hardware, a reshipped laptop) outside any cluster is a
//! farm of one.
//!
//! Tenants are adversaries: other employers' cluster members are counted
//! from the stored evidence and never returned, and only this tenant's
//! presence answers are read. Other employers' answer times reach this
//! tenant's evidence only inside sweep examples, which its reports redact;
//! the timeline therefore leaves them out rather than show what the tenant's
//! own report hides.

use super::evidence;
use super::filters::TimeWindow;
use super::summary::ClusterMember;
use crate::domain::error::ApiResult;
use crate::store::Store;
use crate::store::flags::{self, FlagRecord};
use crate::store::presence;
pub use crate::store::presence::Answer;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tether_risk::flag::{FarmMark, FlagSet};
use tether_risk::{FlagKind, Severity};

pub const DAY_MS: i64 = 86_400_000;
/// The view looks back this far for unresolved flags.
pub const FARM_WINDOW_MS: i64 = 30 * DAY_MS;
/// Flags read per view, newest first; more is reported as truncated.
const FLAG_LIMIT: i64 = 20_000;
/// Farms shown per view; the rest are counted.
pub const MAX_FARMS: usize = 50;
/// Devices drawn per timeline; the rest are counted.
pub const MAX_TIMELINE_DEVICES: usize = 50;
/// Answers drawn per device and day; the rest are counted.
pub const MAX_MARKS: usize = 500;

/// The kinds whose evidence names a cluster's egress or LAN key.
const CLUSTER_KINDS: &[&str] = &["shared_egress", "presence_burst"];

#[derive(Debug, Clone, PartialEq)]
pub struct Farm {
    /// The egress address, IPv6 prefix or LAN fingerprint; empty for a lone laptop.
    pub key: String,
    /// The engine's `farm_suspected` for at least one of this tenant's members.
    pub suspected: bool,
    /// Which signals combined, across this tenant's members (the engine's words).
    pub signals: Vec<String>,
    /// The flags that place the devices here: kind and highest severity.
    pub kinds: Vec<(String, String)>,
    pub highest_severity: String,
    /// This tenant's devices only.
    pub own: Vec<ClusterMember>,
    /// Other employers' devices and employers, counted (at least these many).
    pub other_devices: i64,
    pub other_tenants: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// One own device's answers in the day, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAnswers {
    pub member: ClusterMember,
    pub answers: Vec<Answer>,
    /// All its answers in the day, drawn or not.
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FarmView {
    pub farm: Farm,
    pub rows: Vec<DeviceAnswers>,
    /// Own devices left out of the timeline.
    pub more_devices: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Farms {
    pub day: TimeWindow,
    pub farms: Vec<FarmView>,
    /// Farms beyond [`MAX_FARMS`].
    pub more: usize,
    /// The flag limit was reached: older flags were not read.
    pub flags_truncated: bool,
}

fn rank(severity: &str) -> u8 {
    match severity {
        "high" => 3,
        "review" => 2,
        "info" => 1,
        _ => 0,
    }
}

fn risk_kind(kind: &str) -> Option<FlagKind> {
    FlagKind::ALL.into_iter().find(|k| k.as_str() == kind)
}

fn risk_severity(severity: &str) -> Option<Severity> {
    match severity {
        "high" => Some(Severity::High),
        "review" => Some(Severity::Review),
        "info" => Some(Severity::Info),
        _ => None,
    }
}

/// Every `{tenant, worker, device}` member object anywhere in the evidence.
fn members<'a>(value: &'a Value, out: &mut Vec<(&'a str, &'a str, &'a str)>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(t)), Some(Value::String(d))) = (map.get("tenant"), map.get("device")) {
                out.push((t, map.get("worker").and_then(Value::as_str).unwrap_or_default(), d));
            }
            map.values().for_each(|v| members(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| members(v, out)),
        _ => {}
    }
}

#[derive(Default)]
struct Group {
    kinds: BTreeMap<String, String>,
    /// Device id → worker (a member listed without its worker keeps the one a flag names).
    own: BTreeMap<String, String>,
    foreign: BTreeSet<(String, String)>,
    members_total: i64,
    tenants: i64,
    first: i64,
    last: i64,
}

impl Group {
    fn member(&mut self, device: &str, worker: &str) {
        let slot = self.own.entry(device.to_string()).or_default();
        if slot.is_empty() {
            *slot = worker.to_string();
        }
    }

    fn seen(&mut self, kind: &str, severity: &str, at: i64) {
        let slot = self.kinds.entry(kind.to_string()).or_default();
        if rank(severity) > rank(slot) {
            *slot = severity.to_string();
        }
        self.first = if self.first == 0 { at } else { self.first.min(at) };
        self.last = self.last.max(at);
    }

    fn into_farm(self, key: String, signals: Vec<String>) -> Farm {
        let highest = self.kinds.values().max_by_key(|s| rank(s)).cloned().unwrap_or_default();
        let foreign_tenants = self.foreign.iter().map(|(t, _)| t).collect::<BTreeSet<_>>().len() as i64;
        let own = self.own.len() as i64;
        Farm {
            key,
            suspected: !signals.is_empty(),
            signals,
            kinds: self.kinds.into_iter().collect(),
            highest_severity: highest,
            other_devices: (self.foreign.len() as i64).max(self.members_total.saturating_sub(own)).max(0),
            other_tenants: foreign_tenants.max(self.tenants.saturating_sub(1)).max(0),
            own: self
                .own
                .into_iter()
                .map(|(device_id, worker_external_id)| ClusterMember { device_id, worker_external_id })
                .collect(),
            first_seen_ms: self.first,
            last_seen_ms: self.last,
        }
    }
}

/// The farms in a tenant's unresolved flags, most suspicious first:
/// suspected farms, then by highest severity, then most recently seen.
pub fn group(flags: &[FlagRecord], tenant_id: &str) -> Vec<Farm> {
    let mut sets: HashMap<&str, FlagSet> = HashMap::new();
    let mut lone: BTreeMap<&str, (String, Group)> = BTreeMap::new();
    let mut clusters: BTreeMap<String, Group> = BTreeMap::new();
    // Worker-level flags (no device) place no device anywhere.
    for f in flags.iter().filter(|f| f.tenant_id == tenant_id && !f.device_id.is_empty()) {
        let set = sets.entry(&f.device_id).or_default();
        if let (Some(kind), Some(severity)) = (risk_kind(&f.kind), risk_severity(&f.severity)) {
            set.raise(kind, severity);
        }
        let (_, device) = lone.entry(&f.device_id).or_insert_with(|| (f.worker_external_id.clone(), Group::default()));
        device.seen(&f.kind, &f.severity, f.raised_at_ms);
        if !CLUSTER_KINDS.contains(&f.kind.as_str()) {
            continue;
        }
        let evidence = evidence::parse(&f.evidence_json);
        // The engine marks a cluster's members with these findings; its evidence names them.
        if f.kind == "home_collision" && f.severity == "high" {
            set.mark(FarmMark::HomeCluster);
        }
        if f.kind == "shared_egress" {
            match evidence["farm_marks"].as_array() {
                Some(marks) => {
                    marks.iter().filter_map(|m| m.as_str().and_then(FarmMark::parse)).for_each(|m| set.mark(m))
                }
                // Flags raised before evidence carried `farm_marks` say it only in words.
                None => match evidence["farm_cluster"].as_str() {
                    Some(s) if s.starts_with("remote-control") => set.mark(FarmMark::RemoteCluster),
                    Some(s) if s.starts_with("persistent") => set.mark(FarmMark::Persistent),
                    _ => {}
                },
            }
        }
        let Some(key) = evidence["egress"].as_str().filter(|k| !k.is_empty()) else { continue };
        let group = clusters.entry(key.to_string()).or_default();
        group.seen(&f.kind, &f.severity, f.raised_at_ms);
        group.member(&f.device_id, &f.worker_external_id);
        let mut listed = Vec::new();
        members(&evidence, &mut listed);
        for (tenant, worker, device) in listed {
            if tenant == tenant_id {
                group.member(device, worker);
            } else {
                group.foreign.insert((tenant.into(), device.into()));
            }
        }
        group.members_total = group.members_total.max(evidence["members_total"].as_i64().unwrap_or(0));
        group.tenants = group.tenants.max(evidence["tenants"].as_i64().unwrap_or(0));
    }
    let signals_of = |devices: &mut dyn Iterator<Item = &str>| {
        let mut out: Vec<String> = Vec::new();
        for device in devices {
            for s in sets.get(device).map(FlagSet::farm_signals).unwrap_or_default() {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
        }
        out
    };
    let mut farms = Vec::new();
    let mut clustered = BTreeSet::new();
    for (key, group) in clusters {
        let signals = signals_of(&mut group.own.keys().map(String::as_str));
        clustered.extend(group.own.keys().cloned());
        farms.push(group.into_farm(key, signals));
    }
    for (device, (worker, mut group)) in lone {
        let signals = signals_of(&mut std::iter::once(device));
        if signals.is_empty() || clustered.contains(device) {
            continue;
        }
        group.member(device, &worker);
        farms.push(group.into_farm(String::new(), signals));
    }
    farms.sort_by(|a, b| {
        (b.suspected, rank(&b.highest_severity), b.last_seen_ms)
            .cmp(&(a.suspected, rank(&a.highest_severity), a.last_seen_ms))
            .then_with(|| a.key.cmp(&b.key))
    });
    farms
}

/// The farm view at `now_ms`, each farm's timeline over `day`.
pub async fn farms(store: &Store, tenant_id: &str, now_ms: i64, day: TimeWindow) -> ApiResult<Farms> {
    let since = (now_ms - FARM_WINDOW_MS).max(0);
    let flags = flags::unresolved_since(store, tenant_id, since, FLAG_LIMIT).await?;
    let flags_truncated = flags.len() as i64 >= FLAG_LIMIT;
    let mut all = group(&flags, tenant_id);
    let more = all.len().saturating_sub(MAX_FARMS);
    all.truncate(MAX_FARMS);
    // A device in several clusters is read once.
    let mut read: HashMap<String, (Vec<Answer>, i64)> = HashMap::new();
    let mut farms = Vec::with_capacity(all.len());
    for farm in all {
        let mut rows = Vec::new();
        for member in farm.own.iter().take(MAX_TIMELINE_DEVICES) {
            if !read.contains_key(&member.device_id) {
                let limit = MAX_MARKS as i64;
                let answers = presence::answers_of_device(
                    store,
                    tenant_id,
                    &member.device_id,
                    day.since_ms,
                    day.until_or_max(),
                    limit,
                )
                .await?;
                read.insert(member.device_id.clone(), answers);
            }
            if let Some((answers, total)) = read.get(&member.device_id) {
                rows.push(DeviceAnswers { member: member.clone(), answers: answers.clone(), total: *total });
            }
        }
        let more_devices = farm.own.len().saturating_sub(MAX_TIMELINE_DEVICES);
        farms.push(FarmView { farm, rows, more_devices });
    }
    Ok(Farms { day, farms, more, flags_truncated })
}

#[cfg(test)]
#[path = "farms_tests.rs"]
mod tests;
