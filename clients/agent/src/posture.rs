//! The posture report sent (and signed) with each presence answer.
//!
//! Linux only, everything best effort and optional: what cannot be read is
//! left out, never guessed. Sizes are bounded so that the report stays far
//! below the server's 64 KiB limit. Raw MAC addresses never leave the device:
//! the gateway's MAC is sent as a domain-separated SHA-256
//! (`tether_attestation::posture::lan_hash`), which is enough to tell that two
//! devices share a LAN.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

const MAX_USB: usize = 128;
const MAX_PROCESSES: usize = 2048;
const MAX_DISPLAYS: usize = 16;
const MAX_TEXT: usize = 128;
/// The server accepts 64 KiB; stay well below.
const MAX_REPORT: usize = 48 * 1024;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct PostureReport {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usb: Vec<UsbDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub displays: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lan: Option<Lan>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsbDevice {
    pub vid: String,
    pub pid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Lan {
    pub gateway_mac_hash: String,
}

/// Reads posture from a filesystem root (`/` on a real device; a prepared
/// directory in tests or containers that mount the host's /sys and /proc elsewhere).
#[derive(Debug, Clone)]
pub struct Collector {
    root: PathBuf,
}

impl Default for Collector {
    fn default() -> Self {
        Self { root: PathBuf::from("/") }
    }
}

impl Collector {
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn collect(&self) -> PostureReport {
        PostureReport {
            usb: self.usb(),
            processes: self.processes(),
            timezone: self.timezone(),
            displays: self.displays(),
            lan: self.lan(),
        }
    }

    /// The report as the bytes sent in `posture_json` (and bound into the signature).
    pub fn collect_json(&self) -> Vec<u8> {
        let mut report = self.collect();
        loop {
            let bytes = serde_json::to_vec(&report).unwrap_or_default();
            if bytes.len() <= MAX_REPORT || (report.processes.is_empty() && report.usb.is_empty()) {
                return bytes;
            }
            // Processes are the bulk; drop from the end, then USB devices.
            if report.processes.pop().is_none() {
                report.usb.pop();
            }
        }
    }

    fn usb(&self) -> Vec<UsbDevice> {
        let mut found = BTreeSet::new();
        for dir in entries(&self.path("sys/bus/usb/devices")) {
            let (Some(vid), Some(pid)) = (read_text(&dir.join("idVendor")), read_text(&dir.join("idProduct"))) else {
                continue; // interfaces and hubs' ports carry no ids
            };
            let id = |s: String| {
                Some(s.to_ascii_lowercase()).filter(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            let (Some(vid), Some(pid)) = (id(vid), id(pid)) else { continue };
            found.insert(UsbDevice {
                vid,
                pid,
                manufacturer: read_text(&dir.join("manufacturer")),
                product: read_text(&dir.join("product")),
            });
        }
        found.into_iter().take(MAX_USB).collect()
    }

    fn processes(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for dir in entries(&self.path("proc")) {
            let numeric =
                dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if numeric && let Some(name) = read_text(&dir.join("comm")) {
                names.insert(name);
            }
        }
        names.into_iter().take(MAX_PROCESSES).collect()
    }

    /// The IANA name: /etc/timezone, else the zoneinfo path /etc/localtime links to.
    fn timezone(&self) -> Option<String> {
        if let Some(tz) = read_text(&self.path("etc/timezone")) {
            return Some(tz);
        }
        let target = fs::read_link(self.path("etc/localtime")).ok()?;
        let text = target.to_string_lossy();
        let (_, name) = text.split_once("zoneinfo/")?;
        clean(name)
    }

    /// Monitor names from the EDID of each connector (the 0xFC descriptor).
    fn displays(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for dir in entries(&self.path("sys/class/drm")) {
            if let Ok(edid) = fs::read(dir.join("edid"))
                && let Some(name) = edid_monitor_name(&edid)
            {
                names.insert(name);
            }
        }
        names.into_iter().take(MAX_DISPLAYS).collect()
    }

    /// The default gateway's MAC (from /proc/net/route and /proc/net/arp), hashed.
    fn lan(&self) -> Option<Lan> {
        let route = fs::read_to_string(self.path("proc/net/route")).ok()?;
        let arp = fs::read_to_string(self.path("proc/net/arp")).ok()?;
        let mac = gateway_mac(&route, &arp)?;
        Some(Lan { gateway_mac_hash: tether_attestation::posture::lan_hash(&mac) })
    }
}

/// The gateway's MAC address (lowercase) for the default route, if the ARP table has it.
fn gateway_mac(route: &str, arp: &str) -> Option<String> {
    let (iface, gateway) = route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway ...; the default route has destination 0 and a gateway.
        (f.len() > 2 && f[1] == "00000000" && f[2] != "00000000").then(|| (f[0].to_string(), f[2].to_string()))
    })?;
    // /proc/net/route prints the address as a host-order (little-endian) hex u32.
    let ip = std::net::Ipv4Addr::from(u32::from_str_radix(&gateway, 16).ok()?.swap_bytes()).to_string();
    arp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // IP HWtype Flags HWaddress Mask Device
        (f.len() >= 6 && f[0] == ip && f[5] == iface && f[3] != "00:00:00:00:00:00").then(|| f[3].to_ascii_lowercase())
    })
}

fn edid_monitor_name(edid: &[u8]) -> Option<String> {
    // Four 18-byte descriptors at 54, 72, 90, 108; a display descriptor starts 00 00 00 <tag>.
    (0..4).find_map(|i| {
        let d = edid.get(54 + i * 18..72 + i * 18)?;
        if d[0..3] != [0, 0, 0] || d[3] != 0xFC {
            return None;
        }
        let text: String = d[5..].iter().take_while(|b| **b != 0x0a).map(|b| char::from(*b)).collect();
        clean(&text)
    })
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

fn read_text(path: &Path) -> Option<String> {
    clean(&fs::read_to_string(path).ok()?)
}

/// Trimmed, without control characters, bounded; `None` when empty.
fn clean(text: &str) -> Option<String> {
    let s: String = text.trim().chars().filter(|c| !c.is_control()).take(MAX_TEXT).collect();
    Some(s).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    #[test]
    fn reads_a_prepared_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "sys/bus/usb/devices/1-1/idVendor", b"1d6b\n");
        write(root, "sys/bus/usb/devices/1-1/idProduct", b"0104\n");
        write(root, "sys/bus/usb/devices/1-1/manufacturer", b"PiKVM\n");
        write(root, "sys/bus/usb/devices/1-1/product", b"Composite KVM Device\n");
        write(root, "sys/bus/usb/devices/1-1:1.0/bInterfaceClass", b"03\n");
        write(root, "proc/1/comm", b"systemd\n");
        write(root, "proc/42/comm", b"rustdesk\n");
        write(root, "proc/self/comm", b"ignored\n");
        write(root, "etc/timezone", b"Europe/Berlin\n");
        let mut edid = vec![0u8; 128];
        edid[54..59].copy_from_slice(&[0, 0, 0, 0xFC, 0]);
        edid[59..67].copy_from_slice(b"DELL U27");
        edid[67] = 0x0a;
        write(root, "sys/class/drm/card0-DP-1/edid", &edid);
        write(
            root,
            "proc/net/route",
            b"Iface\tDestination\tGateway \tFlags\n eth0\t00000000\t0101A8C0\t0003\n eth0\t0001A8C0\t00000000\t0001\n",
        );
        write(
            root,
            "proc/net/arp",
            b"IP address HW type Flags HW address Mask Device\n192.168.1.1 0x1 0x2 AA:BB:CC:00:11:22 * eth0\n",
        );
        let report = Collector::with_root(root).collect();
        assert_eq!(report.usb.len(), 1);
        assert_eq!(report.usb[0].vid, "1d6b");
        assert_eq!(report.usb[0].manufacturer.as_deref(), Some("PiKVM"));
        assert_eq!(report.processes, vec!["rustdesk".to_string(), "systemd".to_string()]);
        assert_eq!(report.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(report.displays, vec!["DELL U27".to_string()]);
        let lan = report.lan.unwrap();
        assert_eq!(lan.gateway_mac_hash, tether_attestation::posture::lan_hash("aa:bb:cc:00:11:22"));
        assert_eq!(lan.gateway_mac_hash.len(), 64);
    }

    #[test]
    fn an_empty_tree_gives_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let json = Collector::with_root(dir.path()).collect_json();
        assert_eq!(json, b"{}");
    }

    #[test]
    fn the_report_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3000 {
            write(dir.path(), &format!("proc/{i}/comm"), format!("process-name-{i:05}").as_bytes());
        }
        let json = Collector::with_root(dir.path()).collect_json();
        assert!(json.len() <= MAX_REPORT, "{}", json.len());
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(value["processes"].as_array().unwrap().len() <= MAX_PROCESSES);
    }
}
