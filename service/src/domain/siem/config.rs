//! Tenants' SIEM integrations as admins configure them: checked targets, a
//! server-generated webhook secret shown once, every change audited.

use super::{syslog, webhook};
use crate::domain::app::App;
use crate::domain::audit::{self, Actor};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::tenancy::auth::Caller;
use crate::store::StoreError;
use crate::store::outbox::{self, Integration};
use crate::util::{new_id, now_ms, random_bytes};

/// Integrations per tenant: each one is a reader of the outbox and a delivery
/// the task runs, so a tenant may not add without bound.
pub const MAX_PER_TENANT: i64 = 8;
const MAX_NAME_CHARS: usize = 64;
const MAX_TARGET_CHARS: usize = 512;

pub struct NewIntegration {
    pub name: String,
    /// webhook or syslog.
    pub kind: String,
    pub target: String,
    /// json or cef.
    pub format: String,
    /// syslog: TLS on the TCP connection (webhooks follow their URL's scheme).
    pub tls: bool,
}

fn check(new: &NewIntegration) -> ApiResult<()> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!("name is required, at most {MAX_NAME_CHARS} characters")));
    }
    if new.target.len() > MAX_TARGET_CHARS {
        return Err(ApiError::invalid(format!("target is longer than {MAX_TARGET_CHARS} characters")));
    }
    if !matches!(new.format.as_str(), "json" | "cef") {
        return Err(ApiError::invalid(format!("format {:?} is not json or cef", new.format)));
    }
    match new.kind.as_str() {
        "webhook" => {
            webhook::parse(&new.target).map_err(ApiError::invalid)?;
            if new.format != "json" {
                return Err(ApiError::invalid("webhooks send JSON; CEF is for syslog"));
            }
            if new.tls {
                return Err(ApiError::invalid("a webhook's TLS follows its URL: use an https:// target"));
            }
        }
        "syslog" => {
            syslog::parse(&new.target).map_err(ApiError::invalid)?;
        }
        other => return Err(ApiError::invalid(format!("kind {other:?} is not webhook or syslog"))),
    }
    Ok(())
}

/// The target as the audit log keeps it: a webhook URL without its query,
/// which collectors such as Splunk HEC may use for a token (the audit log is
/// readable by analysts).
fn audited_target(kind: &str, target: &str) -> String {
    match kind {
        "webhook" => target.split(['?', '#']).next().unwrap_or_default().to_string(),
        _ => target.to_string(),
    }
}

/// Adds an integration that delivers the tenant's events from now on. The
/// returned record carries the webhook secret: the only time it is shown.
pub async fn add(app: &App, caller: &Caller, new: NewIntegration) -> ApiResult<Integration> {
    check(&new)?;
    if outbox::count_integrations(&app.store, &caller.tenant_id).await? >= MAX_PER_TENANT {
        return Err(ApiError::precondition(format!(
            "the tenant already has {MAX_PER_TENANT} integrations; remove one first"
        )));
    }
    let secret = if new.kind == "webhook" { hex::encode(random_bytes::<32>()) } else { String::new() };
    let record = Integration {
        id: new_id("int"),
        tenant_id: caller.tenant_id.clone(),
        name: new.name.trim().to_string(),
        kind: new.kind,
        target: new.target,
        format: new.format,
        tls: new.tls,
        secret,
        created_at_ms: now_ms(),
        created_by: caller.principal.clone(),
        // Events from now on, not the outbox's retained past.
        cursor: outbox::last_stable(&app.store, &caller.tenant_id).await?,
        failures: 0,
        next_attempt_ms: 0,
        last_error: String::new(),
        last_delivered_at_ms: 0,
        delivered: 0,
    };
    app.store
        .retrying("integration.add", || async {
            let mut tx = app.store.begin().await?;
            outbox::insert_integration(&mut tx, &record).await?;
            let details = serde_json::json!({
                "name": record.name, "kind": record.kind, "target": audited_target(&record.kind, &record.target),
                "format": record.format,
                "tls": record.tls,
            });
            let actor = Actor(caller.principal.clone());
            audit::append(&mut tx, &caller.tenant_id, &actor, "integration.added", &record.id, details).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<(), StoreError>(())
        })
        .await?;
    Ok(record)
}

/// The tenant's integrations, secrets blanked.
pub async fn list(app: &App, caller: &Caller) -> ApiResult<Vec<Integration>> {
    let mut all = outbox::list_integrations(&app.store, &caller.tenant_id).await?;
    for i in &mut all {
        i.secret.clear();
    }
    Ok(all)
}

/// Removes one of the tenant's integrations (another tenant's is NOT_FOUND).
pub async fn remove(app: &App, caller: &Caller, id: &str) -> ApiResult<Integration> {
    let mut found = outbox::get_integration(&app.store, &caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no integration {id:?}")))?;
    found.secret.clear();
    app.store
        .retrying("integration.remove", || async {
            let mut tx = app.store.begin().await?;
            if !outbox::delete_integration(&mut tx, &caller.tenant_id, id).await? {
                return Err(ApiError::not_found(format!("no integration {id:?}")));
            }
            let target = audited_target(&found.kind, &found.target);
            let details = serde_json::json!({"name": found.name, "kind": found.kind, "target": target});
            let actor = Actor(caller.principal.clone());
            audit::append(&mut tx, &caller.tenant_id, &actor, "integration.removed", id, details).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(())
        })
        .await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::audited_target;

    #[test]
    fn the_audit_log_keeps_no_query_string_of_a_webhook() {
        assert_eq!(audited_target("webhook", "https://h.example/c?token=s#f"), "https://h.example/c");
        assert_eq!(audited_target("syslog", "h.example:6514"), "h.example:6514");
    }
}
