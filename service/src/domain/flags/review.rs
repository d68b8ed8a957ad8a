//! Analysts acknowledge, resolve or reopen a flag with a note. One path for
//! every front end (gRPC `UpdateFlag`, the web console), so each change is
//! checked, applied and audited identically.

use crate::domain::app::App;
use crate::domain::audit::{self as audit_log, Actor};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::siem;
use crate::domain::tenancy::auth::Caller;
use crate::store::StoreError;
use crate::store::flags::{self, FlagRecord, StoredFlag};
use crate::util::now_ms;

/// Where a review moves a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    Acknowledge,
    Resolve,
    Reopen,
}

impl Review {
    /// The flag status after the review.
    pub fn status(self) -> &'static str {
        match self {
            Review::Acknowledge => "acknowledged",
            Review::Resolve => "resolved",
            Review::Reopen => "open",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Review::Acknowledge => "flag.acknowledged",
            Review::Resolve => "flag.resolved",
            Review::Reopen => "flag.reopened",
        }
    }
}

pub const MAX_NOTE_CHARS: usize = 2000;

/// Moves the caller's tenant's flag `flag_id` and appends the audit entry in
/// the same transaction. Another tenant's flag is NOT_FOUND.
pub async fn review(app: &App, caller: &Caller, flag_id: &str, review: Review, note: &str) -> ApiResult<StoredFlag> {
    let note = note.trim();
    if note.is_empty() {
        return Err(ApiError::invalid("note is required: say why the flag is acknowledged, resolved or reopened"));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::invalid(format!("note is longer than {MAX_NOTE_CHARS} characters")));
    }
    let to = review.status();
    let current = flags::get(&app.store, &caller.tenant_id, flag_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no flag {flag_id:?}")))?;
    let from = current.flag.status.clone();
    if from == to {
        return Err(ApiError::precondition(format!("the flag is already {to}")));
    }
    if from == "resolved" && review == Review::Acknowledge {
        return Err(ApiError::precondition("a resolved flag must be reopened before it is acknowledged"));
    }
    app.store
        .retrying("flag.review", || async {
            let mut tx = app.store.begin().await?;
            let now = now_ms();
            if !flags::review(&mut tx, flag_id, &from, to, note, &caller.principal, now).await? {
                return Err(ApiError::precondition("the flag changed meanwhile; reload it and try again"));
            }
            let changed = FlagRecord { status: to.to_string(), ..current.flag.clone() };
            siem::flag_reviewed(&mut tx, &changed, &from, &caller.principal, note, now).await?;
            let details = serde_json::json!({"kind": current.flag.kind, "from": from, "to": to, "note": note});
            let actor = Actor(caller.principal.clone());
            audit_log::append(&mut tx, &caller.tenant_id, &actor, review.action(), flag_id, details).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(())
        })
        .await?;
    flags::get(&app.store, &caller.tenant_id, flag_id).await?.ok_or_else(|| ApiError::not_found("no such flag"))
}
