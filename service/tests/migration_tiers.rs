//! Migration 18 gives every existing credential the tier its stored attestation facts imply,
//! and every existing tenant the tier policy that keeps its old `allow_unattested` behaviour.
//! The database is built with migrations 1-17 exactly as shipped, rows are written the way the
//! older release wrote them, then opening a Store applies 18.
#![allow(clippy::unwrap_used)]

mod common;

use sqlx::AnyPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;
use tetherd::store::credentials::{self, Tier};
use tetherd::store::tenants::{self, Enforcement, TierAction};
use tetherd::store::{Backend, Store};

/// The shipped migrations of `backend` before version 18, read from the source tree.
fn migrations_before_18(backend: &str) -> Vec<Migration> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let version: i64 = name.split('_').next()?.parse().ok()?;
            (version < 18).then(|| {
                let sql = std::fs::read_to_string(&path).unwrap();
                Migration::new(
                    version,
                    Cow::Owned(name),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
                    false,
                )
            })
        })
        .collect()
}

/// Two tenants (one allowing unattested credentials) and the four kinds of credential an older
/// release could store.
async fn seed_release_17(url: &str, backend: Backend) {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.unwrap();
    let name = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    Migrator::with_migrations(migrations_before_18(name)).run(&pool).await.unwrap();
    for (id, allow) in [("ten_closed", 0_i64), ("ten_open", 1)] {
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at_ms, rp_id, origin, allow_unattested) \
             VALUES ($1, $1, 1, 'example.com', 'https://example.com', $2)",
        )
        .bind(id)
        .bind(allow)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, serial_number, model, registered_at_ms) VALUES ($1, $2, 's', 'm', 1)",
        )
        .bind(format!("dev_{id}"))
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    let rows = [
        ("webauthn_attested", "webauthn", "packed", "basic", 1_i64),
        ("webauthn_self", "webauthn", "packed", "self", 0),
        ("tpm_no_ek_certificate", "tpm-ak", "tpm", "attca", 0),
        ("tpm_attested", "tpm-ak", "tpm", "attca", 1),
    ];
    for (id, kind, format, attestation_type, attested) in rows {
        sqlx::query(
            "INSERT INTO credentials (id, tenant_id, device_id, worker_external_id, kind, public_key_cose, format, \
             attestation_type, attested, attestation_reason, trust_anchor, aaguid, sign_count, enrolled_at_ms, \
             enrolled_from_ip) VALUES ($1, 'ten_open', 'dev_ten_open', 'w', $2, $3, $4, $5, $6, '', '', '', 0, 1, \
             '127.0.0.1')",
        )
        .bind(id)
        .bind(kind)
        .bind(vec![1_u8])
        .bind(format)
        .bind(attestation_type)
        .bind(attested)
        .bind(if attested == 1 { "" } else { "not attested" })
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

async fn assert_backfilled(store: &Store) {
    for (id, tier) in [
        ("webauthn_attested", Tier::HardwareAttested),
        ("webauthn_self", Tier::SelfOrNone),
        ("tpm_no_ek_certificate", Tier::HardwareUnverified),
        ("tpm_attested", Tier::HardwareAttested),
    ] {
        let credential = credentials::get(store, id).await.unwrap().unwrap();
        assert_eq!(credential.tier, tier, "{id}");
        assert_eq!(credential.attested, tier == Tier::HardwareAttested, "{id}: attested still means the top tier");
    }
    let closed = tenants::get(store, "ten_closed").await.unwrap().unwrap().policy;
    assert_eq!((closed.hardware_unverified, closed.self_or_none), (TierAction::Deny, TierAction::Deny));
    assert!(!closed.allow_unattested());
    let open = tenants::get(store, "ten_open").await.unwrap().unwrap().policy;
    assert_eq!((open.hardware_unverified, open.self_or_none), (TierAction::AllowAndFlag, TierAction::AllowAndFlag));
    assert!(open.allow_unattested());
    for policy in [&closed, &open] {
        assert_eq!(policy.enforcement, Enforcement::Enforce, "no tenant starts in monitor mode");
    }
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE would_deny_json <> '[]'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn sqlite_backfill_gives_existing_rows_their_tier_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    seed_release_17(&url, Backend::Sqlite).await;
    let store = Store::open(&url).await.unwrap();
    assert_backfilled(&store).await;
}

#[tokio::test]
async fn postgres_backfill_gives_existing_rows_their_tier_and_policy() {
    let Some(base) = common::postgres_base("postgres_backfill_gives_existing_rows_their_tier_and_policy") else {
        return;
    };
    let url = common::fresh_database(&base, "tether_tiers", &[]).await;
    seed_release_17(&url, Backend::Postgres).await;
    let store = Store::open(&url).await.unwrap();
    assert_backfilled(&store).await;
}
