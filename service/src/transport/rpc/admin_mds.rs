//! AdminService's FIDO metadata calls: a tenant's BLOB import (streamed in chunks) and the
//! status of the metadata in force.

use tether_attestation::mds::MAX_BLOB_BYTES;
use tether_proto::v1 as pb;
use time::OffsetDateTime;
use tonic::{Request, Streaming};

use crate::domain::app::App;
use crate::domain::enrollment::mds::MdsIndex;
use crate::domain::enrollment::mds_import::{import_for_tenant, tenant_status};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::tenancy::auth::Role;
use crate::store::mds::MdsRow;
use crate::transport::rpc::authorize;

fn index_status(index: &MdsIndex, loaded_at_ms: i64) -> pb::MdsStatus {
    pb::MdsStatus {
        no: index.no,
        next_update: index.next_update.clone(),
        stale: index.is_stale(OffsetDateTime::now_utc()),
        sha256: index.sha256.clone(),
        entries: index.entries as u64,
        compromised: index.compromised_count() as u64,
        uv_bypass: index.uv_bypass_count() as u64,
        loaded_at_ms,
    }
}

fn row_status(row: &MdsRow) -> pb::MdsStatus {
    let next_update = time::Date::parse(&row.next_update, time::macros::format_description!("[year]-[month]-[day]"));
    pb::MdsStatus {
        no: u64::try_from(row.no).unwrap_or(0),
        next_update: row.next_update.clone(),
        stale: next_update.map_or(true, |d| d < OffsetDateTime::now_utc().date()),
        sha256: row.sha256.clone(),
        entries: u64::try_from(row.entries).unwrap_or(0),
        compromised: u64::try_from(row.compromised).unwrap_or(0),
        uv_bypass: u64::try_from(row.uv_bypass).unwrap_or(0),
        loaded_at_ms: row.loaded_at_ms,
    }
}

/// Reads the chunks (after the caller is authenticated, so an anonymous caller never makes the
/// server buffer anything) up to the BLOB size limit.
async fn read_blob(stream: &mut Streaming<pb::ImportMdsChunk>) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) =
        stream.message().await.map_err(|e| ApiError::invalid(format!("the BLOB upload broke off: {}", e.message())))?
    {
        if bytes.len() + chunk.data.len() > MAX_BLOB_BYTES {
            return Err(ApiError::invalid(format!("the BLOB is larger than the {MAX_BLOB_BYTES}-byte limit")));
        }
        bytes.extend_from_slice(&chunk.data);
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid("no BLOB was sent; pass the MDS3 BLOB file as downloaded (a JWS)"));
    }
    String::from_utf8(bytes).map_err(|_| ApiError::invalid("the BLOB is not UTF-8 text; an MDS3 BLOB is a JWS"))
}

pub async fn import(
    app: &App,
    mut request: Request<Streaming<pb::ImportMdsChunk>>,
) -> ApiResult<pb::ImportMdsResponse> {
    let caller = authorize(app, &request, &[Role::Admin]).await?;
    let blob = read_blob(request.get_mut()).await?;
    let imported = import_for_tenant(app, &caller, blob).await?;
    Ok(pb::ImportMdsResponse {
        status: Some(index_status(&imported.index, crate::util::now_ms())),
        previous_no: imported.previous_no.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        unchanged: imported.unchanged,
        skipped: imported.skipped,
        flagged: u32::try_from(imported.flagged).unwrap_or(u32::MAX),
    })
}

pub async fn status(app: &App, request: &Request<pb::GetMdsStatusRequest>) -> ApiResult<pb::GetMdsStatusResponse> {
    let caller = authorize(app, request, &[Role::Admin, Role::Analyst]).await?;
    let operator = app.mds.current().map(|index| index_status(&index, 0));
    let tenant = tenant_status(app, &caller).await?.as_ref().map(row_status);
    Ok(pb::GetMdsStatusResponse { operator, tenant })
}
