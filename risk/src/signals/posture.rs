//! `remote_control`: KVM-over-IP hardware and remote-desktop software in the
//! agent's posture report. The default indicators are data (`remote_control.toml`).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::{Engine, Finding, Sighting};
use crate::event::Posture;
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

/// The merged, lower-cased rule set.
#[derive(Debug, Default)]
pub struct CompiledRules {
    usb: Vec<UsbRule>,
    processes: Vec<ProcessRule>,
    displays: Vec<DisplayRule>,
}

fn lower(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim().to_lowercase()).collect()
}

fn norm_id(id: &Option<String>) -> Option<String> {
    id.as_ref().map(|s| s.trim().trim_start_matches("0x").to_ascii_lowercase())
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
        let mut found = Vec::new();
        for dev in &posture.usb {
            let text =
                format!("{} {}", dev.manufacturer.as_deref().unwrap_or(""), dev.product.as_deref().unwrap_or(""))
                    .to_lowercase();
            for r in &self.usb {
                let id_ok = (r.vid.is_none() || r.vid == dev.vid) && (r.pid.is_none() || r.pid == dev.pid);
                let any_id = r.vid.is_some() || r.pid.is_some();
                let strings_ok =
                    if r.strings.is_empty() { any_id } else { r.strings.iter().any(|s| text.contains(s.as_str())) };
                if id_ok && strings_ok {
                    found.push((
                        r.severity,
                        json!({"type": "usb", "indicator": r.name, "vid": dev.vid, "pid": dev.pid,
                        "manufacturer": dev.manufacturer, "product": dev.product}),
                    ));
                }
            }
        }
        for dev in &posture.usb {
            if let Some(traits) = gadget_traits(dev) {
                found.push((
                    Severity::High,
                    json!({"type": "usb", "indicator": "KVM-over-IP by structure: one composite USB device that is \
                        keyboard and mouse at once, with USB-gadget traits",
                    "vid": dev.vid, "pid": dev.pid, "manufacturer": dev.manufacturer, "product": dev.product,
                    "serial": dev.serial, "gadget_traits": traits}),
                ));
            }
        }
        for p in &posture.processes {
            let name = p.trim().to_lowercase();
            let name = name.strip_suffix(".exe").unwrap_or(&name);
            let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
            if let Some(r) = self.processes.iter().find(|r| r.names.iter().any(|n| n == base)) {
                found.push((r.severity, json!({"type": "process", "indicator": r.name, "process": p})));
            }
        }
        for disp in &posture.displays {
            let text = disp.to_lowercase();
            if let Some(r) = self.displays.iter().find(|r| r.contains.iter().any(|c| text.contains(c.as_str()))) {
                found.push((r.severity, json!({"type": "display", "indicator": r.name, "display": disp})));
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
        let found = self.rules.matches(posture);
        let Some(severity) = found.iter().map(|(s, _)| *s).max() else { return };
        // A generic gadget id next to a named KVM box says nothing more; list what decided.
        let indicators: Vec<serde_json::Value> = found.into_iter().map(|(_, v)| v).collect();
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
