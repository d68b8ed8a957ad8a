//! Builds tenants, households, honest workers and planted laptop farms.

use super::SimConfig;
use super::rng::Rng;
use super::world::{ABROAD, Addresses, HOME_CITIES, Net, Place, pick_city};

pub struct Tenant {
    pub vpn: Option<Place>,
    /// Offices by home-city index, with whether the operator registered the egress.
    pub offices: Vec<(usize, Place, bool)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Facilitator {
    /// Answers every device's challenge one after another, seconds apart.
    Serial,
    /// Spaces answers out (15–90 s) to look independent.
    Careful,
    /// Nobody local: operators answer remotely through KVM or remote desktop.
    Remote,
}

pub struct Farm {
    pub house: Place,
    pub facilitator: Facilitator,
    /// (day the move starts, days in transit, the place abroad).
    pub reship: Option<(i64, i64, Place)>,
}

pub struct Trip {
    pub start_day: i64,
    pub days: i64,
    pub venue: usize,
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
    pub personal_vpn: bool,
    pub remote_tool: Option<&'static str>,
    pub usb: Option<(&'static str, &'static str, &'static str, &'static str)>,
    pub flaky: bool,
    pub tpm: bool,
    pub counter: bool,
    pub reports_lan: bool,
    pub phase_secs: i64,
    pub attested: bool,
}

pub struct World {
    pub tenants: Vec<Tenant>,
    pub workers: Vec<Worker>,
    pub farms: Vec<Farm>,
    pub coworking: Vec<Place>,
    pub venues: Vec<Place>,
    pub mobile: Vec<Vec<Place>>,
    pub exits: Vec<Place>,
}

const REMOTE_TOOLS: &[&str] =
    &["AnyDesk.exe", "TeamViewer_Service.exe", "rustdesk", "remoting_host", "SRService.exe", "winvnc"];
const KVMS: &[(&str, &str, &str, &str)] = &[
    ("1d6b", "0104", "PiKVM", "Composite KVM Device"),
    ("1d6b", "0104", "tinypilot", "Multifunction USB Device"),
    ("1d6b", "0104", "JetKVM", "JetKVM"),
    ("3346", "1009", "sipeed", "NanoKVM"),
];

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
                Tenant { vpn, offices }
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
                addr.place(&mut rng, Net::Anonymizer, city, false, false)
            })
            .collect();
        let mut world = World { tenants, workers: Vec::new(), farms: Vec::new(), coworking, venues, mobile, exits };
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
        let c = &HOME_CITIES[city];
        Worker {
            tenant,
            city,
            home,
            declared: (c.lat, c.lon, c.country),
            category,
            farm: None,
            office: None,
            coworking: false,
            trip: None,
            personal_vpn: false,
            remote_tool: None,
            usb: None,
            flaky: false,
            tpm: rng.chance(0.3),
            counter: rng.chance(0.7),
            reports_lan: rng.chance(0.5),
            phase_secs: rng.int(0, 3599) as i64,
            attested: true,
        }
    }

    fn add_household(&mut self, rng: &mut Rng, addr: &mut Addresses, cfg: &SimConfig) {
        let city = pick_city_index(rng);
        let v6 = rng.chance(0.2);
        let home = addr.place(rng, Net::Residential, &HOME_CITIES[city], false, v6);
        // Co-living houses: a dozen remote workers of different employers on one residential line.
        let coliving = rng.chance(0.0005);
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
            let tenant = loop {
                let t = rng.index(self.tenants.len());
                if !used.contains(&t) || used.len() >= self.tenants.len() {
                    break t;
                }
            };
            used.push(tenant);
            let category = if coliving {
                "coliving"
            } else if size > 1 {
                "roommates"
            } else {
                "home"
            };
            let mut w = self.base_worker(rng, tenant, city, home.clone(), category);
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
                w.trip = Some(Trip {
                    start_day: rng.int(0, (days - 4).max(0) as u64) as i64,
                    days: rng.int(2, 4) as i64,
                    venue: rng.index(HOME_CITIES.len()),
                });
                w.category = "traveler";
            }
            w.personal_vpn = rng.chance(0.005);
            w.remote_tool = rng.chance(0.005).then(|| REMOTE_TOOLS[rng.index(REMOTE_TOOLS.len())]);
            w.usb = rng.chance(0.002).then_some(("1d6b", "0104", "Linux Foundation", "Multifunction Composite Gadget"));
            w.flaky = rng.chance(0.02);
            w.attested = !rng.chance(0.01);
            self.workers.push(w);
        }
    }

    fn plant_farm(&mut self, rng: &mut Rng, addr: &mut Addresses, cfg: &SimConfig) {
        let city = rng.index(20); // US cities
        let v6 = rng.chance(0.2);
        let house = addr.place(rng, Net::Residential, &HOME_CITIES[city], false, v6);
        let facilitator = match rng.f64() {
            x if x < 0.7 => Facilitator::Serial,
            x if x < 0.8 => Facilitator::Careful,
            _ => Facilitator::Remote,
        };
        let kvm = rng.chance(if facilitator == Facilitator::Remote { 0.6 } else { 0.2 });
        let remote_desktop = rng.chance(if facilitator == Facilitator::Remote { 0.7 } else { 0.3 });
        let reship = rng.chance(0.2).then(|| {
            let dest = &ABROAD[rng.index(ABROAD.len())];
            let via_vpn = rng.chance(0.5);
            let place = if via_vpn {
                self.exits[rng.index(self.exits.len())].clone()
            } else {
                addr.place(rng, Net::Residential, dest, true, false)
            };
            (rng.int(1, 3) as i64, rng.int(2, 4) as i64, place)
        });
        let farm = self.farms.len();
        self.farms.push(Farm { house: house.clone(), facilitator, reship });
        let size = rng.int(3, 9) as usize;
        let mut used = Vec::new();
        for _ in 0..size.min(cfg.workers - self.workers.len()) {
            let tenant = loop {
                let t = rng.index(self.tenants.len());
                if !used.contains(&t) || used.len() >= self.tenants.len() {
                    break t;
                }
            };
            used.push(tenant);
            let mut w = self.base_worker(rng, tenant, city, house.clone(), "farm");
            if rng.chance(0.4) {
                let c = &HOME_CITIES[rng.index(20)];
                w.declared = (c.lat, c.lon, c.country);
            }
            w.farm = Some(farm);
            w.remote_tool = (remote_desktop && rng.chance(0.9)).then(|| REMOTE_TOOLS[rng.index(REMOTE_TOOLS.len())]);
            w.usb = (kvm && rng.chance(0.7)).then(|| KVMS[rng.index(KVMS.len())]);
            self.workers.push(w);
        }
    }
}

fn pick_city_index(rng: &mut Rng) -> usize {
    let c = pick_city(rng, HOME_CITIES);
    HOME_CITIES.iter().position(|x| std::ptr::eq(x, c)).unwrap_or(0)
}
