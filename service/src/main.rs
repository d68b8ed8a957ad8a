//! `tetherd`: the Tether service binary.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;
use tetherd::domain::app::{App, Settings};
use tetherd::domain::limits::{LimitSettings, Rate};
use tetherd::domain::tenancy;
use tetherd::domain::tenancy::auth::Pepper;
use tetherd::process::{config_file, server};
use tetherd::store::{SqliteSynchronous, Store, StoreOptions};

#[derive(Parser)]
#[command(name = "tetherd", version, about = "Tether: hardware-attested device presence for remote workers")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "TETHER_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

// Parsed once at startup: the size of `Serve`'s many settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve {
        /// A TOML file of settings: each key is one of these flags' long name with _ for -
        /// (`scheduler_tick = "5s"`). Command-line flags and environment variables override it.
        #[arg(long, env = "TETHER_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Address to listen on (port 0 picks a free one; the chosen address is printed).
        #[arg(long, env = "TETHER_LISTEN", default_value = "127.0.0.1:50051")]
        listen: String,
        /// sqlite://PATH (created if missing) or postgres://...
        #[arg(long, env = "TETHER_DATABASE_URL", default_value = "sqlite://tether.db")]
        database_url: String,
        /// How often scheduled challenges are issued and missed ones recorded.
        #[arg(long, env = "TETHER_SCHEDULER_TICK", default_value = "5s", value_parser = humantime::parse_duration)]
        scheduler_tick: Duration,
        /// The longest a unary call may run before it fails DEADLINE_EXCEEDED (clients may ask for
        /// less with their gRPC deadline); streams are not cut.
        #[arg(long, env = "TETHER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
        request_timeout: Duration,
        #[command(flatten)]
        pepper: PepperArgs,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        streams: StreamArgs,
        #[command(flatten)]
        console_sessions: ConsoleSessionArgs,
        /// Risk-engine configuration (TOML or JSON): thresholds, network classes, offices,
        /// remote-control lists, MaxMind-format databases. Defaults are documented in docs/detection.md.
        #[arg(long, env = "TETHER_RISK_CONFIG")]
        risk_config: Option<std::path::PathBuf>,
        /// Serve the analysts' web console on this address (off unless set; port 0 picks a free
        /// one; the chosen address is printed).
        #[arg(long, env = "TETHER_CONSOLE_LISTEN")]
        console_listen: Option<String>,
        /// Serve Prometheus metrics at /metrics on this address (off unless set; port 0 picks a
        /// free one; the chosen address is printed).
        #[arg(long, env = "TETHER_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        #[command(flatten)]
        access_tokens: AccessTokenArgs,
        #[command(flatten)]
        mds: MdsArgs,
        #[command(flatten)]
        web: WebArgs,
    },
    /// Apply pending schema migrations and exit (for deployment jobs; `serve` also applies them).
    Migrate {
        #[arg(long, env = "TETHER_DATABASE_URL", default_value = "sqlite://tether.db")]
        database_url: String,
    },
    /// Create a tenant (employer) and print its first admin API key, once.
    Init {
        #[arg(long)]
        tenant: String,
        /// WebAuthn relying-party id: the domain the agents' credentials are scoped to.
        #[arg(long)]
        rp_id: String,
        /// The origin agents present, https://RP_ID[:port] (http://localhost for development).
        #[arg(long)]
        origin: String,
        #[arg(long, env = "TETHER_DATABASE_URL", default_value = "sqlite://tether.db")]
        database_url: String,
        #[arg(long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        pepper: PepperArgs,
    },
}

#[derive(clap::Args)]
struct DatabaseArgs {
    /// Most database connections this process opens [default: 8 for SQLite, 16 for PostgreSQL].
    #[arg(long, env = "TETHER_DB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_max_connections: Option<u32>,
    /// How long a call waits for a free connection before failing UNAVAILABLE.
    #[arg(long, env = "TETHER_DB_ACQUIRE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    db_acquire_timeout: Duration,
    /// PostgreSQL: the longest a statement may run; SQLite: the longest a writer waits for the lock.
    #[arg(long, env = "TETHER_DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    db_statement_timeout: Duration,
    /// Runs of a transaction the database aborts for a concurrent one (deadlock, serialization
    /// failure) before the call fails ABORTED; 1 = no retry.
    #[arg(long, env = "TETHER_DB_RETRY_ATTEMPTS", default_value_t = tetherd::store::retry::DEFAULT_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(tetherd::store::retry::MAX_ATTEMPTS)))]
    db_retry_attempts: u32,
    /// SQLite: `full` makes every acknowledged write survive a power loss; `normal` (no fsync per
    /// commit) survives `kill -9` of tetherd but not an OS crash or power loss.
    #[arg(long, env = "TETHER_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    sqlite_synchronous: Synchronous,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Synchronous {
    Full,
    Normal,
}

impl DatabaseArgs {
    fn options(&self) -> anyhow::Result<StoreOptions> {
        if self.db_acquire_timeout.is_zero() || self.db_statement_timeout.is_zero() {
            anyhow::bail!("--db-acquire-timeout and --db-statement-timeout must be longer than zero");
        }
        Ok(StoreOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: self.db_statement_timeout,
            retry_attempts: self.db_retry_attempts,
            sqlite_synchronous: match self.sqlite_synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            },
        })
    }
}

#[derive(clap::Args)]
struct LimitArgs {
    /// Access checks per second per tenant (burst: twice as many).
    #[arg(long, env = "TETHER_LIMIT_ACCESS_PER_TENANT", default_value_t = 1000.0)]
    limit_access_per_tenant: f64,
    /// Presence answers per second per device (burst: five times as many).
    #[arg(long, env = "TETHER_LIMIT_PRESENCE_PER_DEVICE", default_value_t = 2.0)]
    limit_presence_per_device: f64,
    /// Presence answers per second whose signature does not verify, per source address (IPv6: per
    /// /64; burst: ten times as many). Verified answers never count here.
    #[arg(long, env = "TETHER_LIMIT_UNVERIFIED_ANSWERS_PER_ADDRESS", default_value_t = 1.0)]
    limit_unverified_answers_per_address: f64,
    /// Enrollment calls per second per source address (IPv6: per /64; burst: four times as many).
    #[arg(long, env = "TETHER_LIMIT_ENROLLMENT_PER_ADDRESS", default_value_t = 5.0)]
    limit_enrollment_per_address: f64,
    /// Enrollment calls per second with one token (burst: twenty times as many).
    #[arg(long, env = "TETHER_LIMIT_ENROLLMENT_PER_TOKEN", default_value_t = 0.5)]
    limit_enrollment_per_token: f64,
    /// The most rate-limit buckets kept per kind of limit (memory stays bounded under a flood of
    /// new keys; when every one is still refilling, a new key is refused until one has refilled).
    #[arg(long, env = "TETHER_LIMIT_BUCKETS", default_value_t = tetherd::domain::limits::DEFAULT_MAX_BUCKETS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    limit_buckets: usize,
}

impl LimitArgs {
    fn settings(&self) -> anyhow::Result<LimitSettings> {
        for (name, value) in [
            ("--limit-access-per-tenant", self.limit_access_per_tenant),
            ("--limit-presence-per-device", self.limit_presence_per_device),
            ("--limit-unverified-answers-per-address", self.limit_unverified_answers_per_address),
            ("--limit-enrollment-per-address", self.limit_enrollment_per_address),
            ("--limit-enrollment-per-token", self.limit_enrollment_per_token),
        ] {
            if !value.is_finite() || value <= 0.0 {
                anyhow::bail!("{name} must be a positive number of calls per second, not {value}");
            }
        }
        let rate = |per_second: f64, burst: f64| Rate { per_second, burst: (per_second * burst).max(1.0) };
        Ok(LimitSettings {
            access_per_tenant: rate(self.limit_access_per_tenant, 2.0),
            presence_per_device: rate(self.limit_presence_per_device, 5.0),
            unverified_answers_per_address: rate(self.limit_unverified_answers_per_address, 10.0),
            enrollment_per_address: rate(self.limit_enrollment_per_address, 4.0),
            enrollment_per_token: rate(self.limit_enrollment_per_token, 20.0),
            max_buckets: self.limit_buckets,
        })
    }
}

#[derive(clap::Args)]
struct StreamArgs {
    /// Challenge streams (WatchChallenges) open at once in this process.
    #[arg(long, env = "TETHER_WATCH_STREAMS_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    watch_streams_max: u32,
    /// Challenge streams open at once on one HTTP/2 connection.
    #[arg(long, env = "TETHER_WATCH_STREAMS_PER_CONNECTION", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    watch_streams_per_connection: u32,
    /// Challenge streams open at once for one credential (an agent holds one).
    #[arg(long, env = "TETHER_WATCH_STREAMS_PER_CREDENTIAL", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    watch_streams_per_credential: u32,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls of any kind open at once on one connection.
    #[arg(long, env = "TETHER_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    grpc_max_concurrent_streams: u32,
    /// How often the server pings a connection over HTTP/2; one unanswered for 20 s is closed.
    #[arg(long, env = "TETHER_GRPC_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = parse_positive_duration)]
    grpc_keepalive_interval: Duration,
}

impl StreamArgs {
    fn limits(&self) -> tetherd::domain::app::StreamLimits {
        tetherd::domain::app::StreamLimits {
            watch_total: self.watch_streams_max as usize,
            watch_per_connection: self.watch_streams_per_connection as usize,
            watch_per_credential: self.watch_streams_per_credential as usize,
            http2_max_concurrent_streams: self.grpc_max_concurrent_streams,
            http2_keepalive_interval: self.grpc_keepalive_interval,
        }
    }
}

#[derive(clap::Args)]
struct ConsoleSessionArgs {
    /// Console sessions held at once in this process; when full, new logins are refused.
    #[arg(long, env = "TETHER_CONSOLE_SESSIONS_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    console_sessions_max: u32,
    /// Console sessions of one tenant; a login past it ends that tenant's oldest session.
    #[arg(long, env = "TETHER_CONSOLE_SESSIONS_PER_TENANT", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    console_sessions_per_tenant: u32,
    /// Console sessions of one API key; a login past it ends that key's oldest session.
    #[arg(long, env = "TETHER_CONSOLE_SESSIONS_PER_KEY", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    console_sessions_per_key: u32,
}

impl ConsoleSessionArgs {
    fn limits(&self) -> tetherd::domain::app::SessionLimits {
        tetherd::domain::app::SessionLimits {
            total: self.console_sessions_max as usize,
            per_tenant: self.console_sessions_per_tenant as usize,
            per_key: self.console_sessions_per_key as usize,
        }
    }
}

#[derive(clap::Args)]
struct WebArgs {
    /// Serve the workers' web app (enrollment and presence through the browser's WebAuthn) on
    /// this address (off unless set; port 0 picks a free one; the chosen address is printed).
    /// TLS with --tls-cert/--tls-key; plain HTTP only on a loopback address.
    #[arg(long, env = "TETHER_WEB_LISTEN")]
    web_listen: Option<String>,
    /// Reverse proxies (CIDR, comma-separated or repeated) whose X-Forwarded-For names the
    /// worker's address for the web app; from any other peer the header is ignored.
    #[arg(long, env = "TETHER_WEB_TRUSTED_PROXY", value_delimiter = ',')]
    web_trusted_proxy: Vec<ipnet::IpNet>,
}

#[derive(clap::Args)]
struct TlsArgs {
    /// Serve TLS with this PEM certificate chain (plaintext without it).
    #[arg(long, env = "TETHER_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "TETHER_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// Verify client certificates against this PEM CA; a verified certificate with the URI name
    /// tether://tenant/<tenant id>/role/<role> authenticates without an API key.
    #[arg(long, env = "TETHER_TLS_CLIENT_CA")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Refuse connections that present no client certificate.
    #[arg(long, env = "TETHER_TLS_REQUIRE_CLIENT_CERT")]
    tls_require_client_cert: bool,
}

#[derive(clap::Args)]
struct MdsArgs {
    /// A FIDO MDS3 BLOB (as downloaded from the metadata service) whose compromised and revoked
    /// authenticator models are refused at enrollment; re-read when the file changes. Off unless set.
    #[arg(long, env = "TETHER_MDS_FILE", value_name = "FILE")]
    mds_file: Option<std::path::PathBuf>,
    /// A PEM file of roots the BLOB's signer must chain to (repeatable; the environment variable
    /// takes a comma-separated list). Default: the shipped, pinned GlobalSign R3 and R46 roots.
    #[arg(long, env = "TETHER_MDS_ROOTS", value_name = "PEM", value_delimiter = ',')]
    mds_root: Vec<std::path::PathBuf>,
    /// Fetch the BLOB from this URL (https, or http to loopback), e.g.
    /// https://mds3.fidoalliance.org/, keeping --mds-file as its cache: a download replaces the
    /// file only once it verifies and is newer. Without a cache file, startup fetches first.
    #[arg(long, env = "TETHER_MDS_URL", value_name = "URL", requires = "mds_file")]
    mds_url: Option<String>,
    /// How often --mds-url is fetched.
    #[arg(long, env = "TETHER_MDS_FETCH_INTERVAL", default_value = "24h", value_parser = parse_positive_duration)]
    mds_fetch_interval: Duration,
    /// How often the --mds-file is checked for changes.
    #[arg(long, env = "TETHER_MDS_RELOAD_INTERVAL", default_value = "60s", value_parser = parse_positive_duration)]
    mds_reload_interval: Duration,
}

impl MdsArgs {
    /// The roots every FIDO metadata BLOB (the --mds-file and tenants' imports) must chain to.
    fn roots(&self) -> anyhow::Result<tether_attestation::trust::TrustStore> {
        if self.mds_root.is_empty() {
            return tether_attestation::mds::production_roots().map_err(|e| anyhow::anyhow!(e));
        }
        let mut roots = tether_attestation::trust::TrustStore::new();
        for file in &self.mds_root {
            let pem = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read --mds-root {}: {e}", file.display()))?;
            roots.add_pem(&pem).map_err(|e| anyhow::anyhow!("--mds-root {}: {e}", file.display()))?;
        }
        Ok(roots)
    }

    fn source(&self, roots: &tether_attestation::trust::TrustStore) -> Option<tetherd::process::mds::MdsSource> {
        let path = self.mds_file.as_ref()?;
        Some(tetherd::process::mds::MdsSource {
            path: path.clone(),
            roots: roots.clone(),
            reload_interval: self.mds_reload_interval,
        })
    }
}

#[derive(Debug, clap::Args)]
struct AccessTokenArgs {
    /// PKCS#8 Ed25519 (EdDSA) or P-256 (ES256) private key (PEM or DER) that signs access tokens (JWTs);
    /// without it tokens are off. Create one with `tether gateway new-token-key --out FILE`.
    #[arg(long, env = "TETHER_ACCESS_TOKEN_KEY", value_name = "FILE")]
    access_token_key: Option<std::path::PathBuf>,
    /// A previous signing key (repeatable; the environment variable takes a comma-separated list):
    /// tokens it signed still verify and its public key is still published, but it signs nothing.
    #[arg(long, env = "TETHER_ACCESS_TOKEN_PREVIOUS_KEYS", value_name = "FILE", value_delimiter = ',')]
    access_token_previous_key: Vec<std::path::PathBuf>,
    /// The tokens' issuer (`iss`), which JWT verifiers such as Envoy's jwt_authn must be told; usually
    /// the URL gateways know this server by.
    #[arg(long, env = "TETHER_ACCESS_TOKEN_ISSUER", default_value = "tether", value_name = "ISSUER")]
    access_token_issuer: String,
    /// Lifetime of an access token (whole seconds, at most 60m).
    #[arg(long, env = "TETHER_ACCESS_TOKEN_TTL", default_value = "5m", value_parser = parse_positive_duration)]
    access_token_ttl: Duration,
}

impl AccessTokenArgs {
    fn load(&self) -> anyhow::Result<Option<tetherd::domain::access::token_keys::TokenKeys>> {
        let Some(active) = &self.access_token_key else {
            if !self.access_token_previous_key.is_empty() {
                anyhow::bail!("--access-token-previous-key needs --access-token-key (the key that signs new tokens)");
            }
            return Ok(None);
        };
        tetherd::domain::access::token_keys::TokenKeys::load(
            active,
            &self.access_token_previous_key,
            &self.access_token_issuer,
            self.access_token_ttl,
        )
        .map(Some)
        .map_err(|e| anyhow::anyhow!(e))
    }
}

#[derive(clap::Args)]
struct PepperArgs {
    /// File holding the API-key pepper (at least 32 bytes; `TETHER_API_KEY_PEPPER` may hold the value
    /// itself). Default with SQLite: DATABASE.pepper beside the database file, created on first start.
    #[arg(long, env = "TETHER_API_KEY_PEPPER_FILE")]
    api_key_pepper_file: Option<std::path::PathBuf>,
    /// A previous API-key pepper (repeatable; the environment variable takes a comma-separated list):
    /// keys hashed under it still verify and are re-hashed under the current pepper at their next use.
    #[arg(long, env = "TETHER_API_KEY_PEPPER_PREVIOUS_FILE", value_name = "FILE", value_delimiter = ',')]
    api_key_pepper_previous_file: Vec<std::path::PathBuf>,
}

impl PepperArgs {
    fn load(&self, database_url: &str) -> anyhow::Result<Pepper> {
        tetherd::store::backend_of(database_url)?;
        Pepper::for_database(self.api_key_pepper_file.as_deref(), database_url)
            .and_then(|pepper| pepper.with_previous_files(&self.api_key_pepper_previous_file))
            .map_err(|e| anyhow::anyhow!(e))
    }
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Logs on stderr, plus OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (tetherd::telemetry).
fn init_logging(format: LogFormat) -> anyhow::Result<tetherd::telemetry::Telemetry> {
    tetherd::telemetry::init(matches!(format, LogFormat::Json))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match with_config_file(std::env::args_os().collect()) {
        Ok(args) => Cli::parse_from(args),
        Err(e) => {
            eprintln!("tetherd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = match init_logging(cli.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("tetherd: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tetherd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Adds the settings of `serve --config FILE` (or `TETHER_CONFIG`) that the
/// command line and environment do not set; other subcommands ignore it.
fn with_config_file(args: Vec<OsString>) -> Result<Vec<OsString>, config_file::ConfigFileError> {
    if !args.iter().skip(1).any(|a| a == "serve") {
        return Ok(args);
    }
    let Some(path) = config_file::config_path(&args) else { return Ok(args) };
    let cli = Cli::command();
    let Some(serve) = cli.find_subcommand("serve") else { return Ok(args) };
    config_file::merge(serve, args, std::path::Path::new(&path))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            config: _,
            listen,
            database_url,
            scheduler_tick,
            request_timeout,
            pepper,
            tls,
            database,
            limits,
            streams,
            console_sessions,
            risk_config,
            console_listen,
            metrics_listen,
            access_tokens,
            mds,
            web,
        } => {
            let limits = limits.settings()?;
            let mds_roots = mds.roots()?;
            let (mds_url, mds_fetch_interval) = (mds.mds_url.clone(), mds.mds_fetch_interval);
            let mds = mds.source(&mds_roots);
            let store_options = database.options()?;
            let token_keys = access_tokens.load()?;
            let web_tls = match (&web.web_listen, &tls.tls_cert, &tls.tls_key) {
                (Some(_), Some(cert), Some(key)) => Some(
                    tetherd::transport::web::tls::Acceptor::from_pem_files(cert, key)
                        .map_err(|e| anyhow::anyhow!(e))?,
                ),
                _ => None,
            };
            let tls = tetherd::process::tls::TlsFiles {
                cert: tls.tls_cert,
                key: tls.tls_key,
                client_ca: tls.tls_client_ca,
                require_client_cert: tls.tls_require_client_cert,
            }
            .server_config()
            .map_err(|e| anyhow::anyhow!(e))?;
            let pepper = pepper.load(&database_url)?;
            let store = Store::open_with(&database_url, &store_options).await?;
            tetherd::domain::tenancy::pepper::log_dependents(&store, &pepper, tetherd::util::now_ms()).await;
            let engine = tether_risk::load_engine(risk_config.as_deref(), |path| std::fs::read(path))
                .map_err(|e| anyhow::anyhow!(e))?;
            let settings = Settings {
                scheduler_tick,
                limits,
                request_timeout,
                streams: streams.limits(),
                console_sessions: console_sessions.limits(),
                ..Settings::default()
            };
            let app = App::new(store, pepper, settings, engine);
            if let Some(keys) = token_keys {
                tracing::info!(
                    active = keys.active_key_id(),
                    verify_only = keys.verifying_keys().len() - 1,
                    "access tokens enabled"
                );
                let _ = app.access_tokens.set(keys);
            }
            let _ = app.mds_roots.set(mds_roots);
            if let Some(source) = mds {
                if let Some(url) = &mds_url
                    && !source.path.exists()
                {
                    tetherd::process::mds_fetch::fetch_into_cache(url, &source)
                        .await
                        .map_err(|e| anyhow::anyhow!("--mds-url: no cached --mds-file yet and {e}"))?;
                }
                tetherd::process::mds::install(&app, &source).await.map_err(|e| anyhow::anyhow!("--mds-file: {e}"))?;
                if let Some(url) = mds_url {
                    tetherd::process::mds_fetch::spawn_fetch(app.clone(), source.clone(), url, mds_fetch_interval);
                }
                tetherd::process::mds::spawn_reload(app.clone(), source);
            }
            if !app.risk.geo_enabled() {
                tracing::warn!(
                    "no IP databases configured (risk configuration geo.city_mmdb/asn_mmdb): geo signals are off"
                );
            }
            let warmed = app.risk.warm_up(&app.store).await?;
            tracing::info!(events = warmed, "risk engine warmed up from the last day");
            if let Some(address) = console_listen {
                let console = tokio::net::TcpListener::bind(&address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {address} (--console-listen): {e}"))?;
                // Printed before the gRPC line, which tells scripts that startup is complete.
                println!("tether console listening on http://{}", console.local_addr()?);
                tetherd::transport::console::spawn(app.clone(), console);
            }
            if let Some(address) = web.web_listen {
                // Refused before binding when the address says so already; a host name is
                // checked on the address it bound.
                if let (None, Ok(parsed)) = (&web_tls, address.parse::<std::net::SocketAddr>()) {
                    tetherd::transport::web::check_plain_http_allowed(&parsed).map_err(|e| anyhow::anyhow!(e))?;
                }
                let listener = tokio::net::TcpListener::bind(&address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {address} (--web-listen): {e}"))?;
                let local = listener.local_addr()?;
                if web_tls.is_none() {
                    tetherd::transport::web::check_plain_http_allowed(&local).map_err(|e| anyhow::anyhow!(e))?;
                }
                let scheme = if web_tls.is_some() { "https" } else { "http" };
                println!("tether web app listening on {scheme}://{local}");
                let settings = tetherd::transport::web::WebSettings {
                    trusted_proxies: web.web_trusted_proxy,
                    tls: web_tls.is_some(),
                };
                tetherd::transport::web::spawn(app.clone(), listener, settings, web_tls);
            }
            tetherd::telemetry::prometheus::start(metrics_listen.as_deref(), app.stopping.subscribe()).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            // Scripts and tests read the bound address from this line.
            println!("tetherd listening on {}", listener.local_addr()?);
            std::io::stdout().flush()?;
            server::serve(app, listener, tls, server::shutdown_signal()).await
        }
        Command::Migrate { database_url } => {
            let store = Store::open(&database_url).await?;
            store.close().await;
            println!("tetherd migrate: the schema is current");
            Ok(())
        }
        Command::Init { tenant, rp_id, origin, database_url, output, pepper } => {
            let pepper = pepper.load(&database_url)?;
            let store = Store::open(&database_url).await?;
            let (tenant, key) = tenancy::create_tenant(&store, &pepper, &tenant, &rp_id, &origin)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"tenant_id": tenant.id, "tenant": tenant.name, "admin_api_key": key.secret})
                ),
                Output::Text => {
                    println!("tenant:        {} ({})", tenant.name, tenant.id);
                    println!("admin API key: {}", key.secret);
                    println!("This key is shown once; store it now (export TETHER_API_KEY=...).");
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/operating.md's configuration table is the documentation of the file:
    /// a flag added without a row there fails here.
    #[test]
    fn the_readme_lists_every_configuration_key() {
        let readme = include_str!("../../docs/operating.md");
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve subcommand");
        let missing: Vec<String> = config_file::keys(serve)
            .into_iter()
            .filter(|(key, _, _)| !readme.contains(&format!("| `{key}` |")))
            .map(|(key, _, _)| key)
            .collect();
        assert!(missing.is_empty(), "docs/operating.md's configuration table lacks {missing:?}");
    }
}
