//! One device's history, newest first, merged from every table that records
//! something about it. Entry ids are "<type>:<record id>", unique across
//! sources, so one (at_ms, id) keyset cursor pages through the merged list.

use super::filters::{PageRequest, TimeWindow, next_token};
use super::lists::{attach_flags, failure_from_row, flag_from_row, session_from_row};
pub use super::timeline_sources::{EnrollmentInfo, Location, TimelineDetail, TimelineEntry, TpmInfo};
use super::timeline_sources::{FLAGS, PRESENCE, SESSIONS, credentials, geo_by_ip, keyset_rows, locations, reviews};
use crate::domain::error::{ApiError, ApiResult};
use crate::store::{Store, StoreResult, inventory};
use serde::Serialize;
#[derive(Debug, Clone, Serialize)]
pub struct TimelineDevice {
    pub id: String,
    pub serial_number: String,
    pub model: String,
    pub asset_tag: String,
    pub worker_external_id: String,
    pub registered_at_ms: i64,
    /// 0 = not revoked.
    pub revoked_at_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub device: TimelineDevice,
    pub entries: Vec<TimelineEntry>,
    pub locations: Vec<Location>,
    pub next_page_token: String,
}

pub async fn device_timeline(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    window: &TimeWindow,
    page: &PageRequest,
) -> ApiResult<Timeline> {
    let device_id = crate::domain::error::required("device_id", device_id)?;
    let device = inventory::get_device(store, tenant_id, device_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {device_id:?}")))?;
    let geo = geo_by_ip(store, tenant_id, device_id).await?;
    let located = |ip: &str| geo.get(ip).cloned();
    let mut entries = Vec::new();
    let entry = |id: String, at_ms: i64, source_ip: String, detail| TimelineEntry {
        geo: located(&source_ip),
        id,
        at_ms,
        source_ip,
        detail,
    };
    entries.push(entry(
        format!("registered:{}", device.id),
        device.registered_at_ms,
        String::new(),
        TimelineDetail::Registered { serial_number: device.serial_number.clone(), model: device.model.clone() },
    ));
    if let Some(at) = device.revoked_at_ms {
        let reason = device.revoke_reason.clone().unwrap_or_default();
        entries.push(entry(
            format!("revoked:{}", device.id),
            at,
            String::new(),
            TimelineDetail::DeviceRevoked { reason },
        ));
    }
    for c in credentials(store, tenant_id, device_id).await? {
        if let Some(at) = c.revoked_at_ms {
            let detail = TimelineDetail::CredentialRevoked {
                credential_id: c.id.clone(),
                reason: c.revoke_reason.clone().unwrap_or_default(),
            };
            entries.push(entry(format!("credential_revoked:{}", c.id), at, String::new(), detail));
        }
        let detail = TimelineDetail::Enrolled(c.info);
        entries.push(entry(format!("enrolled:{}", c.id), c.enrolled_at_ms, c.enrolled_from_ip, detail));
    }
    let bound = page.after.clone();
    let before = |e: &TimelineEntry| match &bound {
        None => true,
        Some(c) => (e.at_ms, e.id.as_str()) < (c.at_ms, c.id.as_str()),
    };
    entries.retain(|e| e.at_ms >= window.since_ms && e.at_ms < window.until_or_max() && before(e));

    for row in keyset_rows(store, &PRESENCE, tenant_id, device_id, window, page).await? {
        let e = failure_from_row(&row)?;
        entries.push(entry(format!("presence:{}", e.id), e.at_ms, e.source_ip.clone(), TimelineDetail::Presence(e)));
    }
    let mut sessions = keyset_rows(store, &SESSIONS, tenant_id, device_id, window, page)
        .await?
        .iter()
        .map(session_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    attach_flags(store, tenant_id, &mut sessions).await?;
    for s in sessions {
        entries.push(entry(format!("session:{}", s.id), s.at_ms, s.source_ip.clone(), TimelineDetail::Session(s)));
    }
    for row in keyset_rows(store, &FLAGS, tenant_id, device_id, window, page).await? {
        let f = flag_from_row(&row, tenant_id)?;
        entries.push(entry(format!("flag:{}", f.id), f.raised_at_ms, String::new(), TimelineDetail::Flag(f)));
    }
    entries.extend(reviews(store, tenant_id, device_id, window, page).await?);

    entries.sort_by(|a, b| (b.at_ms, &b.id).cmp(&(a.at_ms, &a.id)));
    let more = entries.len() as i64 > page.size;
    entries.truncate(usize::try_from(page.size).unwrap_or(usize::MAX));
    let next = if more {
        next_token(entries.last().map(|e| (e.at_ms, e.id.as_str())), entries.len(), page.size)
    } else {
        String::new()
    };
    Ok(Timeline {
        device: TimelineDevice {
            id: device.id,
            serial_number: device.serial_number,
            model: device.model,
            asset_tag: device.asset_tag,
            worker_external_id: device.worker_external_id.unwrap_or_default(),
            registered_at_ms: device.registered_at_ms,
            revoked_at_ms: device.revoked_at_ms.unwrap_or(0),
        },
        entries,
        locations: locations(store, tenant_id, device_id, window, &geo).await?,
        next_page_token: next,
    })
}
