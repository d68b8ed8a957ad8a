//! The farm view's reads over a real SQLite store: a device's answers in one
//! day (oldest first, only `ok`, only this tenant's, cut and counted), and
//! `reports::farms` putting a cluster's own devices' answers in its rows.

use tetherd::domain::reports::{self, TimeWindow};
use tetherd::store::flags::{self, FlagRecord};
use tetherd::store::presence::{self, PresenceEvent};
use tetherd::store::tenants::{self, Policy, Tenant};
use tetherd::store::{Store, Tx};

const DAY: i64 = 86_400_000;
const START: i64 = 1_796_601_600_000;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for id in ["t1", "t2"] {
        let tenant = Tenant {
            id: id.into(),
            name: id.into(),
            created_at_ms: 0,
            policy: Policy::new("x.test", "https://x.test"),
        };
        tenants::insert(&mut tx, &tenant).await.unwrap();
    }
    tx.commit().await.unwrap();
    (dir, store)
}

async fn event(tx: &mut Tx, id: &str, tenant: &str, device: &str, outcome: &str, at_ms: i64) {
    let e = PresenceEvent {
        id: id.into(),
        tenant_id: tenant.into(),
        outcome: outcome.into(),
        device_id: device.into(),
        worker_external_id: format!("w-{device}"),
        credential_id: String::new(),
        challenge_id: format!("ch_{id}"),
        at_ms,
        source_ip: "127.0.0.1".into(),
        detail: String::new(),
    };
    presence::insert_event(tx, &e).await.unwrap();
}

async fn seed(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    for i in 0..5 {
        event(&mut tx, &format!("e{i}"), "t1", "d1", "ok", START + 1_000 * (5 - i)).await;
    }
    event(&mut tx, "failed", "t1", "d1", "failed", START + 500).await;
    event(&mut tx, "before", "t1", "d1", "ok", START - 1).await;
    event(&mut tx, "after", "t1", "d1", "ok", START + DAY).await;
    // Another tenant's device with the same id: never this tenant's answer.
    event(&mut tx, "theirs", "t2", "d1", "ok", START + 700).await;
    event(&mut tx, "d2", "t1", "d2", "ok", START + 9_000).await;
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_devices_answers_in_a_day_are_its_own_ok_answers_oldest_first_cut_and_counted() {
    let (_dir, store) = store().await;
    seed(&store).await;
    let (all, total) = presence::answers_of_device(&store, "t1", "d1", START, START + DAY, 10).await.unwrap();
    let times: Vec<i64> = all.iter().map(|a| a.answered_at_ms - START).collect();
    assert_eq!(times, [1_000, 2_000, 3_000, 4_000, 5_000], "ok only, inside [start, start + day), oldest first");
    assert_eq!(total, 5);
    assert!(all.iter().all(|a| a.issued_at_ms.is_none()), "no challenge row, no issue time");
    let (cut, total) = presence::answers_of_device(&store, "t1", "d1", START, START + DAY, 3).await.unwrap();
    assert_eq!((cut.len(), total), (3, 5), "cut at the limit, counted in full");
    assert_eq!(cut[0].answered_at_ms, START + 1_000);
}

#[tokio::test]
async fn the_farm_view_draws_each_own_member_of_a_cluster() {
    let (_dir, store) = store().await;
    seed(&store).await;
    let evidence = serde_json::json!({
        "egress": "198.51.100.7", "tenants": 2, "members_total": 3,
        "members": [
            {"tenant": "t1", "worker": "w-d1", "device": "d1"},
            {"tenant": "t1", "worker": "w-d2", "device": "d2"},
            {"tenant": "t2", "worker": "w-x", "device": "dx"},
        ],
    });
    let mut tx = store.begin().await.unwrap();
    let flag = FlagRecord {
        id: "flg_1".into(),
        tenant_id: "t1".into(),
        kind: "shared_egress".into(),
        severity: "review".into(),
        status: "open".into(),
        device_id: "d1".into(),
        worker_external_id: "w-d1".into(),
        credential_id: String::new(),
        session_id: String::new(),
        raised_at_ms: START + DAY - 10,
        evidence_json: evidence.to_string(),
    };
    flags::insert(&mut tx, &flag).await.unwrap();
    // Resolved flags are not in the view.
    let resolved = FlagRecord {
        id: "flg_2".into(),
        status: "resolved".into(),
        evidence_json: serde_json::json!({"egress": "203.0.113.1"}).to_string(),
        ..flag.clone()
    };
    flags::insert(&mut tx, &resolved).await.unwrap();
    tx.commit().await.unwrap();

    let day = TimeWindow { since_ms: START, until_ms: START + DAY };
    let view = reports::farms(&store, "t1", START + DAY, day).await.unwrap();
    assert_eq!(view.farms.len(), 1, "{view:?}");
    let farm = &view.farms[0];
    assert_eq!((farm.farm.key.as_str(), farm.farm.suspected), ("198.51.100.7", false));
    let rows: Vec<(&str, usize, i64)> =
        farm.rows.iter().map(|r| (r.member.device_id.as_str(), r.answers.len(), r.total)).collect();
    assert_eq!(rows, [("d1", 5, 5), ("d2", 1, 1)]);
    assert_eq!((farm.farm.other_devices, farm.farm.other_tenants), (1, 1));
    let theirs = reports::farms(&store, "t2", START + DAY, day).await.unwrap();
    assert!(theirs.farms.is_empty(), "t2 has no flag here: {theirs:?}");
}
