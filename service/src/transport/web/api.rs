//! The page script's JSON calls. Each parses, checks the site (tenant,
//! Origin, CSRF token), and hands over to the same domain function as the
//! matching gRPC call; errors come back as `{state, reason}` with the domain's
//! sentence.

use super::Web;
use super::site::{DEVICE_COOKIE, Site, cookie, is_token_like};
use crate::domain::enrollment;
use crate::domain::error::{ApiError, required};
use crate::domain::presence;
use crate::transport::rpc::device::counted_enrollment;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The device cookie outlives any enrollment; the credential behind it can be revoked.
const DEVICE_COOKIE_MAX_AGE_S: u64 = 400 * 24 * 3600;
/// Challenges listed at most (one is normally open).
const MAX_LISTED: usize = 20;

pub fn refusal(status: StatusCode, reason: &str) -> Response {
    let state = if status.is_server_error() { "failed" } else { "refused" };
    (status, Json(json!({"state": state, "reason": reason}))).into_response()
}

/// Maps a domain error as gRPC does (storage details stay in the server log).
pub fn api_failure(api: bool, error: ApiError) -> Response {
    let retry_after = match &error {
        ApiError::ResourceExhausted { retry_after, .. } => Some(retry_after.as_secs().max(1)),
        _ => None,
    };
    let status = tonic::Status::from(error);
    let code = match status.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => StatusCode::CONFLICT,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = super::site::refusal(api, code, status.message());
    if let Some(seconds) = retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn refused(error: ApiError) -> Response {
    api_failure(true, error)
}

/// A JSON body of the expected shape, or a 400 that names what is wrong.
fn parse<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, body: &Bytes) -> Result<T, Box<Response>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(Box::new(refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Send the request as application/json.")));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(refusal(StatusCode::BAD_REQUEST, &format!("The request body is not what this call takes: {e}")))
    })
}

/// The domain's JSON strings go to the script as objects.
fn object(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}

#[derive(Deserialize)]
pub struct BeginBody {
    token: String,
}

pub async fn begin_enrollment(State(web): State<Arc<Web>>, site: Site, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = site.post_refusal(&headers) {
        return refusal;
    }
    let body: BeginBody = match parse(&headers, &body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let result = async {
        let token = required("token", &body.token)?;
        enrollment::limit(&web.app, &site.source_ip, token)?;
        enrollment::begin(&web.app, token, Some(&site.tenant.id)).await
    }
    .await;
    match result {
        Ok(begun) => Json(json!({
            "enrollment_id": begun.session.id,
            "creation_options": object(&begun.creation_options_json),
            "expires_at_ms": begun.session.expires_at_ms,
        }))
        .into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Deserialize)]
pub struct FinishBody {
    enrollment_id: String,
    token: String,
    registration_response_json: String,
}

pub async fn finish_enrollment(State(web): State<Arc<Web>>, site: Site, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = site.post_refusal(&headers) {
        return refusal;
    }
    let body: FinishBody = match parse(&headers, &body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let result = async {
        let token = required("token", &body.token)?;
        let enrollment_id = required("enrollment_id", &body.enrollment_id)?;
        enrollment::limit(&web.app, &site.source_ip, token)?;
        let finish = enrollment::finish(
            &web.app,
            enrollment_id,
            token,
            &body.registration_response_json,
            &site.source_ip,
            Some(&site.tenant.id),
        );
        counted_enrollment("webauthn", finish).await
    }
    .await;
    let credential = match result {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let mut response = Json(json!({
        "state": "enrolled",
        "credential_id": credential.id,
        "device_id": credential.device_id,
        "format": credential.format,
        "attested": credential.attested,
        "tier": credential.tier.as_str(),
        "trust_anchor": credential.trust_anchor,
        "attestation_reason": credential.attestation_reason,
    }))
    .into_response();
    // Credential ids are base64url; the cookie only tells the presence page which key to ask for.
    let cookie = format!(
        "{DEVICE_COOKIE}={}; Path=/; Max-Age={DEVICE_COOKIE_MAX_AGE_S}; HttpOnly; Secure; SameSite=Strict",
        credential.id
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The open challenges of the credential the device cookie names, for this site's tenant only.
pub async fn pending(State(web): State<Arc<Web>>, site: Site, headers: HeaderMap) -> Response {
    let none = |reason: &str| Json(json!({"state": "none", "reason": reason})).into_response();
    let Some(credential_id) = cookie(&headers, DEVICE_COOKIE).filter(|c| is_token_like(c)) else {
        return none("This browser has not enrolled a device here yet: open your enrollment link first.");
    };
    let (credential, tenant, open) = match presence::open_challenges(&web.app, &credential_id).await {
        Ok(found) => found,
        Err(e @ (ApiError::NotFound(_) | ApiError::PermissionDenied(_))) => {
            return none(&format!("{e}: enroll this browser again with a new enrollment link."));
        }
        Err(e) => return refused(e),
    };
    if credential.tenant_id != site.tenant.id {
        return none("This browser's device belongs to another organization's site.");
    }
    let challenges: Vec<Value> = open
        .iter()
        .take(MAX_LISTED)
        .map(|c| {
            let options = presence::to_proto(c, &tenant);
            json!({
                "challenge_id": c.id,
                "issued_at_ms": c.issued_at_ms,
                "deadline_ms": c.deadline_ms,
                "request_options": object(&options.request_options_json),
            })
        })
        .collect();
    Json(json!({
        "state": "enrolled",
        "credential_id": credential.id,
        "device_id": credential.device_id,
        "challenges": challenges,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct AnswerBody {
    challenge_id: String,
    assertion_response_json: String,
}

pub async fn answer(State(web): State<Arc<Web>>, site: Site, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = site.post_refusal(&headers) {
        return refusal;
    }
    let body: AnswerBody = match parse(&headers, &body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let result = async {
        let challenge_id = required("challenge_id", &body.challenge_id)?;
        // The budgets and every check are the domain's, as for gRPC's AnswerChallenge.
        presence::answer(&web.app, challenge_id, &body.assertion_response_json, &site.source_ip, None).await
    }
    .await;
    match result {
        Ok(at) => Json(json!({"state": "answered", "verified_at_ms": at})).into_response(),
        Err(e) => refused(e),
    }
}
