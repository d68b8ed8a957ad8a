//! `tetherd serve --mds-file`: the FIDO metadata BLOB refuses enrollment of compromised models,
//! never goes backwards, and a BLOB that does not verify stops startup. Uses the public FIDO
//! conformance BLOB in ../shared/conformance/mds (skipped with a notice when absent).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tether_e2e::fixtures::{Org, enroll};
use tether_e2e::{Server, bin};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Code;

/// ATTESTATION_KEY_COMPROMISE in the conformance BLOB (no 42).
const COMPROMISED: &str = "71bf3f7f-ad51-432a-aaf0-4783108d5620";
/// FIDO_CERTIFIED_L1 in the same BLOB.
const CERTIFIED: &str = "a14eb40d-3b89-4f3b-8d46-13cdf3de625c";

fn shared_mds() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/mds");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("NOTICE: {} is absent; skipping the tetherd MDS tests", dir.display());
        None
    }
}

/// `GET /metrics` over plain HTTP/1.1; returns the body.
fn scrape(base: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

fn authenticator(org: &Org, aaguid: &str) -> SoftAuthenticator {
    let mode = AttestationMode::Packed {
        ca_cert_pem: org.pki.intermediate_cert_pem.clone(),
        ca_key_pem: org.pki.intermediate_key_pem.clone(),
    };
    SoftAuthenticator::new(mode, aaguid.parse().expect("aaguid")).expect("authenticator")
}

#[tokio::test]
async fn a_model_the_blob_marks_compromised_is_refused_at_enrollment() {
    let Some(dir) = shared_mds() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let blob = work.path().join("mds.jwt");
    std::fs::copy(dir.join("conformance-simplewebauthn-no42-2023.jwt"), &blob).expect("copy");
    let root = dir.join("roots/fido-conformance-mds3-root-fake.pem").display().to_string();
    let example_root = dir.join("roots/fido-mds3-example-root.pem").display().to_string();
    let blob_arg = blob.display().to_string();
    let server = Server::start_with_args(&[
        "--mds-file",
        &blob_arg,
        "--mds-root",
        &root,
        "--mds-root",
        &example_root,
        "--mds-reload-interval",
        "200ms",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    // The BLOB's nextUpdate (2023-11-08) has passed: a warning operators can alert on.
    let metrics = scrape(&server.metrics_url);
    assert!(metrics.lines().any(|l| l.starts_with("tether_mds_no") && l.ends_with(" 42")), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("tether_mds_stale") && l.ends_with(" 1")), "{metrics}");
    let org = Org::create(&server, "acme").await;
    let device = org.register_device(&server, "w-ann", "SN-1").await;
    let token = org.token(&server, &device).await;

    let err = enroll(&server, &token, &mut authenticator(&org, COMPROMISED)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("ATTESTATION_KEY_COMPROMISE"), "{}", err.message());
    assert!(err.message().contains(COMPROMISED), "{}", err.message());

    // Written over the file, a valid but older BLOB (no 15) and another BLOB reusing no 42 are
    // ignored: neither lists this model, and its compromise stays in force.
    for replacement in ["spec-example-v3.1-go-webauthn.jwt", "conformance-webauthn4j-no42-2022.jwt"] {
        std::fs::copy(dir.join(replacement), &blob).expect("copy");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let err = enroll(&server, &token, &mut authenticator(&org, COMPROMISED)).await.unwrap_err();
        assert!(err.message().contains("ATTESTATION_KEY_COMPROMISE"), "{replacement}: {}", err.message());
    }

    // The refusals consumed nothing; a certified model enrolls with the same token.
    let done = enroll(&server, &token, &mut authenticator(&org, CERTIFIED)).await.expect("certified model");
    assert!(done.attested);
}

#[test]
fn a_blob_that_does_not_verify_stops_startup() {
    let Some(dir) = shared_mds() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", work.path().join("t.db").display());
    let blob = dir.join("conformance-simplewebauthn-no42-2023.jwt");
    let pepper = work.path().join("pepper");
    std::fs::write(&pepper, "0123456789abcdef0123456789abcdef0123456789").expect("pepper");
    // No --mds-root: the shipped production roots, which the conformance BLOB does not chain to.
    let start = Instant::now();
    let output = Command::new(bin("tetherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &database])
        .args(["--api-key-pepper-file", &pepper.display().to_string()])
        .args(["--mds-file", &blob.display().to_string()])
        .output()
        .expect("run tetherd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--mds-file") && stderr.contains("not trusted"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// USER_VERIFICATION_BYPASS in the conformance BLOB.
const UV_BYPASS: &str = "8cfa178e-b1f5-40ce-8f5f-8273e8109940";

#[tokio::test]
async fn credentials_enrolled_before_their_model_was_marked_are_flagged_once() {
    let Some(dir) = shared_mds() else { return };
    let mut server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut devices = Vec::new();
    for (i, aaguid) in [COMPROMISED, UV_BYPASS, CERTIFIED].into_iter().enumerate() {
        let device = org.register_device(&server, &format!("w-{i}"), &format!("SN-{i}")).await;
        let token = org.token(&server, &device).await;
        enroll(&server, &token, &mut authenticator(&org, aaguid)).await.expect("enrolled before any BLOB");
        devices.push(device);
    }
    let blob = dir.join("conformance-simplewebauthn-no42-2023.jwt").display().to_string();
    let root = dir.join("roots/fido-conformance-mds3-root-fake.pem").display().to_string();
    server.extra_args = vec!["--mds-file".into(), blob, "--mds-root".into(), root];
    for _ in 0..2 {
        // The second start loads the same BLOB again: nothing is raised twice.
        server.restart();
        let mut reports = server.reports().await;
        let request = tether_e2e::authed(&org.analyst_key, pb::ListFlagsRequest::default());
        let mut flags: Vec<_> = reports
            .list_flags(request)
            .await
            .expect("flags")
            .into_inner()
            .flags
            .into_iter()
            .filter(|f| f.kind == "authenticator_compromised")
            .map(|f| (f.device_id, f.severity))
            .collect();
        flags.sort();
        let (high, review) = (pb::FlagSeverity::High as i32, pb::FlagSeverity::Review as i32);
        let mut expected = vec![(devices[0].clone(), high), (devices[1].clone(), review)];
        expected.sort();
        assert_eq!(flags, expected);
    }
}

/// A test metadata service's root and a BLOB (no 1) whose only entry lists `vendor_root_pem`
/// as the attestation root of `aaguid`.
fn signed_blob(work: &Path, aaguid: &str, vendor_root_pem: &str) -> (PathBuf, PathBuf) {
    let mds = tether_e2e::mds::TestMds::generate();
    let payload = serde_json::json!({
        "no": 1,
        "nextUpdate": "2099-01-01",
        "entries": [{
            "aaguid": aaguid,
            "metadataStatement": {
                "description": "Listed test model",
                "attestationRootCertificates": [tether_e2e::mds::root_base64(vendor_root_pem)]
            },
            "statusReports": [{ "status": "FIDO_CERTIFIED_L1", "effectiveDate": "2024-01-01" }]
        }]
    });
    let (blob, root_file) = (work.join("listed.jwt"), work.join("test-mds-root.pem"));
    std::fs::write(&blob, mds.sign(&payload)).expect("write blob");
    std::fs::write(&root_file, &mds.root_pem).expect("write root");
    (blob, root_file)
}

#[tokio::test]
async fn a_root_from_the_blob_admits_only_its_own_model() {
    let work = tempfile::tempdir().expect("tempdir");
    // The vendor's root is in no tenant's trust store: only the BLOB names it, for one AAGUID.
    let vendor = tether_softkey::pki::TestPki::generate("Listed Vendor").expect("pki");
    let (blob, root) = signed_blob(work.path(), CERTIFIED, &vendor.root_cert_pem);
    let (blob, root) = (blob.display().to_string(), root.display().to_string());
    let server = Server::start_with_args(&["--mds-file", &blob, "--mds-root", &root]);
    let org = Org::create(&server, "acme").await;
    let by_vendor = |aaguid: &str| {
        let mode = AttestationMode::Packed {
            ca_cert_pem: vendor.intermediate_cert_pem.clone(),
            ca_key_pem: vendor.intermediate_key_pem.clone(),
        };
        SoftAuthenticator::new(mode, aaguid.parse().expect("aaguid")).expect("authenticator")
    };
    let device = org.register_device(&server, "w-lee", "SN-9").await;
    let token = org.token(&server, &device).await;

    let err = enroll(&server, &token, &mut by_vendor(UV_BYPASS)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "another model under the same root: {err:?}");
    assert!(err.message().contains("not hardware-attested"), "{}", err.message());

    let done = enroll(&server, &token, &mut by_vendor(CERTIFIED)).await.expect("the listed model");
    assert!(done.attested, "{done:?}");
}

/// The operator's BLOB is recorded in the database: each new `no` is audited in every tenant,
/// and an older file is refused at startup even though this process never saw the newer one.
#[tokio::test]
async fn the_operators_blob_is_audited_and_never_goes_back_across_restarts() {
    let mds = tether_e2e::mds::TestMds::generate();
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("mds-root.pem");
    std::fs::write(&root, &mds.root_pem).expect("root");
    let blob = work.path().join("mds.jwt");
    let signed = |no: u64| mds.sign(&serde_json::json!({ "no": no, "nextUpdate": "2099-01-01", "entries": [] }));
    std::fs::write(&blob, signed(3)).expect("blob");
    let mut server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let (blob_arg, root_arg) = (blob.display().to_string(), root.display().to_string());
    server.extra_args = vec!["--mds-file".into(), blob_arg.clone(), "--mds-root".into(), root_arg.clone()];
    server.restart();
    // The same file again at the next start: nothing new is recorded.
    server.restart();
    for org in [&acme, &globex] {
        let mut reports = server.reports().await;
        let log = reports
            .list_audit_log(tether_e2e::authed(&org.analyst_key, pb::ListAuditLogRequest::default()))
            .await
            .expect("audit")
            .into_inner();
        let loaded: Vec<_> = log.entries.iter().filter(|e| e.action == "mds.loaded").collect();
        assert_eq!(loaded.len(), 1, "{loaded:?}");
        assert_eq!((loaded[0].actor.as_str(), loaded[0].target.as_str()), ("system", "mds"));
        assert!(loaded[0].details_json.contains("\"no\":3"), "{}", loaded[0].details_json);
    }
    server.stop();

    std::fs::write(&blob, signed(2)).expect("an older blob");
    let output = Command::new(bin("tetherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &server.database_url])
        .args(["--api-key-pepper-file", &server.pepper_file, "--mds-file", &blob_arg, "--mds-root", &root_arg])
        .output()
        .expect("run tetherd");
    assert!(!output.status.success(), "an older BLOB than the one last in force must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("must not go backwards"), "{stderr}");
}

/// A loopback HTTP/1.1 server answering every GET with what `reply` holds at that moment.
fn serve(reply: std::sync::Arc<std::sync::Mutex<(u16, String)>>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/blob.jwt", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let (status, body) = reply.lock().expect("reply").clone();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// `--mds-url`: fetched at startup when there is no cache, then on every interval; a BLOB that
/// verifies and is newer replaces the cache file and is in force at once; a bad download or an
/// error answer changes nothing.
#[tokio::test]
async fn the_blob_is_fetched_from_the_url_with_the_file_as_cache() {
    let mds = tether_e2e::mds::TestMds::generate();
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("mds-root.pem");
    std::fs::write(&root, &mds.root_pem).expect("root");
    let blob = |no: u64, revoked: &str| {
        let entries = serde_json::json!([{ "aaguid": revoked, "statusReports": [{ "status": "REVOKED" }] }]);
        mds.sign(&serde_json::json!({ "no": no, "nextUpdate": "2099-01-01", "entries": entries }))
    };
    let reply = std::sync::Arc::new(std::sync::Mutex::new((200, blob(1, COMPROMISED))));
    let url = serve(reply.clone());
    let cache = work.path().join("cache").join("mds.jwt");
    std::fs::create_dir_all(cache.parent().expect("dir")).expect("dir");
    let (cache_arg, root_arg) = (cache.display().to_string(), root.display().to_string());
    let server = Server::start_with_args(&[
        "--mds-url",
        &url,
        "--mds-file",
        &cache_arg,
        "--mds-root",
        &root_arg,
        "--mds-fetch-interval",
        "300ms",
    ]);
    assert!(std::fs::read_to_string(&cache).expect("the cache").contains('.'), "startup filled the cache");
    let org = Org::create(&server, "acme").await;
    let device = org.register_device(&server, "w-ann", "SN-1").await;
    let token = org.token(&server, &device).await;
    let err = enroll(&server, &token, &mut authenticator(&org, COMPROMISED)).await.unwrap_err();
    assert!(err.message().contains("REVOKED"), "{}", err.message());

    // A download that does not verify, and an error answer, leave cache and verdicts alone.
    let cached = std::fs::read_to_string(&cache).expect("cache");
    for bad in [(200, "not a blob".to_owned()), (503, String::new())] {
        *reply.lock().expect("reply") = bad;
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(std::fs::read_to_string(&cache).expect("cache"), cached);
        let err = enroll(&server, &token, &mut authenticator(&org, COMPROMISED)).await.unwrap_err();
        assert!(err.message().contains("REVOKED"), "{}", err.message());
    }

    // A newer BLOB revokes another model instead: fetched, cached and in force.
    let newer = blob(2, CERTIFIED);
    *reply.lock().expect("reply") = (200, newer.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&cache).expect("cache") != newer {
        assert!(Instant::now() < deadline, "the newer BLOB never reached the cache");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = enroll(&server, &token, &mut authenticator(&org, CERTIFIED)).await.unwrap_err();
    assert!(err.message().contains("REVOKED") && err.message().contains(CERTIFIED), "{}", err.message());
    enroll(&server, &token, &mut authenticator(&org, COMPROMISED)).await.expect("no longer listed");
}

#[test]
fn without_a_cache_an_unreachable_url_stops_startup() {
    let work = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", work.path().join("t.db").display());
    let pepper = work.path().join("pepper");
    std::fs::write(&pepper, "0123456789abcdef0123456789abcdef0123456789").expect("pepper");
    // Bound and closed at once: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let output = Command::new(bin("tetherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &database])
        .args(["--api-key-pepper-file", &pepper.display().to_string()])
        .args(["--mds-url", &format!("http://127.0.0.1:{port}/blob.jwt")])
        .args(["--mds-file", &work.path().join("absent.jwt").display().to_string()])
        .output()
        .expect("run tetherd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--mds-url: no cached --mds-file yet"), "{stderr}");
}
