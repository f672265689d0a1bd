//! The daemon's HTTP server: the inbound SCIM endpoint plus `/healthz` (the process
//! answers) and `/readyz` (the store answers).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::scim::{self, ScimState};

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<ScimState>>) -> (StatusCode, String) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        ),
    }
}

pub fn app(state: Arc<ScimState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.clone())
        .merge(scim::router(state))
}
