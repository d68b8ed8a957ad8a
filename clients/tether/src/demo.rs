//! `tether demo`: the whole product in a minute. Starts a real `tetherd`
//! process on a temporary SQLite file and a loopback port, enrolls
//! soft-authenticator devices under a throwaway attestation CA, runs presence
//! rounds (one device misses, one replays an old assertion, one is
//! self-attested), asks the gateway for decisions and prints the analyst
//! report — all over real gRPC. The CLI does not contain the server: it runs
//! the `tetherd` binary built beside it (`cargo build -p tetherd`).

use anyhow::{Context, bail};
use clap::Args;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tether_agent::{Authenticator, answer_challenge, enroll, poll_challenges};
use tether_proto::v1 as pb;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// Arguments for `tether demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo database here instead of a temporary directory.
    #[arg(long)]
    pub database: Option<PathBuf>,
    /// The tetherd binary to run [default: the one beside this program, then PATH].
    #[arg(long)]
    pub tetherd: Option<PathBuf>,
}

const RP_ID: &str = "demo.tether.example";
const ORIGIN: &str = "https://demo.tether.example";
/// A made-up authenticator model id for the demo's soft authenticators.
const DEMO_AAGUID: &str = "7e57de30-0000-4000-8000-00000000d340";

fn authed<T>(key: &str, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {key}").parse()?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

struct Demo {
    channel: Channel,
    admin_key: String,
    gateway_key: String,
    analyst_key: String,
}

struct Laptop {
    worker: &'static str,
    device_id: String,
    credential_id: Option<String>,
    auth: SoftAuthenticator,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let tetherd = args.tetherd.clone().unwrap_or_else(default_tetherd);
    let dir = tempfile::tempdir()?;
    let db_path = args.database.unwrap_or_else(|| dir.path().join("demo.db"));
    let database_url = format!("sqlite://{}", db_path.display());
    let admin_key = init_tenant(&tetherd, &database_url)?;
    let server = DemoServer::start(&tetherd, &database_url)?;
    let url = format!("http://{}", server.address);
    println!("tetherd (pid {}) is serving on {url} with database {}", server.child.id(), db_path.display());

    let channel = Channel::from_shared(url)?.connect().await?;
    run_story(channel, admin_key).await
}

/// `tetherd` beside this executable (how `cargo build` lays them out), else the one on PATH.
fn default_tetherd() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("tetherd")));
    beside.filter(|path| path.is_file()).unwrap_or_else(|| PathBuf::from("tetherd"))
}

fn tetherd_command(tetherd: &Path) -> Command {
    let mut command = Command::new(tetherd);
    command.env("RUST_LOG", "warn");
    command
}

fn spawn_failed(tetherd: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot run {}: {e}; build the server first (`cargo build -p tetherd`) or name it with --tetherd",
        tetherd.display()
    )
}

/// Creates the demo employer with `tetherd init` and returns its admin key.
fn init_tenant(tetherd: &Path, database_url: &str) -> anyhow::Result<String> {
    let output = tetherd_command(tetherd)
        .args(["init", "--tenant", "Demo Corp", "--rp-id", RP_ID, "--origin", ORIGIN, "--output", "json"])
        .args(["--database-url", database_url])
        .output()
        .map_err(|e| spawn_failed(tetherd, e))?;
    if !output.status.success() {
        bail!("tetherd init failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let created: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("tetherd init printed something other than JSON")?;
    created["admin_api_key"].as_str().map(str::to_string).context("tetherd init printed no admin_api_key")
}

/// A `tetherd serve` child, stopped when the demo ends however it ends.
struct DemoServer {
    child: Child,
    address: String,
}

impl DemoServer {
    fn start(tetherd: &Path, database_url: &str) -> anyhow::Result<DemoServer> {
        let mut child = tetherd_command(tetherd)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url])
            // Misses are recorded within a fraction of a second of their deadline.
            .args(["--scheduler-tick", "200ms"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_failed(tetherd, e))?;
        let stdout = child.stdout.take().context("tetherd's standard output")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("tetherd listening on ") {
                        break address.trim().to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("tetherd exited before it listened (its error is above)");
                }
            }
        };
        // Keep reading its output so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(DemoServer { child, address })
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run_story(channel: Channel, admin_key: String) -> anyhow::Result<()> {
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let mint = |role: pb::Role| {
        let mut admin = admin.clone();
        let key = admin_key.clone();
        async move {
            let request =
                authed(&key, pb::CreateApiKeyRequest { name: String::new(), role: role as i32, ttl_seconds: 0 })?;
            anyhow::Ok(admin.create_api_key(request).await?.into_inner().secret)
        }
    };
    let gateway_key = mint(pb::Role::Gateway).await?;
    let analyst_key = mint(pb::Role::Analyst).await?;
    let demo = Demo { channel: channel.clone(), admin_key: admin_key.clone(), gateway_key, analyst_key };

    println!("\n1. The employer trusts one authenticator vendor (a throwaway CA made for this demo).");
    let pki = TestPki::generate("Demo Authenticator Vendor")?;
    admin
        .add_trust_anchors(authed(
            &admin_key,
            pb::AddTrustAnchorsRequest { pem: pki.root_cert_pem.clone(), name: "demo vendor root".into() },
        )?)
        .await?;
    admin
        .update_policy(authed(
            &admin_key,
            pb::UpdatePolicyRequest { challenge_deadline_seconds: Some(2), ..Default::default() },
        )?)
        .await?;

    println!("\n2. IT registers four laptops and issues one-time enrollment tokens; each agent enrolls.");
    let aaguid = uuid_from(DEMO_AAGUID)?;
    let vendor = || AttestationMode::Packed {
        ca_cert_pem: pki.intermediate_cert_pem.clone(),
        ca_key_pem: pki.intermediate_key_pem.clone(),
    };
    let mut laptops = Vec::new();
    for (worker, mode) in
        [("alice", vendor()), ("bob", vendor()), ("carol", vendor()), ("dave", AttestationMode::SelfAttestation)]
    {
        laptops.push(demo.enroll_laptop(worker, SoftAuthenticator::new(mode, aaguid)?).await?);
    }

    println!("\n3. Presence round: every enrolled laptop receives a fresh nonce to sign.");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut carol_old_answer = None;
    for laptop in laptops.iter_mut() {
        let Some(credential_id) = laptop.credential_id.clone() else { continue };
        let pending = poll_challenges(demo.channel.clone(), &credential_id).await?;
        match laptop.worker {
            "bob" => println!("   bob     : does not answer (the laptop sits in a farm, nobody at the keyboard)"),
            worker => {
                for challenge in &pending {
                    if worker == "carol" {
                        carol_old_answer =
                            Some(laptop.auth.get_assertion(&challenge.request_options_json, &challenge.origin)?);
                        let mut presence =
                            pb::presence_service_client::PresenceServiceClient::new(demo.channel.clone());
                        presence
                            .answer_challenge(pb::AnswerChallengeRequest {
                                challenge_id: challenge.challenge_id.clone(),
                                assertion_response_json: carol_old_answer.clone().unwrap_or_default(),
                                tpm_quote: None,
                                ..Default::default()
                            })
                            .await?;
                    } else {
                        answer_challenge(demo.channel.clone(), challenge, &mut laptop.auth).await?;
                    }
                    println!("   {worker:<8}: signed the nonce with user verification -> presence OK");
                }
            }
        }
    }

    println!("\n4. Security asks carol's laptop again; someone replays her previous answer.");
    let carol = laptops.iter().find(|l| l.worker == "carol").context("carol")?;
    let ids = admin
        .challenge_now(authed(
            &admin_key,
            pb::ChallengeNowRequest { device_id: carol.device_id.clone(), deadline_seconds: 30 },
        )?)
        .await?
        .into_inner()
        .challenge_ids;
    let mut presence = pb::presence_service_client::PresenceServiceClient::new(demo.channel.clone());
    let replay = presence
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: ids.first().cloned().unwrap_or_default(),
            assertion_response_json: carol_old_answer.unwrap_or_default(),
            tpm_quote: None,
            ..Default::default()
        })
        .await;
    match replay {
        Ok(_) => bail!("the replayed assertion was accepted — this must never happen"),
        Err(status) => println!("   rejected: {}", status.message()),
    }

    println!("\n5. Waiting for bob's challenge deadline to pass...");
    tokio::time::sleep(Duration::from_millis(2600)).await;

    println!("\n6. The VPN gateway asks Tether before letting each worker in:");
    for laptop in &laptops {
        let mut access = pb::access_service_client::AccessServiceClient::new(demo.channel.clone());
        let decision = access
            .check_access(authed(
                &demo.gateway_key,
                pb::CheckAccessRequest {
                    worker_external_id: laptop.worker.into(),
                    device_id: laptop.device_id.clone(),
                    credential_id: String::new(),
                    source_ip: "127.0.0.1".into(),
                    gateway_id: "demo-vpn".into(),
                    ..Default::default()
                },
            )?)
            .await?
            .into_inner();
        let verdict = if decision.decision == pb::Decision::Allow as i32 { "ALLOW" } else { "DENY " };
        let reasons: Vec<String> = decision.reasons.iter().map(|r| r.detail.clone()).collect();
        println!("   {:<8}: {verdict} {}", laptop.worker, reasons.join("; "));
    }

    println!("\n7. The analyst's report of presence failures (newest first):");
    let mut reports = pb::report_service_client::ReportServiceClient::new(demo.channel.clone());
    let failures = reports
        .list_presence_failures(authed(&demo.analyst_key, pb::ListPresenceFailuresRequest::default())?)
        .await?
        .into_inner()
        .events;
    for event in failures {
        let worker = laptops.iter().find(|l| l.device_id == event.device_id).map(|l| l.worker).unwrap_or("?");
        let outcome = pb::PresenceOutcome::try_from(event.outcome)
            .map(|o| o.as_str_name().trim_start_matches("PRESENCE_OUTCOME_").to_ascii_lowercase())
            .unwrap_or_default();
        println!("   {worker:<8} {outcome:<9} {}", event.detail);
    }
    println!("\nDone. Everything above went over gRPC to a real tetherd with a real SQLite file.");
    Ok(())
}

impl Demo {
    async fn enroll_laptop(&self, worker: &'static str, mut auth: SoftAuthenticator) -> anyhow::Result<Laptop> {
        let mut admin = pb::admin_service_client::AdminServiceClient::new(self.channel.clone());
        let device = admin
            .register_device(authed(
                &self.admin_key,
                pb::RegisterDeviceRequest {
                    serial_number: format!("DEMO-{worker}"),
                    model: "ThinkPad T14 Gen 5".into(),
                    asset_tag: String::new(),
                    worker_external_id: worker.into(),
                    worker_display_name: worker.into(),
                    ek_pin: String::new(),
                },
            )?)
            .await?
            .into_inner();
        let token = admin
            .create_enrollment_token(authed(
                &self.admin_key,
                pb::CreateEnrollmentTokenRequest { device_id: device.id.clone(), ttl_seconds: 0 },
            )?)
            .await?
            .into_inner()
            .secret;
        let authenticator: &mut dyn Authenticator = &mut auth;
        let credential_id = match enroll(self.channel.clone(), &token, authenticator).await {
            Ok(done) => {
                println!("   {worker:<8}: enrolled ({} attestation, anchor {:?})", done.format, done.trust_anchor);
                Some(done.credential_id)
            }
            Err(e) => {
                println!("   {worker:<8}: REFUSED — {e}");
                None
            }
        };
        Ok(Laptop { worker, device_id: device.id, credential_id, auth })
    }
}

fn uuid_from(text: &str) -> anyhow::Result<uuid::Uuid> {
    Ok(uuid::Uuid::parse_str(text)?)
}
