//! The OpenVPN side of tests/tests/openvpn.rs: a throwaway PKI, a real
//! `openvpn` server on a loopback UDP port with Tether's hooks, and `--dev
//! null` clients. Every process is killed on drop; every wait is bounded.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tether_e2e::bin;

const SKIP_MARKER: &str = "openvpn-test-skipped.txt";
const CONNECTED: &str = "Initialization Sequence Completed";

/// Where a skipped run leaves its reason for `.ci/run` to print.
pub fn skip_marker() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(SKIP_MARKER)
}

fn openvpn_binary() -> Option<PathBuf> {
    let out = Command::new("sh").args(["-c", "command -v openvpn || ls /usr/sbin/openvpn"]).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Why the OpenVPN tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if openvpn_binary().is_none() {
        return Some("openvpn is not installed (apt-get install openvpn)".into());
    }
    if let Err(error) = OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        return Some(format!("/dev/net/tun cannot be opened ({error}); an OpenVPN server needs a tun device"));
    }
    None
}

pub fn skip(reason: &str) {
    eprintln!("SKIPPED: OpenVPN end-to-end test: {reason}");
    let _ = std::fs::write(skip_marker(), format!("{reason}\n"));
}

pub fn clear_skip() {
    let _ = std::fs::remove_file(skip_marker());
}

/// A child process whose stdout and stderr go to a log file. Killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(log: PathBuf, args: &[String]) -> Proc {
        let file = File::create(&log).unwrap();
        let child = Command::new(openvpn_binary().expect("openvpn is installed"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn openvpn");
        Proc { child, log }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the log, from byte `from`, contains `needle`; false on
    /// timeout or when the process exits without writing it.
    fn wait_for(&mut self, from: usize, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if self.log().get(from..).is_some_and(|l| l.contains(needle)) {
                return true;
            }
            if exited || start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, the server's certificate, and client certificates on demand.
pub struct Pki {
    dir: tempfile::TempDir,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Tether test VPN CA");
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        std::fs::write(dir.path().join("ca.crt"), ca_pem).unwrap();
        let pki = Pki { dir, ca_params, ca_key };
        pki.issue("server", "vpn.test", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Writes `<name>.crt` and `<name>.key` with this common name.
    fn issue(&self, name: &str, common_name: &str, usage: rcgen::ExtendedKeyUsagePurpose) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        std::fs::write(self.path(&format!("{name}.crt")), params.signed_by(&key, &issuer).unwrap().pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// Which hooks run `tether`.
pub enum Hooks {
    /// `auth-user-pass-verify` and `client-connect`.
    Both,
    /// `client-connect` only (`auth-user-pass-verify /bin/true`).
    ConnectOnly,
    /// `auth-user-pass-verify` only, deciding offline with this key set and
    /// `--ignore-common-name` (the device comes from the token).
    VerifyOffline { keys: String },
}

/// The OpenVPN server.
pub struct Vpn {
    proc: Proc,
    port: u16,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Vpn {
    pub fn start(pki: &Pki, server_url: &str, gateway_key: &str, hooks: Hooks) -> Vpn {
        let key_file = pki.path("gateway.key");
        std::fs::write(&key_file, gateway_key).unwrap();
        let tether = |hook: &str| {
            format!(
                "{} gateway {hook} --server {server_url} --api-key-file {key_file} --gateway vpn-test --check-timeout 3s",
                bin("tether").display()
            )
        };
        let (verify, connect) = match hooks {
            Hooks::Both => (tether("openvpn-verify"), Some(tether("openvpn-connect"))),
            Hooks::ConnectOnly => ("/bin/true".to_string(), Some(tether("openvpn-connect"))),
            Hooks::VerifyOffline { keys } => {
                (format!("{} --keys {keys} --ignore-common-name", tether("openvpn-verify")), None)
            }
        };
        let port = free_udp_port();
        let mut args: Vec<String> = [
            "--mode",
            "server",
            "--tls-server",
            "--dev",
            "tun",
            "--ifconfig-noexec",
            "--route-noexec",
            "--topology",
            "subnet",
            "--ifconfig",
            "10.199.0.1",
            "255.255.255.0",
            "--ifconfig-pool",
            "10.199.0.10",
            "10.199.0.200",
            "--push",
            "topology subnet",
            "--proto",
            "udp4",
            "--local",
            "127.0.0.1",
            "--lport",
            &port.to_string(),
            "--ca",
            &pki.path("ca.crt"),
            "--cert",
            &pki.path("server.crt"),
            "--key",
            &pki.path("server.key"),
            "--dh",
            "none",
            "--script-security",
            "2",
            "--auth-user-pass-verify",
            &verify,
            "via-file",
            "--verb",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(connect) = connect {
            args.extend(["--client-connect".to_string(), connect]);
        }
        let mut proc = Proc::spawn(pki.dir.path().join("server.log"), &args);
        if !proc.wait_for(0, CONNECTED, Duration::from_secs(20)) {
            panic!("the OpenVPN server did not start:\n{}", proc.log());
        }
        Vpn { proc, port }
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// A `--dev null` client with a certificate for `common_name` that logs
    /// in as `username` / `password`.
    pub fn client(&self, pki: &Pki, name: &str, common_name: &str, username: &str, password: &str) -> Client {
        self.client_with(pki, name, common_name, username, password, &[])
    }

    /// A client that also pushes `UV_TETHER_TOKEN` as peer info.
    pub fn client_with_peer_token(
        &self,
        pki: &Pki,
        name: &str,
        common_name: &str,
        worker: &str,
        token: &str,
    ) -> Client {
        self.client_with(
            pki,
            name,
            common_name,
            worker,
            "-",
            &["--setenv", "UV_TETHER_TOKEN", token, "--push-peer-info"],
        )
    }

    fn client_with(
        &self,
        pki: &Pki,
        name: &str,
        common_name: &str,
        username: &str,
        password: &str,
        extra: &[&str],
    ) -> Client {
        pki.issue(name, common_name, rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let auth = pki.path(&format!("{name}.auth"));
        std::fs::write(&auth, format!("{username}\n{password}\n")).unwrap();
        let args: Vec<String> = [
            "--client",
            "--dev",
            "null",
            "--ifconfig-noexec",
            "--route-noexec",
            // Linux cannot set an MTU on the null device; the pushed one would be fatal.
            "--pull-filter",
            "ignore",
            "tun-mtu",
            "--proto",
            "udp4",
            "--remote",
            "127.0.0.1",
            &self.port.to_string(),
            "--nobind",
            "--ca",
            &pki.path("ca.crt"),
            "--cert",
            &pki.path(&format!("{name}.crt")),
            "--key",
            &pki.path(&format!("{name}.key")),
            "--remote-cert-tls",
            "server",
            "--auth-user-pass",
            &auth,
            "--auth-retry",
            "none",
            "--verb",
            "3",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        let server_log_from = self.log().len();
        let proc = Proc::spawn(pki.dir.path().join(format!("{name}.log")), &args);
        Client { proc, server_log: self.proc.log.clone(), server_log_from }
    }
}

/// One client; its server-log checks look only at what was logged after it started.
pub struct Client {
    proc: Proc,
    server_log: PathBuf,
    server_log_from: usize,
}

impl Client {
    pub fn expect_connected(&mut self) {
        assert!(
            self.proc.wait_for(0, CONNECTED, Duration::from_secs(30)),
            "the client did not connect:\n{}\n--- server log since:\n{}",
            self.proc.log(),
            self.server_log_since()
        );
    }

    pub fn expect_refused(&mut self) {
        let refused = self.proc.wait_for(0, "AUTH_FAILED", Duration::from_secs(30));
        assert!(
            refused && !self.proc.log().contains(CONNECTED),
            "the client was not refused:\n{}\n--- server log since:\n{}",
            self.proc.log(),
            self.server_log_since()
        );
    }

    fn server_log_since(&self) -> String {
        let log = String::from_utf8_lossy(&std::fs::read(&self.server_log).unwrap_or_default()).into_owned();
        log.get(self.server_log_from..).unwrap_or_default().to_string()
    }

    /// Waits (bounded) until the server has logged `needle` for this client.
    pub fn expect_server_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.server_log_since().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server log does not contain {needle:?}:\n{}",
                self.server_log_since()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
