//! `tether gateway openvpn-verify|openvpn-connect` script input: the `via-file` credentials
//! file and the script environment. The parser is a pure module of the tether binary crate
//! (clients/tether/src/commands/openvpn/input.rs), compiled in here as it is.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

#[path = "../../clients/tether/src/commands/openvpn/input.rs"]
#[allow(dead_code)]
mod input;

use input::{Credentials, MAX_ENV_VALUE, MAX_PASSWORD, MAX_USERNAME, ScriptEnv, parse_credentials_file};

use crate::frame::split;

/// Input = frame(credentials file) ‖ environment (NAME=VALUE entries separated by NUL, as
/// in /proc/<pid>/environ). Accepted values are bounded and free of control characters, the
/// credentials file reads back from its canonical form, the address is one the environment
/// gave, and secrets never appear in Debug output.
pub fn openvpn(data: &[u8]) {
    let parts = split(data, 2);
    if let Ok(credentials) = parse_credentials_file(parts[0]) {
        check_credentials(&credentials);
    }
    let vars: Vec<(OsString, OsString)> = parts[1]
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.iter().position(|&b| b == b'=') {
            Some(eq) => (OsString::from_vec(entry[..eq].to_vec()), OsString::from_vec(entry[eq + 1..].to_vec())),
            None => (OsString::from_vec(entry.to_vec()), OsString::new()),
        })
        .collect();
    if let Ok(env) = ScriptEnv::from_vars(vars.iter().cloned()) {
        check_env(&env, &vars);
    }
}

fn clean(value: &str, max: usize) -> bool {
    value.len() <= max && !value.chars().any(char::is_control)
}

fn check_credentials(c: &Credentials) {
    assert!(!c.username.trim().is_empty() && clean(&c.username, MAX_USERNAME));
    assert!(clean(&c.password, MAX_PASSWORD));
    let canonical = format!("{}\n{}\n", c.username, c.password);
    assert_eq!(parse_credentials_file(canonical.as_bytes()).as_ref(), Ok(c), "canonical form reads back");
    if let Some(token) = c.token() {
        assert!(!token.is_empty() && token != input::NO_TOKEN_PASSWORD);
    }
    let shown = format!("{c:?}");
    if c.password.len() >= 16 && !format!("{:?}", c.username).contains(&c.password) {
        assert!(!shown.contains(&c.password), "Debug shows the password");
    }
}

fn check_env(env: &ScriptEnv, vars: &[(OsString, OsString)]) {
    for value in [&env.script_type, &env.common_name, &env.username, &env.peer_token].into_iter().flatten() {
        assert!(!value.is_empty() && clean(value, MAX_ENV_VALUE));
    }
    if let Some(ip) = env.source_ip {
        let given = vars.iter().any(|(name, value)| {
            name.to_str().is_some_and(|n| n.contains("_ip")) && value.to_str().and_then(|v| v.parse().ok()) == Some(ip)
        });
        assert!(given, "an address the environment did not give");
    }
    if let Some(token) = &env.peer_token
        && token.len() >= 16
    {
        let others = format!("{:?}{:?}{:?}", env.script_type, env.common_name, env.username);
        assert!(
            others.contains(token.as_str()) || !format!("{env:?}").contains(token.as_str()),
            "Debug shows the token"
        );
    }
}
