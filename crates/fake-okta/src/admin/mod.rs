//! The admin API under `/__admin`: how tests and the demo change the org, inject faults,
//! read stats and move the clock. No auth (it is a test double) but loopback peers only, so
//! a fake bound to a public interface cannot be rewritten from outside.

mod control;
mod entities;
mod snapshot;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::de::DeserializeOwned;

use crate::error::OktaError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/__admin/state", get(snapshot::state))
        .route("/__admin/users", post(entities::create_user))
        .route(
            "/__admin/users/{id}",
            patch(entities::update_user).delete(entities::delete_user),
        )
        .route(
            "/__admin/users/{id}/lifecycle/{op}",
            post(entities::lifecycle),
        )
        .route("/__admin/groups", post(entities::create_group))
        .route(
            "/__admin/groups/{id}",
            patch(entities::update_group).delete(entities::delete_group),
        )
        .route(
            "/__admin/groups/{gid}/users/{uid}",
            put(entities::add_member).delete(entities::remove_member),
        )
        .route(
            "/__admin/apps/{app}/users/{uid}",
            put(entities::assign_user).delete(entities::unassign_user),
        )
        .route(
            "/__admin/apps/{app}/groups/{gid}",
            put(entities::assign_group).delete(entities::unassign_group),
        )
        .route(
            "/__admin/apps/{app}/push/{gid}",
            put(entities::push_group).delete(entities::unpush_group),
        )
        .route(
            "/__admin/faults",
            post(control::add_fault)
                .get(control::list_faults)
                .delete(control::clear_faults),
        )
        .route(
            "/__admin/faults/{id}",
            axum::routing::delete(control::remove_fault),
        )
        .route("/__admin/stats", get(control::stats))
        .route("/__admin/stats/reset", post(control::reset_stats))
        .route("/__admin/clock", post(control::clock))
        .route("/__admin/ratelimit/reset", post(control::reset_rate_limits))
        .route("/__admin/public-url", put(control::public_url))
        .route("/__admin/oauth", get(control::oauth_state))
        .route("/__admin/oauth/rotate-nonce", post(control::rotate_nonce))
        .route("/__admin/oauth/expire-tokens", post(control::expire_tokens))
}

/// Lets only loopback peers through.
pub async fn guard(req: Request, next: Next) -> Response {
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(addr)| addr.ip().to_canonical().is_loopback());
    if !loopback {
        return OktaError::forbidden().into_response();
    }
    next.run(req).await
}

/// Parses a JSON body; an empty body is `T`'s default when `T` has one.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, OktaError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| OktaError::malformed_body(e.to_string()))
}
