//! `tetherd serve --config FILE`: one TOML file whose keys are the flags,
//! validated before anything starts, overridden by flags and environment.
//! Request deadlines: a call stuck on the database ends DEADLINE_EXCEEDED
//! within the deadline, and the service carries on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_e2e::{Server, authed, bin};
use tether_proto::v1 as pb;

/// Runs `tetherd serve` with `args` (and no testkit environment) until it
/// prints its address, then kills it; or returns its failure output.
fn start(args: &[&str], envs: &[(&str, &str)]) -> Result<String, String> {
    let mut child = Command::new(bin("tetherd"))
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tetherd");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line.starts_with("tetherd listening on ") => {
            let _ = child.kill();
            let _ = child.wait();
            Ok(line)
        }
        _ => {
            let out = child.wait_with_output().expect("wait for tetherd");
            Err(format!("{}{}", String::from_utf8_lossy(&out.stderr), out.status))
        }
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the file");
    path.display().to_string()
}

#[test]
fn the_file_configures_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("from-file.db");
    let config = write(
        &dir,
        "tether.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\nscheduler_tick = \"2s\"\n\
             request_timeout = \"10s\"\nlimit_access_per_tenant = 50\ndb_max_connections = 4\n",
            db.display()
        ),
    );
    let line = start(&["--config", &config], &[]).expect("starts from the file");
    assert!(line.contains("127.0.0.1:"), "{line}");
    assert!(db.exists(), "the database named in the file was created");
    // The environment variable names the file as well as the flag does.
    std::fs::remove_file(&db).unwrap();
    start(&[], &[("TETHER_CONFIG", config.as_str())]).expect("starts from TETHER_CONFIG");
    assert!(db.exists());
}

#[test]
fn flags_and_environment_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let in_file = dir.path().join("in-file.db");
    let on_flag = dir.path().join("on-flag.db");
    let in_env = dir.path().join("in-env.db");
    let config = write(
        &dir,
        "tether.toml",
        &format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\n", in_file.display()),
    );
    let flag_url = format!("sqlite://{}", on_flag.display());
    start(&["--config", &config, "--database-url", &flag_url], &[]).expect("starts");
    assert!(on_flag.exists() && !in_file.exists(), "the flag wins over the file");
    let env_url = format!("sqlite://{}", in_env.display());
    start(&["--config", &config], &[("TETHER_DATABASE_URL", env_url.as_str())]).expect("starts");
    assert!(in_env.exists() && !in_file.exists(), "the environment wins over the file");
}

#[test]
fn a_wrong_value_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let cases = [
        ("scheduler_tick = \"soon\"", "scheduler_tick"),
        ("db_max_connections = 0", "db_max_connections"),
        ("request_timeout = \"0s\"", "request_timeout"),
        ("limit_access_per_tenant = \"many\"", "limit_access_per_tenant"),
        ("listen = [\"127.0.0.1:0\", \"127.0.0.1:1\"]", "listen"),
        ("tls_require_client_cert = \"yes\"", "tls_require_client_cert"),
        ("schedular_tick = \"5s\"", "schedular_tick"),
    ];
    for (line, key) in cases {
        let config = write(&dir, "bad.toml", &format!("database_url = \"sqlite://{}\"\n{line}\n", db.display()));
        let error = start(&["--config", &config], &[]).expect_err(line);
        assert!(error.contains(&format!("`{key}`")), "{line}: the error names the key: {error}");
        assert!(!db.exists(), "{line}: nothing started");
    }
    let config = write(&dir, "broken.toml", "listen = \n");
    let error = start(&["--config", &config], &[]).expect_err("invalid TOML");
    assert!(error.contains("not valid TOML"), "{error}");
    let error = start(&["--config", "/nonexistent/tether.toml"], &[]).expect_err("missing file");
    assert!(error.contains("cannot read the configuration file"), "{error}");
}

/// Holds the write lock of the server's database until dropped.
async fn hold_write_lock(database_url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect to the test database");
    if database_url.starts_with("sqlite:") {
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.expect("lock the SQLite file");
    } else {
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("LOCK TABLE workers IN ACCESS EXCLUSIVE MODE").execute(&mut conn).await.expect("lock workers");
    }
    conn
}

fn upsert(key: &str, external_id: &str) -> tonic::Request<pb::UpsertWorkerRequest> {
    authed(
        key,
        pb::UpsertWorkerRequest { external_id: external_id.into(), display_name: "Stuck".into(), ..Default::default() },
    )
}

#[tokio::test]
async fn a_call_stuck_on_the_database_ends_at_its_deadline() {
    let server = Server::start_with_args(&["--request-timeout", "1500ms", "--db-statement-timeout", "30s"]);
    let keys = server.init_tenant("Deadlines", "tether.example", "https://tether.example");
    let mut admin = server.admin().await;

    let lock = hold_write_lock(&server.database_url).await;
    let started = Instant::now();
    let status = admin.upsert_worker(upsert(&keys.admin_key, "w-server-limit")).await.expect_err("stuck");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("1500 ms"), "{}", status.message());
    assert!(started.elapsed() < Duration::from_secs(10), "ended near its deadline: {:?}", started.elapsed());
    drop(lock);

    // An abandoned write may still finish whole once the lock goes (the
    // deadline tells the client the outcome is unknown), never in part.
    let workers =
        admin.list_workers(authed(&keys.admin_key, pb::ListWorkersRequest::default())).await.unwrap().into_inner();
    let copies = workers.workers.iter().filter(|w| w.external_id == "w-server-limit").count();
    assert!(copies <= 1, "written {copies} times");
    // The service is healthy afterwards and the same call now succeeds.
    admin.upsert_worker(upsert(&keys.admin_key, "w-server-limit")).await.expect("succeeds once unlocked");
}
