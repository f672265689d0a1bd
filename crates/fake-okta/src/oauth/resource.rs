//! The Management API as an OAuth resource server: `Authorization: DPoP <token>` with a
//! `DPoP` proof (or `Bearer <token>` for tokens issued without one).
//!
//! Failures answer like Okta: a bad proof is 400 and a bad or expired token 401, each with
//! `WWW-Authenticate: DPoP algs=…, authorization_uri=…, realm=…, scope=…, error=…,
//! error_description=…, resource=…`; a missing scope is 403 `insufficient_scope`. After a
//! nonce rotation a proof without the current nonce gets 401 `use_dpop_nonce` and a
//! `DPoP-Nonce` header (stricter than Okta; see the module docs of `oauth`).

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::jwt::{DPOP_ALGS, ProofCheck, verify_proof};
use super::token::{DPOP, DPOP_NONCE};
use super::{Issued, OAuthError as Refusal, ProofUse};
use crate::error::OktaError;
use crate::state::AppState;

/// One API request's credentials, as the middleware found them.
pub struct ApiRequest<'a> {
    /// `Bearer` or `DPoP`, as sent.
    pub scheme: &'a str,
    pub token: &'a str,
    pub headers: &'a HeaderMap,
    pub method: &'a str,
    pub path: &'a str,
}

fn invalid_token(description: &str) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
}

/// The scopes an API path needs (SPEC, per operation).
pub fn required_scopes(path: &str) -> &'static [&'static str] {
    let rest = path.strip_prefix("/api/v1/").unwrap_or_default();
    let first = rest.split('/').next().unwrap_or_default();
    match first {
        "users" => &["okta.users.read"],
        "groups" => &["okta.groups.read"],
        "apps" if rest.contains("/group-push/") => &["okta.apps.read", "okta.groups.read"],
        "apps" => &["okta.apps.read"],
        "logs" => &["okta.logs.read"],
        _ => &[],
    }
}

/// Checks an OAuth-authenticated API request: the complete answer when it is refused,
/// `None` when it may be served.
pub fn refusal(st: &AppState, req: &ApiRequest<'_>) -> Option<Response> {
    let scheme = if req.scheme.eq_ignore_ascii_case("DPoP") {
        "DPoP"
    } else {
        "Bearer"
    };
    let refused = check(st, req, scheme).err()?;
    tracing::info!(path = %req.path, status = refused.status.as_u16(), error = refused.error, description = %refused.description, "oauth: API request refused");
    Some(respond(st, req, scheme, refused))
}

fn check(st: &AppState, req: &ApiRequest<'_>, scheme: &str) -> Result<(), Refusal> {
    let now_ms = st.clock.now_ms();
    let issued = match st.oauth.token(req.token) {
        Some(t) if now_ms < t.expires_at_ms => t,
        Some(_) => return Err(invalid_token("The access token is expired.")),
        None => return Err(invalid_token("The access token is invalid.")),
    };
    match (&issued.jkt, scheme) {
        (Some(jkt), "DPoP") => check_proof(st, req, jkt, now_ms)?,
        (None, "Bearer") => {}
        // A DPoP-bound token sent as Bearer, or a Bearer token sent as DPoP (RFC 9449 §7.2).
        _ => {
            return Err(invalid_token(
                "The access token was presented with the wrong authorization scheme.",
            ));
        }
    }
    check_scope(&issued, req.path)
}

fn check_proof(st: &AppState, req: &ApiRequest<'_>, jkt: &str, now_ms: i64) -> Result<(), Refusal> {
    let proof = req
        .headers
        .get(DPOP)
        .ok_or_else(|| Refusal::invalid_proof("The DPoP proof JWT header is missing."))?
        .to_str()
        .map_err(|_| Refusal::invalid_proof("The DPoP proof JWT is malformed."))?;
    let htu = format!("{}{}", st.base_for(req.headers), req.path);
    let check = ProofCheck {
        method: req.method,
        htu: &htu,
        access_token: Some(req.token),
        now_s: now_ms / 1000,
    };
    let proof = verify_proof(proof, &check).map_err(Refusal::invalid_proof)?;
    if proof.jkt != jkt {
        return Err(Refusal::invalid_proof(
            "The DPoP proof JWT key does not match the access token's confirmation (cnf.jkt).",
        ));
    }
    st.oauth
        .admit(&proof, ProofUse::ApiRequest, now_ms)
        .map_err(|r| Refusal::refused(r, StatusCode::UNAUTHORIZED, "Resource server"))
}

fn check_scope(issued: &Issued, path: &str) -> Result<(), Refusal> {
    let missing: Vec<&str> = required_scopes(path)
        .iter()
        .copied()
        .filter(|s| !issued.scopes.iter().any(|g| g == s))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "The access token provided does not contain the required scopes: {}",
                missing.join(" ")
            ),
        ))
    }
}

/// Okta's challenge, built like the one in okta/okta-sdk-nodejs#453, with an Okta error body.
fn respond(st: &AppState, req: &ApiRequest<'_>, scheme: &str, refusal: Refusal) -> Response {
    let base = st.base_for(req.headers);
    let challenge = format!(
        "{scheme} algs=\"{DPOP_ALGS}\", authorization_uri=\"{base}/oauth2/v1/authorize\", realm=\"{base}\", scope=\"{}\", error=\"{}\", error_description=\"{}\", resource=\"{}\"",
        required_scopes(req.path).join(" "),
        refusal.error,
        refusal.description.replace('"', "'"),
        req.path,
    );
    let mut body = match refusal.status {
        StatusCode::FORBIDDEN => OktaError::forbidden(),
        _ => OktaError::invalid_token(),
    };
    body.status = refusal.status;
    body.causes.push(refusal.description);
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    if let Some(nonce) = refusal.nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        resp.headers_mut().insert(DPOP_NONCE, nonce);
    }
    resp
}
