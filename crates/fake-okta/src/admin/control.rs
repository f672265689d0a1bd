//! Admin controls that are not org data: faults, stats, the clock, rate-limit windows, the
//! public URL (for a proxy in front of the fake) and the OAuth service app (its nonce and
//! tokens).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_body;
use crate::clock::TsMillis;
use crate::error::OktaError;
use crate::faults::FaultSpec;
use crate::state::AppState;

pub async fn add_fault(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, OktaError> {
    let spec: FaultSpec = parse_body(&body)?;
    tracing::info!(path = %spec.path, page = ?spec.page, kind = ?spec.kind, times = ?spec.times, "admin: fault added");
    let id = st.faults.add(spec).map_err(OktaError::validation)?;
    Ok(Json(json!({ "id": id })))
}

pub async fn list_faults(State(st): State<AppState>) -> Json<Value> {
    Json(json!(st.faults.list()))
}

pub async fn clear_faults(State(st): State<AppState>) -> StatusCode {
    st.faults.clear();
    StatusCode::NO_CONTENT
}

pub async fn remove_fault(State(st): State<AppState>, Path(id): Path<u64>) -> Response {
    if st.faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        OktaError::not_found(&id.to_string(), "Fault").into_response()
    }
}

pub async fn stats(State(st): State<AppState>) -> Json<Value> {
    Json(st.stats.snapshot())
}

pub async fn reset_stats(State(st): State<AppState>) -> StatusCode {
    st.stats.reset();
    StatusCode::NO_CONTENT
}

pub async fn reset_rate_limits(State(st): State<AppState>) -> StatusCode {
    st.limiter.reset();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicUrlBody {
    url: Option<String>,
}

/// Sets (or with `{"url": null}` clears) the origin put in `link` headers, `_links` and
/// expected in DPoP `htu` and client-assertion `aud`: the proxy's, when a proxy in front of
/// the fake rewrites `Host` to the fake's address (Prism's validating proxy does).
pub async fn public_url(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, OktaError> {
    let req: PublicUrlBody = parse_body(&body)?;
    let url = match req.url {
        Some(url) => Some(origin(&url).ok_or_else(|| {
            OktaError::validation(format!(
                "url {url:?} must be an origin like http://127.0.0.1:8080 (no path)"
            ))
        })?),
        None => None,
    };
    tracing::info!(url = ?url, "admin: public URL set");
    *st.public_url.write().unwrap_or_else(|e| e.into_inner()) = url.clone();
    Ok(Json(json!({ "url": url })))
}

/// `scheme://host[:port]` without a trailing slash, or `None` for anything else.
fn origin(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, authority) = url.split_once("://")?;
    let scheme_ok = scheme == "http" || scheme == "https";
    let authority_ok = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    (scheme_ok && authority_ok).then(|| url.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_seconds: i64,
}

pub async fn clock(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, OktaError> {
    let req: ClockBody = parse_body(&body)?;
    let offset_ms = st.clock.advance(req.advance_seconds);
    tracing::info!(offset_ms, "admin: clock moved");
    Ok(Json(json!({
        "offset_seconds": offset_ms / 1000,
        "now": TsMillis(st.clock.now_ms()).to_string(),
    })))
}

fn oauth_configured(st: &AppState) -> Result<(), OktaError> {
    match st.oauth.config {
        Some(_) => Ok(()),
        None => Err(OktaError::validation(
            "no OAuth service app is configured (--oauth-client-id, --oauth-public-key-file)",
        )),
    }
}

/// The service app, its current nonce and its live tokens (a test double may show them).
pub async fn oauth_state(State(st): State<AppState>) -> Result<Json<Value>, OktaError> {
    oauth_configured(&st)?;
    Ok(Json(st.oauth.snapshot(st.clock.now_ms())))
}

pub async fn rotate_nonce(State(st): State<AppState>) -> Result<Json<Value>, OktaError> {
    oauth_configured(&st)?;
    let nonce = st.oauth.rotate_nonce();
    tracing::info!("admin: DPoP nonce rotated; API proofs now need it too");
    Ok(Json(json!({ "nonce": nonce })))
}

pub async fn expire_tokens(State(st): State<AppState>) -> Result<Json<Value>, OktaError> {
    oauth_configured(&st)?;
    let expired = st.oauth.expire_tokens();
    tracing::info!(expired, "admin: every issued access token expired");
    Ok(Json(json!({ "expired": expired })))
}
