//! `store::decision::decision_inputs` returns exactly the rows the seven
//! separate reads it replaced returned (issue #17), on SQLite and, when
//! TETHER_TEST_POSTGRES_URL is set, on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use tetherd::store::credentials::{self, Credential, Tier};
use tetherd::store::decision::decision_inputs;
use tetherd::store::flags::{self, FlagRecord};
use tetherd::store::inventory::{self, Device};
use tetherd::store::tenants::{self, Policy, Tenant};
use tetherd::store::{Store, StoreError};

const TENANT: &str = "ten_a";

fn credential(id: &str, device_id: &str, enrolled_at_ms: i64, ip: &str) -> Credential {
    Credential {
        id: id.into(),
        tenant_id: TENANT.into(),
        device_id: device_id.into(),
        worker_external_id: "alice".into(),
        kind: "fido2".into(),
        public_key_cose: vec![1, 2, 3],
        format: "packed".into(),
        attestation_type: "basic".into(),
        attested: true,
        tier: Tier::HardwareAttested,
        attestation_reason: String::new(),
        trust_anchor: String::new(),
        aaguid: String::new(),
        attestation_key_id: String::new(),
        sign_count: 0,
        enrolled_at_ms,
        enrolled_from_ip: ip.into(),
        revoked_at_ms: None,
        revoke_reason: None,
        last_presence_at_ms: None,
    }
}

fn flag(id: &str, kind: &str, severity: &str, status: &str, device_id: &str, worker: &str) -> FlagRecord {
    FlagRecord {
        id: id.into(),
        tenant_id: TENANT.into(),
        kind: kind.into(),
        severity: severity.into(),
        status: status.into(),
        device_id: device_id.into(),
        worker_external_id: worker.into(),
        credential_id: String::new(),
        session_id: String::new(),
        raised_at_ms: 1,
        evidence_json: "{}".into(),
    }
}

/// Tenant, worker alice, device dev_1 (hers) with three credentials (one revoked),
/// device dev_2 with none, and flags on dev_1, on alice, resolved and elsewhere.
async fn populate(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let tenant =
        Tenant { id: TENANT.into(), name: "A".into(), created_at_ms: 1, policy: Policy::new("a", "https://a") };
    tenants::insert(&mut tx, &tenant).await?;
    inventory::upsert_worker(&mut tx, TENANT, "alice", "Alice", 1).await?;
    for id in ["dev_1", "dev_2"] {
        let device = Device {
            id: id.into(),
            tenant_id: TENANT.into(),
            serial_number: format!("s-{id}"),
            model: "m".into(),
            asset_tag: String::new(),
            worker_external_id: Some("alice".into()),
            registered_at_ms: 1,
            revoked_at_ms: None,
            revoke_reason: None,
        };
        inventory::insert_device(&mut tx, &device).await?;
    }
    credentials::insert(&mut tx, &credential("cred_old", "dev_1", 10, "192.0.2.1")).await?;
    credentials::insert(&mut tx, &credential("cred_new", "dev_1", 20, "192.0.2.2")).await?;
    credentials::insert(&mut tx, &credential("cred_gone", "dev_1", 30, "192.0.2.3")).await?;
    credentials::revoke(&mut tx, TENANT, "cred_gone", "lost", 40).await?;
    flags::insert(&mut tx, &flag("f1", "shared_egress", "high", "open", "dev_1", "bob")).await?;
    flags::insert(&mut tx, &flag("f2", "impossible_travel", "review", "acknowledged", "dev_9", "alice")).await?;
    flags::insert(&mut tx, &flag("f3", "shared_egress", "high", "open", "dev_1", "alice")).await?;
    flags::insert(&mut tx, &flag("f4", "burst", "high", "resolved", "dev_1", "alice")).await?;
    flags::insert(&mut tx, &flag("f5", "burst", "high", "open", "dev_2", "carol")).await?;
    tx.commit().await?;
    Ok(())
}

async fn check(store: &Store) {
    populate(store).await.unwrap();

    // By device: every credential of the device in list_for_device's order, open flags of
    // the device or the worker once each, and the earliest active enrollment address.
    let by_device = decision_inputs(store, TENANT, "alice", "", "dev_1").await.unwrap();
    assert_eq!(by_device.worker.as_ref().map(|w| w.display_name.as_str()), Some("Alice"));
    assert_eq!(by_device.tenant.as_ref().map(|t| t.policy.rp_id.as_str()), Some("a"));
    assert_eq!(by_device.device.as_ref().map(|d| d.id.as_str()), Some("dev_1"));
    assert!(by_device.credential.is_none());
    let listed = credentials::list_for_device(store, TENANT, "dev_1").await.unwrap();
    assert_eq!(
        by_device.device_credentials.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(
        by_device.device_credentials.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["cred_new", "cred_old", "cred_gone"]
    );
    assert_eq!(by_device.device_credentials[2].revoked_at_ms, Some(40));
    let open = flags::open_kinds(store, TENANT, "dev_1", "alice").await.unwrap();
    assert_eq!(by_device.open_flags, open);
    assert_eq!(
        by_device.open_flags,
        [("impossible_travel".to_string(), "review".to_string()), ("shared_egress".into(), "high".into())]
    );
    assert_eq!(by_device.first_enrollment_ip.as_deref(), Some("192.0.2.1"));
    let first = inventory::first_enrollment_ip(store, TENANT, "alice").await.unwrap();
    assert_eq!(by_device.first_enrollment_ip, first);

    // By credential alone: the credential, its device, and no listing of the device's credentials.
    let by_credential = decision_inputs(store, TENANT, "alice", "cred_gone", "").await.unwrap();
    let named = by_credential.credential.unwrap();
    assert_eq!((named.id.as_str(), named.device_id.as_str(), named.revoked_at_ms), ("cred_gone", "dev_1", Some(40)));
    assert_eq!(by_credential.device.map(|d| d.id), Some("dev_1".to_string()));
    assert!(by_credential.device_credentials.is_empty());
    assert_eq!(by_credential.open_flags, open);

    // A named device wins over the credential's: the caller then refuses the mismatch.
    let mismatch = decision_inputs(store, TENANT, "alice", "cred_new", "dev_2").await.unwrap();
    assert_eq!(mismatch.credential.map(|c| c.device_id), Some("dev_1".to_string()));
    assert_eq!(mismatch.device.map(|d| d.id), Some("dev_2".to_string()));

    // Missing rows are None, never an error; another tenant's rows are not seen.
    let unknown = decision_inputs(store, TENANT, "nobody", "cred_none", "").await.unwrap();
    assert!(unknown.worker.is_none() && unknown.credential.is_none() && unknown.device.is_none());
    assert!(unknown.first_enrollment_ip.is_none());
    let elsewhere = decision_inputs(store, "ten_other", "alice", "", "dev_1").await.unwrap();
    assert!(elsewhere.worker.is_none() && elsewhere.device.is_none() && elsewhere.tenant.is_none());
    assert!(elsewhere.device_credentials.is_empty() && elsewhere.open_flags.is_empty());
}

#[tokio::test]
async fn the_one_statement_returns_what_the_separate_reads_returned_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    check(&store).await;
}

#[tokio::test]
async fn the_one_statement_returns_what_the_separate_reads_returned_on_postgres() {
    let Some(base) = common::postgres_base("decision_inputs") else { return };
    let url = common::fresh_database(&base, "decision_inputs", &[]).await;
    let store = Store::open(&url).await.unwrap();
    check(&store).await;
}
