//! Probe rounds: when a cross-tenant cluster behind one egress reaches review,
//! tetherd challenges every member at the same moment with the configured
//! deadline (`[probes] deadline_secs`), so one person answering for all of
//! them shows as a serialized `presence_burst`.

use sqlx::Row;
use tether_e2e::Server;
use tether_e2e::fixtures::{Org, prove_presence};

/// (device, issued_at_ms, deadline_ms) of every probe challenge.
async fn probes(server: &Server) -> Vec<(String, i64, i64)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let rows = sqlx::query("SELECT device_id, issued_at_ms, deadline_ms FROM challenges WHERE reason = 'probe'")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter().map(|r| (r.get("device_id"), r.get("issued_at_ms"), r.get("deadline_ms"))).collect()
}

#[tokio::test]
async fn a_cross_tenant_cluster_is_probed_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("risk.toml");
    std::fs::write(&config, "[probes]\ndeadline_secs = 7\n").unwrap();
    let server = Server::start_with_args(&["--risk-config", config.to_str().unwrap()]);
    // One tenant alone behind the address is not probed.
    let alpha = Org::create(&server, "alpha").await;
    for i in 0..2 {
        let mut device = alpha.enrolled_device(&server, &format!("alpha-w{i}")).await;
        prove_presence(&server, &mut device).await;
    }
    assert!(probes(&server).await.is_empty());
    // A second employer's laptops enroll and answer from the same (loopback) address: a cluster.
    let beta = Org::create(&server, "beta").await;
    for i in 0..2 {
        let mut device = beta.enrolled_device(&server, &format!("beta-w{i}")).await;
        prove_presence(&server, &mut device).await;
    }
    let round = probes(&server).await;
    let mut probed: Vec<&str> = round.iter().map(|(d, _, _)| d.as_str()).collect();
    probed.sort_unstable();
    probed.dedup();
    assert!(probed.len() >= 3, "every member present in the cluster is probed: {round:?}");
    let first = round.iter().map(|r| r.1).min().unwrap();
    let last = round.iter().map(|r| r.1).max().unwrap();
    assert!(last - first < 5_000, "issued together (one round): {round:?}");
    assert!(round.iter().all(|(_, issued, deadline)| deadline - issued == 7_000), "the configured deadline: {round:?}");
}
