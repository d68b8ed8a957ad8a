//! Builds tenants, households, honest workers and planted laptop farms.

use super::SimConfig;
use super::rng::Rng;
use super::world::{ABROAD, Addresses, HOME_CITIES, Net, Place, pick_city};

pub struct Tenant {
    pub vpn: Option<Place>,
    /// Offices by home-city index, with whether the operator registered the egress.
    pub offices: Vec<(usize, Place, bool)>,
    /// How long its presence challenges stay open (employers choose; 10 to 60 minutes).
    pub deadline_ms: i64,
}

/// How a farm is run; every farm has one, and its laptops are scored by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FarmStyle {
    /// A facilitator walks the room every 15–45 minutes and answers every pending laptop in turn.
    Sweep,
    /// The same, spacing answers 20–90 s apart to look independent.
    CarefulSweep,
    /// Operators abroad answer each laptop on their own; nothing on the laptops.
    Quiet,
    /// Operators reach the laptops through remote-desktop software.
    RemoteDesktop,
    /// KVM-over-IP boxes with their default USB ids.
    Kvm,
    /// KVM-over-IP boxes that impersonate a keyboard maker's ids.
    SpoofedKvm,
    /// Laptops reshipped abroad, reaching the employer through VPN or hosting exits, leaking now and then.
    Reshipped,
    /// One TPM or authenticator enrolled for several of the farm's identities.
    SharedHardware,
}

impl FarmStyle {
    pub const ALL: [FarmStyle; 8] = [
        Self::Sweep,
        Self::CarefulSweep,
        Self::Quiet,
        Self::RemoteDesktop,
        Self::Kvm,
        Self::SpoofedKvm,
        Self::Reshipped,
        Self::SharedHardware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sweep => "sweep",
            Self::CarefulSweep => "careful_sweep",
            Self::Quiet => "quiet",
            Self::RemoteDesktop => "remote_desktop",
            Self::Kvm => "kvm",
            Self::SpoofedKvm => "spoofed_kvm",
            Self::Reshipped => "reshipped",
            Self::SharedHardware => "shared_hardware",
        }
    }

    pub fn sweeps(self) -> bool {
        matches!(self, Self::Sweep | Self::CarefulSweep)
    }
}

pub struct Reship {
    pub day: i64,
    pub transit_days: i64,
    /// The VPN or hosting exit the laptops use abroad ...
    pub exit: Place,
    /// ... and the real line that leaks through now and then.
    pub real: Place,
    pub leak: f64,
}

pub struct Farm {
    pub house: Place,
    pub style: FarmStyle,
    pub reship: Option<Reship>,
    /// Minutes between walks through the room.
    pub walk_minutes: (f64, f64),
    /// Seconds between two laptops answered in one walk.
    pub gap_secs: (f64, f64),
}

pub struct Trip {
    pub start_day: i64,
    pub days: i64,
    pub venue: usize,
}

#[derive(Clone)]
pub struct Usb {
    pub vid: &'static str,
    pub pid: &'static str,
    pub manufacturer: &'static str,
    pub product: &'static str,
    pub serial: Option<&'static str>,
    /// (class, subclass, protocol) per interface.
    pub interfaces: Vec<(u8, u8, u8)>,
}

pub struct Worker {
    pub tenant: usize,
    pub city: usize,
    pub home: Place,
    pub declared: (f64, f64, &'static str),
    pub category: &'static str,
    pub farm: Option<usize>,
    pub office: Option<usize>,
    pub coworking: bool,
    pub trip: Option<Trip>,
    /// Share of hours through a privacy VPN exit.
    pub vpn_share: f64,
    /// Share of hours on a mobile carrier (tethering).
    pub mobile_share: f64,
    pub remote_tool: Option<&'static str>,
    pub usb: Vec<Usb>,
    pub flaky: bool,
    pub tpm: bool,
    pub counter: bool,
    pub reports_lan: bool,
    pub phase_secs: i64,
    pub attested: bool,
    /// The hardware behind the credential (EK or credential key hash).
    pub hardware: u64,
}

pub struct World {
    pub tenants: Vec<Tenant>,
    pub workers: Vec<Worker>,
    pub farms: Vec<Farm>,
    pub coworking: Vec<Place>,
    pub venues: Vec<Place>,
    pub mobile: Vec<Vec<Place>>,
    pub exits: Vec<Place>,
    /// The ISP carrier-grade NAT address being filled, its city and the households left for it.
    cgnat: Option<(Place, usize, usize)>,
    /// How many workers the population gets.
    target: usize,
}

const REMOTE_TOOLS: &[&str] =
    &["AnyDesk.exe", "TeamViewer_Service.exe", "rustdesk", "remoting_host", "SRService.exe", "winvnc"];
const HONEST_TOOLS: &[&str] = &["AnyDesk.exe", "TeamViewer_Service.exe"];
const KBD_MOUSE: [(u8, u8, u8); 2] = [(3, 1, 1), (3, 1, 2)];
const KVMS: &[(&str, &str, &str, &str)] = &[
    ("1d6b", "0104", "PiKVM", "Composite KVM Device"),
    ("1d6b", "0104", "tinypilot", "Multifunction USB Device"),
    ("1d6b", "0104", "JetKVM", "JetKVM"),
    ("3346", "1009", "sipeed", "NanoKVM"),
    ("1d6b", "0106", "BliKVM", "BliKVM Composite"),
    ("38eb", "0002", "GL.iNet", "Comet"),
    ("1a86", "e129", "wch.cn", "CH9329"),
];
/// Ids JetKVM-style presets impersonate.
const SPOOFS: &[(&str, &str, &str, &str)] = &[
    ("046d", "c31c", "Logitech", "USB Keyboard"),
    ("045e", "07f8", "Microsoft", "Wired Keyboard 600"),
    ("413c", "2113", "Dell", "Dell KB216 Wired Keyboard"),
];

fn logitech_receiver() -> Usb {
    Usb {
        vid: "046d",
        pid: "c52b",
        manufacturer: "Logitech",
        product: "USB Receiver",
        serial: None,
        interfaces: vec![(3, 1, 1), (3, 1, 2), (3, 0, 0)],
    }
}

impl World {
    pub fn build(cfg: &SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let mut addr = Addresses::default();
        let n_tenants = (cfg.workers / 50).max(8);
        let tenants: Vec<Tenant> = (0..n_tenants)
            .map(|_| {
                let vpn = rng.chance(0.15).then(|| {
                    let city = pick_city(&mut rng, HOME_CITIES);
                    addr.place(&mut rng, Net::CorporateVpn, city, false, false)
                });
                let offices = if rng.chance(0.3) {
                    (0..rng.int(1, 2))
                        .map(|_| {
                            let c = rng.index(HOME_CITIES.len());
                            (c, addr.place(&mut rng, Net::Business, &HOME_CITIES[c], false, false), rng.chance(0.8))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let deadline_ms = [10, 15, 20, 30, 45, 60][rng.index(6)] * 60_000;
                Tenant { vpn, offices, deadline_ms }
            })
            .collect();
        let coworking = HOME_CITIES.iter().map(|c| addr.place(&mut rng, Net::Business, c, false, false)).collect();
        let venues = HOME_CITIES.iter().map(|c| addr.place(&mut rng, Net::Business, c, false, false)).collect();
        let mobile = HOME_CITIES
            .iter()
            .map(|c| (0..4).map(|_| addr.place(&mut rng, Net::Mobile, c, false, false)).collect())
            .collect();
        let exits = (0..20)
            .map(|_| {
                let city = pick_city(&mut rng, HOME_CITIES);
                let net = if rng.chance(0.5) { Net::Anonymizer } else { Net::Hosting };
                addr.place(&mut rng, net, city, false, false)
            })
            .collect();
        let mut world = World {
            tenants,
            workers: Vec::new(),
            farms: Vec::new(),
            coworking,
            venues,
            mobile,
            exits,
            cgnat: None,
            target: cfg.workers,
        };
        let farm_target = (cfg.workers as f64 * cfg.farm_share).round() as usize;
        while world.workers.len() < cfg.workers {
            if world.farm_devices() < farm_target {
                world.plant_farm(&mut rng, &mut addr, cfg);
            } else {
                world.add_household(&mut rng, &mut addr, cfg);
            }
        }
        world
    }

    fn farm_devices(&self) -> usize {
        self.workers.iter().filter(|w| w.farm.is_some()).count()
    }

    fn base_worker(&self, rng: &mut Rng, tenant: usize, city: usize, home: Place, category: &'static str) -> Worker {
        Worker {
            tenant,
            city,
            declared: (home.lat, home.lon, HOME_CITIES[city].country),
            home,
            category,
            farm: None,
            office: None,
            coworking: false,
            trip: None,
            vpn_share: 0.0,
            mobile_share: 0.04,
            remote_tool: None,
            // Wireless keyboard-and-mouse receivers are composite HID devices too, without gadget traits.
            usb: if rng.chance(0.3) { vec![logitech_receiver()] } else { Vec::new() },
            flaky: false,
            tpm: rng.chance(0.3),
            counter: rng.chance(0.7),
            reports_lan: rng.chance(0.5),
            phase_secs: rng.int(0, 3599) as i64,
            attested: true,
            hardware: rng.next_u64(),
        }
    }

    fn pick_tenant(&self, rng: &mut Rng, used: &mut Vec<usize>) -> usize {
        let tenant = loop {
            let t = rng.index(self.tenants.len());
            if !used.contains(&t) || used.len() >= self.tenants.len() {
                break t;
            }
        };
        used.push(tenant);
        tenant
    }

    /// A home line: its own address, or (one household in twelve) a share of an ISP's
    /// carrier-grade NAT address with 20–30 other households of the population, each
    /// with its own LAN (and then the NAT's city).
    fn home_line(&mut self, rng: &mut Rng, addr: &mut Addresses, city: usize) -> (Place, usize, bool) {
        let v6 = rng.chance(0.2);
        if v6 || !rng.chance(1.0 / 12.0) {
            return (addr.place(rng, Net::Residential, &HOME_CITIES[city], false, v6), city, false);
        }
        let full = self.cgnat.as_ref().is_none_or(|(_, _, left)| *left == 0);
        // No new NAT near the end of the population: its 20-30 households would not fit.
        if full && self.workers.len() + 60 > self.target {
            return (addr.place(rng, Net::Residential, &HOME_CITIES[city], false, v6), city, false);
        }
        if full {
            let nat = addr.place(rng, Net::Residential, &HOME_CITIES[city], false, false);
            self.cgnat = Some((nat, city, rng.int(20, 30) as usize));
        }
        let Some((nat, nat_city, left)) = self.cgnat.as_mut() else {
            return (addr.place(rng, Net::Residential, &HOME_CITIES[city], false, false), city, false);
        };
        *left -= 1;
        let nat_city = *nat_city;
        // The household's own router (own LAN, own place) behind the shared address.
        let own = addr.place(rng, Net::Residential, &HOME_CITIES[nat_city], false, false);
        (Place { lan: own.lan, lat: own.lat, lon: own.lon, ..nat.clone() }, nat_city, true)
    }

    fn add_household(&mut self, rng: &mut Rng, addr: &mut Addresses, cfg: &SimConfig) {
        let first = pick_city_index(rng);
        let (home, city, cgnat) = self.home_line(rng, addr, first);
        // Co-living houses: a dozen remote workers of different employers on one residential line.
        let coliving = !cgnat && rng.chance(0.0005);
        let size = if coliving {
            rng.int(8, 14) as usize
        } else if rng.chance(0.02) {
            3
        } else if rng.chance(0.13) {
            2
        } else {
            1
        };
        let mut used = Vec::new();
        for _ in 0..size.min(cfg.workers - self.workers.len()) {
            let tenant = self.pick_tenant(rng, &mut used);
            let category = match (coliving, cgnat, size > 1) {
                (true, _, _) => "coliving",
                (_, true, _) => "isp_cgnat",
                (_, _, true) => "roommates",
                _ => "home",
            };
            let mut w = self.base_worker(rng, tenant, city, home.clone(), category);
            // Where they live is the kind they are scored by; what they do besides is behaviour.
            let sticky = coliving || cgnat;
            if let Some(i) = self.tenants[tenant].offices.iter().position(|(c, _, _)| *c == city) {
                w.office = Some(i);
                w.category = "office";
            } else if rng.chance(0.08) {
                w.coworking = true;
                w.category = "coworking";
            }
            if self.tenants[tenant].vpn.is_some() {
                w.category = "corporate_vpn";
            }
            if rng.chance(0.1) {
                let days = cfg.days as i64;
                // Conferences and client visits: a day or two at a venue, hotel included.
                w.trip = Some(Trip {
                    start_day: rng.int(0, (days - 3).max(0) as u64) as i64,
                    days: rng.int(1, 2) as i64,
                    venue: rng.index(HOME_CITIES.len()),
                });
                w.category = "conference";
            }
            if rng.chance(0.02) {
                w.mobile_share = rng.range(0.3, 0.8);
                w.category = "mobile";
            }
            if rng.chance(0.02) {
                w.vpn_share = rng.range(0.2, 0.9);
                w.category = "privacy_vpn";
            }
            if rng.chance(0.01) {
                w.remote_tool = Some(HONEST_TOOLS[rng.index(HONEST_TOOLS.len())]);
                w.category = "remote_tool";
            }
            if rng.chance(0.002) {
                w.usb.push(Usb {
                    vid: "1d6b",
                    pid: "0104",
                    manufacturer: "Linux Foundation",
                    product: "Multifunction Composite Gadget",
                    serial: None,
                    interfaces: vec![(2, 2, 0), (10, 0, 0)],
                });
            }
            w.flaky = rng.chance(0.02);
            w.attested = !rng.chance(0.01);
            if sticky {
                w.category = category;
            }
            self.workers.push(w);
        }
    }

    fn plant_farm(&mut self, rng: &mut Rng, addr: &mut Addresses, cfg: &SimConfig) {
        let city = rng.index(20); // US cities
        let v6 = rng.chance(0.2);
        let house = addr.place(rng, Net::Residential, &HOME_CITIES[city], false, v6);
        let style = FarmStyle::ALL[rng.index(FarmStyle::ALL.len())];
        let reship = (style == FarmStyle::Reshipped).then(|| {
            let dest = &ABROAD[rng.index(ABROAD.len())];
            Reship {
                day: rng.int(1, 3) as i64,
                transit_days: rng.int(2, 4) as i64,
                exit: self.exits[rng.index(self.exits.len())].clone(),
                real: addr.place(rng, Net::Residential, dest, true, false),
                leak: rng.range(0.01, 0.08),
            }
        });
        let walk_lo = rng.range(15.0, 25.0);
        let walk_minutes = (walk_lo, rng.range(walk_lo + 10.0, 45.0));
        let gap_secs = if style == FarmStyle::CarefulSweep {
            (rng.range(15.0, 25.0), rng.range(40.0, 90.0))
        } else {
            (rng.range(2.5, 5.0), rng.range(8.0, 18.0))
        };
        // Half the farms have several workers declaring the facilitator's address as home.
        let home_collision = rng.chance(0.5);
        let farm = self.farms.len();
        self.farms.push(Farm { house: house.clone(), style, reship, walk_minutes, gap_secs });
        let size = rng.int(3, 12) as usize;
        let shared = [rng.next_u64(), rng.next_u64()];
        let mut used = Vec::new();
        for i in 0..size.min(cfg.workers - self.workers.len()) {
            let tenant = self.pick_tenant(rng, &mut used);
            let mut w = self.base_worker(rng, tenant, city, house.clone(), "farm");
            // Who declares the facilitator's address, and who a plausible home elsewhere.
            if !(home_collision && rng.chance(0.7)) {
                let c = &HOME_CITIES[rng.index(20)];
                w.declared = (c.lat + rng.range(-0.08, 0.08), c.lon + rng.range(-0.08, 0.08), c.country);
            }
            w.farm = Some(farm);
            match style {
                FarmStyle::RemoteDesktop if rng.chance(0.9) => {
                    w.remote_tool = Some(REMOTE_TOOLS[rng.index(REMOTE_TOOLS.len())]);
                }
                FarmStyle::Kvm if rng.chance(0.8) => {
                    let (vid, pid, manufacturer, product) = KVMS[rng.index(KVMS.len())];
                    let mut interfaces = KBD_MOUSE.to_vec();
                    interfaces.push((8, 6, 80));
                    w.usb = vec![Usb { vid, pid, manufacturer, product, serial: None, interfaces }];
                }
                FarmStyle::SpoofedKvm if rng.chance(0.8) => {
                    let (vid, pid, manufacturer, product) = SPOOFS[rng.index(SPOOFS.len())];
                    let mut interfaces = KBD_MOUSE.to_vec();
                    // Some presets hide every gadget trait: then structure cannot tell either.
                    let clean = rng.chance(0.15);
                    let serial = (!clean && rng.chance(0.5)).then_some("CAFEBABE");
                    if !clean && (serial.is_none() || rng.chance(0.5)) {
                        interfaces.push(if rng.chance(0.6) { (8, 6, 80) } else { (2, 6, 0) });
                    }
                    w.usb = vec![Usb { vid, pid, manufacturer, product, serial, interfaces }];
                }
                FarmStyle::SharedHardware => w.hardware = shared[i % 2],
                _ => {}
            }
            self.workers.push(w);
        }
    }
}

fn pick_city_index(rng: &mut Rng) -> usize {
    let c = pick_city(rng, HOME_CITIES);
    HOME_CITIES.iter().position(|x| std::ptr::eq(x, c)).unwrap_or(0)
}
