//! Reports for security teams against a real tetherd: filtered flag,
//! failure and session listings with stable cursors, a device's timeline,
//! the period summary, malformed filters, tenant isolation, and the
//! `tether report` command's table, JSON and CSV output.

use std::collections::HashSet;
use tether_e2e::fixtures::{
    EnrolledDevice, Org, answer_json, challenge_now, enroll, prove_presence, sign, test_aaguid,
};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Code;

/// Where the gateway says the laptops connect from.
const EGRESS: &str = "127.0.0.66";
/// Where the test's own calls (enrollment, presence) come from: the shared egress.
const CLUSTER: &str = "127.0.0.1";

async fn check_from(server: &Server, org: &Org, device: &EnrolledDevice, ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    let request = pb::CheckAccessRequest {
        worker_external_id: device.worker.clone(),
        device_id: device.device_id.clone(),
        source_ip: ip.into(),
        gateway_id: "vpn-1".into(),
        ..Default::default()
    };
    access.check_access(authed(&org.gateway_key, request)).await.unwrap().into_inner()
}

/// One correct answer, then the same assertion twice more: two `replayed` failures.
async fn answer_then_replay(server: &Server, org: &Org, device: &mut EnrolledDevice) {
    let challenge = challenge_now(server, org, device, 60).await;
    let json = sign(&challenge, &mut device.auth);
    answer_json(server, &challenge.challenge_id, json.clone()).await.unwrap();
    for _ in 0..2 {
        assert!(answer_json(server, &challenge.challenge_id, json.clone()).await.is_err());
    }
}

async fn flags(server: &Server, key: &str, request: pb::ListFlagsRequest) -> Result<Vec<pb::Flag>, tonic::Status> {
    let mut reports = server.reports().await;
    reports.list_flags(authed(key, request)).await.map(|r| r.into_inner().flags)
}

async fn timeline(server: &Server, key: &str, device: &str, page: Option<pb::Page>) -> pb::GetDeviceTimelineResponse {
    let mut reports = server.reports().await;
    let request = pb::GetDeviceTimelineRequest { device_id: device.into(), range: None, page };
    reports.get_device_timeline(authed(key, request)).await.unwrap().into_inner()
}

async fn all_sessions(server: &Server, key: &str, page_size: u32) -> Vec<String> {
    let mut reports = server.reports().await;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let request =
            pb::ListSessionsRequest { page: Some(pb::Page { page_size, page_token: token }), ..Default::default() };
        let page = reports.list_sessions(authed(key, request)).await.unwrap().into_inner();
        seen.extend(page.sessions.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
}

/// Two employers: acme with an unattested laptop, two laptops that fail
/// presence by replay, and (with globex's laptop) one shared egress.
struct World {
    server: Server,
    acme: Org,
    globex: Org,
    alice: EnrolledDevice,
    bob: EnrolledDevice,
    unattested_device: String,
    carol: EnrolledDevice,
}

async fn world() -> World {
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    acme.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let unattested_device = acme.register_device(&server, "dave", "SN-SELF-1").await;
    let token = acme.token(&server, &unattested_device).await;
    let mut auth = SoftAuthenticator::new(AttestationMode::SelfAttestation, test_aaguid()).unwrap();
    assert!(!enroll(&server, &token, &mut auth).await.unwrap().attested);

    let mut alice = acme.enrolled_device(&server, "alice").await;
    let mut bob = acme.enrolled_device(&server, "bob").await;
    for device in [&mut alice, &mut bob] {
        prove_presence(&server, device).await;
    }
    // Alice's first session comes before any cluster exists.
    check_from(&server, &acme, &alice, EGRESS).await;
    // Every call of this test comes from 127.0.0.1: globex's laptop enrolling
    // there makes three workers of two employers behind one address.
    let mut carol = globex.enrolled_device(&server, "carol").await;
    prove_presence(&server, &mut carol).await;
    answer_then_replay(&server, &acme, &mut alice).await;
    for (org, device) in [(&acme, &alice), (&acme, &bob), (&globex, &carol)] {
        check_from(&server, org, device, EGRESS).await;
    }
    check_from(&server, &acme, &alice, EGRESS).await;
    World { server, acme, globex, alice, bob, unattested_device, carol }
}

#[tokio::test]
async fn flags_filter_by_kind_severity_status_device_and_time() {
    let w = world().await;
    let (server, key) = (&w.server, w.acme.analyst_key.as_str());
    let all = flags(server, key, pb::ListFlagsRequest::default()).await.unwrap();
    let kinds: HashSet<&str> = all.iter().map(|f| f.kind.as_str()).collect();
    assert!(kinds.contains("unattested_hardware") && kinds.contains("shared_egress"), "{kinds:?}");

    let by_kind =
        flags(server, key, pb::ListFlagsRequest { kinds: vec!["unattested_hardware".into()], ..Default::default() })
            .await
            .unwrap();
    assert_eq!(by_kind.len(), 1);
    assert_eq!(by_kind[0].device_id, w.unattested_device);

    let review = pb::FlagSeverity::Review as i32;
    let by_severity =
        flags(server, key, pb::ListFlagsRequest { severities: vec![review], ..Default::default() }).await.unwrap();
    assert!(!by_severity.is_empty() && by_severity.iter().all(|f| f.severity == review));
    assert!(by_severity.len() < all.len() || all.iter().all(|f| f.severity == review));

    let by_device =
        flags(server, key, pb::ListFlagsRequest { device_id: w.bob.device_id.clone(), ..Default::default() })
            .await
            .unwrap();
    assert!(!by_device.is_empty() && by_device.iter().all(|f| f.device_id == w.bob.device_id));

    // Acknowledge one flag: the status filter and the timeline both see it.
    let mut reports = server.reports().await;
    let target = by_device[0].clone();
    let update = pb::UpdateFlagRequest {
        flag_id: target.id.clone(),
        status: pb::FlagStatus::Acknowledged as i32,
        note: "checking with bob".into(),
    };
    reports.update_flag(authed(key, update)).await.unwrap();
    let acked = flags(
        server,
        key,
        pb::ListFlagsRequest { statuses: vec![pb::FlagStatus::Acknowledged as i32], ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(acked.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), [target.id.as_str()]);
    let bob_timeline = timeline(server, key, &w.bob.device_id, None).await;
    let review_entry = bob_timeline
        .entries
        .iter()
        .find_map(|e| match &e.detail {
            Some(pb::timeline_entry::Detail::Review(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("the review is on the timeline");
    assert_eq!(
        (review_entry.flag_id.as_str(), review_entry.action.as_str()),
        (target.id.as_str(), "flag.acknowledged")
    );
    assert_eq!(review_entry.note, "checking with bob");

    let newest = all.iter().map(|f| f.raised_at_ms).max().unwrap();
    let later = pb::TimeRange { since_ms: newest + 1, until_ms: 0 };
    assert!(
        flags(server, key, pb::ListFlagsRequest { range: Some(later), ..Default::default() }).await.unwrap().is_empty()
    );
    let earlier = pb::TimeRange { since_ms: 1, until_ms: newest };
    let before = flags(server, key, pb::ListFlagsRequest { range: Some(earlier), ..Default::default() }).await.unwrap();
    assert!(before.iter().all(|f| f.raised_at_ms < newest) && before.len() < all.len());
}

#[tokio::test]
async fn malformed_filters_are_invalid_argument_naming_the_field() {
    let w = world().await;
    let (server, key) = (&w.server, w.acme.analyst_key.as_str());
    let cases: Vec<(pb::ListFlagsRequest, &str)> = vec![
        (pb::ListFlagsRequest { kinds: vec!["laptop_farm".into()], ..Default::default() }, "kinds"),
        (pb::ListFlagsRequest { severities: vec![9], ..Default::default() }, "severities"),
        (pb::ListFlagsRequest { statuses: vec![7], ..Default::default() }, "statuses"),
        (
            pb::ListFlagsRequest { range: Some(pb::TimeRange { since_ms: 20, until_ms: 10 }), ..Default::default() },
            "range",
        ),
        (
            pb::ListFlagsRequest {
                page: Some(pb::Page { page_size: 501, page_token: String::new() }),
                ..Default::default()
            },
            "page.page_size",
        ),
        (
            pb::ListFlagsRequest {
                page: Some(pb::Page { page_size: 5, page_token: "bm90LWEtdG9rZW4".into() }),
                ..Default::default()
            },
            "page.page_token",
        ),
    ];
    for (request, field) in cases {
        let err = flags(server, key, request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    let mut reports = server.reports().await;
    let bad_outcome =
        pb::ListPresenceFailuresRequest { outcomes: vec![pb::PresenceOutcome::Ok as i32], ..Default::default() };
    let err = reports.list_presence_failures(authed(key, bad_outcome)).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().starts_with("outcomes"), "{err:?}");
    let inverted =
        pb::GetSummaryRequest { range: Some(pb::TimeRange { since_ms: 5, until_ms: 5 }), ..Default::default() };
    let err = reports.get_summary(authed(key, inverted)).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().starts_with("range"), "{err:?}");
    let too_many = pb::GetSummaryRequest { top_clusters: 1000, ..Default::default() };
    let err = reports.get_summary(authed(key, too_many)).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().starts_with("top_clusters"), "{err:?}");
    let no_device = pb::GetDeviceTimelineRequest::default();
    let err = reports.get_device_timeline(authed(key, no_device)).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("device_id"), "{err:?}");
}

#[tokio::test]
async fn paging_is_stable_while_sessions_are_recorded() {
    let w = world().await;
    let (server, key) = (&w.server, w.acme.analyst_key.as_str());
    let before = all_sessions(server, key, 500).await;
    assert_eq!(before.len(), 4, "{before:?}");
    let mut reports = server.reports().await;
    let (mut seen, mut token, mut inserted) = (Vec::new(), String::new(), 0);
    loop {
        let request =
            pb::ListSessionsRequest { page: Some(pb::Page { page_size: 2, page_token: token }), ..Default::default() };
        let page = reports.list_sessions(authed(key, request)).await.unwrap().into_inner();
        seen.extend(page.sessions.into_iter().map(|s| s.id));
        // New sessions land while the client is between pages.
        check_from(server, &w.acme, &w.bob, "127.0.0.1").await;
        inserted += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, before, "paging skipped or repeated sessions");
    let after = all_sessions(server, key, 3).await;
    assert_eq!(after.len(), before.len() + inserted);
    assert_eq!(after.iter().collect::<HashSet<_>>().len(), after.len(), "duplicates across pages");
}

#[tokio::test]
async fn sessions_carry_the_flags_open_at_the_time_and_failures_are_listed() {
    let w = world().await;
    let (server, key) = (&w.server, w.acme.analyst_key.as_str());
    // The cross-tenant cluster formed after alice's first session.
    let request = pb::ListFlagsRequest { kinds: vec!["shared_egress".into()], ..Default::default() };
    let cluster: HashSet<String> = flags(server, key, request)
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.device_id == w.alice.device_id && f.severity == pb::FlagSeverity::Review as i32)
        .map(|f| f.id)
        .collect();
    assert!(!cluster.is_empty());
    let mut reports = server.reports().await;
    let request = pb::ListSessionsRequest { device_id: w.alice.device_id.clone(), ..Default::default() };
    let sessions = reports.list_sessions(authed(key, request)).await.unwrap().into_inner().sessions;
    assert_eq!(sessions.len(), 3);
    let newest = &sessions[0];
    assert!(newest.flags.iter().any(|f| cluster.contains(&f.id) && !f.attached), "{:?}", newest.flags);
    let oldest = sessions.last().unwrap();
    assert!(oldest.flags.iter().all(|f| !cluster.contains(&f.id)), "a flag raised later: {:?}", oldest.flags);
    assert!(sessions[1].flags.iter().any(|f| cluster.contains(&f.id)), "{:?}", sessions[1].flags);

    let request = pb::ListPresenceFailuresRequest { device_id: w.alice.device_id.clone(), ..Default::default() };
    let failures = reports.list_presence_failures(authed(key, request)).await.unwrap().into_inner().events;
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|e| e.outcome == pb::PresenceOutcome::Replayed as i32));
}

#[tokio::test]
async fn a_device_timeline_is_complete_and_newest_first() {
    let w = world().await;
    let (server, key) = (&w.server, w.acme.analyst_key.as_str());
    let full = timeline(server, key, &w.alice.device_id, None).await;
    let device = full.device.clone().unwrap();
    assert_eq!((device.id.as_str(), device.worker_external_id.as_str()), (w.alice.device_id.as_str(), "alice"));
    use pb::timeline_entry::Detail;
    let kinds: Vec<&str> = full
        .entries
        .iter()
        .map(|e| match e.detail.as_ref().unwrap() {
            Detail::Device(_) => "device",
            Detail::Enrollment(_) => "enrollment",
            Detail::Presence(_) => "presence",
            Detail::Session(_) => "session",
            Detail::Flag(_) => "flag",
            Detail::Review(_) => "review",
        })
        .collect();
    for wanted in ["device", "enrollment", "presence", "session", "flag"] {
        assert!(kinds.contains(&wanted), "{wanted} missing: {kinds:?}");
    }
    assert_eq!(kinds.last(), Some(&"device"), "registration is the oldest entry");
    assert!(full.entries.windows(2).all(|p| p[0].at_ms >= p[1].at_ms), "not newest first");
    let enrollment = full.entries.iter().find_map(|e| match &e.detail {
        Some(Detail::Enrollment(i)) => Some(i.clone()),
        _ => None,
    });
    let enrollment = enrollment.unwrap();
    assert_eq!((enrollment.format.as_str(), enrollment.attested), ("packed", true));
    assert_eq!(enrollment.aaguid, test_aaguid().to_string());
    assert!(!enrollment.trust_anchor.is_empty() && enrollment.tpm.is_none());
    let outcomes: Vec<i32> = full
        .entries
        .iter()
        .filter_map(|e| match &e.detail {
            Some(Detail::Presence(p)) => Some(p.outcome),
            _ => None,
        })
        .collect();
    assert!(outcomes.contains(&(pb::PresenceOutcome::Ok as i32)));
    assert_eq!(outcomes.iter().filter(|o| **o == pb::PresenceOutcome::Replayed as i32).count(), 2);
    let ips: HashSet<&str> = full.locations.iter().map(|l| l.source_ip.as_str()).collect();
    assert!(ips.contains(EGRESS) && ips.contains("127.0.0.1"), "{ips:?}");

    // Small pages give exactly the same sequence.
    let (mut paged, mut token) = (Vec::new(), String::new());
    loop {
        let page = timeline(server, key, &w.alice.device_id, Some(pb::Page { page_size: 3, page_token: token })).await;
        paged.extend(page.entries.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, full.entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_summary_counts_clusters_and_repeated_failures() {
    let w = world().await;
    let (server, key) = (&w.server, w.acme.analyst_key.as_str());
    let mut reports = server.reports().await;
    let request =
        pb::GetSummaryRequest { range: Some(pb::TimeRange { since_ms: 1, until_ms: 0 }), ..Default::default() };
    let summary = reports.get_summary(authed(key, request)).await.unwrap().into_inner();
    let all = flags(
        server,
        key,
        pb::ListFlagsRequest {
            page: Some(pb::Page { page_size: 500, page_token: String::new() }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.flag_counts.iter().map(|c| c.count).sum::<i64>(), all.len() as i64);
    let unattested = summary.flag_counts.iter().find(|c| c.kind == "unattested_hardware").unwrap();
    assert_eq!((unattested.severity, unattested.count), (pb::FlagSeverity::Review as i32, 1));

    let cluster = summary.clusters.iter().find(|c| c.egress.split('/').next() == Some(CLUSTER)).expect("the cluster");
    assert_eq!((cluster.tenants, cluster.workers), (2, 3));
    let named: HashSet<&str> = cluster.own_devices.iter().map(|m| m.device_id.as_str()).collect();
    assert_eq!(named, HashSet::from([w.alice.device_id.as_str(), w.bob.device_id.as_str()]));

    let failing: Vec<&str> = summary.repeated_failures.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(failing, [w.alice.device_id.as_str()]);
    assert_eq!(summary.repeated_failures[0].failures, 2);
}

#[tokio::test]
async fn another_tenants_analyst_sees_nothing_of_acme() {
    let w = world().await;
    let (server, key) = (&w.server, w.globex.analyst_key.as_str());
    let acme_ids = [w.alice.device_id.as_str(), w.bob.device_id.as_str(), w.unattested_device.as_str()];
    let theirs = flags(server, key, pb::ListFlagsRequest::default()).await.unwrap();
    assert!(!theirs.is_empty() && theirs.iter().all(|f| f.device_id == w.carol.device_id));
    for flag in &theirs {
        for id in acme_ids.iter().chain(&["alice", "bob"]) {
            assert!(!flag.evidence_json.contains(id), "acme's {id} in globex evidence: {}", flag.evidence_json);
        }
    }
    let mut reports = server.reports().await;
    let err = reports
        .get_device_timeline(authed(
            key,
            pb::GetDeviceTimelineRequest { device_id: w.alice.device_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let request = pb::ListSessionsRequest { device_id: w.alice.device_id.clone(), ..Default::default() };
    assert!(reports.list_sessions(authed(key, request)).await.unwrap().into_inner().sessions.is_empty());
    let request = pb::ListPresenceFailuresRequest::default();
    assert!(reports.list_presence_failures(authed(key, request)).await.unwrap().into_inner().events.is_empty());
    let summary = reports.get_summary(authed(key, pb::GetSummaryRequest::default())).await.unwrap().into_inner();
    let text = format!("{summary:?}");
    for id in acme_ids {
        assert!(!text.contains(id), "acme's device {id} in globex's summary");
    }
    assert!(summary.clusters.iter().any(|c| c.tenants == 2 && c.own_devices.len() == 1));
}

/// Minimal RFC 4180 reader for checking the CLI's output.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted, mut chars) =
        (Vec::new(), Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

#[tokio::test]
async fn the_cli_prints_tables_json_and_csv() {
    let w = world().await;
    let env = [("TETHER_SERVER", w.server.url.as_str()), ("TETHER_API_KEY", w.acme.analyst_key.as_str())];
    let tether = |args: &[&str]| {
        let out = run_bin("tether", args, &env);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let all = flags(&w.server, &w.acme.analyst_key, pb::ListFlagsRequest::default()).await.unwrap();

    let rows = parse_csv(&tether(&["report", "flags", "--output", "csv"]));
    assert_eq!(rows[0][..4], ["raised_at", "severity", "status", "kind"]);
    assert_eq!(rows.len(), all.len() + 1);
    let evidence_col = rows[0].iter().position(|h| h == "evidence").unwrap();
    let shared = rows.iter().find(|r| r[3] == "shared_egress").expect("a shared_egress row");
    let evidence: serde_json::Value =
        serde_json::from_str(&shared[evidence_col]).expect("evidence survives CSV quoting");
    assert!(evidence["egress"].as_str().unwrap().contains(CLUSTER));
    assert_eq!(evidence["members_other_tenants"], 1, "globex's laptop is counted, not named: {evidence}");

    let rows = parse_csv(&tether(&["report", "flags", "--kind", "unattested_hardware", "--output", "csv"]));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][5], w.unattested_device);

    let rows = parse_csv(&tether(&["report", "failures", "--device", &w.alice.device_id, "--output", "csv"]));
    assert_eq!(rows.len(), 3);
    assert!(rows[1..].iter().all(|r| r[1] == "replayed"));
    // The old name still works.
    let table = tether(&["report", "presence-failures"]);
    assert!(table.starts_with("AT ") && table.contains("replayed"), "{table}");

    let sessions: serde_json::Value =
        serde_json::from_str(&tether(&["--output", "json", "report", "sessions"])).unwrap();
    let listed = sessions["sessions"].as_array().unwrap();
    assert!(listed.iter().any(|s| s["flags"].as_array().unwrap().iter().any(|f| f["kind"] == "shared_egress")));

    let timeline: serde_json::Value = serde_json::from_str(&tether(&[
        "--output",
        "json",
        "report",
        "timeline",
        &w.alice.device_id,
        "--limit",
        "2",
        "--all",
    ]))
    .unwrap();
    let entries = timeline["entries"].as_array().unwrap();
    assert_eq!(entries.last().unwrap()["type"], "registered");
    assert!(entries.iter().any(|e| e["type"] == "enrollment" && e["detail"]["format"] == "packed"));
    assert_eq!(timeline["next_page_token"], serde_json::Value::Null);
    let rows = parse_csv(&tether(&["report", "timeline", &w.alice.device_id, "--output", "csv"]));
    assert_eq!(rows[0], ["at", "type", "source_ip", "geo", "summary", "id"]);
    assert_eq!(rows.len(), entries.len() + 1);

    let table = tether(&["report", "summary", "--since", "1d"]);
    assert!(table.contains("shared egress clusters:") && table.contains(CLUSTER), "{table}");
    let rows = parse_csv(&tether(&["report", "summary", "--since", "1d", "--output", "csv"]));
    assert!(rows.iter().any(|r| r[0] == "repeated_failures" && r[1] == w.alice.device_id && r[3] == "2"));
    assert!(rows.iter().any(|r| r[0] == "cluster" && r[6] == "2"));

    let refused = run_bin("tether", &["report", "flags", "--kind", "laptop_farm"], &env);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("kinds"));
}
