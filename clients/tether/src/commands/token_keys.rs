//! Access-token keys for gateways: fetch the published public keys, verify a
//! token offline against them, and create a signing key for tetherd.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use tether_attestation::access_token::{self, KeyAlgorithm, KeySet};
use tether_proto::v1::GetAccessTokenKeysRequest;

use super::Ctx;

/// `verify-token` exit codes: valid, refused, unusable input.
pub const EXIT_VALID: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_UNUSABLE: i32 = 2;

#[derive(Debug, Args)]
pub struct TokenKeysArgs {
    /// Write the key set (JSON) to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyTokenArgs {
    /// A key set written by `tether gateway token-keys` (a JWKS naming its tenant
    /// and issuer). Only tokens of that tenant (the tenant of the key that
    /// fetched it) and issuer are valid.
    #[arg(long, value_name = "FILE")]
    pub keys: PathBuf,
    /// The token (a JWT); `-` reads it from standard input.
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The address the token is presented from; it must be the one it was issued to.
    /// Without it the address binding is not checked.
    #[arg(long, value_name = "IP")]
    pub source_ip: Option<String>,
}

#[derive(Debug, Args)]
pub struct NewTokenKeyArgs {
    /// Where to write the PKCS#8 PEM private key (created with mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The signature algorithm: `eddsa` (Ed25519) or `es256` (ECDSA P-256, for
    /// verifiers without Ed25519).
    #[arg(long, value_enum, default_value = "eddsa")]
    pub algorithm: TokenAlgorithm,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TokenAlgorithm {
    Eddsa,
    Es256,
}

pub async fn token_keys(ctx: &Ctx, args: TokenKeysArgs) -> anyhow::Result<i32> {
    let response = ctx.access().await?.get_access_token_keys(GetAccessTokenKeysRequest {}).await?.into_inner();
    // Without the tenant the file would admit every tenant's tokens offline: refuse to write one.
    if response.tenant_id.trim().is_empty() {
        anyhow::bail!(
            "tetherd did not say which tenant these keys are for (it predates tenant-bound key sets); upgrade \
             tetherd, then fetch the keys again"
        );
    }
    if response.issuer.trim().is_empty() || response.jwks_json.trim().is_empty() {
        anyhow::bail!(
            "tetherd sent no issuer or JWKS (it predates JWT access tokens); upgrade tetherd, then fetch the keys \
             again"
        );
    }
    // A server answering with a key whose id does not match must not end up in a gateway's key file.
    let set = access_token::parse_jwks(&response.jwks_json)
        .and_then(|keys| KeySet::new(&response.tenant_id, &response.issuer, keys))
        .map_err(|e| anyhow::anyhow!("the server's key set is unusable: {e}"))?;
    let text = format!("{}\n", set.to_json());
    match args.out {
        Some(path) => {
            write_replacing(&path, text.as_bytes())?;
            eprintln!(
                "wrote {} key(s) for tenant {} (issuer {}) to {}",
                set.keys().len(),
                set.tenant_id(),
                set.issuer(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(0)
}

/// Writes beside the target and renames, so a gateway never reads half a file.
fn write_replacing(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| anyhow::anyhow!("cannot write in {}: {e}", dir.display()))?;
    file.write_all(contents)?;
    file.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Offline: 0 valid (claims as JSON on stdout), 1 refused (reason on stderr), 2 unusable input.
pub fn verify_token(args: &VerifyTokenArgs) -> i32 {
    let keys = match std::fs::read_to_string(&args.keys) {
        Ok(text) => match access_token::parse_key_set(&text) {
            Ok(keys) => keys,
            Err(e) => {
                eprintln!("error: {}: {e}", args.keys.display());
                return EXIT_UNUSABLE;
            }
        },
        Err(e) => {
            eprintln!("error: cannot read the key set {}: {e}", args.keys.display());
            return EXIT_UNUSABLE;
        }
    };
    let token = if args.token == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().take(access_token::MAX_TOKEN_LEN as u64 + 2).read_to_string(&mut text) {
            eprintln!("error: cannot read the token from standard input: {e}");
            return EXIT_UNUSABLE;
        }
        text.trim().to_string()
    } else {
        args.token.trim().to_string()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    match access_token::verify(&token, &keys, now, args.source_ip.as_deref()) {
        Ok(claims) => match serde_json::to_string_pretty(&claims) {
            Ok(json) => {
                println!("{json}");
                EXIT_VALID
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_UNUSABLE
            }
        },
        Err(e) => {
            eprintln!("invalid token ({}): {e}", e.code());
            EXIT_INVALID
        }
    }
}

pub fn new_token_key(args: &NewTokenKeyArgs) -> anyhow::Result<i32> {
    let algorithm = match args.algorithm {
        TokenAlgorithm::Eddsa => KeyAlgorithm::EdDsa,
        TokenAlgorithm::Es256 => KeyAlgorithm::Es256,
    };
    let der = access_token::generate_pkcs8(algorithm).map_err(|e| anyhow::anyhow!(e))?;
    let signer = access_token::AccessTokenSigner::from_pkcs8(&der)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&args.out).map_err(|e| {
        anyhow::anyhow!("cannot create {} (an existing key is never overwritten): {e}", args.out.display())
    })?;
    file.write_all(access_token::pkcs8_to_pem(&der).as_bytes())?;
    println!("{}", signer.key_id());
    eprintln!(
        "wrote a new {} access-token signing key {} to {}",
        algorithm.jws_name(),
        signer.key_id(),
        args.out.display()
    );
    Ok(0)
}
