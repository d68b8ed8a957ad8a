//! `tether trust import-mds`: a tenant's own FIDO metadata BLOB, verified against the server's
//! MDS roots, refuses compromised models (by AAGUID and by batch attestation key) for that
//! tenant only, binds each listed root to its own model, flags credentials enrolled before,
//! never goes backwards, and is audited.

use serde_json::json;
use tether_e2e::fixtures::{Org, enroll};
use tether_e2e::mds::{TestMds, root_base64};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Code;

const REVOKED: &str = "11111111-1111-4111-8111-111111111111";
const LISTED: &str = "22222222-2222-4222-8222-222222222222";
const UNLISTED: &str = "33333333-3333-4333-8333-333333333333";
const LATER_COMPROMISED: &str = "44444444-4444-4444-8444-444444444444";

fn packed(ca_cert_pem: &str, ca_key_pem: &str, aaguid: &str) -> SoftAuthenticator {
    let mode = AttestationMode::Packed { ca_cert_pem: ca_cert_pem.into(), ca_key_pem: ca_key_pem.into() };
    SoftAuthenticator::new(mode, aaguid.parse().expect("aaguid")).expect("authenticator")
}

fn entry(aaguid: &str, status: &str) -> serde_json::Value {
    json!({ "aaguid": aaguid, "statusReports": [{ "status": status, "effectiveDate": "2026-01-01" }] })
}

async fn import(server: &Server, key: &str, blob: &str) -> Result<pb::ImportMdsResponse, tonic::Status> {
    let chunks = blob.as_bytes().chunks(4096).map(|c| pb::ImportMdsChunk { data: c.to_vec() }).collect::<Vec<_>>();
    let mut admin = server.admin().await;
    admin.import_mds(authed(key, tokio_stream::iter(chunks))).await.map(tonic::Response::into_inner)
}

async fn compromised_flags(server: &Server, org: &Org) -> Vec<(String, String)> {
    let mut reports = server.reports().await;
    let flags = reports
        .list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default()))
        .await
        .expect("flags")
        .into_inner()
        .flags;
    flags
        .into_iter()
        .filter(|f| f.kind == "authenticator_compromised")
        .map(|f| (f.device_id, f.evidence_json))
        .collect()
}

#[tokio::test]
async fn a_tenants_blob_refuses_its_compromised_models_for_that_tenant_only() {
    let mds = TestMds::generate();
    let work = tempfile::tempdir().expect("tempdir");
    let root_file = work.path().join("mds-root.pem");
    std::fs::write(&root_file, &mds.root_pem).expect("root");
    let server = Server::start_with_args(&["--mds-root", &root_file.display().to_string()]);
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;

    // A vendor root no tenant trusts, listed for LISTED only; a batch key the BLOB revokes.
    let vendor = tether_softkey::pki::TestPki::generate("Listed Vendor").expect("pki");
    let batch_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key").serialize_pem();
    let batch_key_id = tether_softkey::attestation_key_id(&batch_key).expect("key id");
    let blob = |no: u64, extra: &[serde_json::Value]| {
        let mut entries = vec![
            entry(REVOKED, "REVOKED"),
            json!({
                "aaguid": LISTED,
                "metadataStatement": { "attestationRootCertificates": [root_base64(&vendor.root_cert_pem)] },
                "statusReports": [{ "status": "FIDO_CERTIFIED_L1", "effectiveDate": "2024-01-01" }]
            }),
            json!({
                "attestationCertificateKeyIdentifiers": [batch_key_id.to_uppercase()],
                "statusReports": [{ "status": "ATTESTATION_KEY_COMPROMISE", "effectiveDate": "2026-02-01" }]
            }),
        ];
        entries.extend_from_slice(extra);
        mds.sign(&json!({ "no": no, "nextUpdate": "2099-01-01", "entries": entries }))
    };

    // Enrolled in both tenants before any import; marked compromised by acme's second BLOB.
    let mut early = Vec::new();
    for org in [&acme, &globex] {
        let device = org.register_device(&server, "w-early", "SN-EARLY").await;
        let token = org.token(&server, &device).await;
        let mut auth = packed(&org.pki.intermediate_cert_pem, &org.pki.intermediate_key_pem, LATER_COMPROMISED);
        enroll(&server, &token, &mut auth).await.expect("enrolled before any BLOB");
        early.push(device);
    }

    // The first import goes through the CLI, as an administrator would run it.
    let blob_file = work.path().join("mds.jwt");
    let first = blob(5, &[]);
    std::fs::write(&blob_file, &first).expect("blob");
    let out = run_bin(
        "tether",
        &["--output", "json", "trust", "import-mds", &blob_file.display().to_string()],
        &[("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", acme.keys.admin_key.as_str())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(imported["status"]["no"], 5, "{imported}");
    assert_eq!(imported["status"]["compromised"], 2, "{imported}");
    assert_eq!(imported["previous_no"], serde_json::Value::Null, "{imported}");

    let device = acme.register_device(&server, "w-new", "SN-NEW").await;
    let token = acme.token(&server, &device).await;
    let mut revoked_model = packed(&acme.pki.intermediate_cert_pem, &acme.pki.intermediate_key_pem, REVOKED);
    let err = enroll(&server, &token, &mut revoked_model).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("REVOKED") && err.message().contains(REVOKED), "{}", err.message());
    assert!(err.message().contains("this tenant imported"), "{}", err.message());

    // A compromised batch key is refused whatever AAGUID its authenticator claims.
    let mode = AttestationMode::PackedBatch {
        ca_cert_pem: acme.pki.intermediate_cert_pem.clone(),
        ca_key_pem: acme.pki.intermediate_key_pem.clone(),
        batch_key_pem: batch_key.clone(),
    };
    let mut batch = SoftAuthenticator::new(mode, UNLISTED.parse().expect("aaguid")).expect("authenticator");
    let err = enroll(&server, &token, &mut batch).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&batch_key_id), "{}", err.message());
    assert!(err.message().contains("ATTESTATION_KEY_COMPROMISE"), "{}", err.message());

    // The vendor root admits its own model only.
    let mut other_model = packed(&vendor.intermediate_cert_pem, &vendor.intermediate_key_pem, UNLISTED);
    let err = enroll(&server, &token, &mut other_model).await.unwrap_err();
    assert!(err.message().contains("not hardware-attested"), "another model under the listed root: {}", err.message());
    let mut listed = packed(&vendor.intermediate_cert_pem, &vendor.intermediate_key_pem, LISTED);
    assert!(enroll(&server, &token, &mut listed).await.expect("the listed model").attested);

    // globex imported nothing: acme's BLOB changes nothing there, neither refusals nor roots.
    let device = globex.register_device(&server, "w-new", "SN-NEW").await;
    let token = globex.token(&server, &device).await;
    let mut revoked_model = packed(&globex.pki.intermediate_cert_pem, &globex.pki.intermediate_key_pem, REVOKED);
    enroll(&server, &token, &mut revoked_model).await.expect("another tenant's BLOB does not apply");
    let device = globex.register_device(&server, "w-listed", "SN-LISTED").await;
    let token = globex.token(&server, &device).await;
    let mut listed = packed(&vendor.intermediate_cert_pem, &vendor.intermediate_key_pem, LISTED);
    let err = enroll(&server, &token, &mut listed).await.unwrap_err();
    assert!(err.message().contains("not hardware-attested"), "acme's roots vouch in globex: {}", err.message());

    // Older, reused and tampered BLOBs change nothing.
    let older = import(&server, &acme.keys.admin_key, &blob(4, &[])).await.unwrap_err();
    assert_eq!(older.code(), Code::FailedPrecondition, "{older:?}");
    assert!(older.message().contains("must not go backwards"), "{}", older.message());
    let reused = import(&server, &acme.keys.admin_key, &blob(5, &[entry(UNLISTED, "REVOKED")])).await.unwrap_err();
    assert!(reused.message().contains("reuses no 5"), "{}", reused.message());
    let signed = blob(6, &[]);
    let at = signed.rfind('.').expect("a JWS") + 10;
    let flipped = if signed.as_bytes()[at] == b'A' { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &signed[..at], &signed[at + 1..]);
    let err = import(&server, &acme.keys.admin_key, &tampered).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let stranger = TestMds::generate();
    let err = import(
        &server,
        &acme.keys.admin_key,
        &stranger.sign(&json!({ "no": 9, "nextUpdate": "2099-01-01", "entries": [] })),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a BLOB under a root the server does not trust: {err:?}");
    let err = import(&server, &acme.gateway_key, &blob(6, &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "only administrators import: {err:?}");
    // ECDSA signatures differ each time: "the same BLOB" is the same bytes.
    let same = import(&server, &acme.keys.admin_key, &first).await.expect("the same BLOB again");
    assert!(same.unchanged);

    // A newer BLOB marks a model already enrolled: acme's credential is flagged, globex's not.
    assert!(compromised_flags(&server, &acme).await.is_empty());
    let newer =
        import(&server, &acme.keys.admin_key, &blob(6, &[entry(LATER_COMPROMISED, "USER_KEY_REMOTE_COMPROMISE")]))
            .await
            .expect("newer");
    assert_eq!((newer.previous_no, newer.flagged), (5, 1), "{newer:?}");
    let flags = compromised_flags(&server, &acme).await;
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].0, early[0]);
    assert!(flags[0].1.contains("USER_KEY_REMOTE_COMPROMISE"), "{}", flags[0].1);
    assert!(compromised_flags(&server, &globex).await.is_empty(), "another tenant's credentials are untouched");

    // Each import that changed something is audited with its no; the status shows the last.
    let mut reports = server.reports().await;
    let log = reports
        .list_audit_log(authed(&acme.analyst_key, pb::ListAuditLogRequest::default()))
        .await
        .expect("audit")
        .into_inner();
    let imports: Vec<&str> =
        log.entries.iter().filter(|e| e.action == "mds.imported").map(|e| e.details_json.as_str()).collect();
    assert_eq!(imports.len(), 2, "{imports:?}");
    assert!(imports.iter().any(|d| d.contains("\"no\":6") && d.contains("\"previous_no\":5")), "{imports:?}");
    let mut admin = server.admin().await;
    let status =
        admin.get_mds_status(authed(&acme.analyst_key, pb::GetMdsStatusRequest {})).await.expect("status").into_inner();
    assert!(status.operator.is_none());
    assert_eq!(status.tenant.map(|t| (t.no, t.stale)), Some((6, false)));
    let status = admin
        .get_mds_status(authed(&globex.analyst_key, pb::GetMdsStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(status.tenant.is_none(), "globex sees nothing of acme's import");
}

#[tokio::test]
async fn an_upload_that_is_not_a_blob_is_refused_with_a_reason() {
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    for (blob, expected) in [("", "no BLOB was sent"), ("not.a.jws", "refused"), ("{\"no\": 1}", "refused")] {
        let err = import(&server, &acme.keys.admin_key, blob).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{blob:?}: {err:?}");
        assert!(err.message().contains(expected), "{blob:?}: {}", err.message());
    }
    let mut admin = server.admin().await;
    let chunks = vec![pb::ImportMdsChunk { data: vec![0xff, 0xfe, 0x00] }];
    let err = admin.import_mds(authed(&acme.keys.admin_key, tokio_stream::iter(chunks))).await.unwrap_err();
    assert!(err.message().contains("not UTF-8"), "{}", err.message());
    let err = admin.import_mds(tokio_stream::iter(vec![pb::ImportMdsChunk { data: b"x".to_vec() }])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}
