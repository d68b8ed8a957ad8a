//! Flag evidence as a tenant may see it, and the locations it records.
//!
//! Cluster findings (shared egress, presence bursts) are computed across
//! tenants and their evidence lists every member. A tenant's report must
//! show how big the cluster is, never who the other employers' workers and
//! devices are: members of other tenants are dropped and counted, and their
//! device ids are masked wherever else they appear.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;

const MASK: &str = "(another tenant's device)";

/// `evidence` with other tenants' members removed.
pub fn redact(evidence: &Value, tenant_id: &str) -> Value {
    let mut foreign = HashSet::new();
    collect_foreign(evidence, tenant_id, &mut foreign);
    strip(evidence, tenant_id, &foreign)
}

/// Parses stored evidence; text that is not JSON is kept as a string.
pub fn parse(evidence_json: &str) -> Value {
    if evidence_json.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(evidence_json).unwrap_or_else(|_| Value::String(evidence_json.to_string()))
}

fn member_tenant(object: &Map<String, Value>) -> Option<&str> {
    match (object.get("tenant"), object.get("device")) {
        (Some(Value::String(tenant)), Some(_)) => Some(tenant),
        _ => None,
    }
}

fn collect_foreign(value: &Value, tenant_id: &str, out: &mut HashSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(tenant) = member_tenant(map)
                && tenant != tenant_id
                && let Some(Value::String(device)) = map.get("device")
            {
                out.insert(device.clone());
            }
            map.values().for_each(|v| collect_foreign(v, tenant_id, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_foreign(v, tenant_id, out)),
        _ => {}
    }
}

fn strip(value: &Value, tenant_id: &str, foreign: &HashSet<String>) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                if let Value::Array(items) = v {
                    let keep: Vec<Value> = items
                        .iter()
                        .filter(|item| item.as_object().and_then(member_tenant).is_none_or(|t| t == tenant_id))
                        .map(|item| strip(item, tenant_id, foreign))
                        .collect();
                    let dropped = items.len() - keep.len();
                    if dropped > 0 {
                        out.insert(format!("{key}_other_tenants"), Value::from(dropped));
                    }
                    out.insert(key.clone(), Value::Array(keep));
                } else {
                    out.insert(key.clone(), strip(v, tenant_id, foreign));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| strip(v, tenant_id, foreign)).collect()),
        Value::String(s) if foreign.contains(s) => Value::String(MASK.into()),
        other => other.clone(),
    }
}

/// Where the risk engine placed an address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_km: Option<f64>,
    pub country: Option<String>,
}

/// Every `{ip, lat, lon, ...}` location recorded in the evidence.
pub fn locations(evidence: &Value, out: &mut Vec<(String, GeoPoint)>) {
    match evidence {
        Value::Object(map) => {
            if let (Some(Value::String(ip)), Some(lat), Some(lon)) =
                (map.get("ip"), map.get("lat").and_then(Value::as_f64), map.get("lon").and_then(Value::as_f64))
            {
                out.push((
                    ip.clone(),
                    GeoPoint {
                        lat,
                        lon,
                        accuracy_km: map.get("accuracy_km").and_then(Value::as_f64),
                        country: map.get("country").and_then(Value::as_str).map(str::to_string),
                    },
                ));
            }
            map.values().for_each(|v| locations(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| locations(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn other_tenants_members_are_dropped_and_masked() {
        let evidence = json!({
            "egress": "203.0.113.7", "tenants": 2,
            "members": [{"tenant": "t1", "worker": "w1", "device": "d1"}, {"tenant": "t2", "worker": "w9", "device": "d9"}],
            "recent_rounds": [{"answers": [{"device": "d9", "after_secs": 3.0}, {"device": "d1"}]}],
        });
        let seen = redact(&evidence, "t1");
        assert_eq!(seen["members"], json!([{"tenant": "t1", "worker": "w1", "device": "d1"}]));
        assert_eq!(seen["members_other_tenants"], 1);
        assert_eq!(seen["tenants"], 2);
        assert_eq!(seen["recent_rounds"][0]["answers"][0]["device"], MASK);
        assert_eq!(seen["recent_rounds"][0]["answers"][1]["device"], "d1");
        assert!(!seen.to_string().contains("w9") && !seen.to_string().contains("\"d9\""));
    }

    #[test]
    fn locations_are_found_anywhere() {
        let evidence = json!({"from": {"ip": "127.0.1.5", "lat": 40.7, "lon": -74.0, "accuracy_km": 20.0, "country": "US"},
                              "to": {"ip": "127.0.2.5", "lat": 6.4, "lon": 3.4}});
        let mut out = Vec::new();
        locations(&evidence, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "127.0.1.5");
        assert_eq!(out[0].1.country.as_deref(), Some("US"));
        assert_eq!(out[1].1.accuracy_km, None);
    }
}
