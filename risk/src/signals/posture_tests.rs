//! The remote-control matcher against its definition (one `str::contains` per rule entry).
use super::*;
use crate::event::UsbInterface;

/// The rules' definition, one `str::contains` per entry (how matching was written before
/// the automaton): every posture must find the same indicators in the same order.
fn by_definition(rules: &CompiledRules, posture: &Posture) -> Vec<(Severity, serde_json::Value)> {
    let mut found = Vec::new();
    for dev in &posture.usb {
        let text = format!("{} {}", dev.manufacturer.as_deref().unwrap_or(""), dev.product.as_deref().unwrap_or(""))
            .to_lowercase();
        for r in &rules.usb {
            let id_ok = (r.vid.is_none() || r.vid == dev.vid) && (r.pid.is_none() || r.pid == dev.pid);
            let any_id = r.vid.is_some() || r.pid.is_some();
            let strings_ok =
                if r.strings.is_empty() { any_id } else { r.strings.iter().any(|s| text.contains(s.as_str())) };
            if id_ok && strings_ok {
                found.push((r.severity, Found::Usb { rule: r, dev }.evidence()));
            }
        }
    }
    for dev in &posture.usb {
        if let Some(traits) = gadget_traits(dev) {
            found.push((Severity::High, Found::Gadget { dev, traits }.evidence()));
        }
    }
    for p in &posture.processes {
        let name = p.trim().to_lowercase();
        let name = name.strip_suffix(".exe").unwrap_or(&name);
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        if let Some(r) = rules.processes.iter().find(|r| r.names.iter().any(|n| n == base)) {
            found.push((r.severity, Found::Process { rule: r, process: p }.evidence()));
        }
    }
    for disp in &posture.displays {
        let text = disp.to_lowercase();
        if let Some(r) = rules.displays.iter().find(|r| r.contains.iter().any(|c| text.contains(c.as_str()))) {
            found.push((r.severity, Found::Display { rule: r, display: disp }.evidence()));
        }
    }
    found
}

fn usb(vid: &str, pid: &str, manufacturer: &str, product: &str) -> UsbDevice {
    UsbDevice {
        vid: Some(vid.into()),
        pid: Some(pid.into()),
        manufacturer: Some(manufacturer.into()),
        product: Some(product.into()),
        serial: None,
        interfaces: Vec::new(),
    }
}

#[test]
fn the_automaton_finds_what_one_contains_per_entry_finds() {
    let extra: RemoteControlRules = toml::from_str(
        r#"
        [[usb]]
        name = "spans manufacturer and product"
        strings = ["acme kvm"]
        severity = "high"
        [[usb]]
        name = "empty entry: every text contains it"
        vid = "abcd"
        strings = [""]
        severity = "review"
        [[usb]]
        name = "non-ASCII"
        strings = ["ΣΚΡΙΠΤ"]
        severity = "review"
        [[displays]]
        name = "overlapping entries"
        contains = ["kvm capture", "capture"]
        severity = "review"
        "#,
    )
    .unwrap();
    let rules = CompiledRules::new(&extra).unwrap();
    let mut gadget = usb("046d", "c52b", "Logitech", "USB Receiver");
    gadget.serial = Some("CAFEBABE".into());
    gadget.interfaces =
        vec![UsbInterface { class: 3, subclass: 1, protocol: 1 }, UsbInterface { class: 3, subclass: 1, protocol: 2 }];
    let postures = [
        Posture::default(),
        Posture {
            usb: vec![
                usb("1d6b", "0104", "PiKVM", "Composite KVM Device"),
                usb("1D6B", "0104", "", "TinyPilot"),
                usb("0000", "0000", "ACME", "KVM switch"),
                usb("abcd", "0001", "x", "y"),
                usb("0000", "0000", "σκριπτ", "ΣΚΡΙΠΤΣ"),
                usb("3346", "1009", "Sipeed", "NanoKVM"),
                usb("046d", "c52b", "Logitech", "USB Receiver"),
                gadget,
            ],
            processes: vec![
                "C:\\Program Files\\AnyDesk\\AnyDesk.exe".into(),
                " /usr/bin/x11vnc ".into(),
                "explorer.exe".into(),
                "TeamViewer_Service.EXE".into(),
                "ÄnyDesk".into(),
            ],
            displays: vec!["Built-in Retina Display".into(), "PiKVM".into(), "USB KVM Capture".into()],
            ..Posture::default()
        },
    ];
    for posture in &postures {
        assert_eq!(rules.matches(posture), by_definition(&rules, posture));
    }
    let all = rules.matches(&postures[1]);
    assert!(all.iter().any(|(_, v)| v["indicator"] == "spans manufacturer and product"));
    assert!(all.iter().any(|(_, v)| v["indicator"] == "non-ASCII"));
    assert!(all.iter().any(|(_, v)| v["indicator"] == "empty entry: every text contains it"));
    assert!(all.iter().any(|(_, v)| v["process"] == "TeamViewer_Service.EXE"));
}
