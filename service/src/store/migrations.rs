//! Embedded, per-backend migrations run through sqlx's migrator.

use super::{Backend, StoreResult};
use sqlx::AnyPool;
use sqlx::AssertSqlSafe;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

const SQLITE: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../../migrations/sqlite/0001_foundation.sql")),
    (2, "audit log", include_str!("../../migrations/sqlite/0002_audit_log.sql")),
    (3, "api key hardening", include_str!("../../migrations/sqlite/0003_api_key_hardening.sql")),
    (4, "tpm", include_str!("../../migrations/sqlite/0004_tpm.sql")),
    (5, "pcr policy", include_str!("../../migrations/sqlite/0005_pcr_policy.sql")),
    (6, "flag review", include_str!("../../migrations/sqlite/0006_flag_review.sql")),
    (7, "reports", include_str!("../../migrations/sqlite/0007_reports.sql")),
    (8, "detection live", include_str!("../../migrations/sqlite/0008_detection_live.sql")),
    (9, "risk events", include_str!("../../migrations/sqlite/0009_risk_events.sql")),
    (10, "probe rounds", include_str!("../../migrations/sqlite/0010_probe_rounds.sql")),
    (11, "risk events order", include_str!("../../migrations/sqlite/0011_risk_events_order.sql")),
    (12, "api key pepper", include_str!("../../migrations/sqlite/0012_api_key_pepper.sql")),
    (13, "flag policy", include_str!("../../migrations/sqlite/0013_flag_policy.sql")),
    (14, "credentials by worker", include_str!("../../migrations/sqlite/0014_credentials_by_worker.sql")),
    (15, "tenants by origin", include_str!("../../migrations/sqlite/0015_tenants_by_origin.sql")),
    (16, "siem outbox", include_str!("../../migrations/sqlite/0016_siem_outbox.sql")),
    (17, "credentials last challenged", include_str!("../../migrations/sqlite/0017_credentials_last_challenged.sql")),
    (18, "attestation tiers", include_str!("../../migrations/sqlite/0018_attestation_tiers.sql")),
    (19, "mds blobs", include_str!("../../migrations/sqlite/0019_mds_blobs.sql")),
];

const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../../migrations/postgres/0001_foundation.sql")),
    (2, "audit log", include_str!("../../migrations/postgres/0002_audit_log.sql")),
    (3, "api key hardening", include_str!("../../migrations/postgres/0003_api_key_hardening.sql")),
    (4, "tpm", include_str!("../../migrations/postgres/0004_tpm.sql")),
    (5, "pcr policy", include_str!("../../migrations/postgres/0005_pcr_policy.sql")),
    (6, "flag review", include_str!("../../migrations/postgres/0006_flag_review.sql")),
    (7, "reports", include_str!("../../migrations/postgres/0007_reports.sql")),
    (8, "detection live", include_str!("../../migrations/postgres/0008_detection_live.sql")),
    (9, "risk events", include_str!("../../migrations/postgres/0009_risk_events.sql")),
    (10, "probe rounds", include_str!("../../migrations/postgres/0010_probe_rounds.sql")),
    (11, "risk events order", include_str!("../../migrations/postgres/0011_risk_events_order.sql")),
    (12, "api key pepper", include_str!("../../migrations/postgres/0012_api_key_pepper.sql")),
    (13, "flag policy", include_str!("../../migrations/postgres/0013_flag_policy.sql")),
    (14, "credentials by worker", include_str!("../../migrations/postgres/0014_credentials_by_worker.sql")),
    (15, "tenants by origin", include_str!("../../migrations/postgres/0015_tenants_by_origin.sql")),
    (16, "siem outbox", include_str!("../../migrations/postgres/0016_siem_outbox.sql")),
    (17, "credentials last challenged", include_str!("../../migrations/postgres/0017_credentials_last_challenged.sql")),
    (18, "attestation tiers", include_str!("../../migrations/postgres/0018_attestation_tiers.sql")),
    (19, "mds blobs", include_str!("../../migrations/postgres/0019_mds_blobs.sql")),
];

pub(super) async fn run(pool: &AnyPool, backend: Backend) -> StoreResult<()> {
    let list = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let migrations = list
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(*sql)),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations).run(pool).await?;
    Ok(())
}
