//! `--mds-url`: fetches the FIDO metadata BLOB from the metadata service, keeping `--mds-file`
//! as its cache. A fetched BLOB is verified before it touches the file, so a bad download never
//! replaces a good cache, and the file is replaced whole (written aside, then renamed).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tether_attestation::mds::MAX_BLOB_BYTES;

use super::mds::{MdsSource, put_verified, verify_text};
use crate::domain::app::App;
use crate::domain::siem::{net, webhook};

/// How long one download may take, connection to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// GETs `url` (https, or http to loopback only) and returns the body, at most
/// [`MAX_BLOB_BYTES`]; anything but 200 is an error naming the status.
pub async fn download(url: &str, timeout: Duration) -> Result<String, String> {
    if url.contains('@') {
        return Err(format!("{url:?} carries credentials (user@host); the BLOB needs none"));
    }
    let target = webhook::parse(url)?;
    let exchange = async {
        let io = net::connect(&target.host, target.port, target.https, !target.https, timeout).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
        let driver = tokio::spawn(conn);
        let request = Request::builder()
            .method(Method::GET)
            .uri(target.path_and_query.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::USER_AGENT, "tetherd")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        let result = async {
            let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))?;
            let status = response.status();
            if status != http::StatusCode::OK {
                let location = response.headers().get(http::header::LOCATION).and_then(|l| l.to_str().ok());
                return Err(match location {
                    Some(location) => format!("{url} answered HTTP {} to {location}; give that URL", status.as_u16()),
                    None => format!("{url} answered HTTP {}", status.as_u16()),
                });
            }
            let body = Limited::new(response.into_body(), MAX_BLOB_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the BLOB from {url}: {e}"))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| format!("{url} sent something that is not UTF-8 text"))
        }
        .await;
        driver.abort();
        result
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("{url} did not answer within {timeout:?}"))?
}

/// Replaces `path` with `text`: written beside it, then renamed over it, so a reader (this
/// process after a restart, or another replica) never sees half a file.
fn replace_file(path: &Path, text: &str) -> Result<(), String> {
    let aside = path.with_extension("download");
    std::fs::write(&aside, text).map_err(|e| format!("cannot write {}: {e}", aside.display()))?;
    std::fs::rename(&aside, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Downloads, verifies and, when it is a BLOB that verifies, writes the cache file. Used at
/// startup when there is no cache yet, where any failure is fatal.
pub async fn fetch_into_cache(url: &str, source: &MdsSource) -> Result<(), String> {
    let text = download(url, FETCH_TIMEOUT).await?;
    let roots = source.roots.clone();
    let checked = text.clone();
    tokio::task::spawn_blocking(move || verify_text(&checked, &roots))
        .await
        .map_err(|e| format!("the MDS verifier stopped: {e}"))?
        .map_err(|e| format!("the BLOB from {url} is refused: {e}"))?;
    replace_file(&source.path, &text)
}

/// Fetches every `interval` until shutdown (the first time at once). A BLOB that verifies and
/// is newer than the one in force goes into the cache file and in force; anything else is
/// logged and the BLOB in force stays.
pub fn spawn_fetch(app: Arc<App>, source: MdsSource, url: String, interval: Duration) {
    let mut stopping = app.stopping.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.changed() => return,
            }
            if let Err(reason) = refresh(&app, &source, &url).await {
                tracing::warn!(%url, %reason, "fetching the FIDO metadata BLOB failed; the BLOB in force stays");
            }
        }
    });
}

async fn refresh(app: &App, source: &MdsSource, url: &str) -> Result<(), String> {
    let text = download(url, FETCH_TIMEOUT).await?;
    let roots = source.roots.clone();
    let checked = text.clone();
    let index = tokio::task::spawn_blocking(move || verify_text(&checked, &roots))
        .await
        .map_err(|e| format!("the MDS verifier stopped: {e}"))??;
    let current = app.mds.current();
    if current.as_ref().is_some_and(|c| c.sha256 == index.sha256) {
        return Ok(());
    }
    if let Some(current) = current.filter(|c| c.no >= index.no) {
        return Err(format!("the service sent no {}, not newer than the BLOB in force ({})", index.no, current.no));
    }
    // In force first: a BLOB the database refuses (older than another replica's) never
    // reaches the cache file.
    put_verified(app, index).await?;
    replace_file(&source.path, &text)
}
