//! AdminService: inventory, tokens, trust store, policy, keys.

mod flag_policy;
mod integrations;
mod pcr_policy;
mod policy;
pub use policy::tier_to_proto;
mod workers;

use super::{id_cursor, id_token, page_size};
use crate::domain::app::App;
use crate::domain::audit::{self, Actor};
use crate::domain::error::{ApiError, ApiResult, required};
use crate::domain::tenancy::auth::{Caller, Role, mint_key};
use crate::domain::tenancy::{validate_origin, validate_rp_id};
use crate::domain::{enrollment as enroll, presence};
use crate::store::credentials::Credential;
use crate::store::enrollment::EnrollmentToken;
use crate::store::inventory::Device;
use crate::store::trust::TrustAnchorRecord;
use crate::store::{StoreError, Tx, credentials, enrollment, inventory, keys, tenants, trust};
use crate::transport::rpc::authorize;
use crate::util::{new_id, now_ms};
use std::sync::Arc;
use tether_attestation::trust::TrustStore;
use tether_proto::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

const ADMIN: &[Role] = &[Role::Admin];
const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 3600;

pub struct AdminApi {
    pub app: Arc<App>,
}

fn key_to_proto(k: &keys::ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        role: Role::parse(&k.role).map(Role::to_proto).unwrap_or(pb::Role::Unspecified) as i32,
        created_at_ms: k.created_at_ms,
        last_used_at_ms: k.last_used_at_ms.unwrap_or(0),
        revoked_at_ms: k.revoked_at_ms.unwrap_or(0),
        expires_at_ms: k.expires_at_ms.unwrap_or(0),
        pepper_id: k.pepper_id.clone().unwrap_or_default(),
    }
}

pub fn credential_to_proto(c: &Credential) -> pb::Credential {
    pb::Credential {
        credential_id: c.id.clone(),
        device_id: c.device_id.clone(),
        worker_external_id: c.worker_external_id.clone(),
        kind: c.kind.clone(),
        format: c.format.clone(),
        attestation_type: c.attestation_type.clone(),
        attestation_state: attestation_state(c.attested) as i32,
        tier: policy::tier_to_proto(c.tier) as i32,
        attestation_reason: c.attestation_reason.clone(),
        trust_anchor: c.trust_anchor.clone(),
        aaguid: c.aaguid.clone(),
        sign_count: u32::try_from(c.sign_count).unwrap_or(u32::MAX),
        enrolled_at_ms: c.enrolled_at_ms,
        enrolled_from_ip: c.enrolled_from_ip.clone(),
        revoked_at_ms: c.revoked_at_ms.unwrap_or(0),
        last_presence_at_ms: c.last_presence_at_ms.unwrap_or(0),
        public_key_cose: c.public_key_cose.clone(),
    }
}

fn attestation_state(attested: bool) -> pb::AttestationState {
    if attested { pb::AttestationState::Attested } else { pb::AttestationState::Unattested }
}

fn token_to_proto(t: &EnrollmentToken) -> pb::EnrollmentToken {
    pb::EnrollmentToken {
        id: t.id.clone(),
        device_id: t.device_id.clone(),
        worker_external_id: t.worker_external_id.clone(),
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
        used_at_ms: t.used_at_ms.unwrap_or(0),
        revoked_at_ms: t.revoked_at_ms.unwrap_or(0),
    }
}

fn anchor_to_proto(a: &TrustAnchorRecord) -> pb::TrustAnchor {
    pb::TrustAnchor {
        id: a.id.clone(),
        subject: a.subject.clone(),
        sha256: a.sha256.clone(),
        not_before_ms: a.not_before_ms,
        not_after_ms: a.not_after_ms,
        name: a.name.clone(),
        added_at_ms: a.added_at_ms,
    }
}

impl AdminApi {
    async fn device_to_proto(&self, d: &Device) -> ApiResult<pb::Device> {
        let creds = credentials::list_for_device(&self.app.store, &d.tenant_id, &d.id).await?;
        let attested = creds.iter().any(|c| c.revoked_at_ms.is_none() && c.attested);
        Ok(pb::Device {
            id: d.id.clone(),
            serial_number: d.serial_number.clone(),
            model: d.model.clone(),
            asset_tag: d.asset_tag.clone(),
            worker_external_id: d.worker_external_id.clone().unwrap_or_default(),
            registered_at_ms: d.registered_at_ms,
            revoked_at_ms: d.revoked_at_ms.unwrap_or(0),
            credentials: creds.iter().map(credential_to_proto).collect(),
            attestation_state: attestation_state(attested) as i32,
            ek_pin: crate::store::tpm::device_ek_pin(&self.app.store, &d.tenant_id, &d.id).await?.unwrap_or_default(),
        })
    }

    async fn device(&self, tenant_id: &str, device_id: &str) -> ApiResult<Device> {
        let device_id = required("device_id", device_id)?;
        inventory::get_device(&self.app.store, tenant_id, device_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no device {device_id:?}")))
    }

    /// Records the action in the audit chain and commits it with the change.
    async fn commit(
        &self,
        mut tx: Tx,
        caller: &Caller,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> ApiResult<()> {
        audit::append(&mut tx, &caller.tenant_id, &Actor(caller.principal.clone()), action, target, details).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Runs one change and its audit entry again when the database aborts it
    /// for a concurrent transaction (`Store::retrying`).
    async fn retrying<F, Fut>(&self, what: &'static str, op: F) -> ApiResult<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ApiResult<()>>,
    {
        self.app.store.retrying(what, op).await
    }

    async fn tenant(&self, tenant_id: &str) -> ApiResult<tenants::Tenant> {
        Ok(tenants::get(&self.app.store, tenant_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("API key names missing tenant {tenant_id}")))?)
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(result: ApiResult<T>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_tenant(&self, request: Request<pb::GetTenantRequest>) -> Reply<pb::Tenant> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Gateway, Role::Analyst]).await?;
            let t = self.tenant(&caller.tenant_id).await?;
            Ok(pb::Tenant {
                id: t.id,
                name: t.name,
                created_at_ms: t.created_at_ms,
                caller_role: caller.role.to_proto() as i32,
            })
        }
        .await)
    }

    async fn create_api_key(&self, request: Request<pb::CreateApiKeyRequest>) -> Reply<pb::CreateApiKeyResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let role =
                Role::from_proto(r.role).ok_or_else(|| ApiError::invalid("role must be admin, gateway or analyst"))?;
            let name = if r.name.trim().is_empty() { role.as_str() } else { required("name", &r.name)? };
            let expires_at_ms = match r.ttl_seconds {
                0 => None,
                n if n > 10 * 365 * 24 * 3600 => {
                    return Err(ApiError::invalid("ttl_seconds must be at most ten years"));
                }
                n => Some(now_ms() + i64::try_from(n * 1000).unwrap_or(i64::MAX / 2)),
            };
            let minted = mint_key(&self.app.pepper, &caller.tenant_id, name, role, expires_at_ms);
            self.retrying("api_key.create", || async {
                let mut tx = self.app.store.begin().await?;
                keys::insert(&mut tx, &minted.record).await?;
                let details = serde_json::json!({"role": role.as_str(), "name": minted.record.name});
                self.commit(tx, &caller, "api_key.created", &minted.record.id, details).await
            })
            .await?;
            Ok(pb::CreateApiKeyResponse { key: Some(key_to_proto(&minted.record)), secret: minted.secret })
        }
        .await)
    }

    async fn list_api_keys(&self, request: Request<pb::ListApiKeysRequest>) -> Reply<pb::ListApiKeysResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let list = keys::list(&self.app.store, &caller.tenant_id).await?;
            Ok(pb::ListApiKeysResponse { keys: list.iter().map(key_to_proto).collect() })
        }
        .await)
    }

    async fn revoke_api_key(&self, request: Request<pb::RevokeApiKeyRequest>) -> Reply<pb::ApiKey> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let id = required("id", &request.get_ref().id)?;
            self.retrying("api_key.revoke", || async {
                let mut tx = self.app.store.begin().await?;
                if !keys::revoke(&mut tx, &caller.tenant_id, id, now_ms()).await? {
                    return Err(ApiError::not_found(format!("no API key {id:?}")));
                }
                self.commit(tx, &caller, "api_key.revoked", id, serde_json::json!({})).await
            })
            .await?;
            let key = keys::get(&self.app.store, id).await?.ok_or_else(|| ApiError::not_found("no such API key"))?;
            Ok(key_to_proto(&key))
        }
        .await)
    }

    async fn upsert_worker(&self, request: Request<pb::UpsertWorkerRequest>) -> Reply<pb::Worker> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let external_id = required("external_id", &r.external_id)?;
            // Without a display name an existing worker keeps its own (a new one is named by its id).
            let existing = match r.display_name.trim().is_empty() {
                true => inventory::get_worker(&self.app.store, &caller.tenant_id, external_id).await?,
                false => None,
            };
            let display_name = match &existing {
                Some(w) => w.display_name.as_str(),
                None if r.display_name.trim().is_empty() => external_id,
                None => required("display_name", &r.display_name)?,
            };
            let mut tx = self.app.store.begin().await?;
            let mut w =
                inventory::upsert_worker(&mut tx, &caller.tenant_id, external_id, display_name, now_ms()).await?;
            // Declared home and working hours: validated before anything is committed.
            let declared = workers::apply(&w.declared, r)?;
            if declared != w.declared {
                inventory::set_declared(&mut tx, &caller.tenant_id, external_id, &declared).await?;
                w.declared = declared;
            }
            let mut details = workers::audit_json(&w.declared);
            details["display_name"] = w.display_name.clone().into();
            self.commit(tx, &caller, "worker.upserted", external_id, details).await?;
            crate::domain::risk_live::declare(&self.app, &caller.tenant_id, &w);
            Ok(workers::to_proto(w))
        }
        .await)
    }

    async fn list_workers(&self, request: Request<pb::ListWorkersRequest>) -> Reply<pb::ListWorkersResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
            let page = request.get_ref().page.as_ref();
            let limit = page_size(page);
            let list = inventory::list_workers(&self.app.store, &caller.tenant_id, &id_cursor(page)?, limit).await?;
            let next = id_token(list.last().map(|w| w.external_id.as_str()), list.len(), limit);
            Ok(pb::ListWorkersResponse {
                workers: list.into_iter().map(workers::to_proto).collect(),
                next_page_token: next,
            })
        }
        .await)
    }

    async fn register_device(&self, request: Request<pb::RegisterDeviceRequest>) -> Reply<pb::Device> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let serial = required("serial_number", &r.serial_number)?;
            let model = required("model", &r.model)?;
            let worker = r.worker_external_id.trim();
            let now = now_ms();
            let device = Device {
                id: new_id("dev"),
                tenant_id: caller.tenant_id.clone(),
                serial_number: serial.to_string(),
                model: model.to_string(),
                asset_tag: r.asset_tag.trim().chars().take(256).collect(),
                worker_external_id: (!worker.is_empty()).then(|| worker.to_string()),
                registered_at_ms: now,
                revoked_at_ms: None,
                revoke_reason: None,
            };
            let mut tx = self.app.store.begin().await?;
            if !worker.is_empty() {
                let worker = required("worker_external_id", worker)?;
                let known = inventory::get_worker(&self.app.store, &caller.tenant_id, worker).await?;
                match (known, r.worker_display_name.trim()) {
                    (Some(_), "") => {}
                    (_, "") => {
                        return Err(ApiError::not_found(format!(
                            "no worker {worker:?}; give worker_display_name to create it"
                        )));
                    }
                    (_, name) => {
                        inventory::upsert_worker(
                            &mut tx,
                            &caller.tenant_id,
                            worker,
                            required("worker_display_name", name)?,
                            now,
                        )
                        .await?;
                    }
                }
            }
            if let Err(e) = inventory::insert_device(&mut tx, &device).await {
                return Err(if e.is_unique_violation() {
                    ApiError::AlreadyExists(format!("a device with serial number {serial:?} is already registered"))
                } else {
                    e.into()
                });
            }
            if !r.ek_pin.trim().is_empty() {
                let pin = crate::domain::enrollment::tpm::normalize_pin(&r.ek_pin)?;
                crate::domain::enrollment::tpm::pin_device(&mut tx, &caller.tenant_id, &device.id, &pin).await?;
            }
            let details = serde_json::json!({
                "serial_number": device.serial_number, "model": device.model, "worker": device.worker_external_id,
                "ek_pin": r.ek_pin.trim().to_ascii_lowercase(),
            });
            self.commit(tx, &caller, "device.registered", &device.id, details).await?;
            self.device_to_proto(&device).await
        }
        .await)
    }

    async fn assign_device(&self, request: Request<pb::AssignDeviceRequest>) -> Reply<pb::Device> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let device = self.device(&caller.tenant_id, &r.device_id).await?;
            let worker = required("worker_external_id", &r.worker_external_id)?;
            if inventory::get_worker(&self.app.store, &caller.tenant_id, worker).await?.is_none() {
                return Err(ApiError::not_found(format!("no worker {worker:?}")));
            }
            self.retrying("device.assign", || async {
                let mut tx = self.app.store.begin().await?;
                inventory::assign_device(&mut tx, &caller.tenant_id, &device.id, worker).await?;
                let details = serde_json::json!({"from": device.worker_external_id, "to": worker});
                self.commit(tx, &caller, "device.assigned", &device.id, details).await
            })
            .await?;
            let device = self.device(&caller.tenant_id, &device.id).await?;
            self.device_to_proto(&device).await
        }
        .await)
    }

    async fn get_device(&self, request: Request<pb::GetDeviceRequest>) -> Reply<pb::Device> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
            let device = self.device(&caller.tenant_id, &request.get_ref().device_id).await?;
            self.device_to_proto(&device).await
        }
        .await)
    }

    async fn list_devices(&self, request: Request<pb::ListDevicesRequest>) -> Reply<pb::ListDevicesResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
            let r = request.get_ref();
            let limit = page_size(r.page.as_ref());
            let list = inventory::list_devices(
                &self.app.store,
                &caller.tenant_id,
                r.worker_external_id.trim(),
                r.include_revoked,
                &id_cursor(r.page.as_ref())?,
                limit,
            )
            .await?;
            let mut devices = Vec::with_capacity(list.len());
            for d in &list {
                devices.push(self.device_to_proto(d).await?);
            }
            Ok(pb::ListDevicesResponse {
                devices,
                next_page_token: id_token(list.last().map(|d| d.id.as_str()), list.len(), limit),
            })
        }
        .await)
    }

    async fn revoke_device(&self, request: Request<pb::RevokeDeviceRequest>) -> Reply<pb::Device> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let device = self.device(&caller.tenant_id, &r.device_id).await?;
            let reason = if r.reason.trim().is_empty() { "revoked by an administrator" } else { r.reason.trim() };
            self.retrying("device.revoke", || async {
                let mut tx = self.app.store.begin().await?;
                inventory::revoke_device(&mut tx, &caller.tenant_id, &device.id, reason, now_ms()).await?;
                self.commit(tx, &caller, "device.revoked", &device.id, serde_json::json!({"reason": reason})).await
            })
            .await?;
            tracing::info!(tenant = %caller.tenant_id, device = %device.id, "device revoked");
            let device = self.device(&caller.tenant_id, &device.id).await?;
            self.device_to_proto(&device).await
        }
        .await)
    }

    async fn revoke_credential(&self, request: Request<pb::RevokeCredentialRequest>) -> Reply<pb::Credential> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let id = required("credential_id", &r.credential_id)?;
            let reason = if r.reason.trim().is_empty() { "revoked by an administrator" } else { r.reason.trim() };
            self.retrying("credential.revoke", || async {
                let mut tx = self.app.store.begin().await?;
                if !credentials::revoke(&mut tx, &caller.tenant_id, id, reason, now_ms()).await? {
                    return Err(ApiError::not_found(format!("no credential {id:?}")));
                }
                self.commit(tx, &caller, "credential.revoked", id, serde_json::json!({"reason": reason})).await
            })
            .await?;
            let c = credentials::get_in_tenant(&self.app.store, &caller.tenant_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("no such credential"))?;
            Ok(credential_to_proto(&c))
        }
        .await)
    }

    async fn create_enrollment_token(
        &self,
        request: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> Reply<pb::CreateEnrollmentTokenResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let device = self.device(&caller.tenant_id, &r.device_id).await?;
            if device.revoked_at_ms.is_some() {
                return Err(ApiError::precondition("the device is revoked; register it again to re-enroll"));
            }
            let Some(worker) = device.worker_external_id.clone() else {
                return Err(ApiError::precondition("assign the device to a worker before issuing an enrollment token"));
            };
            let ttl_s = match r.ttl_seconds {
                0 => 24 * 3600,
                n if n > MAX_TOKEN_TTL_S => return Err(ApiError::invalid("ttl_seconds must be at most 30 days")),
                n => n,
            };
            let (secret, hash) = enroll::mint_token_secret();
            let now = now_ms();
            let token = EnrollmentToken {
                id: new_id("tok"),
                tenant_id: caller.tenant_id.clone(),
                device_id: device.id.clone(),
                worker_external_id: worker,
                secret_hash: hash,
                created_at_ms: now,
                expires_at_ms: now + i64::try_from(ttl_s * 1000).unwrap_or(i64::MAX / 2),
                used_at_ms: None,
                revoked_at_ms: None,
            };
            self.retrying("enrollment_token.create", || async {
                let mut tx = self.app.store.begin().await?;
                enrollment::insert_token(&mut tx, &token).await?;
                let details = serde_json::json!({
                    "device": token.device_id, "worker": token.worker_external_id, "expires_at_ms": token.expires_at_ms,
                });
                self.commit(tx, &caller, "enrollment_token.issued", &token.id, details).await
            })
            .await?;
            Ok(pb::CreateEnrollmentTokenResponse { token: Some(token_to_proto(&token)), secret })
        }
        .await)
    }

    async fn revoke_enrollment_token(
        &self,
        request: Request<pb::RevokeEnrollmentTokenRequest>,
    ) -> Reply<pb::EnrollmentToken> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let id = required("id", &request.get_ref().id)?;
            self.retrying("enrollment_token.revoke", || async {
                let mut tx = self.app.store.begin().await?;
                if !enrollment::revoke_token(&mut tx, &caller.tenant_id, id, now_ms()).await? {
                    return Err(ApiError::not_found(format!("no enrollment token {id:?}")));
                }
                self.commit(tx, &caller, "enrollment_token.revoked", id, serde_json::json!({})).await
            })
            .await?;
            let t = enrollment::token_by_id(&self.app.store, &caller.tenant_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("no such token"))?;
            Ok(token_to_proto(&t))
        }
        .await)
    }

    async fn list_enrollment_tokens(
        &self,
        request: Request<pb::ListEnrollmentTokensRequest>,
    ) -> Reply<pb::ListEnrollmentTokensResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let device = self.device(&caller.tenant_id, &request.get_ref().device_id).await?;
            let list = enrollment::tokens_for_device(&self.app.store, &caller.tenant_id, &device.id).await?;
            Ok(pb::ListEnrollmentTokensResponse { tokens: list.iter().map(token_to_proto).collect() })
        }
        .await)
    }

    async fn add_trust_anchors(
        &self,
        request: Request<pb::AddTrustAnchorsRequest>,
    ) -> Reply<pb::AddTrustAnchorsResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let mut parsed = TrustStore::new();
            let count = parsed.add_pem(&r.pem).map_err(|e| ApiError::invalid(format!("pem: {e}")))?;
            if count == 0 {
                return Err(ApiError::invalid("pem: no CERTIFICATE block found"));
            }
            let mut anchors = Vec::new();
            let mut tx = self.app.store.begin().await?;
            for (summary, der) in parsed.anchors_with_der() {
                let record = TrustAnchorRecord {
                    id: new_id("anc"),
                    tenant_id: caller.tenant_id.clone(),
                    name: r.name.trim().chars().take(256).collect(),
                    subject: summary.subject.clone(),
                    sha256: summary.sha256_fingerprint.clone(),
                    der: der.to_vec(),
                    not_before_ms: summary.not_before.unix_timestamp().saturating_mul(1000),
                    not_after_ms: summary.not_after.unix_timestamp().saturating_mul(1000),
                    added_at_ms: now_ms(),
                };
                anchors.push(anchor_to_proto(&trust::add(&mut tx, &record).await?));
            }
            let added: Vec<serde_json::Value> = anchors
                .iter()
                .map(|a| serde_json::json!({"id": a.id, "subject": a.subject, "sha256": a.sha256}))
                .collect();
            self.commit(tx, &caller, "trust_anchors.added", "", serde_json::json!({"anchors": added})).await?;
            tracing::info!(tenant = %caller.tenant_id, count = anchors.len(), "trust anchors added");
            Ok(pb::AddTrustAnchorsResponse { anchors })
        }
        .await)
    }

    async fn list_trust_anchors(
        &self,
        request: Request<pb::ListTrustAnchorsRequest>,
    ) -> Reply<pb::ListTrustAnchorsResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
            let list = trust::list(&self.app.store, &caller.tenant_id).await?;
            Ok(pb::ListTrustAnchorsResponse { anchors: list.iter().map(anchor_to_proto).collect() })
        }
        .await)
    }

    async fn remove_trust_anchor(&self, request: Request<pb::RemoveTrustAnchorRequest>) -> Reply<pb::TrustAnchor> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let id = required("id", &request.get_ref().id)?;
            let anchor = trust::get(&self.app.store, &caller.tenant_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no trust anchor {id:?}")))?;
            self.retrying("trust_anchor.remove", || async {
                let mut tx = self.app.store.begin().await?;
                trust::remove(&mut tx, &caller.tenant_id, id).await?;
                let details = serde_json::json!({"subject": anchor.subject, "sha256": anchor.sha256});
                self.commit(tx, &caller, "trust_anchor.removed", id, details).await
            })
            .await?;
            Ok(anchor_to_proto(&anchor))
        }
        .await)
    }

    async fn import_mds(&self, request: Request<tonic::Streaming<pb::ImportMdsChunk>>) -> Reply<pb::ImportMdsResponse> {
        ok(super::admin_mds::import(&self.app, request).await)
    }

    async fn get_mds_status(&self, request: Request<pb::GetMdsStatusRequest>) -> Reply<pb::GetMdsStatusResponse> {
        ok(super::admin_mds::status(&self.app, &request).await)
    }

    async fn get_policy(&self, request: Request<pb::GetPolicyRequest>) -> Reply<pb::Policy> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
            Ok(policy::policy_to_proto(&self.tenant(&caller.tenant_id).await?.policy))
        }
        .await)
    }

    async fn update_policy(&self, request: Request<pb::UpdatePolicyRequest>) -> Reply<pb::Policy> {
        ok(async {
            let caller = authorize(&self.app, &request, ADMIN).await?;
            let r = request.get_ref();
            let before = self.tenant(&caller.tenant_id).await?.policy;
            let mut p = before.clone();
            if let Some(v) = &r.rp_id {
                p.rp_id = v.trim().to_string();
            }
            if let Some(v) = &r.origin {
                p.origin = v.trim().to_string();
            }
            validate_rp_id(&p.rp_id)?;
            validate_origin(&p.origin, &p.rp_id)?;
            policy::apply_tiers(r, &mut p)?;
            if r.set_allowed_aaguids {
                p.allowed_aaguids = r
                    .allowed_aaguids
                    .iter()
                    .map(|s| {
                        uuid::Uuid::parse_str(s.trim())
                            .map(|u| u.to_string())
                            .map_err(|_| ApiError::invalid(format!("allowed_aaguids: {s:?} is not a UUID")))
                    })
                    .collect::<ApiResult<_>>()?;
            }
            let seconds = |field: &str, v: u64, min: u64, max: u64| -> ApiResult<i64> {
                if v < min || v > max {
                    return Err(ApiError::invalid(format!("{field} must be between {min} and {max} seconds")));
                }
                Ok(i64::try_from(v).unwrap_or(i64::MAX))
            };
            if let Some(v) = r.presence_interval_seconds {
                p.presence_interval_s = seconds("presence_interval_seconds", v, 1, 7 * 24 * 3600)?;
            }
            if let Some(v) = r.challenge_deadline_seconds {
                p.challenge_deadline_s = seconds("challenge_deadline_seconds", v, 1, 24 * 3600)?;
            }
            if let Some(v) = r.presence_window_seconds {
                p.presence_window_s = seconds("presence_window_seconds", v, 1, 30 * 24 * 3600)?;
            }
            if let Some(v) = &r.flag_policy {
                p.flag_policy = flag_policy::from_proto(v)?;
            }
            if r.set_office_egress_cidrs {
                p.office_egress = flag_policy::office_egress(&r.office_egress_cidrs)?;
            } else if !r.office_egress_cidrs.is_empty() {
                return Err(ApiError::invalid("office_egress_cidrs is given without set_office_egress_cidrs"));
            }
            self.retrying("policy.update", || async {
                let mut tx = self.app.store.begin().await?;
                tenants::update_policy(&mut tx, &caller.tenant_id, &p).await?;
                let details =
                    serde_json::json!({"before": policy::policy_json(&before), "after": policy::policy_json(&p)});
                self.commit(tx, &caller, "policy.updated", "", details).await
            })
            .await?;
            tracing::info!(tenant = %caller.tenant_id, policy = ?p, "policy updated");
            Ok(policy::policy_to_proto(&p))
        }
        .await)
    }

    async fn challenge_now(&self, request: Request<pb::ChallengeNowRequest>) -> Reply<pb::ChallengeNowResponse> {
        ok(async {
            let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
            let r = request.get_ref();
            let device = self.device(&caller.tenant_id, &r.device_id).await?;
            if device.revoked_at_ms.is_some() {
                return Err(ApiError::precondition("the device is revoked"));
            }
            let deadline_s = match r.deadline_seconds {
                0 => self.tenant(&caller.tenant_id).await?.policy.challenge_deadline_s,
                n if n > 24 * 3600 => return Err(ApiError::invalid("deadline_seconds must be at most one day")),
                n => i64::try_from(n).unwrap_or(300),
            };
            let active: Vec<Credential> = credentials::list_for_device(&self.app.store, &caller.tenant_id, &device.id)
                .await?
                .into_iter()
                .filter(|c| c.revoked_at_ms.is_none())
                .collect();
            if active.is_empty() {
                return Err(ApiError::precondition("the device has no enrolled credential to challenge"));
            }
            let mut challenge_ids = Vec::new();
            for c in &active {
                challenge_ids.push(presence::issue(&self.app, c, deadline_s, "on_demand").await?.id);
            }
            Ok(pb::ChallengeNowResponse { challenge_ids })
        }
        .await)
    }

    async fn set_pcr_policy(&self, request: Request<pb::SetPcrPolicyRequest>) -> Reply<pb::PcrPolicy> {
        ok(self.do_set_pcr_policy(request).await)
    }

    async fn list_pcr_policies(
        &self,
        request: Request<pb::ListPcrPoliciesRequest>,
    ) -> Reply<pb::ListPcrPoliciesResponse> {
        ok(self.do_list_pcr_policies(request).await)
    }

    async fn clear_pcr_policy(&self, request: Request<pb::ClearPcrPolicyRequest>) -> Reply<pb::PcrPolicy> {
        ok(self.do_clear_pcr_policy(request).await)
    }

    async fn add_integration(&self, request: Request<pb::AddIntegrationRequest>) -> Reply<pb::AddIntegrationResponse> {
        ok(self.do_add_integration(request).await)
    }

    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Reply<pb::ListIntegrationsResponse> {
        ok(self.do_list_integrations(request).await)
    }

    async fn remove_integration(&self, request: Request<pb::RemoveIntegrationRequest>) -> Reply<pb::Integration> {
        ok(self.do_remove_integration(request).await)
    }
}
