//! `--mds-file`: the FIDO MDS3 BLOB the operator keeps on disk, verified at startup (a bad one
//! stops startup: the operator asked for it) and re-read whenever the file changes (a bad or
//! older one is logged and the BLOB in force stays).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tether_attestation::mds::{self, MAX_BLOB_BYTES};
use tether_attestation::trust::TrustStore;
use time::OffsetDateTime;

use crate::domain::app::App;
use crate::domain::enrollment::mds::MdsIndex;
use crate::domain::enrollment::mds_catalog::Installed;
use crate::domain::enrollment::mds_flags::flag_enrolled;
use crate::domain::enrollment::mds_import::record_operator;

/// Where the BLOB comes from and what it must chain to.
#[derive(Debug, Clone)]
pub struct MdsSource {
    pub path: PathBuf,
    pub roots: TrustStore,
    pub reload_interval: Duration,
}

/// Reads and verifies the BLOB at `path` now.
pub fn read(path: &Path, roots: &TrustStore) -> Result<MdsIndex, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    if size > MAX_BLOB_BYTES as u64 {
        return Err(format!("{} is {size} bytes, more than the {MAX_BLOB_BYTES}-byte limit", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    verify_text(&text, roots).map_err(|e| format!("{} is refused: {e}", path.display()))
}

/// Verifies a BLOB's text now.
pub fn verify_text(text: &str, roots: &TrustStore) -> Result<MdsIndex, String> {
    let blob = mds::verify_blob(text.trim(), roots, OffsetDateTime::now_utc()).map_err(|e| e.to_string())?;
    for skipped in blob.skipped.iter().filter(|s| s.part == "entry") {
        tracing::debug!(index = skipped.index, reason = %skipped.reason, "MDS entry skipped");
    }
    Ok(MdsIndex::from_blob(&blob))
}

/// Verifies and installs the BLOB; used at startup, where any error is fatal.
pub async fn install(app: &App, source: &MdsSource) -> Result<(), String> {
    let index = read(&source.path, &source.roots)?;
    put_verified(app, index).await
}

/// Puts a verified BLOB in force: recorded in the database, then in this process, then its
/// models' enrolled credentials flagged.
pub async fn put_verified(app: &App, index: MdsIndex) -> Result<(), String> {
    let (no, entries, compromised, uv_bypass) =
        (index.no, index.entries, index.compromised_count(), index.uv_bypass_count());
    let stale = index.is_stale(OffsetDateTime::now_utc());
    let next_update = index.next_update.clone();
    let kept = Arc::new(index.clone());
    // The database holds the highest `no` ever in force, so an older file is refused after a
    // restart or on another replica too; a new one is audited in every tenant.
    record_operator(app, &kept).await?;
    match app.mds.install(index)? {
        Installed::Unchanged => return Ok(()),
        Installed::First | Installed::Newer { .. } => {
            tracing::info!(no, entries, compromised, uv_bypass, "FIDO metadata BLOB in force");
            crate::telemetry::metrics::record_mds(no, kept.next_update_date());
        }
    }
    // Enrollment already refuses these models; credentials enrolled before get a flag.
    let flagged =
        flag_enrolled(app, &kept, None).await.map_err(|e| format!("flagging enrolled credentials failed: {e}"))?;
    if flagged > 0 {
        tracing::warn!(flagged, no, "credentials of compromised authenticator models flagged");
    }
    if stale {
        tracing::warn!(no, next_update, "the FIDO metadata BLOB is past its nextUpdate; fetch a newer one");
    }
    Ok(())
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Re-reads the file when its modification time or size changes, until shutdown.
pub fn spawn_reload(app: Arc<App>, source: MdsSource) {
    let mut stopping = app.stopping.subscribe();
    tokio::spawn(async move {
        let mut seen = stamp(&source.path);
        let mut tick = tokio::time::interval(source.reload_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.changed() => return,
            }
            let now = stamp(&source.path);
            if now.is_none() || now == seen {
                continue;
            }
            seen = now;
            let (path, roots) = (source.path.clone(), source.roots.clone());
            let loaded = tokio::task::spawn_blocking(move || read(&path, &roots)).await;
            let result = match loaded {
                Ok(Ok(index)) => put_verified(&app, index).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("the MDS reader stopped: {e}")),
            };
            if let Err(reason) = result {
                tracing::warn!(%reason, "the changed FIDO metadata file was not taken; the BLOB in force stays");
            }
        }
    });
}
