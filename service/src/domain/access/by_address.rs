//! Gateways that know the worker and the client's public address but not the device: a VPN
//! concentrator asking over RADIUS after its own authentication (User-Name, Calling-Station-Id).
//! The device is the worker's device whose newest hardware-signed presence answer tetherd itself
//! observed from that very address inside the tenant's presence window; then the normal decision.
//! Nothing the client claims picks the device, and no such answer is a recorded DENY.

use crate::domain::access::{AccessDecision, AccessQuery, check_with};
use crate::domain::app::App;
use crate::domain::error::ApiResult;
use crate::store::{presence, tenants};
use crate::util::{canonical_ip, now_ms};
use tether_proto::v1::DenyReason;

/// Decides for `worker` of `tenant_id` connecting from `source_ip`, recording the session.
pub async fn decide(
    app: &App,
    tenant_id: &str,
    worker: &str,
    source_ip: &str,
    gateway_id: &str,
) -> ApiResult<AccessDecision> {
    let worker = worker.trim();
    let mut query =
        AccessQuery { tenant_id, worker_external_id: worker, device_id: "", credential_id: "", source_ip, gateway_id };
    let Some(ip) = canonical_ip(source_ip).map(|ip| ip.to_string()) else {
        // The query's own validation names the bad address.
        return check_with(app, &query, Vec::new()).await;
    };
    if worker.is_empty() {
        let why = "no worker name: the gateway must send the worker (RADIUS User-Name)".to_string();
        return check_with(app, &query, vec![(DenyReason::IdentityMissing, why)]).await;
    }
    let window_ms = tenants::get(&app.store, tenant_id)
        .await?
        .map(|t| t.policy.presence_window_s.saturating_mul(1000))
        .unwrap_or(0);
    let device = presence::device_answering_from(&app.store, tenant_id, worker, &ip, now_ms() - window_ms).await?;
    let Some(device_id) = device else {
        let why = format!(
            "no device of {worker:?} answered a presence challenge from {ip} in the last {} s: the VPN client must \
             connect from the network its company laptop answers from",
            window_ms / 1000
        );
        return check_with(app, &query, vec![(DenyReason::IdentityMissing, why)]).await;
    };
    query.device_id = &device_id;
    check_with(app, &query, Vec::new()).await
}
