use super::*;
use serde_json::json;

fn flag(kind: &str, severity: &str, device: &str, worker: &str, at: i64, evidence: Value) -> FlagRecord {
    FlagRecord {
        id: format!("flg_{device}_{kind}_{at}"),
        tenant_id: "t1".into(),
        kind: kind.into(),
        severity: severity.into(),
        status: "open".into(),
        device_id: device.into(),
        worker_external_id: worker.into(),
        credential_id: String::new(),
        session_id: String::new(),
        raised_at_ms: at,
        evidence_json: evidence.to_string(),
    }
}

fn member(tenant: &str, worker: &str, device: &str) -> Value {
    json!({"tenant": tenant, "worker": worker, "device": device})
}

#[test]
fn a_sweep_cluster_is_a_suspected_farm_with_its_own_devices_named_and_others_counted() {
    let sweep = |device: &str| {
        json!({
            "egress": "127.0.0.1",
            "device": member("t1", "w-a", device),
            "recent_sweeps": [{"answers": [member("t1", "w-a", "d1"), member("t1", "w-b", "d2"), member("t2", "x", "d9")]}],
        })
    };
    let egress = json!({
        "egress": "127.0.0.1", "tenants": 2, "members_total": 4,
        "members": [member("t1", "w-a", "d1"), member("t1", "w-b", "d2"), member("t2", "x", "d9")],
    });
    let flags = vec![
        flag("presence_burst", "high", "d1", "w-a", 5_000, sweep("d1")),
        flag("shared_egress", "review", "d2", "w-b", 2_000, egress),
        // Another tenant's row never reaches the view, even if a caller passed it.
        FlagRecord { tenant_id: "t2".into(), ..flag("presence_burst", "high", "d9", "x", 6_000, sweep("d9")) },
    ];
    let farms = group(&flags, "t1");
    assert_eq!(farms.len(), 1, "{farms:?}");
    let farm = &farms[0];
    assert_eq!(farm.key, "127.0.0.1");
    assert!(farm.suspected);
    assert_eq!(farm.signals, vec!["presence_burst: one hand answering for several laptops".to_string()]);
    assert_eq!(farm.kinds, vec![("presence_burst".into(), "high".into()), ("shared_egress".into(), "review".into())]);
    assert_eq!(farm.highest_severity, "high");
    let own: Vec<(&str, &str)> =
        farm.own.iter().map(|m| (m.device_id.as_str(), m.worker_external_id.as_str())).collect();
    assert_eq!(own, vec![("d1", "w-a"), ("d2", "w-b")]);
    // members_total 4 minus our 2 exceeds the one foreign member listed.
    assert_eq!((farm.other_devices, farm.other_tenants), (2, 1));
    assert_eq!((farm.first_seen_ms, farm.last_seen_ms), (2_000, 5_000));
    assert!(!format!("{farm:?}").contains("d9"), "another tenant's device id leaked: {farm:?}");
}

#[test]
fn clusters_without_farm_signals_are_listed_after_farms_and_lone_suspects_are_farms_of_one() {
    let egress = |key: &str| json!({"egress": key, "tenants": 1, "members_total": 3});
    let flags = vec![
        flag("shared_egress", "review", "d1", "w-a", 9_000, egress("198.51.100.7")),
        flag("shared_egress", "info", "d2", "w-b", 8_000, egress("198.51.100.8")),
        flag("remote_control", "high", "d3", "w-c", 1_000, json!({"usb": "NanoKVM"})),
        // Review-level remote control is not a farm signal on its own.
        flag("remote_control", "review", "d4", "w-d", 9_500, json!({"process": "anydesk"})),
    ];
    let farms = group(&flags, "t1");
    let keys: Vec<(&str, bool)> = farms.iter().map(|f| (f.key.as_str(), f.suspected)).collect();
    assert_eq!(keys, vec![("", true), ("198.51.100.7", false), ("198.51.100.8", false)]);
    assert_eq!(farms[0].own[0].device_id, "d3");
    assert_eq!(farms[0].signals, vec!["remote_control: KVM-over-IP hardware".to_string()]);
    assert_eq!(farms[1].other_devices, 2, "members_total counts the other members");
}

#[test]
fn a_persistent_cluster_mark_comes_from_the_evidence() {
    let evidence = json!({"egress": "203.0.113.9", "tenants": 3, "farm_cluster": "persistent residential cluster"});
    let farms = group(&[flag("shared_egress", "high", "d1", "w-a", 1, evidence)], "t1");
    assert_eq!(farms[0].signals, vec!["shared_egress: cross-employer residential cluster persisting for days"]);
    assert_eq!(farms[0].other_tenants, 2);
}
