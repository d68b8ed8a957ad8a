//! AdminService's PCR policies: expected PCR values for a device model or one device.
//! Enforced on TPM quotes by `crate::domain::presence::tpm`.

use super::{ADMIN, AdminApi};
use crate::domain::error::{ApiError, ApiResult, required};
use crate::domain::tenancy::auth::Role;
use crate::store::pcr_policy::{self, Expected, PcrPolicy, Scope};
use crate::transport::rpc::authorize;
use crate::util::now_ms;
use std::collections::BTreeSet;
use tether_proto::v1 as pb;
use tonic::Request;

/// PCRs 0-23 exist in every PC Client TPM bank.
const MAX_PCR_INDEX: u32 = 23;
/// Four banks of 24 PCRs.
const MAX_PCRS: usize = 4 * 24;

fn scope_to_proto(scope: &Scope) -> pb::PcrPolicyScope {
    let target = match scope {
        Scope::Device(id) => pb::pcr_policy_scope::Target::DeviceId(id.clone()),
        Scope::Model(model) => pb::pcr_policy_scope::Target::Model(model.clone()),
    };
    pb::PcrPolicyScope { target: Some(target) }
}

fn policy_to_proto(p: &PcrPolicy) -> pb::PcrPolicy {
    pb::PcrPolicy {
        scope: Some(scope_to_proto(&p.scope)),
        pcrs: p
            .pcrs
            .iter()
            .map(|e| pb::PcrExpectation { bank: e.bank.clone(), index: e.index, value_hex: e.value_hex.clone() })
            .collect(),
        updated_at_ms: p.updated_at_ms,
    }
}

/// The audit form of a policy's PCRs: ["sha256:7=ab…", …].
fn pcrs_json(pcrs: &[Expected]) -> serde_json::Value {
    pcrs.iter().map(|e| format!("{}={}", e.pcr(), e.value_hex)).collect()
}

fn expectation(e: &pb::PcrExpectation) -> ApiResult<Expected> {
    let alg = pcr_policy::bank(&e.bank).ok_or_else(|| {
        ApiError::invalid(format!("pcrs: {:?} is not a PCR bank; use sha1, sha256, sha384 or sha512", e.bank))
    })?;
    if e.index > MAX_PCR_INDEX {
        return Err(ApiError::invalid(format!("pcrs: PCR index {} is out of range (0-{MAX_PCR_INDEX})", e.index)));
    }
    let text = e.value_hex.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    let value =
        hex::decode(text).map_err(|_| ApiError::invalid(format!("pcrs: the value of {alg}:{} is not hex", e.index)))?;
    if value.len() != alg.digest_len() {
        return Err(ApiError::invalid(format!(
            "pcrs: the value of {alg}:{} is {} bytes; a {alg} PCR holds {}",
            e.index,
            value.len(),
            alg.digest_len()
        )));
    }
    Ok(Expected { bank: alg.name().to_owned(), index: e.index, value_hex: hex::encode(value) })
}

impl AdminApi {
    async fn pcr_scope(&self, tenant_id: &str, scope: Option<&pb::PcrPolicyScope>) -> ApiResult<Scope> {
        match scope.and_then(|s| s.target.as_ref()) {
            Some(pb::pcr_policy_scope::Target::DeviceId(id)) => Ok(Scope::Device(self.device(tenant_id, id).await?.id)),
            Some(pb::pcr_policy_scope::Target::Model(model)) => {
                Ok(Scope::Model(required("scope.model", model)?.into()))
            }
            None => Err(ApiError::invalid("scope is required: a device_id or a model")),
        }
    }

    pub(super) async fn do_set_pcr_policy(
        &self,
        request: Request<pb::SetPcrPolicyRequest>,
    ) -> ApiResult<pb::PcrPolicy> {
        let caller = authorize(&self.app, &request, ADMIN).await?;
        let r = request.get_ref();
        let scope = self.pcr_scope(&caller.tenant_id, r.scope.as_ref()).await?;
        if r.pcrs.is_empty() {
            return Err(ApiError::invalid("pcrs: name at least one PCR (ClearPcrPolicy removes a policy)"));
        }
        if r.pcrs.len() > MAX_PCRS {
            return Err(ApiError::invalid(format!("pcrs: at most {MAX_PCRS} PCRs")));
        }
        let mut pcrs = r.pcrs.iter().map(expectation).collect::<ApiResult<Vec<_>>>()?;
        pcrs.sort_by(|a, b| (&a.bank, a.index).cmp(&(&b.bank, b.index)));
        let mut seen = BTreeSet::new();
        if let Some(dup) = pcrs.iter().find(|e| !seen.insert((e.bank.clone(), e.index))) {
            return Err(ApiError::invalid(format!("pcrs: {}:{} is named twice", dup.bank, dup.index)));
        }
        let policy = PcrPolicy { scope, pcrs, updated_at_ms: now_ms() };
        let mut tx = self.app.store.begin().await?;
        let before = pcr_policy::get_tx(&mut tx, &caller.tenant_id, &policy.scope).await?;
        pcr_policy::replace(&mut tx, &caller.tenant_id, &policy).await?;
        let details = serde_json::json!({
            "scope": policy.scope.kind(),
            "pcrs": pcrs_json(&policy.pcrs),
            "before": before.as_ref().map(|b| pcrs_json(&b.pcrs)),
        });
        self.commit(tx, &caller, "pcr_policy.set", policy.scope.target(), details).await?;
        tracing::info!(tenant = %caller.tenant_id, scope = %policy.scope, pcrs = policy.pcrs.len(), "PCR policy set");
        Ok(policy_to_proto(&policy))
    }

    pub(super) async fn do_list_pcr_policies(
        &self,
        request: Request<pb::ListPcrPoliciesRequest>,
    ) -> ApiResult<pb::ListPcrPoliciesResponse> {
        let caller = authorize(&self.app, &request, &[Role::Admin, Role::Analyst]).await?;
        let list = pcr_policy::list(&self.app.store, &caller.tenant_id).await?;
        Ok(pb::ListPcrPoliciesResponse { policies: list.iter().map(policy_to_proto).collect() })
    }

    pub(super) async fn do_clear_pcr_policy(
        &self,
        request: Request<pb::ClearPcrPolicyRequest>,
    ) -> ApiResult<pb::PcrPolicy> {
        let caller = authorize(&self.app, &request, ADMIN).await?;
        let scope = match request.get_ref().scope.as_ref().and_then(|s| s.target.as_ref()) {
            // A revoked or removed device's policy can still be cleared: no inventory lookup.
            Some(pb::pcr_policy_scope::Target::DeviceId(id)) => Scope::Device(required("scope.device_id", id)?.into()),
            _ => self.pcr_scope(&caller.tenant_id, request.get_ref().scope.as_ref()).await?,
        };
        let mut tx = self.app.store.begin().await?;
        let Some(before) = pcr_policy::get_tx(&mut tx, &caller.tenant_id, &scope).await? else {
            return Err(ApiError::not_found(format!("no PCR policy for {scope}")));
        };
        pcr_policy::clear(&mut tx, &caller.tenant_id, &scope).await?;
        let details = serde_json::json!({"scope": scope.kind(), "before": pcrs_json(&before.pcrs)});
        self.commit(tx, &caller, "pcr_policy.cleared", scope.target(), details).await?;
        tracing::info!(tenant = %caller.tenant_id, %scope, "PCR policy cleared");
        Ok(policy_to_proto(&before))
    }
}
