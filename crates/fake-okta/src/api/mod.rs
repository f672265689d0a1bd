//! The Okta Management API surface: routes, and the middleware every Okta request passes
//! through (rate-limit bucket, auth: SSWS or an OAuth access token, faults, Okta's standard
//! headers, stats). The org authorization server's token endpoint passes through it too (its
//! own bucket, no API auth: the grant authenticates the client).
//!
//! Order matters and mirrors Okta: the request is counted against its bucket first (a 429
//! carries no other processing), then authenticated, then served; faults act on the served
//! response because page-targeted faults need to know which page was served.

mod apps;
mod groups;
mod inject;
mod logs;
mod users;

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, DATE};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::admin;
use crate::clock::{http_date, real_now_ms};
use crate::error::OktaError;
use crate::faults::FaultKind;
use crate::oauth;
use crate::oauth::resource::ApiRequest;
use crate::oauth::token::TOKEN_PATH;
use crate::paging::{PageNumber, QueryParams, ReqCtx};
use crate::ratelimit::{Bucket, Decision};
use crate::state::AppState;
use crate::stats::RequestRecord;

/// The whole HTTP app: Okta API, admin API, Okta-style 404/405 for everything else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/users", get(users::list))
        .route("/api/v1/users/{id}", get(users::get_one))
        .route("/api/v1/groups", get(groups::list))
        .route("/api/v1/groups/{id}", get(groups::get_one))
        .route("/api/v1/groups/{id}/users", get(groups::members))
        .route("/api/v1/apps/{app}/users", get(apps::users))
        .route("/api/v1/apps/{app}/users/{user}", get(apps::user))
        .route("/api/v1/apps/{app}/groups", get(apps::groups))
        .route(
            "/api/v1/apps/{app}/group-push/mappings",
            get(apps::push_mappings),
        )
        .route("/api/v1/logs", get(logs::list))
        .route(TOKEN_PATH, post(oauth::token::token))
        .merge(admin::router())
        .fallback(|| async { OktaError::unknown_endpoint() })
        .method_not_allowed_fallback(|| async { OktaError::method_not_allowed() })
        .layer(from_fn_with_state(state.clone(), dispatch))
        .with_state(state)
}

async fn dispatch(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/__admin" || path.starts_with("/__admin/") {
        return admin::guard(req, next).await;
    }
    okta(st, req, next).await
}

/// `SSWS <api token>` always works; `DPoP`/`Bearer <access token>` when a service app is
/// configured. Returns the whole answer to a refused request (401 E0000011, or OAuth's
/// challenges), `None` when the request may be served.
fn refusal(st: &AppState, req: &Request) -> Option<Response> {
    let headers = req.headers();
    let Some((scheme, credential)) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, c)| (scheme, c.trim()))
    else {
        return Some(OktaError::invalid_token().into_response());
    };
    if scheme.eq_ignore_ascii_case("SSWS") && credential == st.api_token {
        return None;
    }
    let oauth_scheme = scheme.eq_ignore_ascii_case("DPoP") || scheme.eq_ignore_ascii_case("Bearer");
    if !oauth_scheme || st.oauth.config.is_none() {
        return Some(OktaError::invalid_token().into_response());
    }
    oauth::resource::refusal(
        st,
        &ApiRequest {
            scheme,
            token: credential,
            headers,
            method: req.method().as_str(),
            path: req.uri().path(),
        },
    )
}

async fn okta(st: AppState, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().to_string();
    let bucket = Bucket::for_path(&path);
    let decision = st.limiter.check(bucket, Instant::now(), real_now_ms());
    let mut fault = None;
    let mut resp = if !decision.allowed {
        OktaError::rate_limited().into_response()
    } else if let Some(refused) = (path != TOKEN_PATH).then(|| refusal(&st, &req)).flatten() {
        refused
    } else {
        let ctx = ReqCtx {
            base: st.base_for(req.headers()),
            path: path.clone(),
            query: QueryParams::parse(&raw_query),
            wants_page: st.faults.wants_page(&path),
        };
        req.extensions_mut().insert(ctx);
        let resp = next.run(req).await;
        let page = resp.extensions().get::<PageNumber>().map(|p| p.0);
        match st.faults.take(&path, page) {
            Some(spec) => {
                tracing::info!(path = %path, ?page, kind = ?spec.kind, "injecting fault");
                fault = Some(spec.kind);
                inject::apply(&spec, resp).await
            }
            None => resp,
        }
    };
    okta_headers(&st, &mut resp, &decision, fault);
    let status = resp.status().as_u16();
    tracing::debug!(%method, path = %path, query = %raw_query, status, bucket = bucket.name(), remaining = decision.remaining, "okta request");
    st.stats.record(
        bucket,
        RequestRecord {
            method,
            path,
            query: raw_query,
            status,
        },
    );
    resp
}

fn num(n: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"))
}

const RL_LIMIT: HeaderName = HeaderName::from_static("x-rate-limit-limit");
const RL_REMAINING: HeaderName = HeaderName::from_static("x-rate-limit-remaining");
const RL_RESET: HeaderName = HeaderName::from_static("x-rate-limit-reset");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-okta-request-id");

/// Headers Okta puts on every API response.
fn okta_headers(st: &AppState, resp: &mut Response, d: &Decision, fault: Option<FaultKind>) {
    let throttled = resp.status().as_u16() == 429;
    let (limit, remaining) = match fault {
        Some(FaultKind::Concurrency429) => (0, 0),
        _ if throttled => (d.limit, 0),
        _ => (d.limit, d.remaining),
    };
    let reset = d.reset_secs(st.clock.offset_ms());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&st.ids.request_id()) {
        h.insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(st.clock.now_ms())) {
        h.insert(DATE, v);
    }
    // Okta labels every body JSON, even the broken ones the faults produce.
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(RL_LIMIT, num(limit));
    h.insert(RL_REMAINING, num(remaining));
    if fault == Some(FaultKind::DuplicateResetHeader) {
        // The later value first: a client that trusts the first line over-waits; the
        // documented remedy (Okta's Python SDK) takes the minimum.
        h.append(RL_RESET, num(reset + 60));
    }
    h.append(RL_RESET, num(reset));
}

#[cfg(test)]
mod tests;
