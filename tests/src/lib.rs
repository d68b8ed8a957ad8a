//! Test kit: starts real `tetherd` processes on loopback ports with their own
//! SQLite files, and offers gRPC clients and fixtures for end-to-end tests.
//! Every helper panics with a message on failure: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bench;
pub mod fixtures;
pub mod mds;
pub mod mmdb;
pub mod swtpm;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tether_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Request, metadata::MetadataValue};

/// The directory holding the workspace's built binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let dir = exe.parent().expect("executable has a directory");
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().unwrap_or(dir) } else { dir }.to_path_buf()
}

/// Path of a workspace binary; fails with instructions when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (which builds every binary) \
         or `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A `tetherd serve` child process. Killed on drop.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// `http://ADDR` of the web console when started with `--console-listen`, else empty.
    pub console_url: String,
    /// `http(s)://ADDR` of the workers' web app when started with `--web-listen`, else empty.
    pub web_url: String,
    /// `http://ADDR` of the Prometheus endpoint when started with `--metrics-listen`, else empty.
    pub metrics_url: String,
    pub database_url: String,
    pub scheduler_tick: String,
    /// The API-key pepper file every tetherd of this server uses.
    pub pepper_file: String,
    /// More `tetherd serve` flags (TLS, ...).
    pub extra_args: Vec<String>,
    /// More environment variables for every `tetherd` of this server.
    pub extra_env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server on a fresh SQLite file, with a fast scheduler so tests
    /// see scheduled challenges and missed deadlines within a second.
    pub fn start() -> Server {
        Server::start_with_tick("200ms")
    }

    /// A fresh server whose scheduler runs every `tick` (humantime, e.g. "5s").
    /// With `TETHER_TEST_POSTGRES_URL` set (a server URL such as
    /// `postgres://postgres@127.0.0.1:5432`), each server gets a fresh
    /// PostgreSQL database there instead of a SQLite file.
    pub fn start_with_tick(tick: &str) -> Server {
        let mut server = Server::prepare(tick, &[]);
        server.spawn();
        server
    }

    /// A fresh server started with more `tetherd serve` flags.
    pub fn start_with_args(args: &[&str]) -> Server {
        let mut server = Server::prepare("200ms", args);
        server.spawn();
        server
    }

    /// A fresh server started with more flags and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Server::prepare("200ms", args);
        server.extra_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        server.spawn();
        server
    }

    /// A server on the given database URL (for example through a proxy the
    /// test controls), with more `tetherd serve` flags.
    pub fn start_on(database_url: &str, args: &[&str]) -> Server {
        let mut server = Server::prepare("200ms", args);
        server.database_url = database_url.to_string();
        server.spawn();
        server
    }

    /// A fresh database and pepper, not started yet.
    fn prepare(tick: &str, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match std::env::var("TETHER_TEST_POSTGRES_URL") {
            Ok(base) if !base.is_empty() => fresh_postgres_database(&base),
            _ => format!("sqlite://{}", dir.path().join("tether.db").display()),
        };
        let pepper_file = dir.path().join("api-key.pepper");
        std::fs::write(&pepper_file, format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()))
            .expect("write the pepper file");
        let pepper_file = pepper_file.display().to_string();
        Server {
            child: None,
            url: String::new(),
            console_url: String::new(),
            web_url: String::new(),
            metrics_url: String::new(),
            database_url,
            scheduler_tick: tick.into(),
            pepper_file,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            extra_env: Vec::new(),
            _dir: Some(dir),
        }
    }

    /// Another `tetherd` process on this server's database and pepper: a replica.
    pub fn replica(&self) -> Server {
        let mut replica = Server {
            child: None,
            url: String::new(),
            console_url: String::new(),
            web_url: String::new(),
            metrics_url: String::new(),
            database_url: self.database_url.clone(),
            scheduler_tick: self.scheduler_tick.clone(),
            pepper_file: self.pepper_file.clone(),
            extra_args: self.extra_args.clone(),
            extra_env: self.extra_env.clone(),
            _dir: None,
        };
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let mut child = Command::new(bin("tetherd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &self.database_url])
            .args(["--scheduler-tick", &self.scheduler_tick, "--api-key-pepper-file", &self.pepper_file])
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            // Tests drive one device or tenant far harder than the production
            // defaults allow; tests of the limits pass explicit flags, which win.
            .env("TETHER_LIMIT_ACCESS_PER_TENANT", "1000000")
            .env("TETHER_LIMIT_PRESENCE_PER_DEVICE", "100000")
            .env("TETHER_LIMIT_UNVERIFIED_ANSWERS_PER_ADDRESS", "100000")
            .env("TETHER_LIMIT_ENROLLMENT_PER_ADDRESS", "100000")
            .env("TETHER_LIMIT_ENROLLMENT_PER_TOKEN", "100000")
            .env("RUST_LOG", std::env::var("TETHER_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tetherd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(console) = line.strip_prefix("tether console listening on ") {
                        self.console_url = console.trim().to_string();
                    }
                    if let Some(web) = line.strip_prefix("tether web app listening on ") {
                        self.web_url = web.trim().to_string();
                    }
                    if let Some(metrics) = line.strip_prefix("tetherd metrics listening on ") {
                        self.metrics_url = format!("http://{}", metrics.trim());
                    }
                    if let Some(addr) = line.strip_prefix("tetherd listening on ") {
                        break addr.trim().to_string();
                    }
                }
                _ => panic!("tetherd exited before listening (see its stderr above)"),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.url = format!("http://{addr}");
        self.child = Some(child);
    }

    /// The child's resident memory (VmRSS of /proc/PID/status) in KiB; Linux only.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("tetherd is running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
    }

    /// Stops the process with SIGTERM (graceful) and waits up to 5 s for it;
    /// returns its exit status, or None when it had to be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the process with SIGKILL (std's `Child::kill` on Unix), as a crash
    /// or the OOM killer would: no shutdown, no draining of in-flight calls.
    /// `restart` then starts a new process on the same database.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts again on the same database (a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `tetherd init` against this server's database.
    pub fn init_tenant(&self, name: &str, rp_id: &str, origin: &str) -> TenantKeys {
        let out = Command::new(bin("tetherd"))
            .args(["init", "--tenant", name, "--rp-id", rp_id, "--origin", origin, "--output", "json"])
            .args(["--database-url", &self.database_url, "--api-key-pepper-file", &self.pepper_file])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run tetherd init");
        assert!(out.status.success(), "tetherd init failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("init prints JSON");
        TenantKeys {
            tenant_id: v["tenant_id"].as_str().unwrap().to_string(),
            admin_key: v["admin_api_key"].as_str().unwrap().to_string(),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone()).unwrap().connect().await.expect("connect to tetherd")
    }

    pub async fn admin(&self) -> pb::admin_service_client::AdminServiceClient<Channel> {
        pb::admin_service_client::AdminServiceClient::new(self.channel().await)
    }

    pub async fn access(&self) -> pb::access_service_client::AccessServiceClient<Channel> {
        pb::access_service_client::AccessServiceClient::new(self.channel().await)
    }

    pub async fn reports(&self) -> pb::report_service_client::ReportServiceClient<Channel> {
        pb::report_service_client::ReportServiceClient::new(self.channel().await)
    }

    pub async fn enrollment(&self) -> pb::enrollment_service_client::EnrollmentServiceClient<Channel> {
        pb::enrollment_service_client::EnrollmentServiceClient::new(self.channel().await)
    }

    pub async fn presence(&self) -> pb::presence_service_client::PresenceServiceClient<Channel> {
        pb::presence_service_client::PresenceServiceClient::new(self.channel().await)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let owns_database = self._dir.is_some();
        if let Some((base, name)) =
            self.database_url.rsplit_once('/').filter(|_| owns_database && self.database_url.starts_with("postgres"))
        {
            let _ = Command::new("psql")
                .args([&format!("{base}/postgres"), "-qc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .output();
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantKeys {
    pub tenant_id: String,
    pub admin_key: String,
}

/// Wraps a message with `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {key}").parse().expect("ascii key");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Runs a workspace binary to completion.
/// A process a test started beside tetherd (nginx, Caddy, FreeRADIUS…): killed when dropped,
/// with the port it serves on and the folder holding its configuration.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP port nothing listens on right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub fn run_bin(name: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(bin(name));
    command.args(args).env("RUST_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Creates an empty database on the PostgreSQL server at `base` and returns its URL.
pub fn fresh_postgres_database(base: &str) -> String {
    let name = format!("tether_test_{}", uuid::Uuid::new_v4().simple());
    let base = base.trim_end_matches('/');
    let out = Command::new("psql")
        .args([&format!("{base}/postgres"), "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("run psql (the PostgreSQL client) to create a test database");
    assert!(out.status.success(), "CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr));
    format!("{base}/{name}")
}
