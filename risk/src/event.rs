//! Typed events the risk engine consumes, and their JSON Lines form (the
//! `tether analyze` input contract).

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Millis;
use super::geo::Geo;

/// One thing that happened to a device: it enrolled, answered (or missed) a
/// presence challenge, or a gateway asked for access.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened (Unix epoch milliseconds).
    pub at: Millis,
    pub tenant: String,
    pub worker: String,
    pub device: String,
    /// The source address as the service saw it (IPv4-mapped IPv6 is canonicalized).
    pub ip: IpAddr,
    /// Location and network, when the caller already knows them; otherwise the
    /// engine's [`Enricher`](super::geo::Enricher) is asked.
    pub geo: Option<Geo>,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    Enrollment(Enrollment),
    Presence(Presence),
    Session(Session),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Enrollment {
    pub attested: bool,
    pub format: Option<String>,
    pub home: Option<Home>,
    /// A stable hash of the hardware behind the credential: a TPM's EK public
    /// key, or the authenticator's attestation certificate or credential key.
    /// Attested enrollments only vouch for it (see `shared_hardware`).
    pub hardware: Option<String>,
}

/// A worker's home as declared (or as the enrollment located it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Home {
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub country: Option<String>,
}

impl Home {
    /// The home when it is a place on Earth: finite, |lat| ≤ 90, |lon| ≤ 180.
    pub fn checked(self) -> Result<Self, String> {
        let on_earth =
            self.lat.is_finite() && self.lon.is_finite() && self.lat.abs() <= 90.0 && self.lon.abs() <= 180.0;
        if on_earth {
            Ok(self)
        } else {
            Err(format!("`home` is not a place on Earth: lat {}, lon {}", self.lat, self.lon))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Missed,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    pub outcome: Outcome,
    pub issued_at: Option<Millis>,
    /// `None` when missed.
    pub answered_at: Option<Millis>,
    pub sign_count: Option<u64>,
    pub tpm: Option<TpmClock>,
    pub posture: Option<Posture>,
    /// The challenge was a probe (issued to a whole cluster at once): a miss
    /// then counts in its round for `presence_burst`. `"probe": true` in logs.
    pub probe: bool,
}

/// TPM clock information from a quote (`TPMS_CLOCK_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TpmClock {
    #[serde(default)]
    pub clock: Option<u64>,
    #[serde(default)]
    pub reset_count: Option<u32>,
    #[serde(default)]
    pub restart_count: Option<u32>,
}

/// The agent's posture report, signed together with the presence answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Posture {
    #[serde(default)]
    pub usb: Vec<UsbDevice>,
    #[serde(default)]
    pub processes: Vec<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub displays: Vec<String>,
    #[serde(default)]
    pub lan: Option<Lan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsbDevice {
    #[serde(default, deserialize_with = "usb_id")]
    pub vid: Option<String>,
    #[serde(default, deserialize_with = "usb_id")]
    pub pid: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The device's USB interfaces (from sysfs `bInterfaceClass` and friends):
    /// what a gadget is made of, which a spoofed vendor id does not change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<UsbInterface>,
}

/// One USB interface: class, subclass and protocol as the USB-IF numbers them
/// (HID is class 3; boot keyboard protocol 1, boot mouse protocol 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UsbInterface {
    pub class: u8,
    #[serde(default)]
    pub subclass: u8,
    #[serde(default)]
    pub protocol: u8,
}

/// Hashed identifiers of the local network: the same hash on two devices is
/// close to proof that they sit on one LAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Lan {
    #[serde(default)]
    pub gateway_mac_hash: Option<String>,
    #[serde(default)]
    pub wifi_bssid_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    pub gateway: Option<String>,
}

/// USB ids are written as hex strings (`"1d6b"`, `"0x1d6b"`) or as numbers.
fn usb_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u16),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Text(s) => s.trim().trim_start_matches("0x").to_ascii_lowercase(),
        Id::Number(n) => format!("{n:04x}"),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum EventType {
    Enrollment,
    Presence,
    Session,
}

/// The wire form of one line; unknown fields are ignored so that logs can carry more.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: EventType,
    /// Times and the address are only parsed, so they borrow from the line when they can.
    #[serde(borrow)]
    at: Cow<'a, str>,
    tenant: String,
    worker: String,
    device: String,
    #[serde(borrow)]
    ip: Cow<'a, str>,
    #[serde(default)]
    geo: Option<Geo>,
    #[serde(default)]
    attested: Option<bool>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    home: Option<Home>,
    #[serde(default)]
    hardware: Option<String>,
    #[serde(default)]
    outcome: Option<Outcome>,
    #[serde(default, borrow)]
    issued_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    answered_at: Option<Cow<'a, str>>,
    #[serde(default)]
    sign_count: Option<u64>,
    #[serde(default)]
    tpm: Option<TpmClock>,
    #[serde(default)]
    posture: Option<Posture>,
    #[serde(default)]
    probe: bool,
    #[serde(default)]
    gateway: Option<String>,
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_time(field: &str, text: &str) -> Result<Millis, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("`{field}` is not an RFC 3339 time ({e}): {text:?}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("`{field}` is out of range: {text:?}"))
}

/// Formats epoch milliseconds as RFC 3339 (UTC).
pub fn format_time(at: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

impl Event {
    /// Parses one JSON Lines event; the error is a sentence naming the problem.
    pub fn from_json(line: &str) -> Result<Self, String> {
        let raw: RawEvent = serde_json::from_str(line).map_err(|e| format!("not a valid event: {e}"))?;
        raw.into_event(true)
    }

    /// As [`Event::from_json`], but accepts empty ids: the service records
    /// events of devices that have no worker, and replays them as they were.
    pub fn from_stored_json(line: &str) -> Result<Self, String> {
        let raw: RawEvent = serde_json::from_str(line).map_err(|e| format!("not a valid event: {e}"))?;
        raw.into_event(false)
    }

    /// The JSON Lines form [`Event::from_json`] reads back to an equal event
    /// (times keep their milliseconds): how replicas share what they evaluated.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "at": format_time(self.at),
            "tenant": self.tenant,
            "worker": self.worker,
            "device": self.device,
            "ip": self.ip.to_string(),
        });
        let time = |t: Option<Millis>| t.map(format_time);
        let body = match &self.body {
            EventBody::Enrollment(e) => serde_json::json!({
                "type": "enrollment", "attested": e.attested, "format": e.format, "home": e.home,
                "hardware": e.hardware,
            }),
            EventBody::Presence(p) => {
                let mut v = serde_json::json!({
                    "type": "presence", "outcome": p.outcome, "issued_at": time(p.issued_at),
                    "answered_at": time(p.answered_at), "sign_count": p.sign_count, "tpm": p.tpm, "posture": p.posture,
                });
                if let (true, Some(map)) = (p.probe, v.as_object_mut()) {
                    map.insert("probe".into(), true.into());
                }
                v
            }
            EventBody::Session(s) => serde_json::json!({"type": "session", "gateway": s.gateway}),
        };
        if let (Some(map), serde_json::Value::Object(body)) = (v.as_object_mut(), body) {
            map.extend(body);
            if let Some(geo) = &self.geo {
                map.insert("geo".into(), serde_json::json!(geo));
            }
        }
        v
    }
}

impl RawEvent<'_> {
    fn into_event(self, require_ids: bool) -> Result<Event, String> {
        let at = parse_time("at", &self.at)?;
        let ip: IpAddr = self.ip.trim().parse().map_err(|_| format!("`ip` is not an IP address: {:?}", self.ip))?;
        let optional_time =
            |field: &str, value: &Option<Cow<str>>| value.as_deref().map(|v| parse_time(field, v)).transpose();
        let body = match self.kind {
            EventType::Enrollment => EventBody::Enrollment(Enrollment {
                attested: self.attested.ok_or("an enrollment needs `attested` (true or false)")?,
                format: self.format,
                home: self.home.map(Home::checked).transpose()?,
                hardware: self.hardware.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
            }),
            EventType::Presence => {
                let outcome = self.outcome.ok_or("a presence event needs `outcome` (ok, missed or failed)")?;
                let answered_at = optional_time("answered_at", &self.answered_at)?;
                if outcome == Outcome::Ok && answered_at.is_none() {
                    return Err("a presence event with outcome ok needs `answered_at`".into());
                }
                EventBody::Presence(Presence {
                    outcome,
                    issued_at: optional_time("issued_at", &self.issued_at)?,
                    answered_at,
                    sign_count: self.sign_count,
                    tpm: self.tpm,
                    posture: self.posture,
                    probe: self.probe,
                })
            }
            EventType::Session => EventBody::Session(Session { gateway: self.gateway }),
        };
        for (name, value) in [("tenant", &self.tenant), ("worker", &self.worker), ("device", &self.device)] {
            if require_ids && value.is_empty() {
                return Err(format!("`{name}` is empty"));
            }
        }
        Ok(Event {
            at,
            tenant: self.tenant,
            worker: self.worker,
            device: self.device,
            ip: ip.to_canonical(),
            geo: self.geo,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_form_reads_back_to_the_same_event() {
        let lines = [
            r#"{"type":"presence","at":"2026-01-05T09:00:00.123Z","tenant":"t","worker":"w","device":"d",
               "ip":"203.0.113.7","outcome":"ok","issued_at":"2026-01-05T08:59:59.001Z",
               "answered_at":"2026-01-05T09:00:00.123Z","sign_count":7,"tpm":{"clock":5,"reset_count":1},
               "posture":{"usb":[{"vid":"1D6B","pid":"0x0104","product":"KVM","serial":"CAFEBABE",
               "interfaces":[{"class":3,"subclass":1,"protocol":1},{"class":8}]}],"processes":["kvmd"],
               "lan":{"gateway_mac_hash":"ab"}},"geo":{"lat":1.5,"lon":2.5,"country":"DE"}}"#,
            r#"{"type":"presence","at":"2026-01-05T09:00:00Z","tenant":"t","worker":"w","device":"d",
               "ip":"0.0.0.0","outcome":"missed","issued_at":"2026-01-05T08:59:00Z"}"#,
            r#"{"type":"presence","at":"2026-01-05T09:00:00Z","tenant":"t","worker":"w","device":"d",
               "ip":"0.0.0.0","outcome":"missed","issued_at":"2026-01-05T08:59:00Z","probe":true}"#,
            r#"{"type":"enrollment","at":"2026-01-05T09:00:00Z","tenant":"t","worker":"w","device":"d",
               "ip":"::1","attested":true,"format":"packed","home":{"lat":1.0,"lon":2.0,"country":"US"},
               "hardware":"ab12"}"#,
            r#"{"type":"session","at":"2026-01-05T09:00:00.999Z","tenant":"t","worker":"w","device":"d",
               "ip":"2001:db8::1","gateway":"vpn"}"#,
        ];
        for line in lines {
            let event = Event::from_json(line).unwrap();
            let again = Event::from_json(&event.to_json().to_string()).unwrap();
            assert_eq!(again, event, "{line}");
        }
    }

    #[test]
    fn stored_events_may_lack_a_worker() {
        let line = r#"{"type":"session","at":"2026-01-05T09:00:00Z","tenant":"t","worker":"","device":"d",
            "ip":"127.0.0.1","gateway":"vpn"}"#;
        assert!(Event::from_json(line).is_err());
        assert_eq!(Event::from_stored_json(line).unwrap().worker, "");
    }
}
