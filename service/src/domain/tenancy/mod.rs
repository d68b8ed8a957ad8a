//! Creating tenants (employers) with their first admin key.

pub mod auth;
pub mod pepper;

use crate::domain::audit;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::tenancy::auth::{MintedKey, Pepper, Role, mint_key};
use crate::store::tenants::{Policy, Tenant};
use crate::store::{Store, keys, tenants};
use crate::util::{new_id, now_ms};

/// Checks a WebAuthn RP id: a bare domain name, no scheme, port or path.
pub fn validate_rp_id(rp_id: &str) -> ApiResult<()> {
    let ok = !rp_id.is_empty()
        && rp_id.len() <= 253
        && rp_id
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "rp_id {rp_id:?} is not a domain name (for example 'example.com' or 'localhost')"
        )))
    }
}

/// Checks an origin: `https://host[:port]`, or for development `http://localhost[:port]`
/// or `http://NAME.localhost[:port]` (loopback by RFC 6761, and a secure context in browsers,
/// so WebAuthn works there).
pub fn validate_origin(origin: &str, rp_id: &str) -> ApiResult<()> {
    let loopback_name = |rest: &&str| {
        let host = rest.split(':').next().unwrap_or_default();
        host == "localhost" || host.ends_with(".localhost")
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://").filter(loopback_name))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "origin {origin:?} must be https://HOST (or http://localhost or http://NAME.localhost for development)"
            ))
        })?;
    let host = rest.split(':').next().unwrap_or_default();
    if rest.contains('/') || host.is_empty() {
        return Err(ApiError::invalid(format!("origin {origin:?} must not carry a path")));
    }
    if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
        return Err(ApiError::invalid(format!("origin host {host:?} is not rp_id {rp_id:?} or a subdomain of it")));
    }
    Ok(())
}

/// Creates a tenant and its first admin API key, in one transaction.
pub async fn create_tenant(
    store: &Store,
    pepper: &Pepper,
    name: &str,
    rp_id: &str,
    origin: &str,
) -> ApiResult<(Tenant, MintedKey)> {
    let name = crate::domain::error::required("tenant name", name)?;
    validate_rp_id(rp_id)?;
    validate_origin(origin, rp_id)?;
    if tenants::get_by_name(store, name).await?.is_some() {
        return Err(ApiError::AlreadyExists(format!("a tenant named {name:?} already exists")));
    }
    let tenant = Tenant {
        id: new_id("ten"),
        name: name.to_string(),
        created_at_ms: now_ms(),
        policy: Policy::new(rp_id, origin),
    };
    let key = mint_key(pepper, &tenant.id, "first admin key", Role::Admin, None);
    let mut tx = store.begin().await?;
    tenants::insert(&mut tx, &tenant).await?;
    keys::insert(&mut tx, &key.record).await?;
    crate::store::audit::create_head(&mut tx, &tenant.id, audit::GENESIS_HASH).await?;
    let details =
        serde_json::json!({"name": tenant.name, "rp_id": rp_id, "origin": origin, "admin_key": key.record.id});
    audit::append(&mut tx, &tenant.id, &audit::Actor::system(), "tenant.created", &tenant.id, details).await?;
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    Ok((tenant, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rp_ids_and_origins_are_checked() {
        assert!(validate_rp_id("example.com").is_ok());
        assert!(validate_rp_id("localhost").is_ok());
        assert!(validate_rp_id("https://example.com").is_err());
        assert!(validate_origin("https://example.com", "example.com").is_ok());
        assert!(validate_origin("https://vpn.example.com:8443", "example.com").is_ok());
        assert!(validate_origin("http://localhost:8080", "localhost").is_ok());
        assert!(validate_origin("http://example.com", "example.com").is_err());
        assert!(validate_origin("https://evil.com", "example.com").is_err());
        assert!(validate_origin("https://notexample.com", "example.com").is_err());
        assert!(validate_origin("https://example.com/path", "example.com").is_err());
    }
}
