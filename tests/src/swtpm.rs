//! A real software TPM for end-to-end tests: swtpm with EK certificates from its local CA
//! (`swtpm_setup --tpm2 --create-ek-cert` with `swtpm_localca`), listening on a free loopback
//! port, driven by tpm2-tools. Every external command is bounded by `timeout`; the swtpm
//! process is stopped by its pid on drop.
//!
//! swtpm has no resource manager in front of it, so every step flushes transient objects and
//! sessions.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TOOLS: &[&str] = &[
    "swtpm",
    "swtpm_setup",
    "swtpm_localca",
    "tpm2_createak",
    "tpm2_quote",
    "tpm2_activatecredential",
    "tpm2_readpublic",
    "tpm2_nvread",
    "tpm2_nvdefine",
    "tpm2_nvwrite",
    "tpm2_nvundefine",
    "tpm2_load",
    "timeout",
];
/// Every external command is bounded by this many seconds.
const STEP_TIMEOUT: &str = "60";

/// The swtpm EK persistent handles (TCG templates): RSA-2048 and ECC P-384.
pub const EK_RSA: &str = "0x81010001";
pub const EK_ECC: &str = "0x81010016";
/// NV indices of the EK certificates.
pub const EK_RSA_CERT: &str = "0x01c00002";
pub const EK_ECC_CERT: &str = "0x01c00016";

/// True (after printing a NOTICE) when swtpm or tpm2-tools are not installed.
pub fn tools_missing(test: &str) -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "NOTICE: skipping {test}: {} not installed (apt-get install swtpm swtpm-tools tpm2-tools)",
            missing.join(", ")
        );
    }
    !missing.is_empty()
}

/// One software TPM with its own state, local CA and loopback port.
pub struct Swtpm {
    dir: tempfile::TempDir,
    pub port: u16,
    running: bool,
}

impl Swtpm {
    /// Creates a TPM state with EK certificates from a fresh local CA and starts swtpm.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("state")).expect("state dir");
        std::fs::create_dir_all(d.join("ca")).expect("ca dir");
        let ca = d.join("ca");
        write(
            d,
            "localca.conf",
            &format!(
                "statedir = {0}\nsigningkey = {0}/signkey.pem\nissuercert = {0}/issuercert.pem\ncertserial = {0}/certserial\n",
                ca.display()
            ),
        );
        write(d, "localca.options", "--platform-manufacturer Tether\n--platform-version 2.1\n--platform-model Test\n");
        write(
            d,
            "setup.conf",
            &format!(
                "create_certs_tool = swtpm_localca\ncreate_certs_tool_config = {0}/localca.conf\ncreate_certs_tool_options = {0}/localca.options\nactive_pcr_banks = sha256\n",
                d.display()
            ),
        );
        let setup = run_bounded(
            Command::new("swtpm_setup")
                .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpm-state"])
                .arg(d.join("state"))
                .arg("--config")
                .arg(d.join("setup.conf")),
        );
        assert!(setup.status.success(), "swtpm_setup failed: {}", String::from_utf8_lossy(&setup.stderr));
        let mut tpm = Self { dir, port: 0, running: false };
        tpm.launch();
        tpm
    }

    fn launch(&mut self) {
        let d = self.dir.path().to_path_buf();
        for _ in 0..10 {
            let port = free_port_pair();
            let started = run_bounded(
                Command::new("swtpm")
                    .args(["socket", "--tpm2", "--tpmstate"])
                    .arg(format!("dir={}", d.join("state").display()))
                    .args(["--server", &format!("type=tcp,port={port},bindaddr=127.0.0.1")])
                    // The swtpm TCTI expects the control channel on the next port.
                    .args(["--ctrl", &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1)])
                    .args(["--flags", "not-need-init,startup-clear", "--daemon", "--pid"])
                    .arg(format!("file={}", d.join("swtpm.pid").display())),
            );
            if started.status.success() && wait_for_port(port) {
                self.port = port;
                self.running = true;
                return;
            }
        }
        panic!("swtpm did not start on a loopback port");
    }

    /// Stops the process (its volatile state is lost, like a power loss) and waits for it.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let Ok(pid) = std::fs::read_to_string(self.path("swtpm.pid")) else { return };
        let pid = pid.trim().to_string();
        let _ = Command::new("kill").arg(&pid).output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.path("swtpm.pid"));
    }

    /// A power cycle: stop, start again (TPM2_Startup(CLEAR) after no orderly shutdown is a
    /// TPM Reset, so resetCount goes up and loaded objects are gone).
    pub fn power_cycle(&mut self) {
        self.stop();
        self.launch();
    }

    /// Copies the stopped TPM's persistent state to `name` (inside the test directory).
    pub fn snapshot_state(&self, name: &str) {
        assert!(!self.running, "stop the TPM before copying its state");
        copy_dir(&self.path("state"), &self.path(name));
    }

    /// Replaces the stopped TPM's persistent state with the snapshot `name`.
    pub fn restore_state(&self, name: &str) {
        assert!(!self.running, "stop the TPM before restoring its state");
        std::fs::remove_dir_all(self.path("state")).expect("remove state");
        copy_dir(&self.path(name), &self.path("state"));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCTI string for this TPM, as `TPM2TOOLS_TCTI` / `--tcti` take it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The local CA's root certificate (PEM): the "TPM manufacturer root" to trust.
    pub fn root_pem(&self) -> String {
        std::fs::read_to_string(self.path("ca/swtpm-localca-rootca-cert.pem")).expect("local CA root")
    }

    /// The local CA's intermediate (PEM) that issued the EK certificates.
    pub fn issuer_pem(&self) -> String {
        std::fs::read_to_string(self.path("ca/issuercert.pem")).expect("local CA issuer")
    }

    /// Runs a tpm2-tools command against this TPM, in its directory.
    pub fn tpm2(&self, tool: &str, args: &[&str]) -> Output {
        run_bounded(Command::new(tool).args(args).current_dir(self.dir.path()).env("TPM2TOOLS_TCTI", self.tcti()))
    }

    pub fn ok(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.tpm2(tool, args);
        assert!(out.status.success(), "{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Flushes transient objects and sessions.
    pub fn flush(&self) {
        self.ok("tpm2_flushcontext", &["-t"]);
        self.ok("tpm2_flushcontext", &["-s"]);
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// The EK public area (TPM2B_PUBLIC) at `handle`.
    pub fn ek_public(&self, handle: &str) -> Vec<u8> {
        let file = format!("ek-{handle}.pub");
        self.ok("tpm2_readpublic", &["-c", handle, "-o", &file]);
        self.read(&file)
    }

    /// The EK certificate from NV as PEM, followed by the local CA intermediate.
    pub fn ek_certificate_pem(&self, nv_index: &str) -> Vec<u8> {
        let file = format!("ek-{nv_index}.der");
        self.ok("tpm2_nvread", &[nv_index, "-o", &file]);
        let certs = tether_attestation::tpm::ek::read_certificates(&self.read(&file)).expect("EK certificate");
        let first = certs.first().expect("one certificate");
        format!("{}{}", pem("CERTIFICATE", first), self.issuer_pem()).into_bytes()
    }

    /// Creates an AK under the EK at `ek_handle`: files `{name}.ctx/.pub/.priv/.name`.
    pub fn create_ak(&self, ek_handle: &str, name: &str) {
        let (ctx, public, private, ak_name) =
            (format!("{name}.ctx"), format!("{name}.pub"), format!("{name}.priv"), format!("{name}.name"));
        self.ok(
            "tpm2_createak",
            &[
                "-C", ek_handle, "-c", &ctx, "-u", &public, "-r", &private, "-n", &ak_name, "-G", "rsa", "-g",
                "sha256", "-s", "rsassa",
            ],
        );
        self.flush();
    }

    /// Loads the AK `name` again under the ECC EK (after a reset its context is gone). The
    /// ECC EK accepts its empty password; the RSA EK would need its policy session.
    pub fn reload_ak(&self, name: &str) {
        let (ctx, public, private) = (format!("{name}.ctx"), format!("{name}.pub"), format!("{name}.priv"));
        self.ok("tpm2_load", &["-C", EK_ECC, "-u", &public, "-r", &private, "-c", &ctx]);
        self.flush();
    }

    /// TPM2_ActivateCredential of the server's MakeCredential output for the AK `ak` under
    /// the EK at `ek_handle`; returns the recovered secret.
    pub fn activate(&self, ek_handle: &str, ak: &str, credential_blob: &[u8], encrypted_secret: &[u8]) -> Vec<u8> {
        // The tpm2_makecredential -o file: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
        let mut file = Vec::new();
        file.extend_from_slice(&0xBADC_C0DEu32.to_be_bytes());
        file.extend_from_slice(&1u32.to_be_bytes());
        for part in [credential_blob, encrypted_secret] {
            file.extend_from_slice(&u16::try_from(part.len()).expect("short").to_be_bytes());
            file.extend_from_slice(part);
        }
        std::fs::write(self.path("server.cred"), file).expect("write credential");
        let ctx = format!("{ak}.ctx");
        let _ = std::fs::remove_file(self.path("activated.bin"));
        let out = if ek_handle == EK_RSA {
            self.ok("tpm2_startauthsession", &["--policy-session", "-S", "session.ctx"]);
            self.ok("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]);
            self.tpm2(
                "tpm2_activatecredential",
                &["-c", &ctx, "-C", ek_handle, "-i", "server.cred", "-o", "activated.bin", "-P", "session:session.ctx"],
            )
        } else {
            self.tpm2(
                "tpm2_activatecredential",
                &["-c", &ctx, "-C", ek_handle, "-i", "server.cred", "-o", "activated.bin"],
            )
        };
        self.flush();
        assert!(out.status.success(), "tpm2_activatecredential failed: {}", String::from_utf8_lossy(&out.stderr));
        self.read("activated.bin")
    }

    /// TPM2_Quote by the AK `ak` over `nonce` (PCRs sha256:0,1,2,16): (attest, signature, pcrs).
    pub fn quote(&self, ak: &str, nonce: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let ctx = format!("{ak}.ctx");
        let nonce = hex(nonce);
        for f in ["quote.msg", "quote.sig", "quote.pcrs"] {
            let _ = std::fs::remove_file(self.path(f));
        }
        self.ok(
            "tpm2_quote",
            &[
                "-c",
                &ctx,
                "-l",
                "sha256:0,1,2,16",
                "-q",
                &nonce,
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-o",
                "quote.pcrs",
                "-g",
                "sha256",
            ],
        );
        self.flush();
        (self.read("quote.msg"), self.read("quote.sig"), self.read("quote.pcrs"))
    }

    /// TPM2_Sign by the AK over `data` (a genuine AK signature, but not over a TPM-generated
    /// structure): the TPMT_SIGNATURE.
    pub fn sign(&self, ak: &str, data: &[u8]) -> Vec<u8> {
        std::fs::write(self.path("plain.msg"), data).expect("write");
        let ctx = format!("{ak}.ctx");
        self.ok("tpm2_sign", &["-c", &ctx, "-g", "sha256", "-o", "plain.sig", "plain.msg"]);
        self.flush();
        self.read("plain.sig")
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write file");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy state file");
    }
}

fn run_bounded(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_owned();
    let mut bounded = Command::new("timeout");
    bounded.arg(STEP_TIMEOUT).arg(&program).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        bounded.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            bounded.env(key, value);
        }
    }
    bounded.output().unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"))
}

/// A free loopback port whose successor is free too (TPM command and control channels).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").expect("free loopback port");
        let port = first.local_addr().expect("address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free loopback ports");
}

fn wait_for_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
