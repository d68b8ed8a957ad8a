//! `tether-agent enroll`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tether_agent::{AgentState, DEFAULT_SERVER, Enrollment};
use tether_softkey::{AttestationMode, SoftAuthenticator};

use super::{Cli, Output, print_fields, print_json};

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The one-time enrollment token from `tether tokens create`.
    #[arg(long, env = "TETHER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub token: String,

    /// Packed attestation: the attestation CA certificate (PEM file) that signs
    /// the credential's attestation certificate.
    #[arg(long, value_name = "PEM", requires = "attestation_ca_key", conflicts_with = "self_attestation")]
    pub attestation_ca_cert: Option<PathBuf>,

    /// The attestation CA's private key (PKCS#8 PEM file).
    #[arg(long, value_name = "PEM", requires = "attestation_ca_cert")]
    pub attestation_ca_key: Option<PathBuf>,

    /// Self attestation (the default when no CA is given): the credential
    /// signs its own attestation, which proves nothing about the hardware.
    #[arg(long)]
    pub self_attestation: bool,

    /// The authenticator model id (AAGUID) to claim [default: all zeros].
    #[arg(long, value_name = "UUID")]
    pub aaguid: Option<uuid::Uuid>,

    /// Replace an existing state file (its credential is abandoned).
    #[arg(long)]
    pub force: bool,

    /// Enroll the TPM 2.0 instead of the software authenticator: an attestation key under the
    /// endorsement key, bound by credential activation (needs an agent built with
    /// `--features tpm`).
    #[arg(long, conflicts_with_all = ["attestation_ca_cert", "self_attestation", "aaguid"])]
    pub tpm: bool,

    /// The TPM's TCTI, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`
    /// [default: $TPM2TOOLS_TCTI, else device:/dev/tpmrm0].
    #[arg(long, value_name = "TCTI", requires = "tpm")]
    pub tcti: Option<String>,

    /// PEM file with the TPM maker's intermediate CA certificates, sent after the EK
    /// certificate when the trust store holds only the maker's root.
    #[arg(long, value_name = "PEM", requires = "tpm")]
    pub ek_intermediates: Option<PathBuf>,

    /// Do not fetch a missing issuer of the EK certificate chain from its authorityInfoAccess
    /// caIssuers URL (by default the agent fetches at most 3, 5 s and 64 KiB each).
    #[arg(long, requires = "tpm")]
    pub no_aia_fetch: bool,
}

#[derive(Serialize)]
struct EnrollOutput<'a> {
    #[serde(flatten)]
    enrollment: &'a Enrollment,
    server: &'a str,
    state_file: String,
}

pub async fn enroll(cli: &Cli, args: &EnrollArgs) -> anyhow::Result<u8> {
    let path = &cli.state;
    // Check everything local before the token is consumed.
    if path.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it (the enrolled credential would be abandoned)",
            path.display()
        );
    }
    AgentState::check_writable(path)?;
    if args.tpm {
        return enroll_tpm(cli, args).await;
    }
    let mode = attestation_mode(args)?;
    let aaguid = args.aaguid.unwrap_or_else(uuid::Uuid::nil);
    let mut auth = new_soft_authenticator(mode, aaguid)?;

    let server = cli.server.as_deref().unwrap_or(DEFAULT_SERVER);
    let channel = tether_agent::connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let enrollment = tether_agent::enroll(channel, &args.token, &mut auth).await?;

    let state = AgentState::from_enrollment(server, &enrollment, &auth)?;
    state.save(path).with_context(|| {
        format!("enrolled credential {} but could not save it; enroll again with a new token", enrollment.credential_id)
    })?;
    tracing::info!(
        device_id = %enrollment.device_id,
        credential_id = %enrollment.credential_id,
        attested = enrollment.attested,
        "enrolled"
    );
    print_enrollment(cli, &enrollment, server)
}

#[cfg(feature = "tpm")]
async fn enroll_tpm(cli: &Cli, args: &EnrollArgs) -> anyhow::Result<u8> {
    use tether_agent::tpm::{EkChainOptions, TpmKey, enroll_tpm, tcti_from_env};
    let tcti = tcti_from_env(args.tcti.as_deref());
    let chain = EkChainOptions {
        intermediates_pem: args.ek_intermediates.as_ref().map(read_pem).transpose()?,
        aia_fetch: !args.no_aia_fetch,
    };
    let mut key =
        TpmKey::create(&tcti).with_context(|| format!("cannot create an attestation key in the TPM at {tcti}"))?;
    let server = cli.server.as_deref().unwrap_or(DEFAULT_SERVER);
    let channel = tether_agent::connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let enrollment = enroll_tpm(channel, &args.token, &mut key, &chain).await?;
    let state = AgentState::from_enrollment(server, &enrollment, &key)?;
    state.save(&cli.state).with_context(|| {
        format!("enrolled credential {} but could not save it; enroll again with a new token", enrollment.credential_id)
    })?;
    tracing::info!(device_id = %enrollment.device_id, credential_id = %enrollment.credential_id, "TPM enrolled");
    print_enrollment(cli, &enrollment, server)
}

#[cfg(not(feature = "tpm"))]
async fn enroll_tpm(_cli: &Cli, _args: &EnrollArgs) -> anyhow::Result<u8> {
    bail!(
        "this tether-agent was built without TPM support; rebuild it with `cargo build -p tether-agent --features tpm`"
    )
}

fn print_enrollment(cli: &Cli, enrollment: &Enrollment, server: &str) -> anyhow::Result<u8> {
    let path = &cli.state;
    match cli.output {
        Output::Json => print_json(&EnrollOutput { enrollment, server, state_file: path.display().to_string() })?,
        Output::Table => print_fields(&[
            ("device id", enrollment.device_id.clone()),
            ("worker", enrollment.worker_external_id.clone()),
            ("credential id", enrollment.credential_id.clone()),
            ("format", enrollment.format.clone()),
            ("attestation type", enrollment.attestation_type.clone()),
            ("attested", yes_no(enrollment.attested)),
            ("trust anchor", enrollment.trust_anchor.clone()),
            ("attestation reason", enrollment.attestation_reason.clone()),
            ("state file", path.display().to_string()),
        ]),
    }
    Ok(0)
}

fn attestation_mode(args: &EnrollArgs) -> anyhow::Result<AttestationMode> {
    match (&args.attestation_ca_cert, &args.attestation_ca_key) {
        (Some(cert), Some(key)) => {
            Ok(AttestationMode::Packed { ca_cert_pem: read_pem(cert)?, ca_key_pem: read_pem(key)? })
        }
        (None, None) => Ok(AttestationMode::SelfAttestation),
        // clap enforces that the two come together.
        _ => bail!("--attestation-ca-cert and --attestation-ca-key go together"),
    }
}

fn read_pem(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn new_soft_authenticator(mode: AttestationMode, aaguid: uuid::Uuid) -> anyhow::Result<SoftAuthenticator> {
    SoftAuthenticator::new(mode, aaguid).map_err(|e| anyhow::anyhow!("cannot create the soft authenticator: {e}"))
}

pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}
