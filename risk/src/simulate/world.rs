//! The simulated population: cities, networks, tenants, households, workers and farms.

use super::rng::Rng;

pub struct City {
    #[allow(dead_code, reason = "names the coordinates for readers")]
    pub name: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub country: &'static str,
    /// Relative population weight.
    pub weight: u32,
}

macro_rules! cities {
    ($(($n:expr, $lat:expr, $lon:expr, $c:expr, $w:expr)),* $(,)?) => {
        &[$(City { name: $n, lat: $lat, lon: $lon, country: $c, weight: $w }),*]
    };
}

/// Where workers live (and farms sit).
pub const HOME_CITIES: &[City] = cities![
    ("New York", 40.71, -74.01, "US", 12),
    ("Los Angeles", 34.05, -118.24, "US", 9),
    ("Chicago", 41.88, -87.63, "US", 7),
    ("Houston", 29.76, -95.37, "US", 6),
    ("Phoenix", 33.45, -112.07, "US", 4),
    ("Philadelphia", 39.95, -75.17, "US", 4),
    ("San Antonio", 29.42, -98.49, "US", 3),
    ("San Diego", 32.72, -117.16, "US", 3),
    ("Dallas", 32.78, -96.80, "US", 5),
    ("Austin", 30.27, -97.74, "US", 4),
    ("Seattle", 47.61, -122.33, "US", 5),
    ("Denver", 39.74, -104.99, "US", 4),
    ("Boston", 42.36, -71.06, "US", 4),
    ("Atlanta", 33.75, -84.39, "US", 5),
    ("Miami", 25.76, -80.19, "US", 4),
    ("Minneapolis", 44.98, -93.27, "US", 3),
    ("Portland", 45.52, -122.68, "US", 3),
    ("Nashville", 36.16, -86.78, "US", 3),
    ("Detroit", 42.33, -83.05, "US", 3),
    ("Charlotte", 35.23, -80.84, "US", 3),
    ("Toronto", 43.65, -79.38, "CA", 4),
    ("Vancouver", 49.28, -123.12, "CA", 2),
    ("Montreal", 45.50, -73.57, "CA", 2),
    ("London", 51.51, -0.13, "GB", 5),
    ("Manchester", 53.48, -2.24, "GB", 2),
    ("Berlin", 52.52, 13.40, "DE", 3),
    ("Munich", 48.14, 11.58, "DE", 2),
    ("Paris", 48.86, 2.35, "FR", 3),
    ("Amsterdam", 52.37, 4.90, "NL", 2),
    ("Madrid", 40.42, -3.70, "ES", 2),
    ("Warsaw", 52.23, 21.01, "PL", 2),
    ("Dublin", 53.35, -6.26, "IE", 1),
    ("Stockholm", 59.33, 18.07, "SE", 1),
    ("Bangalore", 12.97, 77.59, "IN", 2),
    ("Sydney", -33.87, 151.21, "AU", 1),
    ("Singapore", 1.35, 103.82, "SG", 1),
    ("Sao Paulo", -23.55, -46.63, "BR", 1),
    ("Mexico City", 19.43, -99.13, "MX", 1),
];

/// Where reshipped farm laptops end up.
pub const ABROAD: &[City] = cities![
    ("Shenyang", 41.80, 123.43, "CN", 1),
    ("Dandong", 40.12, 124.38, "CN", 1),
    ("Vladivostok", 43.12, 131.89, "RU", 1),
];

pub fn local_offset_hours(lon: f64) -> i64 {
    (lon / 15.0).round() as i64
}

/// The kind of network behind a place (the sim's ground truth; events carry it as `geo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Residential,
    Business,
    Mobile,
    CorporateVpn,
    Anonymizer,
    Hosting,
}

/// A network attachment point: one public address (or IPv6 /64) with a location.
#[derive(Debug, Clone)]
pub struct Place {
    /// IPv4 as u32, or for IPv6 the /64 prefix index.
    pub addr: u32,
    pub v6: bool,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_km: f64,
    pub country: &'static str,
    pub asn: u32,
    pub net: Net,
    pub lan: Option<u64>,
}

/// Hands out addresses from disjoint blocks per network kind.
#[derive(Debug, Default)]
pub struct Addresses {
    next: [u32; 7],
}

impl Addresses {
    pub fn place(&mut self, rng: &mut Rng, net: Net, city: &City, abroad: bool, v6: bool) -> Place {
        let (block, slot): (u32, usize) = match (net, abroad) {
            (_, true) => (175, 5),
            (Net::Residential, _) => (24, 0),
            (Net::Business, _) => (64, 1),
            (Net::Mobile, _) => (107, 2),
            (Net::CorporateVpn, _) => (104, 3),
            (Net::Anonymizer, _) => (185, 4),
            (Net::Hosting, _) => (45, 6),
        };
        self.next[slot] += 1;
        let n = self.next[slot];
        let addr = (block << 24) | (n & 0x00FF_FFFF);
        let jitter = if net == Net::Residential { 0.08 } else { 0.02 };
        Place {
            addr,
            v6,
            lat: city.lat + rng.range(-jitter, jitter),
            lon: city.lon + rng.range(-jitter, jitter),
            accuracy_km: if net == Net::Mobile { 100.0 } else { 20.0 },
            country: city.country,
            asn: 64_512 + block * 10 + slot as u32,
            net,
            lan: matches!(net, Net::Residential | Net::Business).then(|| rng.next_u64()),
        }
    }
}

pub fn pick_city<'a>(rng: &mut Rng, cities: &'a [City]) -> &'a City {
    let total: u32 = cities.iter().map(|c| c.weight).sum();
    let mut x = rng.next_u64() % u64::from(total.max(1));
    for c in cities {
        if x < u64::from(c.weight) {
            return c;
        }
        x -= u64::from(c.weight);
    }
    &cities[0]
}
