//! The posture report sent (and signed) with each presence answer.
//!
//! Linux only, everything best effort and optional: what cannot be read is
//! left out, never guessed. Sizes are bounded so that the report stays far
//! below the server's 64 KiB limit. Raw MAC addresses never leave the device:
//! the gateway's MAC is sent as a domain-separated SHA-256
//! (`tether_attestation::posture::lan_hash`), which is enough to tell that two
//! devices share a LAN. The Wi-Fi access point's BSSID is hashed the same way;
//! the kernel tells it only over nl80211, so it is read from `iw dev IFACE link`
//! (Debian's `iw`), with a deadline, for each wireless interface.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

const MAX_USB: usize = 128;
/// Interfaces reported per USB device (the server accepts as many).
const MAX_INTERFACES: usize = 16;
const MAX_PROCESSES: usize = 2048;
const MAX_DISPLAYS: usize = 16;
const MAX_TEXT: usize = 128;
/// The server accepts 64 KiB; stay well below.
const MAX_REPORT: usize = 48 * 1024;
/// `iw` answers from the kernel at once; one that hangs must not hold up the answer.
const IW_DEADLINE: Duration = Duration::from_secs(2);
/// Wireless interfaces asked, at most.
const MAX_WIRELESS: usize = 4;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// What the device is made of: a KVM gadget that claims a keyboard maker's ids is
    /// still one device that is keyboard, mouse and often mass storage at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<UsbInterface>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub struct UsbInterface {
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Lan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_mac_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wifi_bssid_hash: Option<String>,
}

/// Reads posture from a filesystem root (`/` on a real device; a prepared
/// directory in tests or containers that mount the host's /sys and /proc elsewhere).
#[derive(Debug, Clone)]
pub struct Collector {
    root: PathBuf,
    /// The `iw` program that reports a wireless interface's access point.
    iw: PathBuf,
}

impl Default for Collector {
    fn default() -> Self {
        Self { root: PathBuf::from("/"), iw: PathBuf::from("iw") }
    }
}

impl Collector {
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), ..Self::default() }
    }

    /// Uses this program instead of `iw` from PATH.
    pub fn with_iw(mut self, iw: impl Into<PathBuf>) -> Self {
        self.iw = iw.into();
        self
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
                serial: read_text(&dir.join("serial")),
                interfaces: self.usb_interfaces(&dir),
            });
        }
        found.into_iter().take(MAX_USB).collect()
    }

    /// A device's interfaces are its siblings named `DEVICE:CONFIG.INTERFACE` (`1-1:1.0`),
    /// each with `bInterfaceClass`, `bInterfaceSubClass` and `bInterfaceProtocol` in hex.
    fn usb_interfaces(&self, device: &Path) -> Vec<UsbInterface> {
        let Some(name) = device.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
        let prefix = format!("{name}:");
        let hex = |dir: &Path, file: &str| read_text(&dir.join(file)).and_then(|t| u8::from_str_radix(&t, 16).ok());
        let mut found = BTreeSet::new();
        for dir in entries(&self.path("sys/bus/usb/devices")) {
            if !dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)) {
                continue;
            }
            if let Some(class) = hex(&dir, "bInterfaceClass") {
                found.insert(UsbInterface {
                    class,
                    subclass: hex(&dir, "bInterfaceSubClass").unwrap_or(0),
                    protocol: hex(&dir, "bInterfaceProtocol").unwrap_or(0),
                });
            }
        }
        found.into_iter().take(MAX_INTERFACES).collect()
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

    /// The default gateway's MAC (from /proc/net/route and /proc/net/arp) and
    /// the Wi-Fi access point's BSSID, each hashed.
    fn lan(&self) -> Option<Lan> {
        let route = fs::read_to_string(self.path("proc/net/route")).unwrap_or_default();
        let arp = fs::read_to_string(self.path("proc/net/arp")).unwrap_or_default();
        let lan = Lan {
            gateway_mac_hash: gateway_mac(&route, &arp).map(|mac| tether_attestation::posture::lan_hash(&mac)),
            wifi_bssid_hash: self.wifi_bssid().map(|bssid| tether_attestation::posture::lan_hash(&bssid)),
        };
        (lan.gateway_mac_hash.is_some() || lan.wifi_bssid_hash.is_some()).then_some(lan)
    }

    /// The BSSID the first associated wireless interface (one with a
    /// `wireless` directory in /sys/class/net) is connected to.
    fn wifi_bssid(&self) -> Option<String> {
        let mut wireless: Vec<String> = entries(&self.path("sys/class/net"))
            .into_iter()
            .filter(|dir| dir.join("wireless").is_dir())
            .filter_map(|dir| dir.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .filter(|name| name.len() <= 15 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            .collect();
        wireless.sort();
        wireless.into_iter().take(MAX_WIRELESS).find_map(|iface| {
            let output = run_bounded(Command::new(&self.iw).args(["dev", &iface, "link"]), IW_DEADLINE)?;
            associated_bssid(&output)
        })
    }
}

/// Runs a command with a deadline; its stdout when it exits successfully in time.
fn run_bounded(command: &mut Command, deadline: Duration) -> Option<String> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if start.elapsed() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    Some(text)
}

/// The access point's MAC from `iw dev IFACE link` ("Connected to aa:bb:cc:dd:ee:ff (on wlan0)");
/// `None` for "Not connected." or anything else.
fn associated_bssid(iw_link: &str) -> Option<String> {
    let rest = iw_link.lines().find_map(|line| line.trim().strip_prefix("Connected to "))?;
    let mac = rest.split_whitespace().next()?.to_ascii_lowercase();
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed =
        octets.len() == 6 && octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    (well_formed && mac != "00:00:00:00:00:00").then_some(mac)
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

/// Trimmed, without control or invisible formatting characters, bounded; `None` when empty.
fn clean(text: &str) -> Option<String> {
    let visible = |c: &char| !c.is_control() && !tether_attestation::posture::is_invisible_format(*c);
    let s: String = text.chars().filter(visible).collect();
    let s: String = s.trim().chars().take(MAX_TEXT).collect();
    Some(s).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_text_drops_invisible_characters_so_tetherd_accepts_and_matches_it() {
        assert_eq!(clean("\u{200b} kvmd\u{202e}").as_deref(), Some("kvmd"));
        assert_eq!(clean("\u{feff}\u{200d}"), None);
        assert_eq!(clean("Écran 27").as_deref(), Some("Écran 27"));
    }

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
        write(root, "sys/bus/usb/devices/1-1/serial", b"CAFEBABE\n");
        for (iface, class, sub, proto) in
            [("1.0", "03", "01", "01"), ("1.1", "03", "01", "02"), ("1.2", "08", "06", "50")]
        {
            write(root, &format!("sys/bus/usb/devices/1-1:{iface}/bInterfaceClass"), format!("{class}\n").as_bytes());
            write(root, &format!("sys/bus/usb/devices/1-1:{iface}/bInterfaceSubClass"), sub.as_bytes());
            write(root, &format!("sys/bus/usb/devices/1-1:{iface}/bInterfaceProtocol"), proto.as_bytes());
        }
        // Another device's interface and a hub port without ids are not this device's.
        write(root, "sys/bus/usb/devices/1-10:1.0/bInterfaceClass", b"e0\n");
        write(root, "sys/bus/usb/devices/1-1:1.3/bInterfaceClass", b"not hex\n");
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
        assert_eq!(report.usb[0].serial.as_deref(), Some("CAFEBABE"));
        let iface = |class, subclass, protocol| UsbInterface { class, subclass, protocol };
        assert_eq!(report.usb[0].interfaces, vec![iface(3, 1, 1), iface(3, 1, 2), iface(8, 6, 0x50)]);
        assert_eq!(report.processes, vec!["rustdesk".to_string(), "systemd".to_string()]);
        assert_eq!(report.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(report.displays, vec!["DELL U27".to_string()]);
        let lan = report.lan.unwrap();
        assert_eq!(
            lan.gateway_mac_hash.as_deref(),
            Some(tether_attestation::posture::lan_hash("aa:bb:cc:00:11:22").as_str())
        );
        assert_eq!(lan.wifi_bssid_hash, None, "no wireless interface in the tree");
    }

    /// A stand-in for `iw` that prints what `iw dev wlan0 link` prints when associated.
    fn fake_iw(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("iw");
        fs::write(&path, format!("#!/bin/sh\n[ \"$2\" = probe ] && exit 0\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread forking while the file was open for writing can make the first
        // exec fail with ETXTBSY; once one run starts, no writer is left.
        for _ in 0..100 {
            match Command::new(&path).args(["dev", "probe", "link"]).stdout(Stdio::null()).status() {
                Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        path
    }

    #[test]
    fn the_access_point_of_a_wireless_interface_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root, "sys/class/net/eth0/address", b"00:11:22:33:44:55\n");
        fs::create_dir_all(root.join("sys/class/net/wlp2s0/wireless")).unwrap();
        let iw = fake_iw(
            dir.path(),
            r#"[ "$1 $2 $3" = "dev wlp2s0 link" ] || exit 1
printf 'Connected to F4:92:BF:00:AB:CD (on wlp2s0)\n\tSSID: office\n\tfreq: 5180\n'"#,
        );
        let report = Collector::with_root(&root).with_iw(&iw).collect();
        let lan = report.lan.expect("a LAN fingerprint from Wi-Fi alone");
        assert_eq!(lan.gateway_mac_hash, None);
        assert_eq!(
            lan.wifi_bssid_hash.as_deref(),
            Some(tether_attestation::posture::lan_hash("f4:92:bf:00:ab:cd").as_str())
        );
        let json: serde_json::Value =
            serde_json::from_slice(&Collector::with_root(&root).with_iw(&iw).collect_json()).unwrap();
        assert_eq!(json["lan"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["wifi_bssid_hash"]);
    }

    #[test]
    fn no_bssid_when_not_associated_failing_missing_or_hung() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("sys/class/net/wlan0/wireless")).unwrap();
        for body in [
            "echo 'Not connected.'",
            "echo 'Connected to 00:00:00:00:00:00 (on wlan0)'",
            "exit 1",
            "echo 'Connected to zz'",
        ] {
            let iw = fake_iw(dir.path(), body);
            assert_eq!(Collector::with_root(&root).with_iw(&iw).collect().lan, None, "{body}");
        }
        let missing = Collector::with_root(&root).with_iw(dir.path().join("no-such-iw")).collect();
        assert_eq!(missing.lan, None);
        let hung = fake_iw(dir.path(), "exec sleep 30");
        let start = Instant::now();
        assert_eq!(Collector::with_root(&root).with_iw(&hung).collect().lan, None);
        assert!(start.elapsed() < IW_DEADLINE + Duration::from_secs(3), "{:?}", start.elapsed());
    }

    #[test]
    fn iw_link_output_is_parsed_strictly() {
        assert_eq!(
            associated_bssid("Connected to aa:bb:cc:dd:ee:ff (on wlan0)\n\tSSID: x\n").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(associated_bssid("Not connected.\n"), None);
        assert_eq!(associated_bssid("Connected to aa:bb:cc:dd:ee (on wlan0)"), None);
        assert_eq!(associated_bssid("Connected to aa:bb:cc:dd:ee:fg (on wlan0)"), None);
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
