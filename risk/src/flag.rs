//! What the engine reports: flags and per-device summaries.

use serde::{Deserialize, Serialize, Serializer};

use super::Millis;
use super::event::format_time;

/// The signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    UnattestedHardware,
    CloneSuspected,
    Relocated,
    ImpossibleTravel,
    SharedEgress,
    PresenceBurst,
    RemoteControl,
    AnonymizedEgress,
    PresenceMissedPattern,
    TpmAnomaly,
    SharedHardware,
    HomeCollision,
}

/// How many kinds there are (the size of per-kind arrays).
pub(crate) const KINDS: usize = 12;

impl FlagKind {
    pub const ALL: [FlagKind; KINDS] = [
        Self::UnattestedHardware,
        Self::CloneSuspected,
        Self::Relocated,
        Self::ImpossibleTravel,
        Self::SharedEgress,
        Self::PresenceBurst,
        Self::RemoteControl,
        Self::AnonymizedEgress,
        Self::PresenceMissedPattern,
        Self::TpmAnomaly,
        Self::SharedHardware,
        Self::HomeCollision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnattestedHardware => "unattested_hardware",
            Self::CloneSuspected => "clone_suspected",
            Self::Relocated => "relocated",
            Self::ImpossibleTravel => "impossible_travel",
            Self::SharedEgress => "shared_egress",
            Self::PresenceBurst => "presence_burst",
            Self::RemoteControl => "remote_control",
            Self::AnonymizedEgress => "anonymized_egress",
            Self::PresenceMissedPattern => "presence_missed_pattern",
            Self::TpmAnomaly => "tpm_anomaly",
            Self::SharedHardware => "shared_hardware",
            Self::HomeCollision => "home_collision",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The flag's score (0-100) for a severity: how much it says about risk.
    pub fn score(self, severity: Severity) -> u8 {
        use Severity::*;
        match (self, severity) {
            (_, Info) => 10,
            (Self::UnattestedHardware, _) => 30,
            (Self::CloneSuspected, _) => 95,
            (Self::Relocated, Review) => 35,
            (Self::Relocated, High) => 60,
            (Self::ImpossibleTravel, Review) => 50,
            (Self::ImpossibleTravel, High) => 75,
            (Self::SharedEgress, Review) => 40,
            (Self::SharedEgress, High) => 70,
            (Self::PresenceBurst, _) => 90,
            (Self::RemoteControl, Review) => 50,
            (Self::RemoteControl, High) => 90,
            (Self::AnonymizedEgress, High) => 80,
            (Self::AnonymizedEgress, _) => 40,
            (Self::PresenceMissedPattern, _) => 30,
            (Self::TpmAnomaly, Review) => 45,
            (Self::TpmAnomaly, High) => 85,
            (Self::SharedHardware, Review) => 50,
            (Self::SharedHardware, High) => 90,
            (Self::HomeCollision, Review) => 40,
            (Self::HomeCollision, High) => 85,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Review,
    High,
}

/// One finding, as `tether analyze` prints it and the service stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub kind: FlagKind,
    pub severity: Severity,
    pub score: u8,
    pub tenant: String,
    pub worker: String,
    pub device: String,
    #[serde(serialize_with = "rfc3339")]
    pub at: Millis,
    pub evidence: serde_json::Value,
}

fn rfc3339<S: Serializer>(at: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*at))
}

/// The engine's view of one device after everything it has seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSummary {
    pub device: String,
    pub worker: String,
    pub tenant: String,
    /// 0-100.
    pub risk: u8,
    pub farm_suspected: bool,
    /// Which signals combined into `farm_suspected` (empty when it is false).
    pub farm_signals: Vec<&'static str>,
    pub flags: Vec<FlagKind>,
}

/// Per device: the highest severity raised per kind (the summary's input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagSet {
    severities: [Option<Severity>; KINDS],
    /// Cluster findings that are farm evidence on their own (see [`FarmMark`]).
    marks: u8,
}

/// Findings of a cluster that make each member a suspected farm laptop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarmMark {
    /// A high cross-tenant cluster with remote-control tools on most members.
    RemoteCluster = 1,
    /// A cross-employer cluster on a residential line for days, its members seen (almost) only there.
    Persistent = 2,
    /// Workers of several employers who declare one home, their laptops seen together by tetherd.
    HomeCluster = 4,
}

impl FarmMark {
    /// The name evidence carries in `farm_marks`, for readers of stored flags (the console's
    /// farm view) that rebuild a device's farm judgement.
    pub fn as_str(self) -> &'static str {
        match self {
            FarmMark::RemoteCluster => "remote_cluster",
            FarmMark::Persistent => "persistent",
            FarmMark::HomeCluster => "home_cluster",
        }
    }

    pub fn parse(name: &str) -> Option<FarmMark> {
        [FarmMark::RemoteCluster, FarmMark::Persistent, FarmMark::HomeCluster].into_iter().find(|m| m.as_str() == name)
    }
}

impl FlagSet {
    pub fn get(&self, kind: FlagKind) -> Option<Severity> {
        self.severities[kind.index()]
    }

    pub fn raise(&mut self, kind: FlagKind, severity: Severity) {
        let slot = &mut self.severities[kind.index()];
        if slot.is_none_or(|s| s < severity) {
            *slot = Some(severity);
        }
    }

    pub fn mark(&mut self, mark: FarmMark) {
        self.marks |= mark as u8;
    }

    pub fn has_mark(&self, mark: FarmMark) -> bool {
        self.marks & mark as u8 != 0
    }

    pub fn kinds(&self) -> Vec<FlagKind> {
        FlagKind::ALL.into_iter().filter(|k| self.get(*k).is_some()).collect()
    }

    fn at_least(&self, kind: FlagKind, severity: Severity) -> bool {
        self.get(kind).is_some_and(|s| s >= severity)
    }

    /// Laptop farm: KVM-over-IP hardware; or one person answering for several
    /// devices (probe rounds or walked-room sweeps); or one piece of hardware
    /// enrolled by several identities; or a high cross-tenant cluster with
    /// remote-control tools on most of its laptops; or a persistent
    /// cross-employer residential cluster; or laptops seen together whose
    /// workers of several employers declare one home; or a high cluster of devices that
    /// have also been away from home for a long time.
    pub fn farm_suspected(&self) -> bool {
        !self.farm_signals().is_empty()
    }

    /// The signals that make this device a suspected farm laptop.
    pub fn farm_signals(&self) -> Vec<&'static str> {
        use FlagKind::*;
        let mut out = Vec::new();
        if self.at_least(RemoteControl, Severity::High) {
            out.push("remote_control: KVM-over-IP hardware");
        }
        if self.at_least(PresenceBurst, Severity::Review) {
            out.push("presence_burst: one hand answering for several laptops");
        }
        if self.at_least(SharedHardware, Severity::High) {
            out.push("shared_hardware: one TPM or authenticator enrolled by several workers");
        }
        if self.at_least(AnonymizedEgress, Severity::High) {
            out.push("anonymized_egress: reshipped abroad, hidden behind VPN or hosting exits");
        }
        if self.has_mark(FarmMark::RemoteCluster) {
            out.push("shared_egress: cross-employer cluster with remote-control tools on most members");
        }
        if self.has_mark(FarmMark::Persistent) {
            out.push("shared_egress: cross-employer residential cluster persisting for days");
        }
        if self.has_mark(FarmMark::HomeCluster) {
            out.push(
                "home_collision: workers of several employers declaring one home, their laptops seen there together",
            );
        }
        if self.at_least(SharedEgress, Severity::High) && self.at_least(Relocated, Severity::High) {
            out.push("shared_egress + relocated: high cluster of laptops away from home for a week");
        }
        out
    }

    /// 0-100: the scores of the raised kinds combined as independent evidence;
    /// at least 80 when a farm is suspected.
    pub fn risk(&self) -> u8 {
        let clean: f64 = FlagKind::ALL
            .into_iter()
            .filter_map(|k| self.get(k).map(|s| 1.0 - f64::from(k.score(s)) / 100.0))
            .product();
        let risk = ((1.0 - clean) * 100.0).round().clamp(0.0, 100.0) as u8;
        if self.farm_suspected() { risk.max(80) } else { risk }
    }
}
