//! Posture reports sent with presence answers: strict parsing and the check
//! that the hardware key signed them.
//!
//! The report is hashed exactly as received (the bytes are canonical by
//! definition: nothing is re-serialized before hashing), and the key must
//! have signed `tether_attestation::posture::bound_challenge(nonce, bytes)`
//! instead of the nonce. A report is self-reported by the agent; the binding
//! only guarantees that nobody between the device's key and tetherd (a relay,
//! a proxy, a second machine answering on its behalf) altered, added or
//! removed it.

use crate::domain::error::ApiError;
use serde_json::{Map, Value};
use tether_attestation::posture::{expected_challenge, is_invisible_format, posture_digest};
use tether_risk::event::{Lan, Posture, UsbDevice, UsbInterface};

/// Larger reports are refused before parsing.
pub const MAX_BYTES: usize = 64 * 1024;
const MAX_USB: usize = 128;
/// Interfaces per USB device (a composite KVM gadget has three or four).
const MAX_INTERFACES: usize = 16;
const MAX_PROCESSES: usize = 2048;
const MAX_DISPLAYS: usize = 16;
/// Longest string accepted anywhere in a report (characters).
const MAX_TEXT: usize = 256;

/// A posture report as received and parsed.
#[derive(Debug, Clone)]
pub struct Report {
    /// The bytes exactly as sent (what is hashed and stored).
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub digest_hex: String,
    pub posture: Posture,
}

impl Report {
    /// Parses `posture_json`; `None` when the field is empty.
    pub fn parse(bytes: &[u8]) -> Result<Option<Report>, ApiError> {
        if bytes.is_empty() {
            return Ok(None);
        }
        if bytes.len() > MAX_BYTES {
            return Err(invalid("", format!("is {} bytes; at most {MAX_BYTES} are accepted", bytes.len())));
        }
        let value =
            serde_json::from_slice::<StrictValue>(bytes).map_err(|e| invalid("", format!("is not valid JSON: {e}")))?.0;
        let posture = parse_posture(&value)?;
        Ok(Some(Report { bytes: bytes.to_vec(), digest_hex: hex::encode(posture_digest(bytes)), posture }))
    }
}

/// What the hardware key must have signed for an answer to `nonce` with this report.
pub fn expected(nonce: &[u8], report: Option<&Report>) -> Vec<u8> {
    expected_challenge(nonce, report.map(|r| r.bytes.as_slice()))
}

/// Why a signed challenge is not the expected one, when a posture report explains it.
/// `None` means the mismatch is not about posture (left to the signature check).
pub fn mismatch(nonce: &[u8], signed: &[u8], report: Option<&Report>) -> Option<String> {
    let report = report?;
    if signed == expected(nonce, Some(report)).as_slice() {
        return None;
    }
    Some(if signed == nonce {
        "tampered: a posture report was attached to an answer signed without one".into()
    } else {
        format!("tampered: the posture report (sha256 {}) is not the one the device's key signed", report.digest_hex)
    })
}

fn invalid(path: &str, problem: String) -> ApiError {
    ApiError::invalid(format!("posture_json{path} {problem}"))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value.as_object().ok_or_else(|| invalid(path, "must be a JSON object".into()))
}

fn only_keys(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(path, format!("has an unknown field {k:?} (known: {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

fn text(value: &Value, path: &str) -> Result<String, ApiError> {
    let s = value.as_str().ok_or_else(|| invalid(path, "must be a string".into()))?;
    if s.chars().count() > MAX_TEXT {
        return Err(invalid(path, format!("is longer than {MAX_TEXT} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(path, "contains control characters".into()));
    }
    // Invisible characters would let "\u{200b}kvmd" or a right-to-left override pass for
    // something else, both to the remote-control lists and to the analyst reading it.
    if let Some(c) = s.chars().find(|c| is_invisible_format(*c)) {
        return Err(invalid(path, format!("contains the invisible formatting character U+{:04X}", u32::from(c))));
    }
    Ok(s.to_string())
}

/// A JSON value that refuses an object naming one key twice (serde_json keeps the last,
/// so a report could say one thing to one reader and another to the next).
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((key, StrictValue(value))) = map.next_entry::<String, StrictValue>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("the field {key:?} appears twice")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn optional_text(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => text(v, &format!("{path}.{key}")).map(Some),
    }
}

fn list<'a>(map: &'a Map<String, Value>, key: &str, max: usize) -> Result<&'a [Value], ApiError> {
    let path = format!(".{key}");
    match map.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) if items.len() > max => {
            Err(invalid(&path, format!("has {} entries; at most {max} are accepted", items.len())))
        }
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(&path, "must be an array".into())),
    }
}

/// A USB id: four hex digits, optionally `0x`-prefixed.
fn usb_id(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = optional_text(map, key, path)? else { return Ok(None) };
    let id = raw.trim().trim_start_matches("0x").to_ascii_lowercase();
    if id.len() != 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            &format!("{path}.{key}"),
            format!("must be four hex digits such as \"1d6b\", not {raw:?}"),
        ));
    }
    Ok(Some(id))
}

/// A USB class, subclass or protocol number: 0 to 255.
fn byte(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u8>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(&format!("{path}.{key}"), format!("must be a number from 0 to 255, not {v}"))),
    }
}

/// `list` names the field from the report's top; inside a USB device, prefix the device's path.
fn nested(e: ApiError, path: &str) -> ApiError {
    match e {
        ApiError::InvalidArgument(m) => {
            ApiError::InvalidArgument(m.replacen("posture_json.", &format!("posture_json{path}."), 1))
        }
        other => other,
    }
}

/// A LAN hash: 64 hex digits (SHA-256), so raw MAC addresses never leave the device.
fn lan_hash(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    let path = ".lan";
    let Some(raw) = optional_text(map, key, path)? else { return Ok(None) };
    if raw.len() != 64 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(&format!("{path}.{key}"), "must be a hex SHA-256 (64 hex digits)".into()));
    }
    Ok(Some(raw.to_ascii_lowercase()))
}

fn parse_posture(value: &Value) -> Result<Posture, ApiError> {
    let map = object(value, "")?;
    only_keys(map, "", &["usb", "processes", "timezone", "displays", "lan"])?;
    let mut usb = Vec::new();
    for (i, item) in list(map, "usb", MAX_USB)?.iter().enumerate() {
        let path = format!(".usb[{i}]");
        let dev = object(item, &path)?;
        only_keys(dev, &path, &["vid", "pid", "manufacturer", "product", "serial", "interfaces"])?;
        let mut interfaces = Vec::new();
        for (j, item) in list(dev, "interfaces", MAX_INTERFACES).map_err(|e| nested(e, &path))?.iter().enumerate() {
            let path = format!("{path}.interfaces[{j}]");
            let iface = object(item, &path)?;
            only_keys(iface, &path, &["class", "subclass", "protocol"])?;
            interfaces.push(UsbInterface {
                class: byte(iface, "class", &path)?
                    .ok_or_else(|| invalid(&format!("{path}.class"), "is required".into()))?,
                subclass: byte(iface, "subclass", &path)?.unwrap_or(0),
                protocol: byte(iface, "protocol", &path)?.unwrap_or(0),
            });
        }
        usb.push(UsbDevice {
            vid: usb_id(dev, "vid", &path)?,
            pid: usb_id(dev, "pid", &path)?,
            manufacturer: optional_text(dev, "manufacturer", &path)?,
            product: optional_text(dev, "product", &path)?,
            serial: optional_text(dev, "serial", &path)?,
            interfaces,
        });
    }
    let strings = |key: &str, max: usize| -> Result<Vec<String>, ApiError> {
        list(map, key, max)?.iter().enumerate().map(|(i, v)| text(v, &format!(".{key}[{i}]"))).collect()
    };
    let processes = strings("processes", MAX_PROCESSES)?;
    let displays = strings("displays", MAX_DISPLAYS)?;
    let timezone = optional_text(map, "timezone", "")?;
    let lan = match map.get("lan") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let lan = object(v, ".lan")?;
            only_keys(lan, ".lan", &["gateway_mac_hash", "wifi_bssid_hash"])?;
            Some(Lan {
                gateway_mac_hash: lan_hash(lan, "gateway_mac_hash")?,
                wifi_bssid_hash: lan_hash(lan, "wifi_bssid_hash")?,
            })
        }
    };
    Ok(Posture { usb, processes, timezone, displays, lan })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        match Report::parse(json.as_bytes()) {
            Err(ApiError::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT for {json}, got {other:?}"),
        }
    }

    #[test]
    fn a_full_report_parses() {
        let json = r#"{"usb":[{"vid":"0x1D6B","pid":"0104","manufacturer":"PiKVM","product":"Composite KVM Device",
            "serial":"CAFEBABE","interfaces":[{"class":3,"subclass":1,"protocol":1},{"class":8}]}],
            "processes":["bash","rustdesk"],"timezone":"Europe/Berlin","displays":["DELL U2720Q"],
            "lan":{"gateway_mac_hash":"ab"}}"#
            .replace(r#""ab""#, &format!("\"{}\"", "AB".repeat(32)));
        let report = Report::parse(json.as_bytes()).unwrap().unwrap();
        assert_eq!(report.posture.usb[0].vid.as_deref(), Some("1d6b"));
        assert_eq!(report.posture.usb[0].serial.as_deref(), Some("CAFEBABE"));
        let classes: Vec<u8> = report.posture.usb[0].interfaces.iter().map(|i| i.class).collect();
        assert_eq!(classes, vec![3, 8]);
        assert_eq!(report.posture.lan.unwrap().gateway_mac_hash.unwrap(), "ab".repeat(32));
        assert_eq!(report.digest_hex.len(), 64);
        assert!(Report::parse(b"").unwrap().is_none());
    }

    #[test]
    fn garbage_is_refused_naming_the_field() {
        assert!(error("not json").contains("posture_json is not valid JSON"));
        assert!(error("[]").contains("posture_json must be a JSON object"));
        assert!(error(r#"{"usb":[{"vid":"xyz"}]}"#).contains("posture_json.usb[0].vid must be four hex digits"));
        assert!(error(r#"{"usb":{}}"#).contains("posture_json.usb must be an array"));
        assert!(error(r#"{"processes":[1]}"#).contains("posture_json.processes[0] must be a string"));
        assert!(error(r#"{"lan":{"gateway_mac_hash":"00:11"}}"#).contains("posture_json.lan.gateway_mac_hash"));
        assert!(error(r#"{"usb":[],"extra":1}"#).contains("unknown field \"extra\""));
        assert!(error(r#"{"usb":[{"color":"1"}]}"#).contains("posture_json.usb[0] has an unknown field"));
        assert!(
            error(r#"{"usb":[{"interfaces":[{"class":300}]}]}"#)
                .contains("posture_json.usb[0].interfaces[0].class must be a number from 0 to 255")
        );
        assert!(
            error(r#"{"usb":[{"interfaces":[{"protocol":1}]}]}"#).contains("usb[0].interfaces[0].class is required")
        );
        assert!(error(r#"{"usb":[{"interfaces":{}}]}"#).contains("posture_json.usb[0].interfaces must be an array"));
        let many = format!(r#"{{"displays":[{}]}}"#, vec!["\"d\""; 17].join(","));
        assert!(error(&many).contains("posture_json.displays has 17 entries"));
        let long = format!(r#"{{"timezone":"{}"}}"#, "x".repeat(300));
        assert!(error(&long).contains("posture_json.timezone is longer than"));
        assert!(error(&" ".repeat(MAX_BYTES + 1)).contains("at most 65536"));
    }

    /// Issue #13: a zero-width-prefixed "kvmd" was not matched by the remote-control lists,
    /// and a repeated key let one report read two ways.
    #[test]
    fn invisible_characters_and_repeated_keys_are_refused() {
        let zero_width = "{\"processes\":[\"\u{200b}kvmd\"]}";
        assert!(
            error(zero_width).contains("posture_json.processes[0] contains the invisible formatting character U+200B")
        );
        let escaped = r#"{"processes":["\u200bkvmd"]}"#;
        assert!(error(escaped).contains("U+200B"), "{}", error(escaped));
        let bidi = "{\"displays\":[\"DELL\u{202e}2720U\"]}";
        assert!(error(bidi).contains("U+202E"));
        assert!(error("{\"timezone\":\"\u{feff}UTC\"}").contains("U+FEFF"));
        assert!(error(r#"{"processes":["kvmd"],"processes":["bash"]}"#).contains("\"processes\" appears twice"));
        assert!(error(r#"{"lan":{"wifi_bssid_hash":null,"wifi_bssid_hash":null}}"#).contains("appears twice"));
        // Ordinary non-ASCII text is fine.
        assert!(Report::parse("{\"displays\":[\"Écran 27\"]}".as_bytes()).is_ok());
    }

    #[test]
    fn a_mismatch_is_explained_only_when_a_report_is_attached() {
        let nonce = [1u8; 32];
        let report = Report::parse(br#"{"usb":[]}"#).unwrap().unwrap();
        let signed = expected(&nonce, Some(&report));
        assert!(mismatch(&nonce, &signed, Some(&report)).is_none());
        assert!(mismatch(&nonce, &nonce, Some(&report)).unwrap().contains("signed without one"));
        let other = Report::parse(br#"{"usb": []}"#).unwrap().unwrap();
        assert!(mismatch(&nonce, &signed, Some(&other)).unwrap().contains("not the one the device's key signed"));
        assert!(mismatch(&nonce, &signed, None).is_none());
    }
}
