//! Seeds N enrolled devices straight into a tenant's tables, for measurements
//! at 10k–1M devices where enrolling each over gRPC would take hours.
//!
//! The shortcut, and why verification stays real: K "template" devices are
//! enrolled through the real flow first (packed attestation, verified by the
//! server). Seeded device `i` gets its own worker, device, credential id and
//! counter, and the public key of template `i % K`; the bench answers as
//! device `i` with that template's private key under device `i`'s credential
//! id, and the server verifies every signature against the stored key as for
//! any device. Each seeded device also gets one answered challenge and its
//! `ok` presence record at seeding time (what a device enrolled for a while
//! has), so it is present for access checks and not due for a scheduled
//! challenge. Seeded rows are not audited: they stand for history. The
//! addresses they record (`credentials.enrolled_from_ip`,
//! `presence_events.source_ip`) are device `i`'s own source address
//! ([`Addresses`]), the one the bench later checks and answers from, so the
//! history shows no shared egress either.

use crate::bench::Addresses;
use crate::fixtures::EnrolledDevice;
use sqlx::{AnyPool, AssertSqlSafe};
use std::time::{Duration, Instant};
use tether_softkey::SoftAuthenticator;

/// Rows per INSERT … SELECT statement.
const BATCH: u64 = 50_000;

pub fn worker_id(i: u64) -> String {
    format!("w-bench-{i:012}")
}

pub fn device_id(i: u64) -> String {
    format!("dev_bench{i:012}")
}

/// 16 base64url characters (12 bytes): canonical, so the id the authenticator
/// sends back encodes to exactly the stored string.
pub fn credential_id(i: u64) -> String {
    format!("bnch{i:012}")
}

/// The seeded population: which templates' keys the devices use.
pub struct Seeded {
    pub tenant_id: String,
    pub devices: u64,
    /// Saved authenticator state of each template (holds the private key).
    templates: Vec<String>,
}

impl Seeded {
    /// The authenticator of seeded device `i`: its template's key under its own
    /// credential id, counter at 0 like the seeded credential.
    pub fn authenticator(&self, i: u64) -> SoftAuthenticator {
        let template = &self.templates[(i % self.templates.len() as u64) as usize];
        let mut state: serde_json::Value = serde_json::from_str(template).expect("authenticator state is JSON");
        state["credential"]["id"] = serde_json::Value::String(credential_id(i));
        state["sign_count"] = serde_json::Value::from(0);
        SoftAuthenticator::from_state_json(&state.to_string()).expect("restore the template authenticator")
    }
}

/// How long each step of seeding took.
pub struct SeedTimes {
    pub rows: u64,
    pub elapsed: Duration,
}

/// Inserts `devices` enrolled devices for `tenant_id`, keyed from `templates`,
/// device `i` seen at `addresses.of(i)`.
pub async fn seed(
    database_url: &str,
    tenant_id: &str,
    devices: u64,
    templates: &[EnrolledDevice],
    addresses: Addresses,
) -> anyhow::Result<(Seeded, SeedTimes)> {
    anyhow::ensure!(!templates.is_empty(), "at least one template device is needed");
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(database_url).await?;
    let postgres = database_url.starts_with("postgres");
    let started = Instant::now();
    let blob = if postgres { "BYTEA" } else { "BLOB" };
    sqlx::query("DROP TABLE IF EXISTS bench_seed_keys").execute(&pool).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE TABLE bench_seed_keys (k BIGINT PRIMARY KEY, cose {blob} NOT NULL)")))
        .execute(&pool)
        .await?;
    for (k, template) in templates.iter().enumerate() {
        let done = sqlx::query("INSERT INTO bench_seed_keys SELECT $1, public_key_cose FROM credentials WHERE id = $2")
            .bind(k as i64)
            .bind(&template.credential_id)
            .execute(&pool)
            .await?;
        anyhow::ensure!(done.rows_affected() == 1, "template credential {} is not stored", template.credential_id);
    }
    let now = crate::bench::now_ms();
    let keys = templates.len();
    let mut lo = 0;
    while lo < devices {
        let hi = (lo + BATCH).min(devices);
        for statement in statements(postgres, lo, hi, keys, addresses) {
            sqlx::query(AssertSqlSafe(statement))
                .bind(tenant_id)
                .bind(now)
                .execute(&pool)
                .await
                .map_err(|e| anyhow::anyhow!("seeding rows {lo}..{hi}: {e}"))?;
        }
        lo = hi;
        if lo % 200_000 == 0 || lo == devices {
            eprintln!("seeded {lo} devices in {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    sqlx::query("DROP TABLE bench_seed_keys").execute(&pool).await?;
    if postgres {
        // Fresh statistics, as autovacuum would have them on a real database.
        sqlx::query("ANALYZE").execute(&pool).await?;
    }
    pool.close().await;
    let templates = templates.iter().map(|t| t.auth.to_state_json()).collect();
    let seeded = Seeded { tenant_id: tenant_id.to_string(), devices, templates };
    Ok((seeded, SeedTimes { rows: devices * 5, elapsed: started.elapsed() }))
}

/// The INSERT … SELECT statements for devices `lo..hi` (`$1` tenant, `$2` now).
/// Only integers are formatted into the text.
fn statements(postgres: bool, lo: u64, hi: u64, keys: usize, addresses: Addresses) -> Vec<String> {
    let series = if postgres {
        format!("WITH s(i) AS (SELECT generate_series({lo}::bigint, {}::bigint)) ", hi - 1)
    } else {
        format!("WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {hi}) ")
    };
    let pad = if postgres { "lpad(s.i::text, 12, '0')" } else { "printf('%012d', s.i)" };
    let nonce = if postgres {
        format!("convert_to('bench-nonce-' || {pad}, 'UTF8')")
    } else {
        format!("CAST('bench-nonce-' || {pad} AS BLOB)")
    };
    let worker = format!("'w-bench-' || {pad}");
    let device = format!("'dev_bench' || {pad}");
    let credential = format!("'bnch' || {pad}");
    let challenge = format!("'chl_bench' || {pad}");
    let ip = addresses.sql("s.i");
    vec![
        format!(
            "{series}INSERT INTO workers (tenant_id, external_id, display_name, created_at_ms) \
             SELECT $1, {worker}, 'Bench worker ' || {pad}, $2 FROM s"
        ),
        format!(
            "{series}INSERT INTO devices (id, tenant_id, serial_number, model, asset_tag, worker_external_id, \
             registered_at_ms) SELECT {device}, $1, 'SN-bench-' || {pad}, 'ThinkPad T14', '', {worker}, $2 FROM s"
        ),
        format!(
            "{series}INSERT INTO credentials (id, tenant_id, device_id, worker_external_id, kind, public_key_cose, \
             format, attestation_type, attested, attestation_reason, trust_anchor, aaguid, sign_count, \
             enrolled_at_ms, enrolled_from_ip, last_presence_at_ms, tier, last_challenged_at_ms) \
             SELECT {credential}, $1, {device}, {worker}, 'webauthn', k.cose, 'packed', 'basic', 1, '', \
             'bench seed (key of an attested template device)', '{aaguid}', 0, $2, {ip}, $2, 'hardware_attested', $2 \
             FROM s JOIN bench_seed_keys k ON k.k = s.i % {keys}",
            aaguid = crate::fixtures::test_aaguid()
        ),
        format!(
            "{series}INSERT INTO challenges (id, tenant_id, credential_id, device_id, nonce, reason, issued_at_ms, \
             deadline_ms, consumed_at_ms) \
             SELECT {challenge}, $1, {credential}, {device}, {nonce}, 'scheduled', $2, $2 + 300000, $2 FROM s"
        ),
        format!(
            "{series}INSERT INTO presence_events (id, tenant_id, outcome, device_id, worker_external_id, \
             credential_id, challenge_id, at_ms, source_ip, detail) \
             SELECT 'pev_bench' || {pad}, $1, 'ok', {device}, {worker}, {credential}, {challenge}, $2, \
             {ip}, 'seeded by tether-bench' FROM s"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_credential_ids_are_canonical_base64url() {
        for i in [0, 7, 999_999, 123_456_789_012] {
            let id = credential_id(i);
            let bytes = tether_attestation::b64url_decode(&id).unwrap();
            assert_eq!(tether_attestation::b64url_encode(&bytes), id);
        }
    }

    #[test]
    fn only_integers_reach_the_statement_text() {
        let one = Addresses::plan(10, 10, 20_000).unwrap();
        let sql = statements(true, 0, 10, 4, one).join("\n");
        assert!(sql.contains("generate_series(0::bigint, 9::bigint)") && sql.contains("% 4"));
        assert!(statements(false, 5, 6, 1, one)[0].contains("WHERE i + 1 < 6"));
        assert!(!sql.contains("127.0.0.1"), "seeded history must not put every device behind one address");
        // Both recorded addresses are the device's own.
        assert_eq!(sql.matches(&one.sql("s.i")).count(), 2);
    }
}
