//! Interop with a real software TPM: swtpm (with EK certificates from its local CA) driven by
//! tpm2-tools, checked by the `tether` binary. Quotes made by `tpm2_quote` verify with
//! `tether verify-quote`; credentials made by `tether tpm make-credential` activate with
//! `tpm2_activatecredential`; swtpm's EK certificates verify with `tether verify-ek`.
//!
//! When swtpm or tpm2-tools are not installed these tests print a notice and return; `.ci/run`
//! installs them. Each swtpm listens on a free loopback port and is stopped by its pid.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOOLS: &[&str] =
    &["swtpm", "swtpm_setup", "swtpm_localca", "tpm2_quote", "tpm2_createak", "tpm2_activatecredential", "timeout"];
/// Every external command is bounded by this many seconds.
const STEP_TIMEOUT: &str = "60";

fn tools_missing() -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "NOTICE: skipping the swtpm interop test: {} not installed (apt-get install swtpm swtpm-tools tpm2-tools)",
            missing.join(", ")
        );
    }
    !missing.is_empty()
}

/// One software TPM with its own state, local CA and loopback port.
struct Swtpm {
    dir: tempfile::TempDir,
    port: u16,
}

impl Swtpm {
    fn start() -> Self {
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
        let state = d.join("state");
        let setup = run_bounded(
            Command::new("swtpm_setup")
                .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpm-state"])
                .arg(&state)
                .arg("--config")
                .arg(d.join("setup.conf")),
        );
        assert!(setup.status.success(), "swtpm_setup failed: {}", String::from_utf8_lossy(&setup.stderr));
        for _ in 0..10 {
            let port = free_port_pair();
            let started = run_bounded(
                Command::new("swtpm")
                    .args(["socket", "--tpm2", "--tpmstate"])
                    .arg(format!("dir={}", state.display()))
                    .args(["--server", &format!("type=tcp,port={port},bindaddr=127.0.0.1")])
                    // The swtpm TCTI expects the control channel on the next port.
                    .args(["--ctrl", &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1)])
                    .args(["--flags", "not-need-init,startup-clear", "--daemon", "--pid"])
                    .arg(format!("file={}", d.join("swtpm.pid").display())),
            );
            if started.status.success() && wait_for_port(port) {
                return Self { dir, port };
            }
        }
        panic!("swtpm did not start on a loopback port");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a tpm2-tools command against this TPM, in its directory.
    fn tpm2(&self, tool: &str, args: &[&str]) -> Output {
        run_bounded(
            Command::new(tool)
                .args(args)
                .current_dir(self.dir.path())
                .env("TPM2TOOLS_TCTI", format!("swtpm:host=127.0.0.1,port={}", self.port)),
        )
    }

    fn ok(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.tpm2(tool, args);
        assert!(out.status.success(), "{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// swtpm has no resource manager: flush transient objects and sessions after each step.
    fn flush(&self) {
        self.ok("tpm2_flushcontext", &["-t"]);
        self.ok("tpm2_flushcontext", &["-s"]);
    }

    /// Creates an AK under the EK at `ek_handle` and returns nothing; files `{name}.ctx/.pub/.name`.
    fn create_ak(&self, ek_handle: &str, name: &str, alg: &[&str]) {
        let (ctx, public, ak_name) = (format!("{name}.ctx"), format!("{name}.pub"), format!("{name}.name"));
        let mut args = vec!["-C", ek_handle, "-c", &ctx, "-u", &public, "-n", &ak_name];
        args.extend_from_slice(alg);
        self.ok("tpm2_createak", &args);
        self.flush();
    }

    fn quote(&self, ak: &str, nonce: &str, out: &str) {
        let (ctx, msg, sig, pcrs) =
            (format!("{ak}.ctx"), format!("{out}.msg"), format!("{out}.sig"), format!("{out}.pcrs"));
        self.ok(
            "tpm2_quote",
            &["-c", &ctx, "-l", "sha256:0,1,2,16", "-q", nonce, "-m", &msg, "-s", &sig, "-o", &pcrs, "-g", "sha256"],
        );
        self.flush();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.path("swtpm.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).output();
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write file");
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

struct Run {
    code: i32,
    json: Value,
}

/// Runs `tether` with `args` in `dir` and parses its one JSON line.
fn tether(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tether")).args(args).current_dir(dir).output().expect("run tether");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("tether {args:?} printed no JSON ({e}): {stdout} {}", String::from_utf8_lossy(&out.stderr))
    });
    Run { code: out.status.code().unwrap_or(-1), json }
}

fn verify_quote(tpm: &Swtpm, ak: &str, nonce: &str, quote: &str) -> Run {
    let (msg, sig, pcrs) = (format!("{quote}.msg"), format!("{quote}.sig"), format!("{quote}.pcrs"));
    tether(
        tpm.dir.path(),
        &["verify-quote", "--ak", ak, "--nonce", nonce, "--message", &msg, "--signature", &sig, "--pcrs", &pcrs],
    )
}

fn hex_file(path: &Path) -> String {
    std::fs::read(path).expect("read").iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn quotes_from_tpm2_quote_verify_and_forgeries_are_rejected() {
    if tools_missing() {
        return;
    }
    let tpm = Swtpm::start();
    tpm.create_ak("0x81010001", "ak", &["-G", "rsa", "-g", "sha256", "-s", "rsassa"]);
    tpm.ok("tpm2_pcrextend", &["16:sha256=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"]);
    tpm.quote("ak", "0badc0ffee", "q");
    let run = verify_quote(&tpm, "ak.pub", "0badc0ffee", "q");
    assert_eq!(run.code, 0, "{}", run.json);
    assert_eq!(run.json["verified"], true);
    assert_eq!(run.json["nonce_matches"], true);
    assert_eq!(run.json["pcr_digest_matches"], true);
    assert!(run.json["clock"].as_u64().is_some_and(|c| c > 0));
    assert!(run.json["reset_count"].is_u64() && run.json["restart_count"].is_u64());
    assert_eq!(run.json["firmware_version"].as_str().map(str::len), Some(16));
    assert!(run.json["error"].is_null());

    // Wrong nonce.
    let run = verify_quote(&tpm, "ak.pub", "0badc0fff0", "q");
    assert_eq!(
        (run.code, &run.json["verified"], &run.json["nonce_matches"]),
        (1, &Value::Bool(false), &Value::Bool(false))
    );
    // Tampered PCR value (the first digest's first byte in the tpm2-tools memory dump).
    let mut pcrs = std::fs::read(tpm.path("q.pcrs")).expect("pcrs");
    pcrs[142] ^= 0x80;
    std::fs::write(tpm.path("bad.pcrs"), pcrs).expect("write");
    std::fs::copy(tpm.path("q.msg"), tpm.path("bad.msg")).expect("copy");
    std::fs::copy(tpm.path("q.sig"), tpm.path("bad.sig")).expect("copy");
    let run = verify_quote(&tpm, "ak.pub", "0badc0ffee", "bad");
    assert_eq!((run.code, &run.json["pcr_digest_matches"]), (1, &Value::Bool(false)), "{}", run.json);
    // Signed by another key than the registered AK (CVE-2022-1053).
    tpm.create_ak("0x81010001", "ak2", &["-G", "rsa", "-g", "sha256", "-s", "rsassa"]);
    let run = verify_quote(&tpm, "ak2.pub", "0badc0ffee", "q");
    assert_eq!(run.code, 1, "{}", run.json);
    // A TPMS_ATTEST of the wrong type (TPM2_Certify by the AK).
    tpm.ok("tpm2_certify", &["-c", "ak.ctx", "-C", "ak.ctx", "-g", "sha256", "-o", "cert.msg", "-s", "cert.sig"]);
    tpm.flush();
    std::fs::copy(tpm.path("q.pcrs"), tpm.path("cert.pcrs")).expect("copy");
    let run = verify_quote(&tpm, "ak.pub", "", "cert");
    assert_eq!(run.code, 1);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("not a quote")), "{}", run.json);
    // TPM2_Sign output by the AK: a genuine signature, but no TPM_GENERATED magic.
    write(tpm.dir.path(), "plain.msg", "chosen data the attacker wants signed");
    tpm.ok("tpm2_sign", &["-c", "ak.ctx", "-g", "sha256", "-o", "plain.sig", "plain.msg"]);
    tpm.flush();
    std::fs::copy(tpm.path("q.pcrs"), tpm.path("plain.pcrs")).expect("copy");
    let run = verify_quote(&tpm, "ak.pub", "0badc0ffee", "plain");
    assert_eq!(run.code, 1);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("TPM_GENERATED_VALUE")), "{}", run.json);
    // A forged quote: TPMS_ATTEST bytes of the attacker's choosing, signed with TPM2_Sign by an
    // unrestricted key. Its TPM2B_PUBLIC shows it is no AK, so the quote is rejected.
    tpm.ok(
        "tpm2_createprimary",
        &[
            "-C",
            "o",
            "-G",
            "rsa2048:rsassa-sha256:null",
            "-c",
            "forger.ctx",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
        ],
    );
    tpm.ok("tpm2_readpublic", &["-c", "forger.ctx", "-o", "forger.pub"]);
    std::fs::copy(tpm.path("q.msg"), tpm.path("forged.msg")).expect("copy");
    tpm.ok("tpm2_sign", &["-c", "forger.ctx", "-g", "sha256", "-o", "forged.sig", "forged.msg"]);
    tpm.flush();
    std::fs::copy(tpm.path("q.pcrs"), tpm.path("forged.pcrs")).expect("copy");
    let run = verify_quote(&tpm, "forger.pub", "0badc0ffee", "forged");
    assert_eq!(run.code, 1);
    assert!(run.json["error"].as_str().is_some_and(|e| e.contains("restricted")), "{}", run.json);

    // An ECDSA P-256 AK under the P-384 EK, and plain tpm2_pcrread values.
    tpm.create_ak("0x81010016", "eak", &["-G", "ecc256", "-g", "sha256", "-s", "ecdsa"]);
    tpm.quote("eak", "aabbcc", "eq");
    tpm.ok("tpm2_pcrread", &["sha256:0,1,2,16", "-o", "eq.values"]);
    let run = tether(
        tpm.dir.path(),
        &[
            "verify-quote",
            "--ak",
            "eak.pub",
            "--nonce",
            "aabbcc",
            "--message",
            "eq.msg",
            "--signature",
            "eq.sig",
            "--pcr-values",
            "eq.values",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.json);
    assert_eq!(run.json["pcr_digest_matches"], true);
}

#[test]
fn credentials_from_tether_activate_with_tpm2_activatecredential() {
    if tools_missing() {
        return;
    }
    let tpm = Swtpm::start();
    let secret: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    std::fs::write(tpm.path("secret.bin"), &secret).expect("secret");
    // RSA-2048 EK (SHA-256, AES-128) and swtpm's P-384 EK (SHA-384, AES-256, ECDH + KDFe).
    for (ek_handle, ek_pub, ak) in [("0x81010001", "ek_rsa.pub", "rak"), ("0x81010016", "ek_ecc.pub", "eak")] {
        tpm.ok("tpm2_readpublic", &["-c", ek_handle, "-o", ek_pub]);
        tpm.create_ak(ek_handle, ak, &["-G", "rsa", "-g", "sha256", "-s", "rsassa"]);
        let cred = format!("{ak}.cred");
        let name = hex_file(&tpm.path(&format!("{ak}.name")));
        let run = tether(
            tpm.dir.path(),
            &[
                "tpm",
                "make-credential",
                "--ek",
                ek_pub,
                "--ak-name",
                &name,
                "--secret",
                "secret.bin",
                "--output",
                &cred,
            ],
        );
        assert_eq!(run.code, 0, "{}", run.json);
        let out = format!("{ak}.activated");
        activate(&tpm, ek_handle, ak, &cred, &out)
            .unwrap_or_else(|e| panic!("activation with {ek_handle} failed: {e}"));
        assert_eq!(std::fs::read(tpm.path(&out)).expect("activated"), secret, "the TPM recovered the secret");
    }
    // A credential made for another AK's name does not activate with this AK.
    let other_name = hex_file(&tpm.path("eak.name"));
    let run = tether(
        tpm.dir.path(),
        &[
            "tpm",
            "make-credential",
            "--ek",
            "ek_rsa.pub",
            "--ak-name",
            &other_name,
            "--secret",
            "secret.bin",
            "--output",
            "x.cred",
        ],
    );
    assert_eq!(run.code, 0);
    assert!(activate(&tpm, "0x81010001", "rak", "x.cred", "x.out").is_err(), "the integrity check binds the AK name");
    // An AK is not an EK.
    let run = tether(
        tpm.dir.path(),
        &[
            "tpm",
            "make-credential",
            "--ek",
            "rak.pub",
            "--ak-name",
            &other_name,
            "--secret",
            "secret.bin",
            "--output",
            "y.cred",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.json);
}

/// TPM2_ActivateCredential. The RSA EK (TCG low-range template) authorizes only with its
/// policy (PolicySecret(endorsement)); swtpm's ECC EK also allows its empty password.
fn activate(tpm: &Swtpm, ek_handle: &str, ak: &str, cred: &str, out: &str) -> Result<(), String> {
    let ctx = format!("{ak}.ctx");
    let result = if ek_handle == "0x81010001" {
        tpm.ok("tpm2_startauthsession", &["--policy-session", "-S", "session.ctx"]);
        tpm.ok("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]);
        tpm.tpm2(
            "tpm2_activatecredential",
            &["-c", &ctx, "-C", ek_handle, "-i", cred, "-o", out, "-P", "session:session.ctx"],
        )
    } else {
        tpm.tpm2("tpm2_activatecredential", &["-c", &ctx, "-C", ek_handle, "-i", cred, "-o", out])
    };
    tpm.flush();
    if result.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&result.stderr).into_owned()) }
}

#[test]
fn swtpm_ek_certificates_verify_to_the_local_ca() {
    if tools_missing() {
        return;
    }
    let tpm = Swtpm::start();
    let root = tpm.path("ca/swtpm-localca-rootca-cert.pem");
    let issuer = std::fs::read_to_string(tpm.path("ca/issuercert.pem")).expect("issuer");
    let root = root.to_str().expect("utf-8 path");
    for (index, name) in [("0x01c00002", "ek_rsa"), ("0x01c00016", "ek_ecc")] {
        let der = format!("{name}.der");
        tpm.ok("tpm2_nvread", &[index, "-o", &der]);
        // DER alone: the intermediate is missing, so the chain does not reach the root.
        let run = tether(tpm.dir.path(), &["verify-ek", "--trust-anchors", root, &der]);
        assert_eq!(run.code, 1, "{}", run.json);
        // PEM with the intermediate after the EK certificate.
        let pem = format!("{name}.pem");
        let cert = tether_attestation_pem(&std::fs::read(tpm.path(&der)).expect("der"));
        write(tpm.dir.path(), &pem, &format!("{cert}{issuer}"));
        let run = tether(tpm.dir.path(), &["verify-ek", "--trust-anchors", root, &pem]);
        assert_eq!(run.code, 0, "{}", run.json);
        assert_eq!(run.json["verified"], true);
        assert_eq!(run.json["manufacturer"], "id:00001014");
        assert_eq!(run.json["model"], "swtpm");
        assert!(run.json["firmware_version"].as_str().is_some_and(|v| v.starts_with("id:")));
        assert_eq!(run.json["chain"].as_array().map(Vec::len), Some(3));
        // Untrusted CA: another TPM vendor's root (here: a second swtpm's local CA).
        let other = Swtpm::start();
        let other_root = other.path("ca/swtpm-localca-rootca-cert.pem");
        let run = tether(tpm.dir.path(), &["verify-ek", "--trust-anchors", other_root.to_str().expect("path"), &pem]);
        assert_eq!((run.code, &run.json["verified"]), (1, &Value::Bool(false)), "{}", run.json);
        assert!(run.json["error"].is_string());
    }
    // Unreadable input and usage errors exit 2.
    let run = tether(tpm.dir.path(), &["verify-ek", "--trust-anchors", root, "missing.der"]);
    assert_eq!(run.code, 2);
}

/// The EK certificate read from NV (padding removed) as a PEM CERTIFICATE block.
fn tether_attestation_pem(der: &[u8]) -> String {
    let certs = tether_attestation::tpm::ek::read_certificates(der).expect("EK certificate");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &certs[0]);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}
