//! `POST /oauth2/v1/token` on the org authorization server: the `client_credentials` grant
//! for the service app. Checks, in Okta's order of complaint: the grant type, the DPoP proof
//! (missing → `invalid_dpop_proof`; stale or absent nonce → `use_dpop_nonce` with a
//! `DPoP-Nonce` header), the client assertion (`invalid_client`), then the scopes. Errors
//! are OAuth's `{"error", "error_description"}`, never Okta's `errorCode` shape.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::jwt::{AssertionCheck, ProofCheck, verify_assertion, verify_proof};
use super::{AppConfig, OAuthError, ProofUse};
use crate::state::AppState;

pub const TOKEN_PATH: &str = "/oauth2/v1/token";
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The Okta API scopes granted to the fake's service app.
pub const GRANTED_SCOPES: [&str; 4] = [
    "okta.users.read",
    "okta.groups.read",
    "okta.apps.read",
    "okta.logs.read",
];

impl OAuthError {
    fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
}

/// Token answers must not be cached (RFC 6749 §5.1), errors included.
fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The token endpoint's answer: OAuth's JSON body (the API answers with a challenge).
impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(nonce) = self.nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            resp.headers_mut().insert(DPOP_NONCE, nonce);
        }
        no_store(&mut resp);
        resp
    }
}

pub async fn token(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    st.oauth.count_token_request();
    match issue(&st, &headers, &body) {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(status = e.status.as_u16(), error = e.error, description = %e.description, "oauth: token request refused");
            e.into_response()
        }
    }
}

fn issue(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let config = st
        .oauth
        .config
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_client("No client credentials found."))?;
    let mut form: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        form.entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server. Configured grant types: [client_credentials].",
        ));
    }
    let token_url = format!("{}{TOKEN_PATH}", st.base_for(headers));
    let now_ms = st.clock.now_ms();
    let jkt = dpop_binding(st, config, headers, &token_url, now_ms)?;
    authenticate_client(
        st,
        config,
        field("client_assertion_type"),
        field("client_assertion"),
        &token_url,
        now_ms,
    )?;
    let scopes = granted_scopes(field("scope"))?;
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    let scope = scopes.join(" ");
    let access_token = st.oauth.issue(config.token_ttl_secs, jkt, scopes, now_ms);
    tracing::info!(token_type, scope = %scope, "oauth: access token issued");
    let mut resp = Json(json!({
        "token_type": token_type,
        "expires_in": config.token_ttl_secs,
        "access_token": access_token,
        "scope": scope,
    }))
    .into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// The DPoP key the token will be bound to (its thumbprint), or `None` for a Bearer token
/// when the app does not require DPoP and the request sent no proof.
fn dpop_binding(
    st: &AppState,
    config: &AppConfig,
    headers: &HeaderMap,
    token_url: &str,
    now_ms: i64,
) -> Result<Option<String>, OAuthError> {
    let proof = match headers.get(DPOP).map(|v| v.to_str()) {
        None if config.dpop_required => {
            return Err(OAuthError::invalid_proof(
                "The DPoP proof JWT header is missing.",
            ));
        }
        None => return Ok(None),
        Some(Err(_)) => {
            return Err(OAuthError::invalid_proof(
                "The DPoP proof JWT is malformed.",
            ));
        }
        Some(Ok(proof)) => proof,
    };
    let check = ProofCheck {
        method: "POST",
        htu: token_url,
        access_token: None,
        now_s: now_ms / 1000,
    };
    let proof = verify_proof(proof, &check).map_err(OAuthError::invalid_proof)?;
    st.oauth
        .admit(&proof, ProofUse::TokenRequest, now_ms)
        .map_err(|r| OAuthError::refused(r, StatusCode::BAD_REQUEST, "Authorization server"))?;
    Ok(Some(proof.jkt))
}

/// `private_key_jwt`: the assertion must verify with the app's key and be used once.
fn authenticate_client(
    st: &AppState,
    config: &AppConfig,
    assertion_type: &str,
    assertion: &str,
    token_url: &str,
    now_ms: i64,
) -> Result<(), OAuthError> {
    if assertion_type != JWT_BEARER || assertion.is_empty() {
        return Err(OAuthError::invalid_client("No client credentials found."));
    }
    let check = AssertionCheck {
        client_id: &config.client_id,
        token_url,
        key: &config.public_key,
        family: config.family,
        now_s: now_ms / 1000,
    };
    let jti = verify_assertion(assertion, &check).map_err(OAuthError::invalid_client)?;
    if let Some(jti) = jti
        && !st.oauth.use_jti("assertion", &jti, now_ms)
    {
        return Err(OAuthError::invalid_client(
            "The client_assertion token has already been used.",
        ));
    }
    Ok(())
}

fn granted_scopes(requested: &str) -> Result<Vec<String>, OAuthError> {
    let scopes: Vec<String> = requested.split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The 'scope' parameter is required for the client_credentials grant.",
        ));
    }
    let refused: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !GRANTED_SCOPES.contains(s))
        .collect();
    if !refused.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "The following scopes are not allowed: {}",
                refused.join(", ")
            ),
        ));
    }
    Ok(scopes)
}
