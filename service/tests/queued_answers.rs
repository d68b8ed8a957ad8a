//! Verified presence answers queued with the access checks' rows on a SQLite
//! file (crate::store::append_queue::record_answer): all of an answer or none
//! of it, a refused one leaves the challenge and counter as they were, and
//! answers that arrive together share a commit.

use sqlx::Row;
use std::time::Duration;
use tetherd::store::append_queue::{record_answer, records_answers};
use tetherd::store::presence::{AnswerRefused, PresenceEvent, RecordedAnswer};
use tetherd::store::risk_events::{Position, StoredEvent, after};
use tetherd::store::{Store, StoreOptions};

/// Tenant `t`, device `d`, credential `c` (sign count 5), challenges `ch0`…`ch{n-1}` open until 10,000.
async fn open(challenges: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open_with(&url, &StoreOptions::default()).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for statement in [
        "INSERT INTO tenants (id, name, created_at_ms, rp_id, origin) VALUES ('t', 't', 0, 'x', 'https://x')",
        "INSERT INTO devices (id, tenant_id, serial_number, model, registered_at_ms) VALUES ('d', 't', 's', 'm', 0)",
        "INSERT INTO credentials (id, tenant_id, device_id, worker_external_id, kind, public_key_cose, format, \
         attestation_type, attested, attestation_reason, trust_anchor, aaguid, sign_count, enrolled_at_ms, \
         enrolled_from_ip) VALUES ('c', 't', 'd', 'w', 'webauthn', x'00', 'none', 'none', 0, '', '', '', 5, 0, \
         '127.0.0.1')",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    for i in 0..challenges {
        sqlx::query(
            "INSERT INTO challenges (id, tenant_id, credential_id, device_id, nonce, reason, issued_at_ms, deadline_ms) \
             VALUES ($1, 't', 'c', 'd', $2, 'scheduled', 0, 10000)",
        )
        .bind(format!("ch{i}"))
        .bind(vec![u8::try_from(i).unwrap(); 32])
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    (dir, store)
}

fn answer(challenge: &str, sign_count: i64) -> RecordedAnswer {
    let event = PresenceEvent {
        id: format!("pev-{challenge}-{sign_count}"),
        tenant_id: "t".into(),
        outcome: "ok".into(),
        device_id: "d".into(),
        worker_external_id: "w".into(),
        credential_id: "c".into(),
        challenge_id: challenge.into(),
        at_ms: 1000,
        source_ip: "127.0.0.1".into(),
        detail: "verified".into(),
    };
    let risk_event = StoredEvent {
        seq: 0,
        txn: 0,
        tenant_id: "t".into(),
        device_id: "d".into(),
        credential_id: "c".into(),
        session_id: String::new(),
        at_ms: 1000,
        event_json: "{}".into(),
        declared_json: String::new(),
    };
    RecordedAnswer {
        credential_id: "c".into(),
        sign_count,
        event,
        posture: Some(("ab".repeat(32), "{}".into())),
        risk_event: Some(risk_event),
    }
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(store.pool()).await.unwrap().get::<i64, _>(0)
}

#[tokio::test]
async fn an_answer_is_recorded_whole_and_a_refused_one_changes_nothing() {
    let (_dir, store) = open(2).await;
    assert!(records_answers(&store));

    let position = record_answer(&store, answer("ch0", 6)).await.unwrap().unwrap().expect("a risk event position");
    let log = after(&store, Position::START, Position::END, i64::MIN, 10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.position()).collect::<Vec<_>>(), vec![position]);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM presence_events").await, 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM presence_postures").await, 1);
    assert_eq!(count(&store, "SELECT sign_count FROM credentials").await, 6);

    // The same challenge again: consumed, so nothing of the second answer is written.
    assert_eq!(record_answer(&store, answer("ch0", 7)).await.unwrap(), Err(AnswerRefused::Replayed));
    // A fresh challenge with a counter that did not move: the challenge stays open.
    assert_eq!(record_answer(&store, answer("ch1", 6)).await.unwrap(), Err(AnswerRefused::CounterBehind));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM challenges WHERE consumed_at_ms IS NULL").await, 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM presence_events").await, 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM presence_postures").await, 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM risk_events").await, 1);
    assert_eq!(count(&store, "SELECT sign_count FROM credentials").await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_that_arrive_together_share_commits_and_each_gets_its_own_outcome() {
    let (_dir, store) = open(32).await;
    let held = store.begin().await.unwrap();
    let before = store.group_commits();
    // Counters 10, 20, … 320 arrive in any order: each one lower than one already
    // stored is refused, and exactly the stored ones have their challenge consumed.
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { record_answer(&store, answer(&format!("ch{i}"), 10 * (i + 1))).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.rollback().await.unwrap();
    let mut recorded = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            recorded += 1;
        }
    }
    assert!(recorded >= 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM presence_events").await, recorded);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM challenges WHERE consumed_at_ms IS NOT NULL").await, recorded);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM risk_events").await, recorded);
    let after = store.group_commits();
    assert!(after.transactions - before.transactions < 10, "32 answers took {before:?} → {after:?}");
}
