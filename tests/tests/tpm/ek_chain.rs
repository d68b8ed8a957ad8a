//! The agent builds the EK certificate chain itself: from the TPM's NV chain indices
//! (0x01C00100–0x01C001FF) and, for an issuer it does not have, from the EK certificate's
//! authorityInfoAccess URL. The swtpm EK is re-certified by a test root → intermediate → EK
//! chain written into NV; the tenant trusts only the test root, so enrollment is attested only
//! when the agent sent the intermediate. tetherd never fetches: the AIA URL alone does not help.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::register;
use tether_e2e::fixtures::Org;
use tether_e2e::swtpm::{EK_RSA, EK_RSA_CERT, Swtpm, tools_missing};
use tether_e2e::{Server, authed, bin_dir, run_bin};
use tether_proto::v1 as pb;
use tether_softkey::pki::TestPki;

/// A loopback HTTP server answering `GET /int.der` with the intermediate; records each path.
fn serve_intermediate(listener: TcpListener, der: Vec<u8>) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let path = String::from_utf8_lossy(&request).split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(path.clone());
            let response = if path == "/int.der" {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/pkix-cert\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    der.len()
                );
                [head.as_bytes(), &der].concat()
            } else {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    seen
}

/// Replaces (or defines) NV index `index` with `bytes`, owner-written and readable with the
/// index's empty auth, as the agent reads EK certificate indices.
fn nv_put(tpm: &Swtpm, index: &str, bytes: &[u8]) {
    // swtpm_setup defines the EK certificate indices under the platform hierarchy.
    if !tpm.tpm2("tpm2_nvundefine", &["-C", "p", index]).status.success() {
        let _ = tpm.tpm2("tpm2_nvundefine", &["-C", "o", index]);
    }
    let file = format!("nv-{index}.bin");
    std::fs::write(tpm.path(&file), bytes).unwrap();
    let size = bytes.len().to_string();
    tpm.ok("tpm2_nvdefine", &[index, "-C", "o", "-s", &size, "-a", "ownerread|ownerwrite|authread|authwrite"]);
    tpm.ok("tpm2_nvwrite", &[index, "-C", "o", "-i", &file]);
}

fn nv_remove(tpm: &Swtpm, index: &str) {
    let _ = tpm.tpm2("tpm2_nvundefine", &["-C", "o", index]);
}

fn der_of(pem: &str) -> Vec<u8> {
    tether_attestation::tpm::ek::read_certificates(pem.as_bytes()).unwrap().remove(0)
}

/// `tether-agent enroll --tpm` with a fresh token; the agent's JSON output (or stderr on failure).
async fn enroll(
    server: &Server,
    org: &Org,
    tpm: &Swtpm,
    worker: &str,
    extra: &[&str],
) -> Result<serde_json::Value, String> {
    let device_id = register(server, org, worker, "").await;
    let token = org.token(server, &device_id).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tether-agent.json");
    let tcti = tpm.tcti();
    let mut args = vec![
        "--output",
        "json",
        "--state",
        state.to_str().unwrap(),
        "--server",
        &server.url,
        "enroll",
        "--tpm",
        "--token",
        &token,
        "--tcti",
        &tcti,
    ];
    args.extend_from_slice(extra);
    let out = run_bin("tether-agent", &args, &[("RUST_LOG", "info")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(serde_json::json!({ "output": value, "log": stderr }))
    } else {
        Err(stderr)
    }
}

#[tokio::test]
async fn the_agent_sends_the_nv_chain_and_completes_it_by_aia() {
    if tools_missing("the EK chain test") {
        return;
    }
    if !bin_dir().join("tether-agent").exists() {
        eprintln!("NOTICE: skipping the EK chain test: tether-agent is not built");
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-ek-chain").await;
    let pki = TestPki::generate("Tether EK chain test").unwrap();
    let mut admin = server.admin().await;
    admin
        .add_trust_anchors(authed(
            &org.keys.admin_key,
            pb::AddTrustAnchorsRequest { pem: pki.root_cert_pem.clone(), name: "test TPM root".into() },
        ))
        .await
        .unwrap();

    // The EK certificate, re-issued by the test intermediate with an AIA URL on a loopback server.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let aia = format!("http://{}/int.der", listener.local_addr().unwrap());
    let intermediate = der_of(&pki.intermediate_cert_pem);
    let seen = serve_intermediate(listener, intermediate.clone());
    tpm.ok("tpm2_readpublic", &["-c", EK_RSA, "-f", "der", "-o", "ek.spki"]);
    let ek = tether_softkey::ek_cert::ek_certificate(
        &tpm.read("ek.spki"),
        &pki.intermediate_cert_pem,
        &pki.intermediate_key_pem,
        Some(&aia),
    )
    .unwrap();
    nv_put(&tpm, EK_RSA_CERT, &ek);

    let check = |what: &str, result: &Result<serde_json::Value, String>| match result {
        Ok(v) => assert_eq!(v["output"]["attested"], true, "{what}: {v}"),
        Err(stderr) => panic!("{what}: enrollment failed: {stderr}"),
    };

    // (b) No NV chain and AIA off: only the EK certificate goes out, and tetherd (which never
    // fetches the URL in it) cannot reach the root.
    let refused = enroll(&server, &org, &tpm, "w-no-chain", &["--no-aia-fetch"]).await.unwrap_err();
    if refused.contains("built without TPM support") {
        eprintln!(
            "NOTICE: skipping the EK chain test: tether-agent was built without the `tpm` feature \
             (cargo build -p tether-agent --features tpm)"
        );
        return;
    }
    assert!(refused.contains("not attested"), "{refused}");
    assert!(refused.contains("AIA fetching is off"), "the agent says what it did not fetch: {refused}");
    assert!(seen.lock().unwrap().is_empty(), "nothing fetched the AIA URL: {:?}", seen.lock().unwrap());

    // (c) No NV chain, AIA on: the agent fetches the intermediate from the loopback server.
    let fetched = enroll(&server, &org, &tpm, "w-aia", &[]).await;
    check("AIA", &fetched);
    assert_eq!(*seen.lock().unwrap(), vec!["/int.der".to_string()], "the agent fetched the issuer");

    // (a) The intermediate in NV 0x01C00100, AIA off: attested from the TPM's own chain.
    nv_put(&tpm, "0x01c00100", &intermediate);
    let from_nv = enroll(&server, &org, &tpm, "w-nv", &["--no-aia-fetch"]).await;
    check("NV chain", &from_nv);

    // (d) Garbage in the first chain index: skipped with a warning, the next index still counts.
    nv_put(&tpm, "0x01c00100", b"\x30\x82\x10\x00 this is not a certificate");
    nv_put(&tpm, "0x01c00101", &[intermediate.as_slice(), &[0xff; 16]].concat());
    let skipped = enroll(&server, &org, &tpm, "w-garbage", &["--no-aia-fetch"]).await;
    check("garbage index", &skipped);
    let log = skipped.unwrap()["log"].as_str().unwrap().to_owned();
    assert!(log.contains("NV 0x01c00100 skipped"), "{log}");
    assert_eq!(seen.lock().unwrap().len(), 1, "AIA stayed off");

    // And with the chain gone again, AIA off is refused once more (the NV chain was what counted).
    nv_remove(&tpm, "0x01c00100");
    nv_remove(&tpm, "0x01c00101");
    let refused = enroll(&server, &org, &tpm, "w-gone", &["--no-aia-fetch"]).await.unwrap_err();
    assert!(refused.contains("not attested"), "{refused}");
}
