//! Locations, distances and IP enrichment (MaxMind-format databases).

use std::net::IpAddr;

use maxminddb::{Reader, geoip2};
use serde::{Deserialize, Serialize};

/// Where an address is and what network it belongs to. Every field is optional:
/// a country-only database gives no coordinates, an ASN database no location.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Geo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_km: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_class: Option<NetworkClass>,
}

impl Geo {
    /// Coordinates, when both are present and sane.
    pub fn point(&self) -> Option<(f64, f64)> {
        match (self.lat, self.lon) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0 => {
                Some((lat, lon))
            }
            _ => None,
        }
    }

    pub fn accuracy(&self) -> f64 {
        self.accuracy_km.filter(|a| a.is_finite() && *a >= 0.0).unwrap_or(0.0)
    }
}

/// Operator-assigned network classes (plus what enrichment may report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkClass {
    CorporateVpn,
    Hosting,
    Anonymizer,
    Mobile,
    Residential,
    Business,
    #[serde(other)]
    Other,
}

impl NetworkClass {
    /// Networks where many unrelated people legitimately share an address.
    pub fn is_shared_by_design(self) -> bool {
        matches!(self, Self::CorporateVpn | Self::Mobile)
    }

    /// Networks where a shared address says nothing about co-location
    /// (`shared_egress` ignores them).
    pub fn skips_shared_egress(self) -> bool {
        matches!(self, Self::CorporateVpn | Self::Mobile | Self::Hosting | Self::Anonymizer)
    }

    /// Networks whose geolocation says nothing about where the device is.
    pub fn hides_location(self) -> bool {
        matches!(self, Self::CorporateVpn | Self::Hosting | Self::Anonymizer)
    }

    pub fn is_anonymizing(self) -> bool {
        matches!(self, Self::Hosting | Self::Anonymizer)
    }
}

/// Great-circle distance in kilometres.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// IP → location and network. Implementations must be cheap and must not block.
pub trait Enricher: Send + Sync {
    fn lookup(&self, ip: IpAddr) -> Option<Geo>;
    /// False when no database is configured: geo signals are then off unless
    /// events carry `geo` themselves.
    fn enabled(&self) -> bool;
}

/// No databases: only events that carry `geo` are located.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEnricher;

impl Enricher for NoEnricher {
    fn lookup(&self, _ip: IpAddr) -> Option<Geo> {
        None
    }
    fn enabled(&self) -> bool {
        false
    }
}

/// GeoIP2/GeoLite2 City and ASN databases (or DB-IP/IPinfo files in the same
/// layout), given as bytes so that the engine does no I/O.
pub struct MmdbEnricher {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl MmdbEnricher {
    pub fn from_bytes(city: Option<Vec<u8>>, asn: Option<Vec<u8>>) -> Result<Self, String> {
        let open = |name: &str, bytes: Option<Vec<u8>>| {
            bytes
                .map(|b| {
                    Reader::from_source(b).map_err(|e| format!("the {name} database is not a valid MMDB file: {e}"))
                })
                .transpose()
        };
        Ok(Self { city: open("city", city)?, asn: open("ASN", asn)? })
    }
}

impl Enricher for MmdbEnricher {
    fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let ip = ip.to_canonical();
        let mut geo = Geo::default();
        let mut found = false;
        if let Some(city) = self.city.as_ref().and_then(|r| r.lookup(ip).ok()?.decode::<geoip2::City>().ok()?) {
            geo.lat = city.location.latitude;
            geo.lon = city.location.longitude;
            geo.accuracy_km = city.location.accuracy_radius.map(f64::from);
            geo.country = city.country.iso_code.map(str::to_owned);
            found = true;
        }
        if let Some(asn) = self.asn.as_ref().and_then(|r| r.lookup(ip).ok()?.decode::<geoip2::Asn>().ok()?) {
            geo.asn = asn.autonomous_system_number;
            found = true;
        }
        found.then_some(geo)
    }

    fn enabled(&self) -> bool {
        self.city.is_some() || self.asn.is_some()
    }
}
