//! `tether trust import-mds` and `tether trust mds-status`.

use serde::Serialize;
use tether_proto::v1 as pb;

use crate::output::{Render, rfc3339};

#[derive(Debug, Serialize)]
pub struct MdsStatusView {
    pub no: u64,
    pub next_update: String,
    /// nextUpdate has passed: fetch and import a newer BLOB.
    pub stale: bool,
    pub sha256: String,
    pub entries: u64,
    pub compromised: u64,
    pub uv_bypass: u64,
    pub loaded_at: Option<String>,
}

impl From<pb::MdsStatus> for MdsStatusView {
    fn from(s: pb::MdsStatus) -> MdsStatusView {
        MdsStatusView {
            no: s.no,
            next_update: s.next_update,
            stale: s.stale,
            sha256: s.sha256,
            entries: s.entries,
            compromised: s.compromised,
            uv_bypass: s.uv_bypass,
            loaded_at: rfc3339(s.loaded_at_ms),
        }
    }
}

impl MdsStatusView {
    fn line(&self) -> String {
        format!(
            "no {}, next update {}{}, {} entries, {} compromised or revoked, {} with a user-verification bypass",
            self.no,
            self.next_update,
            if self.stale { " (STALE: import a newer BLOB)" } else { "" },
            self.entries,
            self.compromised,
            self.uv_bypass,
        )
    }
}

#[derive(Debug, Serialize)]
pub struct MdsImportView {
    pub status: Option<MdsStatusView>,
    /// The no this import replaced; absent for the tenant's first import.
    pub previous_no: Option<u64>,
    pub unchanged: bool,
    pub skipped: Vec<String>,
    pub flagged: u32,
}

impl From<pb::ImportMdsResponse> for MdsImportView {
    fn from(r: pb::ImportMdsResponse) -> MdsImportView {
        MdsImportView {
            status: r.status.map(Into::into),
            previous_no: Some(r.previous_no).filter(|n| *n != 0),
            unchanged: r.unchanged,
            skipped: r.skipped,
            flagged: r.flagged,
        }
    }
}

impl Render for MdsImportView {
    fn to_text(&self) -> String {
        let mut text = String::new();
        let status = self.status.as_ref().map(MdsStatusView::line).unwrap_or_default();
        if self.unchanged {
            text.push_str(&format!("already in force: {status}\n"));
        } else {
            text.push_str(&format!("imported: {status}\n"));
        }
        if let Some(previous) = self.previous_no.filter(|_| !self.unchanged) {
            text.push_str(&format!("replaces no {previous}\n"));
        }
        text.push_str(&format!("flagged {} enrolled credential(s) of listed models\n", self.flagged));
        for skipped in &self.skipped {
            text.push_str(&format!("skipped {skipped}\n"));
        }
        text
    }
}

#[derive(Debug, Serialize)]
pub struct MdsStatusesView {
    /// The operator's BLOB (every tenant); absent without one.
    pub operator: Option<MdsStatusView>,
    /// This tenant's import; absent until it imports one.
    pub tenant: Option<MdsStatusView>,
}

impl From<pb::GetMdsStatusResponse> for MdsStatusesView {
    fn from(r: pb::GetMdsStatusResponse) -> MdsStatusesView {
        MdsStatusesView { operator: r.operator.map(Into::into), tenant: r.tenant.map(Into::into) }
    }
}

impl Render for MdsStatusesView {
    fn to_text(&self) -> String {
        let line = |s: &Option<MdsStatusView>| s.as_ref().map(MdsStatusView::line).unwrap_or_else(|| "none".into());
        format!("operator: {}\ntenant:   {}\n", line(&self.operator), line(&self.tenant))
    }
}
