//! `remote_control`: KVM-over-IP hardware and remote-desktop software in the
//! agent's posture report. The default indicators are data (`remote_control.toml`).

use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::{Engine, Finding, Sighting};
use crate::event::{Posture, UsbDevice};
use crate::flag::{FlagKind, Severity};

const DEFAULTS: &str = include_str!("../remote_control.toml");

/// Indicators: the shipped defaults (unless `use_defaults = false`) plus these.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteControlRules {
    pub use_defaults: bool,
    pub usb: Vec<UsbRule>,
    pub processes: Vec<ProcessRule>,
    pub displays: Vec<DisplayRule>,
}

impl Default for RemoteControlRules {
    fn default() -> Self {
        Self { use_defaults: true, usb: Vec::new(), processes: Vec::new(), displays: Vec::new() }
    }
}

/// Matches when the ids given match and, if `strings` is not empty, one of them
/// appears in the manufacturer or product string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbRule {
    pub name: String,
    #[serde(default)]
    pub vid: Option<String>,
    #[serde(default)]
    pub pid: Option<String>,
    #[serde(default)]
    pub strings: Vec<String>,
    pub severity: Severity,
}

/// Matches a running process by exact name (case-insensitive, `.exe` ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRule {
    pub name: String,
    pub names: Vec<String>,
    pub severity: Severity,
}

/// Matches a display name containing one of the strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayRule {
    pub name: String,
    pub contains: Vec<String>,
    pub severity: Severity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultList {
    usb: Vec<UsbRule>,
    processes: Vec<ProcessRule>,
    displays: Vec<DisplayRule>,
}

/// The merged, lower-cased rule set, with the substring rules compiled into one
/// automaton per kind: every answer carries a posture report, so matching runs on
/// every presence event.
#[derive(Debug, Default)]
pub struct CompiledRules {
    usb: Vec<UsbRule>,
    processes: Vec<ProcessRule>,
    displays: Vec<DisplayRule>,
    usb_strings: Patterns,
    display_strings: Patterns,
}

/// Every `strings`/`contains` entry of one rule list in one Aho-Corasick automaton, so a
/// text is scanned once for all of them instead of once per entry.
#[derive(Debug, Default)]
struct Patterns {
    automaton: Option<AhoCorasick>,
    /// The rule each pattern of the automaton belongs to.
    rule_of: Vec<usize>,
    /// Rules with an empty entry, which every text contains.
    always: Vec<usize>,
}

impl Patterns {
    fn new<'a>(rules: impl Iterator<Item = &'a [String]>) -> Result<Self, String> {
        let (mut patterns, mut rule_of, mut always) = (Vec::new(), Vec::new(), Vec::new());
        for (rule, strings) in rules.enumerate() {
            for s in strings {
                if s.is_empty() {
                    always.push(rule);
                } else {
                    patterns.push(s.as_str());
                    rule_of.push(rule);
                }
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| format!("the remote-control strings cannot be compiled: {e}"))?,
            )
        };
        Ok(Self { automaton, rule_of, always })
    }

    /// Which rules have an entry contained in `text` (indexed by rule; empty when none has).
    fn hits(&self, text: &str, rules: usize) -> Vec<bool> {
        let mut hit = Vec::new();
        let mut set = |rule: usize| {
            if hit.is_empty() {
                hit = vec![false; rules];
            }
            if let Some(h) = hit.get_mut(rule) {
                *h = true;
            }
        };
        self.always.iter().for_each(|r| set(*r));
        // Most texts contain no entry at all, which one unanchored scan tells more cheaply.
        if let Some(automaton) = self.automaton.as_ref().filter(|a| a.is_match(text)) {
            // Overlapping: every entry that occurs anywhere, as `str::contains` per entry would find.
            // (It needs `MatchKind::Standard` and unanchored search, which `new` builds: no text makes it fail.)
            for m in automaton.find_overlapping_iter(text) {
                if let Some(rule) = self.rule_of.get(m.pattern().as_usize()) {
                    set(*rule);
                }
            }
        }
        hit
    }
}

/// `text` lower-cased into `buf` (ASCII the common case; other text as
/// `str::to_lowercase` does it, final sigma included).
fn lowercase_into<'b>(text: &str, buf: &'b mut String) -> &'b str {
    buf.clear();
    if text.is_ascii() {
        buf.push_str(text);
        buf.make_ascii_lowercase();
    } else {
        buf.push_str(&text.to_lowercase());
    }
    buf
}

fn lower(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim().to_lowercase()).collect()
}

fn norm_id(id: &Option<String>) -> Option<String> {
    id.as_ref().map(|s| s.trim().trim_start_matches("0x").to_ascii_lowercase())
}

/// One indicator found in a posture report; its evidence is built only for a flag that is
/// emitted (most answers of a flagged device fall in the cooldown).
enum Found<'a> {
    Usb { rule: &'a UsbRule, dev: &'a UsbDevice },
    Gadget { dev: &'a UsbDevice, traits: Vec<&'static str> },
    Process { rule: &'a ProcessRule, process: &'a str },
    Display { rule: &'a DisplayRule, display: &'a str },
}

impl Found<'_> {
    fn severity(&self) -> Severity {
        match self {
            Found::Usb { rule, .. } => rule.severity,
            Found::Gadget { .. } => Severity::High,
            Found::Process { rule, .. } => rule.severity,
            Found::Display { rule, .. } => rule.severity,
        }
    }

    fn evidence(self) -> serde_json::Value {
        match self {
            Found::Usb { rule, dev } => json!({"type": "usb", "indicator": rule.name, "vid": dev.vid, "pid": dev.pid,
                "manufacturer": dev.manufacturer, "product": dev.product}),
            Found::Gadget { dev, traits } => {
                json!({"type": "usb", "indicator": "KVM-over-IP by structure: one composite USB device that is \
                        keyboard and mouse at once, with USB-gadget traits",
                    "vid": dev.vid, "pid": dev.pid, "manufacturer": dev.manufacturer, "product": dev.product,
                    "serial": dev.serial, "gadget_traits": traits})
            }
            Found::Process { rule, process } => json!({"type": "process", "indicator": rule.name, "process": process}),
            Found::Display { rule, display } => json!({"type": "display", "indicator": rule.name, "display": display}),
        }
    }
}

impl CompiledRules {
    pub fn new(cfg: &RemoteControlRules) -> Result<Self, String> {
        let mut rules = Self::default();
        if cfg.use_defaults {
            let defaults: DefaultList =
                toml::from_str(DEFAULTS).map_err(|e| format!("the built-in remote-control list is invalid: {e}"))?;
            rules.add(&defaults.usb, &defaults.processes, &defaults.displays);
        }
        rules.add(&cfg.usb, &cfg.processes, &cfg.displays);
        rules.usb_strings = Patterns::new(rules.usb.iter().map(|r| r.strings.as_slice()))?;
        rules.display_strings = Patterns::new(rules.displays.iter().map(|r| r.contains.as_slice()))?;
        Ok(rules)
    }

    fn add(&mut self, usb: &[UsbRule], processes: &[ProcessRule], displays: &[DisplayRule]) {
        self.usb.extend(usb.iter().map(|r| UsbRule {
            vid: norm_id(&r.vid),
            pid: norm_id(&r.pid),
            strings: lower(&r.strings),
            ..r.clone()
        }));
        self.processes.extend(processes.iter().map(|r| ProcessRule { names: lower(&r.names), ..r.clone() }));
        self.displays.extend(displays.iter().map(|r| DisplayRule { contains: lower(&r.contains), ..r.clone() }));
    }

    /// Every indicator found, with its severity.
    pub fn matches(&self, posture: &Posture) -> Vec<(Severity, serde_json::Value)> {
        self.find(posture).into_iter().map(|f| (f.severity(), f.evidence())).collect()
    }

    /// Every indicator found, in the order `matches` lists them.
    fn find<'a>(&'a self, posture: &'a Posture) -> Vec<Found<'a>> {
        let mut found = Vec::new();
        let mut buf = String::new();
        let mut text = String::new();
        for dev in &posture.usb {
            // Manufacturer and product as one text: an entry may span both.
            text.clear();
            text.push_str(dev.manufacturer.as_deref().unwrap_or(""));
            text.push(' ');
            text.push_str(dev.product.as_deref().unwrap_or(""));
            let hits = self.usb_strings.hits(lowercase_into(&text, &mut buf), self.usb.len());
            for (i, r) in self.usb.iter().enumerate() {
                let id_ok = (r.vid.is_none() || r.vid == dev.vid) && (r.pid.is_none() || r.pid == dev.pid);
                let any_id = r.vid.is_some() || r.pid.is_some();
                let strings_ok = if r.strings.is_empty() { any_id } else { hits.get(i).copied().unwrap_or(false) };
                if id_ok && strings_ok {
                    found.push(Found::Usb { rule: r, dev });
                }
            }
        }
        for dev in &posture.usb {
            if let Some(traits) = gadget_traits(dev) {
                found.push(Found::Gadget { dev, traits });
            }
        }
        for p in &posture.processes {
            let name = lowercase_into(p.trim(), &mut buf);
            let name = name.strip_suffix(".exe").unwrap_or(name);
            let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
            if let Some(r) = self.processes.iter().find(|r| r.names.iter().any(|n| n == base)) {
                found.push(Found::Process { rule: r, process: p });
            }
        }
        for disp in &posture.displays {
            let hits = self.display_strings.hits(lowercase_into(disp, &mut buf), self.displays.len());
            if let Some(r) = self.displays.iter().zip(&hits).find(|(_, hit)| **hit).map(|(r, _)| r) {
                found.push(Found::Display { rule: r, display: disp });
            }
        }
        found
    }
}

const HID: u8 = 0x03;
const BOOT_KEYBOARD: u8 = 1;
const BOOT_MOUSE: u8 = 2;
const MASS_STORAGE: u8 = 0x08;
/// CDC communications and data, wireless controller (RNDIS) and miscellaneous (RNDIS over it):
/// the USB-ethernet gadget a KVM box adds so that it can be reached from the laptop.
const NETWORK_CLASSES: [u8; 4] = [0x02, 0x0a, 0xe0, 0xef];

/// Why one USB device looks like a KVM-over-IP gadget whatever ids it claims:
/// it is a keyboard and a mouse in one composite device (as a wireless receiver
/// also is) and, unlike a receiver, shows what Linux USB gadgets look like — the
/// Linux Foundation vendor id, the gadget framework's well-known `CAFEBABE`
/// serial, or a mass-storage or USB-ethernet function next to the HID ones.
/// None when the device is not both keyboard and mouse or shows no trait.
pub fn gadget_traits(dev: &crate::event::UsbDevice) -> Option<Vec<&'static str>> {
    let hid = |protocol| dev.interfaces.iter().any(|i| i.class == HID && i.protocol == protocol);
    if !(hid(BOOT_KEYBOARD) && hid(BOOT_MOUSE)) {
        return None;
    }
    let mut traits = Vec::new();
    if dev.vid.as_deref() == Some("1d6b") {
        traits.push("Linux Foundation gadget vendor id 1d6b");
    }
    if dev.serial.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("cafebabe")) {
        traits.push("gadget serial number CAFEBABE");
    }
    if dev.interfaces.iter().any(|i| i.class == MASS_STORAGE) {
        traits.push("mass-storage function next to keyboard and mouse");
    }
    if dev.interfaces.iter().any(|i| NETWORK_CLASSES.contains(&i.class)) {
        traits.push("USB-ethernet function next to keyboard and mouse");
    }
    (!traits.is_empty()).then_some(traits)
}

impl Engine {
    pub(crate) fn check_posture(&mut self, d: u32, posture: &Posture, s: &Sighting, out: &mut Vec<Finding>) {
        let found = self.rules.find(posture);
        let Some(severity) = found.iter().map(Found::severity).max() else { return };
        if !self.would_emit(d, FlagKind::RemoteControl, severity, s.at) {
            return;
        }
        // A generic gadget id next to a named KVM box says nothing more; list what decided.
        let indicators: Vec<serde_json::Value> = found.into_iter().map(Found::evidence).collect();
        out.push(Finding {
            device: d,
            kind: FlagKind::RemoteControl,
            severity,
            evidence: json!({
                "reason": if severity == Severity::High { "KVM-over-IP hardware attached" } else { "remote-control software or gadget present" },
                "indicators": indicators,
                "ip": s.ip.to_string(),
            }),
        });
    }
}

#[cfg(test)]
#[path = "posture_tests.rs"]
mod tests;
