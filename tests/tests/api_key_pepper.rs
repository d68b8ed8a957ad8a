//! Rotating the API-key pepper against real tetherd processes: keys minted
//! under the old pepper keep working while it is configured as a previous
//! pepper, are re-hashed under the new one at their first use, and keep
//! working once it is removed; keys not used during the window do not.

use std::io::Write;
use std::process::{Command, Stdio};
use tether_e2e::fixtures::Org;
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;

/// A pepper id as an operator computes it: the first 8 hex digits of
/// `sha256sum` of the pepper without surrounding whitespace.
fn pepper_id(material: &str) -> String {
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(material.trim().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..8].to_string()
}

fn key_id(secret: &str) -> &str {
    secret.split('.').nth(1).unwrap()
}

/// Every key of the tenant by id: its pepper id.
async fn pepper_ids(server: &Server, admin_key: &str) -> std::collections::BTreeMap<String, String> {
    let mut admin = server.admin().await;
    let keys = admin.list_api_keys(authed(admin_key, pb::ListApiKeysRequest {})).await.unwrap().into_inner().keys;
    keys.into_iter().map(|k| (k.id, k.pepper_id)).collect()
}

fn check_request() -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        worker_external_id: "alice".into(),
        device_id: "dev_none".into(),
        source_ip: "127.0.0.1".into(),
        gateway_id: "vpn-1".into(),
        ..Default::default()
    }
}

async fn check(server: &Server, gateway_key: &str) -> Result<pb::CheckAccessResponse, tonic::Status> {
    server.access().await.check_access(authed(gateway_key, check_request())).await.map(|r| r.into_inner())
}

async fn list_workers(server: &Server, key: &str) -> Result<pb::ListWorkersResponse, tonic::Status> {
    let mut admin = server.admin().await;
    admin.list_workers(authed(key, pb::ListWorkersRequest::default())).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn rotation_rehashes_used_keys_and_drops_unused_ones_with_the_old_pepper() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start();
    let org = Org::create(&server, "acme").await;
    let (admin_key, gateway_key, idle_key) = (&org.keys.admin_key, &org.gateway_key, &org.analyst_key);

    // Minted under pepper A, and each recorded as such.
    let a = std::fs::read_to_string(&server.pepper_file).unwrap();
    let (id_a, id_b) = (pepper_id(&a), pepper_id("pepper B: a fresh secret of more than 32 bytes"));
    let before = pepper_ids(&server, admin_key).await;
    assert_eq!(before.len(), 3);
    assert!(before.values().all(|p| *p == id_a), "{before:?} should all be {id_a}");
    list_workers(&server, idle_key).await.unwrap();

    // The window: B is current, A verifies only.
    let previous = dir.path().join("a.pepper");
    std::fs::write(&previous, &a).unwrap();
    std::fs::write(&server.pepper_file, "pepper B: a fresh secret of more than 32 bytes\n").unwrap();
    server.extra_args = vec!["--api-key-pepper-previous-file".into(), previous.display().to_string()];
    server.restart();

    // A wrong secret is refused under either pepper.
    let forged = format!("tk.{}.{}", key_id(gateway_key), "A".repeat(43));
    assert_eq!(check(&server, &forged).await.unwrap_err().code(), Code::Unauthenticated);

    // Used keys work and are re-hashed under B; listing authenticates (and re-hashes) the admin key
    // first, so it shows itself on B already.
    let during = pepper_ids(&server, admin_key).await;
    assert_eq!(during[key_id(admin_key)], id_b);
    assert_eq!(during[key_id(gateway_key)], id_a);
    // A second replica in the window: both re-hash the same key at once; every call succeeds.
    let mut replica = server.replica();
    let clients = [server.access().await, replica.access().await];
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (mut client, key) = (clients[i % 2].clone(), gateway_key.clone());
        calls.spawn(async move { client.check_access(authed(&key, check_request())).await });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    replica.stop();
    let after_use = pepper_ids(&server, admin_key).await;
    assert_eq!(after_use[key_id(gateway_key)], id_b);
    // Never used in the window: still on A, which tells the operator A is still needed.
    assert_eq!(after_use[key_id(idle_key)], id_a);

    // A removed: the re-hashed keys work, the idle one does not.
    server.extra_args.clear();
    server.restart();
    check(&server, gateway_key).await.unwrap();
    let last = pepper_ids(&server, admin_key).await;
    assert_eq!(last[key_id(admin_key)], id_b);
    let refused = list_workers(&server, idle_key).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{}", refused.message());
    assert_eq!(check(&server, idle_key).await.unwrap_err().code(), Code::Unauthenticated);
}
