use super::*;

fn common() -> OpenVpnArgs {
    OpenVpnArgs {
        gateway: "vpn-1".into(),
        api_key_file: None,
        check_timeout: Duration::from_secs(5),
        ignore_common_name: false,
        keys: None,
    }
}

fn env(common_name: Option<&str>, ip: Option<&str>) -> ScriptEnv {
    ScriptEnv {
        common_name: common_name.map(String::from),
        source_ip: ip.map(|ip| ip.parse().unwrap()),
        ..ScriptEnv::default()
    }
}

#[test]
fn request_takes_the_device_from_the_common_name() {
    let request = access_request("w-alice", &env(Some("dev_1"), Some("127.0.0.1")), None, &common()).unwrap();
    assert_eq!(request.worker_external_id, "w-alice");
    assert_eq!(request.device_id, "dev_1");
    assert_eq!(request.source_ip, "127.0.0.1");
    assert_eq!(request.gateway_id, "vpn-1");
    assert_eq!(request.credential_id, "");
}

#[test]
fn a_token_is_passed_on_and_may_name_the_device() {
    let request = access_request("w", &env(Some("dev_1"), Some("127.0.0.1")), Some("tt1.x"), &common()).unwrap();
    assert_eq!((request.device_id.as_str(), request.access_token.as_str()), ("dev_1", "tt1.x"));
    let ignoring = OpenVpnArgs { ignore_common_name: true, ..common() };
    let request = access_request("w", &env(Some("dev_1"), Some("127.0.0.1")), Some("tt1.x"), &ignoring).unwrap();
    assert_eq!((request.device_id.as_str(), request.access_token.as_str()), ("", "tt1.x"));
}

#[test]
fn no_device_or_no_address_is_refused() {
    let refused = |result: Result<CheckAccessRequest, Refusal>| matches!(result, Err(Refusal::Input(_)));
    assert!(refused(access_request("w", &env(None, Some("127.0.0.1")), None, &common())));
    assert!(refused(access_request("w", &env(Some("dev_1"), None), None, &common())));
    let ignoring = OpenVpnArgs { ignore_common_name: true, ..common() };
    assert!(refused(access_request("w", &env(Some("dev_1"), Some("127.0.0.1")), None, &ignoring)));
}

#[test]
fn wrong_hook_is_a_configuration_error() {
    let verify_env = ScriptEnv { script_type: Some("user-pass-verify".into()), ..ScriptEnv::default() };
    assert!(expect_script_type(&verify_env, "user-pass-verify").is_ok());
    assert!(matches!(expect_script_type(&verify_env, "client-connect"), Err(Refusal::Error(_))));
}

#[test]
fn no_script_type_is_refused_not_assumed() {
    for hook in ["user-pass-verify", "client-connect"] {
        let Err(Refusal::Error(message)) = expect_script_type(&ScriptEnv::default(), hook) else {
            panic!("{hook}: a run without $script_type must be refused");
        };
        assert!(message.starts_with("no $script_type") && message.contains(hook), "{message}");
    }
}

#[test]
fn deny_reasons_are_one_clean_line() {
    let response = CheckAccessResponse {
        decision: Decision::Deny as i32,
        reasons: vec![
            tether_proto::v1::Reason {
                code: tether_proto::v1::DenyReason::Unattested as i32,
                detail: "no attested\ncredential".into(),
            },
            tether_proto::v1::Reason {
                code: tether_proto::v1::DenyReason::PresenceNever as i32,
                detail: "never present".into(),
            },
        ],
        ..Default::default()
    };
    let line = reasons(&response);
    assert_eq!(line, "unattested: no attested\\ncredential; presence_never: never present");
}

#[test]
fn reported_flags_join_the_allow_line() {
    let mut response = CheckAccessResponse { decision: Decision::Allow as i32, ..Default::default() };
    assert_eq!(reported(&response), "");
    response.open_flags.push(tether_proto::v1::OpenFlag {
        kind: "relocated".into(),
        severity: tether_proto::v1::FlagSeverity::Review as i32,
        denies: false,
    });
    assert_eq!(reported(&response), "; reported flags: relocated (review)");
}

#[test]
fn the_api_key_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "tk.abc.def\n").unwrap();
    assert_eq!(read_api_key(&path).unwrap(), "tk.abc.def");
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(read_api_key(&path), Err(Refusal::Error(_))));
    assert!(matches!(read_api_key(&dir.path().join("missing")), Err(Refusal::Error(_))));
}

#[test]
fn credentials_files_are_read_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up");
    std::fs::write(&path, "w-alice\n\n").unwrap();
    assert_eq!(read_credentials(&path).unwrap().username, "w-alice");
    std::fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
    assert!(matches!(read_credentials(&path), Err(Refusal::Input(_))));
    assert!(matches!(read_credentials(&dir.path().join("missing")), Err(Refusal::Error(_))));
}

#[test]
fn a_token_pushed_as_peer_info_is_refused_with_the_reason() {
    let with_token = ScriptEnv { peer_token: Some("tt1.cut".into()), ..ScriptEnv::default() };
    let Err(Refusal::Input(message)) = refuse_peer_token(&with_token) else { panic!("must refuse") };
    assert!(message.contains("as the password"), "{message}");
    assert!(refuse_peer_token(&ScriptEnv::default()).is_ok());
}
