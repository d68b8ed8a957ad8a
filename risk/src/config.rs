//! Risk engine configuration: every threshold with a documented default,
//! loadable from TOML or JSON. Unknown keys are rejected, naming the key.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::geo::NetworkClass;
use super::signals::posture::RemoteControlRules;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// MaxMind-format databases (read by the caller, relative paths from the config file's directory).
    pub geo: GeoConfig,
    /// Operator network classes by CIDR or ASN.
    pub networks: Vec<NetworkRule>,
    /// A tenant's own registered office egress: its devices there never count as shared.
    pub offices: Vec<OfficeRule>,
    pub flags: FlagsConfig,
    pub relocated: RelocatedConfig,
    pub impossible_travel: TravelConfig,
    pub clone: CloneConfig,
    pub shared_egress: SharedEgressConfig,
    pub presence_burst: BurstConfig,
    pub presence_sweep: SweepConfig,
    pub persistence: PersistenceConfig,
    pub home_collision: super::signals::home::HomeCollisionConfig,
    pub shared_hardware: SharedHardwareConfig,
    pub remote_control: RemoteControlRules,
    pub presence_missed: MissedConfig,
    pub tpm: TpmConfig,
    pub probes: ProbeConfig,
}

/// Probe rounds (tetherd only; `tether analyze` replays logs and issues nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// tetherd challenges every member of a new cross-tenant cluster at once. Default true.
    pub enabled: bool,
    /// Seconds the probed devices have to answer. Default 60.
    pub deadline_secs: u32,
    /// Rounds a new cluster gets. Default: `presence_burst.min_rounds`, the
    /// fewest serialized rounds that raise `presence_burst`.
    pub rounds: Option<u32>,
    /// Seconds from one round to the next. Default 3600.
    pub interval_secs: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { enabled: true, deadline_secs: 60, rounds: None, interval_secs: 3600 }
    }
}

impl RiskConfig {
    /// How many probe rounds a new cluster gets (`[probes] rounds`, else what the burst signal needs).
    pub fn probe_rounds(&self) -> u32 {
        self.probes.rounds.unwrap_or_else(|| u32::try_from(self.presence_burst.min_rounds).unwrap_or(u32::MAX))
    }

    /// The probe settings must let the burst signal see what the rounds provoke.
    fn validate_probes(&self) -> Result<(), String> {
        let (p, b) = (&self.probes, &self.presence_burst);
        if p.deadline_secs == 0 || p.deadline_secs > 86_400 {
            return Err("probes.deadline_secs must be 1 to 86400".into());
        }
        if !(1..=100).contains(&self.probe_rounds()) {
            return Err("probes.rounds must be 1 to 100".into());
        }
        if !p.enabled {
            return Ok(());
        }
        // Misses are recorded after the deadline; a round judged before then would not count them.
        if p.deadline_secs >= b.round_close_secs {
            return Err(format!(
                "probes.deadline_secs ({}) must be shorter than presence_burst.round_close_secs ({}), \
                 or missed probes are judged after their round closed",
                p.deadline_secs, b.round_close_secs
            ));
        }
        // Rounds closer than the tolerance would merge into one; a device would hold two probes at once.
        let floor = p.deadline_secs.max(b.round_tolerance_secs.saturating_add(1));
        if self.probe_rounds() > 1 && p.interval_secs < floor {
            return Err(format!(
                "probes.interval_secs ({}) must be at least {floor}: longer than presence_burst.round_tolerance_secs \
                 and not shorter than probes.deadline_secs",
                p.interval_secs
            ));
        }
        let span = u64::from(self.probe_rounds().saturating_sub(1)) * u64::from(p.interval_secs);
        if span >= u64::from(b.window_hours) * 3600 {
            return Err(format!(
                "probes.rounds x probes.interval_secs spans {span} s, beyond presence_burst.window_hours ({} h): \
                 the first rounds would leave the window before the last is judged",
                b.window_hours
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoConfig {
    pub city_mmdb: Option<PathBuf>,
    pub asn_mmdb: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    pub class: NetworkClass,
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub asns: Vec<u32>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeRule {
    pub tenant: String,
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlagsConfig {
    /// A device gets the same kind of flag again only after this long (or when severity rises). Default 24.
    pub cooldown_hours: u32,
}

impl Default for FlagsConfig {
    fn default() -> Self {
        Self { cooldown_hours: 24 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelocatedConfig {
    /// Farther than this from home (after subtracting the accuracy radius) is relocated. Default 250 km.
    pub radius_km: f64,
    /// A country other than the home country is relocated. Default true.
    pub country_change: bool,
    /// Continuously relocated this long raises the flag to high. Default 168 h (7 days).
    pub high_after_hours: u32,
    /// Reshipped: since it was last located in its home country, a device located abroad
    /// at least this long ago ... Default 96 h (longer than a conference trip).
    pub reshipped_after_hours: u32,
    /// ... and seen through anonymizing exits (VPN services, hosting) on at least this share of
    /// its sightings ... Default 0.7.
    pub reshipped_hidden_share: f64,
    /// ... of at least this many. Default 20.
    pub reshipped_min_sightings: u32,
    /// The hours count from when the device was last located in its home country (a reshipped
    /// laptop is silent in transit and may leak only days after it arrived), unless it went
    /// through anonymizing exits on at least this share of its sightings up to then — a
    /// privacy-VPN user, who hides on a trip as well: then from when it was first located abroad,
    /// and at least `high_after_hours`. Default 0.3.
    pub reshipped_habit_hidden_share: f64,
}

impl Default for RelocatedConfig {
    fn default() -> Self {
        Self {
            radius_km: 250.0,
            country_change: true,
            high_after_hours: 168,
            reshipped_after_hours: 96,
            reshipped_hidden_share: 0.7,
            reshipped_min_sightings: 20,
            reshipped_habit_hidden_share: 0.3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TravelConfig {
    /// Faster than this between consecutive events is impossible. Default 805 km/h (Okta's default).
    pub max_kmh: f64,
    /// Jumps shorter than this (after accuracy radii) are ignored. Default 100 km.
    pub min_distance_km: f64,
}

impl Default for TravelConfig {
    fn default() -> Self {
        Self { max_kmh: 805.0, min_distance_km: 100.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloneConfig {
    /// One credential seen this close in time ... Default 300 s.
    pub simultaneous_secs: u32,
    /// ... from places this far apart (after accuracy radii) is a clone. Default 500 km.
    pub min_distance_km: f64,
}

impl Default for CloneConfig {
    fn default() -> Self {
        Self { simultaneous_secs: 300, min_distance_km: 500.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedEgressConfig {
    /// Devices count as sharing an egress when seen there within this window. Default 24 h.
    pub window_hours: u32,
    /// Review when this many workers' devices share it (and at least two tenants). Default 3.
    pub review_devices: usize,
    /// Review when this many tenants share it. Default 2.
    pub review_tenants: usize,
    /// High when this many workers' devices share it ... Default 6.
    pub high_devices: usize,
    /// ... of at least this many tenants. Default 2.
    pub high_min_tenants: usize,
    /// High as well when this many members (of at least two tenants, and at least half of
    /// the members) carry `remote_control`. Default 3.
    pub high_remote_control_members: usize,
    /// IPv6 addresses are grouped by this prefix length. Default 64.
    pub ipv6_prefix: u8,
    /// Treat an equal LAN fingerprint (gateway MAC or Wi-Fi BSSID hash) as one egress. Default true.
    pub use_lan_fingerprint: bool,
    /// Memory bound: devices remembered per egress. Default 256.
    pub max_devices_per_egress: usize,
    /// An address whose members report this many different LANs (gateway MACs) is a
    /// carrier-grade NAT of many households: at most review, never farm evidence. Default 3.
    pub carrier_nat_lans: usize,
}

impl Default for SharedEgressConfig {
    fn default() -> Self {
        Self {
            window_hours: 24,
            review_devices: 3,
            review_tenants: 2,
            high_devices: 6,
            high_min_tenants: 2,
            high_remote_control_members: 3,
            ipv6_prefix: 64,
            use_lan_fingerprint: true,
            max_devices_per_egress: 256,
            carrier_nat_lans: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BurstConfig {
    /// Challenges issued within this many seconds of each other form one round. Default 5.
    pub round_tolerance_secs: u32,
    /// A round closes this long after it was issued. Default 600 s.
    pub round_close_secs: u32,
    /// Rounds count when at least this many devices behind the egress answered. Default 3.
    pub min_devices: usize,
    /// Serialized: every two consecutive answers at least this far apart ... Default 2 s.
    pub min_gap_secs: f64,
    /// ... and at most this far apart. Default 15 s.
    pub max_gap_secs: f64,
    /// Flag after this many serialized rounds in the window ... Default 5.
    pub min_rounds: usize,
    /// ... when they are at least this share of the counted rounds. Default 0.75.
    pub min_ratio: f64,
    /// Default 24 h.
    pub window_hours: u32,
}

impl Default for BurstConfig {
    fn default() -> Self {
        Self {
            round_tolerance_secs: 5,
            round_close_secs: 600,
            min_devices: 3,
            min_gap_secs: 2.0,
            max_gap_secs: 15.0,
            min_rounds: 5,
            min_ratio: 0.75,
            window_hours: 24,
        }
    }
}

/// Walked-room answer sweeps, found from answer times alone (see `signals/sweep.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Default true.
    pub enabled: bool,
    /// Consecutive answers of a sweep at least this far apart (one hand, one laptop at a time). Default 2 s.
    pub min_gap_secs: f64,
    /// ... and at most this far apart. Default 20 s.
    pub max_gap_secs: f64,
    /// A chain is a sweep when it spans this many distinct workers. Default 2.
    pub min_workers: usize,
    /// A device is flagged after this many of its answers were in sweeps ... Default 5.
    pub min_sweeps: usize,
    /// ... out of at least this many answers in the window ... Default 10.
    pub min_answers: usize,
    /// ... and when they are at least this share of them. Default 0.6.
    pub min_ratio: f64,
    /// Default 72 h.
    pub window_hours: u32,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_gap_secs: 2.0,
            max_gap_secs: 20.0,
            min_workers: 2,
            min_sweeps: 5,
            min_answers: 10,
            min_ratio: 0.6,
            window_hours: 72,
        }
    }
}

/// A cross-employer cluster that holds for days, its members seen (almost) only there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Default true.
    pub enabled: bool,
    /// A member counts when seen behind the address on this many distinct (local) days, a
    /// week and a half of working days: fewer, and a coworking member's lucky streak looks the
    /// same, and a person living in a shared house has not yet been seen off the line ... Default 7.
    pub min_days: u32,
    /// ... and on at least this share of the days it was seen anywhere it was seen nowhere else:
    /// no other address and no mobile carrier (VPNs and hosting exits aside). Default 0.9.
    pub min_share: f64,
    /// Farm when this many such workers (more than a household) ... Default 4.
    pub min_workers: usize,
    /// ... of at least this many tenants. Default 2.
    pub min_tenants: usize,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self { enabled: true, min_days: 7, min_share: 0.9, min_workers: 4, min_tenants: 2 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedHardwareConfig {
    /// Memory bound: pieces of hardware remembered. Default 1,000,000.
    pub max_tracked: usize,
}

impl Default for SharedHardwareConfig {
    fn default() -> Self {
        Self { max_tracked: 1_000_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MissedConfig {
    /// Declared working hours, local to the worker's home (offset from its longitude). Default 9 to 17.
    pub working_hours_start: u8,
    pub working_hours_end: u8,
    /// Only Monday to Friday count. Default true.
    pub weekdays_only: bool,
    /// This many misses in working hours within the window raise a review flag. Default 3 in 24 h.
    pub threshold: usize,
    pub window_hours: u32,
}

impl Default for MissedConfig {
    fn default() -> Self {
        Self { working_hours_start: 9, working_hours_end: 17, weekdays_only: true, threshold: 3, window_hours: 24 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmConfig {
    /// A TPM reset together with a move farther than this is an anomaly. Default 250 km.
    pub location_change_km: f64,
}

impl Default for TpmConfig {
    fn default() -> Self {
        Self { location_change_km: 250.0 }
    }
}

impl RiskConfig {
    /// Parses TOML or JSON (JSON when the text starts with `{`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("invalid JSON configuration: {e}"))?
        } else {
            toml::from_str(text).map_err(|e| format!("invalid TOML configuration: {e}"))?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let m = &self.presence_missed;
        if m.working_hours_start > 24 || m.working_hours_end > 24 {
            return Err("presence_missed.working_hours_start/end must be hours 0-24".into());
        }
        let r = &self.relocated;
        if !(0.0..=1.0).contains(&r.reshipped_hidden_share) || !(0.0..=1.0).contains(&r.reshipped_habit_hidden_share) {
            return Err("relocated.reshipped_hidden_share and reshipped_habit_hidden_share must be in [0, 1]".into());
        }
        if self.shared_egress.ipv6_prefix > 128 {
            return Err("shared_egress.ipv6_prefix must be at most 128".into());
        }
        if self.shared_egress.max_devices_per_egress == 0 {
            return Err("shared_egress.max_devices_per_egress must be at least 1".into());
        }
        self.validate_probes()?;
        let sw = &self.presence_sweep;
        if !(sw.min_gap_secs >= 0.0 && sw.max_gap_secs > sw.min_gap_secs) {
            return Err(
                "presence_sweep.max_gap_secs must be greater than presence_sweep.min_gap_secs (both >= 0)".into()
            );
        }
        if sw.min_workers < 2 || !(sw.min_ratio > 0.0 && sw.min_ratio <= 1.0) {
            return Err("presence_sweep.min_workers must be at least 2 and min_ratio in (0, 1]".into());
        }
        let p = &self.persistence;
        if p.min_workers < 2 || p.min_tenants < 2 || !(p.min_share > 0.0 && p.min_share <= 1.0) || p.min_days == 0 {
            return Err("persistence: min_workers and min_tenants must be at least 2, min_days at least 1, \
                        min_share in (0, 1]"
                .into());
        }
        if p.min_days > 32 {
            return Err("persistence.min_days must be at most 32 (days are remembered in a 32-day window)".into());
        }
        self.home_collision.validate()?;
        if self.shared_hardware.max_tracked == 0 {
            return Err("shared_hardware.max_tracked must be at least 1".into());
        }
        if self.presence_burst.min_devices < 2 {
            return Err("presence_burst.min_devices must be at least 2".into());
        }
        if self.impossible_travel.max_kmh.is_nan() || self.impossible_travel.max_kmh <= 0.0 {
            return Err("impossible_travel.max_kmh must be positive".into());
        }
        Ok(())
    }
}
