//! What OpenVPN hands a script, parsed strictly: the `via-file` credentials
//! file and the environment. Pure (no I/O) so it can be fuzzed; every
//! accepted value is bounded and free of control characters, because it ends
//! up in a gRPC request and in OpenVPN's log.

use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest credentials file read (bytes): OpenVPN caps each field at 4096
/// bytes (`USER_PASS_LEN`), so anything bigger did not come from OpenVPN.
pub const MAX_CREDENTIALS_FILE: usize = 8192;
/// Longest username (the worker external id), tetherd's limit for ids.
pub const MAX_USERNAME: usize = 256;
/// Longest password (an access token is at most 4096 bytes).
pub const MAX_PASSWORD: usize = 4096;
/// Longest value accepted for an environment variable this module reads.
pub const MAX_ENV_VALUE: usize = 4096;

/// A client's `--setenv UV_TETHER_TOKEN <token> --push-peer-info` arrives
/// under this name (OpenVPN forwards only `IV_*` and `UV_*` names, unchanged).
/// It is read so the commands can refuse it with a reason: OpenVPN cuts
/// peer-info lines at 255 bytes, shorter than an access token.
pub const PEER_TOKEN_VAR: &str = "UV_TETHER_TOKEN";

/// The password a client sends when it has no access token: OpenVPN's client
/// prompts for an empty password instead of sending it, so it needs a stand-in.
pub const NO_TOKEN_PASSWORD: &str = "-";

/// The two lines of an `auth-user-pass-verify … via-file` file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    /// An access token, [`NO_TOKEN_PASSWORD`], or empty.
    pub password: String,
}

impl Credentials {
    /// The access token in the password, if it holds one.
    pub fn token(&self) -> Option<&str> {
        Some(self.password.as_str()).filter(|p| !p.is_empty() && *p != NO_TOKEN_PASSWORD)
    }
}

impl fmt::Debug for Credentials {
    // The password may be a bearer token: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &format_args!("<{} bytes>", self.password.len()))
            .finish()
    }
}

/// Why OpenVPN's input was refused. Messages never repeat a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenVpnInputError {
    TooLarge { len: usize, max: usize },
    NotUtf8 { what: &'static str },
    LineCount { found: usize },
    EmptyUsername,
    TooLong { what: &'static str, len: usize, max: usize },
    ControlCharacter { what: &'static str },
    BadAddress { var: &'static str },
    Conflict { first: &'static str, second: &'static str },
}

impl fmt::Display for OpenVpnInputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "the credentials file has {len} bytes, more than the {max} OpenVPN can write")
            }
            Self::NotUtf8 { what } => write!(f, "{what} is not UTF-8"),
            Self::LineCount { found } => {
                write!(f, "the credentials file has {found} line(s); OpenVPN writes exactly two (username, password)")
            }
            Self::EmptyUsername => {
                write!(f, "the username is empty; the client must send its worker id as the username")
            }
            Self::TooLong { what, len, max } => write!(f, "{what} has {len} bytes, more than {max}"),
            Self::ControlCharacter { what } => write!(f, "{what} contains a control character"),
            Self::BadAddress { var } => write!(f, "${var} is not an IP address of its family"),
            Self::Conflict { first, second } => write!(f, "${first} and ${second} name different addresses"),
        }
    }
}

impl std::error::Error for OpenVpnInputError {}

/// Parses the file OpenVPN writes for `via-file`: `username\npassword\n`
/// (the final newline optional). The username must be non-empty.
pub fn parse_credentials_file(bytes: &[u8]) -> Result<Credentials, OpenVpnInputError> {
    if bytes.len() > MAX_CREDENTIALS_FILE {
        return Err(OpenVpnInputError::TooLarge { len: bytes.len(), max: MAX_CREDENTIALS_FILE });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| OpenVpnInputError::NotUtf8 { what: "the credentials file" })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = if body.is_empty() && text.is_empty() { Vec::new() } else { body.split('\n').collect() };
    let [username, password] = lines.as_slice() else {
        return Err(OpenVpnInputError::LineCount { found: lines.len() });
    };
    let username = field("the username", username, MAX_USERNAME)?;
    if username.trim().is_empty() {
        return Err(OpenVpnInputError::EmptyUsername);
    }
    let password = field("the password", password, MAX_PASSWORD)?;
    Ok(Credentials { username: username.to_string(), password: password.to_string() })
}

fn field<'a>(what: &'static str, value: &'a str, max: usize) -> Result<&'a str, OpenVpnInputError> {
    if value.len() > max {
        return Err(OpenVpnInputError::TooLong { what, len: value.len(), max });
    }
    if value.chars().any(char::is_control) {
        return Err(OpenVpnInputError::ControlCharacter { what });
    }
    Ok(value)
}

/// The variables of a script's environment that Tether reads. Empty values
/// count as absent (OpenVPN sets some variables to "" when it has nothing).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScriptEnv {
    pub script_type: Option<String>,
    /// The verified client certificate's CN.
    pub common_name: Option<String>,
    pub username: Option<String>,
    /// `trusted_ip`/`trusted_ip6` (client-connect), else `untrusted_ip`/`untrusted_ip6`.
    pub source_ip: Option<IpAddr>,
    /// [`PEER_TOKEN_VAR`], when the client pushed one.
    pub peer_token: Option<String>,
}

impl fmt::Debug for ScriptEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptEnv")
            .field("script_type", &self.script_type)
            .field("common_name", &self.common_name)
            .field("username", &self.username)
            .field("source_ip", &self.source_ip)
            .field("peer_token", &self.peer_token.as_ref().map(|t| format!("<{} bytes>", t.len())))
            .finish()
    }
}

/// Address variables in order of preference, with their family.
const ADDRESS_VARS: [(&str, bool); 4] =
    [("trusted_ip", false), ("trusted_ip6", true), ("untrusted_ip", false), ("untrusted_ip6", true)];

impl ScriptEnv {
    /// Reads the variables Tether needs from `vars` (e.g. `std::env::vars_os()`)
    /// and ignores the rest. A variable Tether reads that is not UTF-8, too
    /// long, holds a control character or is not a valid address is an error,
    /// not skipped: a script must not decide on half of its input.
    pub fn from_vars<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ScriptEnv, OpenVpnInputError> {
        let mut env = ScriptEnv::default();
        let mut addresses: [Option<IpAddr>; 4] = [None; 4];
        for (name, value) in vars {
            let Some(name) = name.as_ref().to_str() else { continue };
            let Some(name) = known_name(name) else { continue };
            let value = value.as_ref().to_str().ok_or(OpenVpnInputError::NotUtf8 { what: name_as_what(name) })?;
            let value = field(name_as_what(name), value, MAX_ENV_VALUE)?;
            if value.is_empty() {
                continue;
            }
            if let Some(index) = ADDRESS_VARS.iter().position(|(var, _)| *var == name) {
                let is_v6 = ADDRESS_VARS[index].1;
                addresses[index] = Some(parse_address(name, value, is_v6)?);
                continue;
            }
            let slot = match name {
                "script_type" => &mut env.script_type,
                "common_name" => &mut env.common_name,
                "username" => &mut env.username,
                _ => &mut env.peer_token,
            };
            *slot = Some(value.to_string());
        }
        env.source_ip = pick_address(&addresses)?;
        Ok(env)
    }
}

/// The variable names this module reads, as `'static` strings for messages.
fn known_name(name: &str) -> Option<&'static str> {
    ["script_type", "common_name", "username", PEER_TOKEN_VAR]
        .into_iter()
        .chain(ADDRESS_VARS.iter().map(|(var, _)| *var))
        .find(|known| *known == name)
}

fn name_as_what(name: &'static str) -> &'static str {
    match name {
        "script_type" => "$script_type",
        "common_name" => "$common_name",
        "username" => "$username",
        "trusted_ip" => "$trusted_ip",
        "trusted_ip6" => "$trusted_ip6",
        "untrusted_ip" => "$untrusted_ip",
        "untrusted_ip6" => "$untrusted_ip6",
        _ => "$UV_TETHER_TOKEN",
    }
}

fn parse_address(var: &'static str, value: &str, is_v6: bool) -> Result<IpAddr, OpenVpnInputError> {
    let parsed =
        if is_v6 { value.parse::<Ipv6Addr>().map(IpAddr::V6) } else { value.parse::<Ipv4Addr>().map(IpAddr::V4) };
    parsed.map_err(|_| OpenVpnInputError::BadAddress { var })
}

/// The first address present; a trusted and an untrusted address of the
/// same family that disagree mean the environment cannot be trusted.
fn pick_address(addresses: &[Option<IpAddr>; 4]) -> Result<Option<IpAddr>, OpenVpnInputError> {
    for family in 0..2 {
        if let (Some(trusted), Some(untrusted)) = (addresses[family], addresses[family + 2])
            && trusted != untrusted
        {
            return Err(OpenVpnInputError::Conflict {
                first: ADDRESS_VARS[family].0,
                second: ADDRESS_VARS[family + 2].0,
            });
        }
    }
    Ok(addresses.iter().flatten().next().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(text: &[u8]) -> Result<Credentials, OpenVpnInputError> {
        parse_credentials_file(text)
    }

    #[test]
    fn credentials_as_openvpn_writes_them() {
        let c = creds(b"w-alice\ntt1.abc.def.ghi\n").unwrap();
        assert_eq!(c.username, "w-alice");
        assert_eq!(c.password, "tt1.abc.def.ghi");
        let c = creds(b"w-alice\n\n").unwrap();
        assert_eq!(c.password, "");
        assert_eq!(c.token(), None);
        assert_eq!(creds(b"w-alice\n-\n").unwrap().token(), None);
        assert_eq!(creds(b"w-alice\ntt1.x\n").unwrap().token(), Some("tt1.x"));
        // Without the final newline too.
        assert_eq!(creds(b"w-bob\nsecret").unwrap().username, "w-bob");
        assert!(!format!("{c:?}").contains("tt1"), "Debug must not print the password");
    }

    #[test]
    fn credentials_with_the_wrong_shape_are_refused() {
        assert_eq!(creds(b""), Err(OpenVpnInputError::LineCount { found: 0 }));
        assert_eq!(creds(b"\n"), Err(OpenVpnInputError::LineCount { found: 1 }));
        assert_eq!(creds(b"only-one-line\n"), Err(OpenVpnInputError::LineCount { found: 1 }));
        assert_eq!(creds(b"a\nb\nc\n"), Err(OpenVpnInputError::LineCount { found: 3 }));
        assert_eq!(creds(b"a\nb\n\n"), Err(OpenVpnInputError::LineCount { found: 3 }));
        assert_eq!(creds(b"\npassword\n"), Err(OpenVpnInputError::EmptyUsername));
        assert_eq!(creds(b"   \npassword\n"), Err(OpenVpnInputError::EmptyUsername));
        assert_eq!(creds(b"w\r\npass\r\n"), Err(OpenVpnInputError::ControlCharacter { what: "the username" }));
        assert_eq!(creds(b"w\np\0ss\n"), Err(OpenVpnInputError::ControlCharacter { what: "the password" }));
        assert_eq!(creds(b"w\xff\np\n"), Err(OpenVpnInputError::NotUtf8 { what: "the credentials file" }));
    }

    #[test]
    fn credentials_are_bounded() {
        let long_user = format!("{}\n\n", "u".repeat(MAX_USERNAME + 1));
        assert!(matches!(creds(long_user.as_bytes()), Err(OpenVpnInputError::TooLong { what: "the username", .. })));
        let long_pass = format!("w\n{}\n", "p".repeat(MAX_PASSWORD + 1));
        assert!(matches!(creds(long_pass.as_bytes()), Err(OpenVpnInputError::TooLong { what: "the password", .. })));
        let max = format!("{}\n{}\n", "u".repeat(MAX_USERNAME), "p".repeat(MAX_PASSWORD));
        assert!(creds(max.as_bytes()).is_ok());
        let huge = vec![b'a'; MAX_CREDENTIALS_FILE + 1];
        assert!(matches!(creds(&huge), Err(OpenVpnInputError::TooLarge { .. })));
        // The password itself never appears in an error message.
        let err = creds(b"w\nsecret\x07token\n").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    fn env(vars: &[(&str, &str)]) -> Result<ScriptEnv, OpenVpnInputError> {
        ScriptEnv::from_vars(vars.iter().copied())
    }

    #[test]
    fn environment_of_user_pass_verify() {
        let e = env(&[
            ("script_type", "user-pass-verify"),
            ("common_name", "dev_123"),
            ("untrusted_ip", "127.0.0.1"),
            ("untrusted_port", "50000"),
            ("IV_PLAT", "linux"),
            ("UV_TETHER_TOKEN", "tt1.a.b.c"),
            ("PATH", "\u{7}ignored"),
        ])
        .unwrap();
        assert_eq!(e.script_type.as_deref(), Some("user-pass-verify"));
        assert_eq!(e.common_name.as_deref(), Some("dev_123"));
        assert_eq!(e.source_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(e.peer_token.as_deref(), Some("tt1.a.b.c"));
        assert_eq!(e.username, None);
        assert!(!format!("{e:?}").contains("tt1"));
    }

    #[test]
    fn trusted_address_is_preferred_and_ipv6_is_read() {
        let e = env(&[("trusted_ip", "192.0.2.7"), ("untrusted_ip", "192.0.2.7"), ("username", "w")]).unwrap();
        assert_eq!(e.source_ip, Some("192.0.2.7".parse().unwrap()));
        let e = env(&[("untrusted_ip6", "2001:db8::1")]).unwrap();
        assert_eq!(e.source_ip, Some("2001:db8::1".parse().unwrap()));
        let e = env(&[("common_name", ""), ("untrusted_ip", "")]).unwrap();
        assert_eq!(e, ScriptEnv::default());
    }

    #[test]
    fn bad_environment_is_refused() {
        assert_eq!(env(&[("untrusted_ip", "not-an-ip")]), Err(OpenVpnInputError::BadAddress { var: "untrusted_ip" }));
        assert_eq!(env(&[("untrusted_ip", "2001:db8::1")]), Err(OpenVpnInputError::BadAddress { var: "untrusted_ip" }));
        assert_eq!(env(&[("untrusted_ip6", "127.0.0.1")]), Err(OpenVpnInputError::BadAddress { var: "untrusted_ip6" }));
        assert_eq!(
            env(&[("trusted_ip", "192.0.2.1"), ("untrusted_ip", "192.0.2.2")]),
            Err(OpenVpnInputError::Conflict { first: "trusted_ip", second: "untrusted_ip" })
        );
        assert_eq!(
            env(&[("common_name", "dev\n1")]),
            Err(OpenVpnInputError::ControlCharacter { what: "$common_name" })
        );
        let long = "x".repeat(MAX_ENV_VALUE + 1);
        assert!(matches!(env(&[("UV_TETHER_TOKEN", &long)]), Err(OpenVpnInputError::TooLong { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_refused_only_where_read() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff, 0xfe]);
        let ok = ScriptEnv::from_vars([(OsString::from("HOME"), bad.clone())]);
        assert_eq!(ok, Ok(ScriptEnv::default()));
        let err = ScriptEnv::from_vars([(OsString::from("common_name"), bad.clone())]);
        assert_eq!(err, Err(OpenVpnInputError::NotUtf8 { what: "$common_name" }));
        let ignored = ScriptEnv::from_vars([(bad, OsString::from("x"))]);
        assert_eq!(ignored, Ok(ScriptEnv::default()));
    }
}
