//! `run --once --access-token-out FILE`: keep the newest access token the
//! server issued with an answer, for a VPN client or proxy to present.

use std::io::Write;
use std::path::Path;

use tether_agent::{AgentError, AnswerChallengeResponse};

/// Writes the last token among `results` (mode 0600, replacing the file in
/// one rename). Answering nothing, or answers without a token, is an error:
/// a caller asking for a token must not go on with a stale one.
pub fn write<'a>(
    path: &Path,
    results: impl IntoIterator<Item = &'a Result<AnswerChallengeResponse, AgentError>>,
) -> anyhow::Result<()> {
    let mut token = None;
    let mut refusal = None;
    for result in results {
        match result {
            Ok(response) if !response.access_token.is_empty() => token = Some(response.access_token.clone()),
            Ok(_) => {}
            Err(e) => refusal = Some(e.to_string()),
        }
    }
    let token = token.ok_or_else(|| match refusal {
        Some(why) => anyhow::anyhow!("no access token was issued: {why}"),
        None => anyhow::anyhow!("no access token was issued: no challenge was pending"),
    })?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // NamedTempFile is created with mode 0600 on Unix.
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| anyhow::anyhow!("cannot write the access token in {}: {e}", dir.display()))?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.persist(path).map_err(|e| anyhow::anyhow!("cannot write the access token to {}: {e}", path.display()))?;
    Ok(())
}
