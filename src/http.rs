//! The daemon's HTTP server: the inbound SCIM endpoint (counted by route template for
//! metrics), `/healthz` (the process answers), `/readyz` (store reachable, Okta credentials
//! usable, cycles not failing beyond a grace), `/metrics` (Prometheus text) and `POST
//! /admin/sync` (a manual cycle, with the admin bearer token).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::daemon::shared::Daemon;
use crate::scim::{self, ScimState};

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(daemon): State<Arc<Daemon>>) -> (StatusCode, String) {
    let reasons = daemon.unready_reasons().await;
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", reasons.join("\n")),
        )
    }
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> Response {
    // Okta's per-bucket figures are sampled now rather than pushed by the client.
    crate::metrics::record_okta(&daemon.okta_totals());
    match crate::metrics::render() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are not set up\n").into_response(),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A manual cycle on this instance, serialised with every other through the store's cycle
/// lock: accepted at once (202), run as soon as no other cycle runs.
async fn admin_sync(State(daemon): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match daemon.admin_authorized(authorization) {
        None => {
            return json_error(
                StatusCode::NOT_FOUND,
                "the admin API is off: set server.admin_token",
            );
        }
        Some(false) => {
            let mut response =
                json_error(StatusCode::UNAUTHORIZED, "missing or invalid admin token");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"oktasync-admin\""),
            );
            return response;
        }
        Some(true) => {}
    }
    if daemon.stop.is_cancelled() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    daemon.request_manual();
    tracing::info!(instance = %daemon.instance, "manual cycle requested over HTTP");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": true, "instance": daemon.instance })),
    )
        .into_response()
}

pub fn app(scim: Arc<ScimState>, daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/sync", post(admin_sync))
        .with_state(daemon)
        .merge(scim::router(scim).layer(axum::middleware::from_fn(crate::metrics::track_scim)))
}
