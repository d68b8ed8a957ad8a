//! Views of inventory, keys, tokens and trust anchors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use tether_proto::v1 as pb;

use crate::output::{Fields, Render, Table, rfc3339, time_cell};

use super::*;

// ---------------------------------------------------------------- tenant

#[derive(Debug, Serialize)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub created_at: Option<String>,
    pub caller_role: String,
}

impl From<pb::Tenant> for TenantView {
    fn from(t: pb::Tenant) -> Self {
        Self { id: t.id, name: t.name, created_at: rfc3339(t.created_at_ms), caller_role: role(t.caller_role) }
    }
}

impl Render for TenantView {
    fn to_text(&self) -> String {
        Fields::new()
            .add("id", &self.id)
            .add("name", &self.name)
            .add("created at", time_cell(&self.created_at))
            .add("your role", &self.caller_role)
            .render()
    }
}

// ---------------------------------------------------------------- API keys

#[derive(Debug, Serialize)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
    /// The API-key pepper the stored hash was made with (null: not recorded yet, or unpeppered).
    pub pepper_id: Option<String>,
}

impl From<pb::ApiKey> for ApiKeyView {
    fn from(k: pb::ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: role(k.role),
            created_at: rfc3339(k.created_at_ms),
            last_used_at: rfc3339(k.last_used_at_ms),
            revoked_at: rfc3339(k.revoked_at_ms),
            expires_at: rfc3339(k.expires_at_ms),
            pepper_id: Some(k.pepper_id).filter(|p| !p.is_empty()),
        }
    }
}

impl ApiKeyView {
    fn fields(&self) -> Fields {
        Fields::new()
            .add("id", &self.id)
            .add("name", &self.name)
            .add("role", &self.role)
            .add("created at", time_cell(&self.created_at))
            .add("last used at", time_cell(&self.last_used_at))
            .add("revoked at", time_cell(&self.revoked_at))
            .add("pepper", self.pepper_id.as_deref().unwrap_or("-"))
    }
}

impl Render for ApiKeyView {
    fn to_text(&self) -> String {
        self.fields().render()
    }
}

#[derive(Debug, Serialize)]
pub struct CreateApiKeyView {
    pub key: Option<ApiKeyView>,
    pub secret: String,
}

impl From<pb::CreateApiKeyResponse> for CreateApiKeyView {
    fn from(r: pb::CreateApiKeyResponse) -> Self {
        Self { key: r.key.map(Into::into), secret: r.secret }
    }
}

impl Render for CreateApiKeyView {
    fn to_text(&self) -> String {
        let fields = self.key.as_ref().map(ApiKeyView::fields).unwrap_or_default();
        let mut out = fields.add("secret", &self.secret).render();
        out.push_str("\nStore the secret now: it is shown only once.\n");
        out
    }
}

#[derive(Debug, Serialize)]
pub struct ApiKeysView {
    pub keys: Vec<ApiKeyView>,
}

impl Render for ApiKeysView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED", "PEPPER"]);
        for k in &self.keys {
            table.row([
                k.id.clone(),
                k.name.clone(),
                k.role.clone(),
                time_cell(&k.created_at),
                time_cell(&k.last_used_at),
                time_cell(&k.revoked_at),
                k.pepper_id.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        table.render()
    }
}

// ---------------------------------------------------------------- workers

#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub external_id: String,
    pub display_name: String,
    pub created_at: Option<String>,
    /// Declared home `{lat, lon, country}`, or null.
    pub home: Option<serde_json::Value>,
    /// Declared working hours `{schedule, timezone}`, or null.
    pub working_hours: Option<serde_json::Value>,
}

impl From<pb::Worker> for WorkerView {
    fn from(w: pb::Worker) -> Self {
        Self {
            external_id: w.external_id,
            display_name: w.display_name,
            created_at: rfc3339(w.created_at_ms),
            home: w.home.map(|h| serde_json::json!({"lat": h.lat, "lon": h.lon, "country": h.country})),
            working_hours: w.working_hours.map(|h| serde_json::json!({"schedule": h.schedule, "timezone": h.timezone})),
        }
    }
}

impl WorkerView {
    fn home_cell(&self) -> String {
        self.home.as_ref().map_or_else(
            || "-".into(),
            |h| format!("{}, {} {}", h["lat"], h["lon"], h["country"].as_str().unwrap_or_default()).trim().to_string(),
        )
    }

    fn hours_cell(&self) -> String {
        self.working_hours.as_ref().map_or_else(
            || "-".into(),
            |h| {
                format!(
                    "{} ({})",
                    h["schedule"].as_str().unwrap_or_default(),
                    h["timezone"].as_str().unwrap_or_default()
                )
            },
        )
    }
}

impl Render for WorkerView {
    fn to_text(&self) -> String {
        Fields::new()
            .add("external id", &self.external_id)
            .add("name", &self.display_name)
            .add("created at", time_cell(&self.created_at))
            .add("home", self.home_cell())
            .add("working hours", self.hours_cell())
            .render()
    }
}

#[derive(Debug, Serialize)]
pub struct WorkersView {
    pub workers: Vec<WorkerView>,
    pub next_page_token: Option<String>,
}

impl Render for WorkersView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["EXTERNAL ID", "NAME", "CREATED", "HOME", "WORKING HOURS"]);
        for w in &self.workers {
            table.row([
                w.external_id.clone(),
                w.display_name.clone(),
                time_cell(&w.created_at),
                w.home_cell(),
                w.hours_cell(),
            ]);
        }
        let mut out = table.render();
        more_hint(&mut out, &self.next_page_token);
        out
    }
}

// ---------------------------------------------------------------- devices and credentials

#[derive(Debug, Serialize)]
pub struct CredentialView {
    pub credential_id: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub kind: String,
    pub format: String,
    pub attestation_type: String,
    pub attestation_state: String,
    /// hardware_attested, hardware_unverified or self_or_none.
    pub tier: String,
    pub attestation_reason: String,
    pub trust_anchor: String,
    pub aaguid: String,
    pub sign_count: u32,
    pub enrolled_at: Option<String>,
    pub enrolled_from_ip: String,
    pub revoked_at: Option<String>,
    pub last_presence_at: Option<String>,
    /// base64url COSE_Key.
    pub public_key_cose: String,
}

impl From<pb::Credential> for CredentialView {
    fn from(c: pb::Credential) -> Self {
        Self {
            credential_id: c.credential_id,
            device_id: c.device_id,
            worker_external_id: c.worker_external_id,
            kind: c.kind,
            format: c.format,
            attestation_type: c.attestation_type,
            attestation_state: attestation_state(c.attestation_state),
            tier: attestation_tier(c.tier),
            attestation_reason: c.attestation_reason,
            trust_anchor: c.trust_anchor,
            aaguid: c.aaguid,
            sign_count: c.sign_count,
            enrolled_at: rfc3339(c.enrolled_at_ms),
            enrolled_from_ip: c.enrolled_from_ip,
            revoked_at: rfc3339(c.revoked_at_ms),
            last_presence_at: rfc3339(c.last_presence_at_ms),
            public_key_cose: URL_SAFE_NO_PAD.encode(&c.public_key_cose),
        }
    }
}

impl Render for CredentialView {
    fn to_text(&self) -> String {
        Fields::new()
            .add("credential id", &self.credential_id)
            .add("device", &self.device_id)
            .add("worker", &self.worker_external_id)
            .add("kind", &self.kind)
            .add("format", &self.format)
            .add("attestation type", &self.attestation_type)
            .add("attestation", &self.attestation_state)
            .add("tier", &self.tier)
            .add("attestation reason", &self.attestation_reason)
            .add("trust anchor", &self.trust_anchor)
            .add("aaguid", &self.aaguid)
            .add("sign count", self.sign_count.to_string())
            .add("enrolled at", time_cell(&self.enrolled_at))
            .add("enrolled from", &self.enrolled_from_ip)
            .add("last presence", time_cell(&self.last_presence_at))
            .add("revoked at", time_cell(&self.revoked_at))
            .render()
    }
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub serial_number: String,
    pub model: String,
    pub asset_tag: String,
    pub worker_external_id: String,
    pub registered_at: Option<String>,
    pub revoked_at: Option<String>,
    pub credentials: Vec<CredentialView>,
    pub attestation_state: String,
    /// The pinned TPM endorsement key (hex SHA-256 of its SubjectPublicKeyInfo); empty when none.
    pub ek_pin: String,
}

impl From<pb::Device> for DeviceView {
    fn from(d: pb::Device) -> Self {
        Self {
            id: d.id,
            serial_number: d.serial_number,
            model: d.model,
            asset_tag: d.asset_tag,
            worker_external_id: d.worker_external_id,
            registered_at: rfc3339(d.registered_at_ms),
            revoked_at: rfc3339(d.revoked_at_ms),
            credentials: d.credentials.into_iter().map(Into::into).collect(),
            attestation_state: attestation_state(d.attestation_state),
            ek_pin: d.ek_pin,
        }
    }
}

impl DeviceView {
    fn active_credentials(&self) -> usize {
        self.credentials.iter().filter(|c| c.revoked_at.is_none()).count()
    }
}

impl Render for DeviceView {
    fn to_text(&self) -> String {
        let mut out = Fields::new()
            .add("id", &self.id)
            .add("serial number", &self.serial_number)
            .add("model", &self.model)
            .add("asset tag", &self.asset_tag)
            .add("worker", &self.worker_external_id)
            .add("attestation", &self.attestation_state)
            .add("TPM EK pin", if self.ek_pin.is_empty() { "-" } else { &self.ek_pin })
            .add("registered at", time_cell(&self.registered_at))
            .add("revoked at", time_cell(&self.revoked_at))
            .render();
        if self.credentials.is_empty() {
            out.push_str("\nno credentials (not enrolled)\n");
            return out;
        }
        let mut table = Table::new(&[
            "CREDENTIAL",
            "FORMAT",
            "ATTESTATION",
            "TIER",
            "TRUST ANCHOR / REASON",
            "SIGN COUNT",
            "ENROLLED",
            "LAST PRESENCE",
            "REVOKED",
        ]);
        for c in &self.credentials {
            let why = if c.trust_anchor.is_empty() { c.attestation_reason.clone() } else { c.trust_anchor.clone() };
            table.row([
                c.credential_id.clone(),
                c.format.clone(),
                c.attestation_state.clone(),
                c.tier.clone(),
                why,
                c.sign_count.to_string(),
                time_cell(&c.enrolled_at),
                time_cell(&c.last_presence_at),
                time_cell(&c.revoked_at),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
        out
    }
}

#[derive(Debug, Serialize)]
pub struct DevicesView {
    pub devices: Vec<DeviceView>,
    pub next_page_token: Option<String>,
}

impl Render for DevicesView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&[
            "ID",
            "SERIAL",
            "MODEL",
            "ASSET TAG",
            "WORKER",
            "ATTESTATION",
            "CREDENTIALS",
            "REGISTERED",
            "REVOKED",
        ]);
        for d in &self.devices {
            table.row([
                d.id.clone(),
                d.serial_number.clone(),
                d.model.clone(),
                d.asset_tag.clone(),
                d.worker_external_id.clone(),
                d.attestation_state.clone(),
                d.active_credentials().to_string(),
                time_cell(&d.registered_at),
                time_cell(&d.revoked_at),
            ]);
        }
        let mut out = table.render();
        more_hint(&mut out, &self.next_page_token);
        out
    }
}

// ---------------------------------------------------------------- enrollment tokens

#[derive(Debug, Serialize)]
pub struct EnrollmentTokenView {
    pub id: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<pb::EnrollmentToken> for EnrollmentTokenView {
    fn from(t: pb::EnrollmentToken) -> Self {
        Self {
            id: t.id,
            device_id: t.device_id,
            worker_external_id: t.worker_external_id,
            created_at: rfc3339(t.created_at_ms),
            expires_at: rfc3339(t.expires_at_ms),
            used_at: rfc3339(t.used_at_ms),
            revoked_at: rfc3339(t.revoked_at_ms),
        }
    }
}

impl EnrollmentTokenView {
    fn fields(&self) -> Fields {
        Fields::new()
            .add("id", &self.id)
            .add("device", &self.device_id)
            .add("worker", &self.worker_external_id)
            .add("created at", time_cell(&self.created_at))
            .add("expires at", time_cell(&self.expires_at))
            .add("used at", time_cell(&self.used_at))
            .add("revoked at", time_cell(&self.revoked_at))
    }
}

impl Render for EnrollmentTokenView {
    fn to_text(&self) -> String {
        self.fields().render()
    }
}

#[derive(Debug, Serialize)]
pub struct CreateEnrollmentTokenView {
    pub token: Option<EnrollmentTokenView>,
    pub secret: String,
}

impl From<pb::CreateEnrollmentTokenResponse> for CreateEnrollmentTokenView {
    fn from(r: pb::CreateEnrollmentTokenResponse) -> Self {
        Self { token: r.token.map(Into::into), secret: r.secret }
    }
}

impl Render for CreateEnrollmentTokenView {
    fn to_text(&self) -> String {
        let fields = self.token.as_ref().map(EnrollmentTokenView::fields).unwrap_or_default();
        let mut out = fields.add("secret", &self.secret).render();
        out.push_str("\nHand the secret to the device (tether-agent enroll --token ...): it is shown only once.\n");
        out
    }
}

#[derive(Debug, Serialize)]
pub struct EnrollmentTokensView {
    pub tokens: Vec<EnrollmentTokenView>,
}

impl Render for EnrollmentTokensView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["ID", "DEVICE", "WORKER", "CREATED", "EXPIRES", "USED", "REVOKED"]);
        for t in &self.tokens {
            table.row([
                t.id.clone(),
                t.device_id.clone(),
                t.worker_external_id.clone(),
                time_cell(&t.created_at),
                time_cell(&t.expires_at),
                time_cell(&t.used_at),
                time_cell(&t.revoked_at),
            ]);
        }
        table.render()
    }
}

// ---------------------------------------------------------------- trust anchors

#[derive(Debug, Serialize)]
pub struct TrustAnchorView {
    pub id: String,
    pub subject: String,
    pub sha256: String,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub name: String,
    pub added_at: Option<String>,
}

impl From<pb::TrustAnchor> for TrustAnchorView {
    fn from(a: pb::TrustAnchor) -> Self {
        Self {
            id: a.id,
            subject: a.subject,
            sha256: a.sha256,
            not_before: rfc3339(a.not_before_ms),
            not_after: rfc3339(a.not_after_ms),
            name: a.name,
            added_at: rfc3339(a.added_at_ms),
        }
    }
}

impl Render for TrustAnchorView {
    fn to_text(&self) -> String {
        Fields::new()
            .add("id", &self.id)
            .add("name", &self.name)
            .add("subject", &self.subject)
            .add("sha256", &self.sha256)
            .add("not before", time_cell(&self.not_before))
            .add("not after", time_cell(&self.not_after))
            .add("added at", time_cell(&self.added_at))
            .render()
    }
}

#[derive(Debug, Serialize)]
pub struct TrustAnchorsView {
    pub anchors: Vec<TrustAnchorView>,
}

impl Render for TrustAnchorsView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["ID", "NAME", "SUBJECT", "NOT AFTER", "SHA256", "ADDED"]);
        for a in &self.anchors {
            table.row([
                a.id.clone(),
                a.name.clone(),
                a.subject.clone(),
                time_cell(&a.not_after),
                a.sha256.clone(),
                time_cell(&a.added_at),
            ]);
        }
        table.render()
    }
}

// ---------------------------------------------------------------- challenge now

#[derive(Debug, Serialize)]
pub struct ChallengeNowView {
    pub challenge_ids: Vec<String>,
}

impl Render for ChallengeNowView {
    fn to_text(&self) -> String {
        if self.challenge_ids.is_empty() {
            return "no challenge issued (the device has no active credential)\n".to_string();
        }
        let mut table = Table::new(&["CHALLENGE"]);
        for id in &self.challenge_ids {
            table.row([id]);
        }
        table.render()
    }
}
