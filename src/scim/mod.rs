//! The inbound SCIM 2.0 endpoint at `/hook/scim/workspaces/{id}`, as Bytebase exposes it:
//! routes, bearer-token authentication, SCIM error responses and request limits. Every
//! write becomes an engine operation applied through `reconcile::apply` (journaled like a
//! pull), so push and pull converge on one state.

mod discovery;
pub mod filter;
mod handlers;
pub mod patch;
mod render;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::scim_wire::ScimError;
use crate::store::Store;
use crate::targets::Targets;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest page served (`count` is capped to it, and it is advertised).
pub const MAX_PAGE: i64 = 200;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A workspace's inbound SCIM bearer token, kept only as its SHA-256.
#[derive(Clone)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// From a hex SHA-256 (`scim_token_sha256` in the config).
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    fn matches(&self, presented: &[u8; 32]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

pub struct ScimState {
    pub store: Store,
    pub target: Targets,
    tokens: HashMap<String, TokenHash>,
    /// Compared against when the workspace is unknown, so that an unknown workspace and a
    /// wrong token take the same time and give the same answer.
    decoy: TokenHash,
}

impl ScimState {
    pub fn new(store: Store, tokens: HashMap<String, TokenHash>) -> Self {
        Self {
            target: Targets::local_only(&store),
            store,
            tokens,
            decoy: TokenHash::of(&uuid::Uuid::new_v4().to_string()),
        }
    }

    /// Routes writes of workspaces with a downstream target to it.
    pub fn with_targets(mut self, targets: Targets) -> Self {
        self.target = targets;
        self
    }

    fn authorized(&self, workspace_id: &str, authorization: Option<&str>) -> bool {
        let presented = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(|t| TokenHash::of(t.trim()).0);
        let expected = self.tokens.get(workspace_id);
        let against = expected.unwrap_or(&self.decoy);
        let ok = against.matches(&presented.unwrap_or([0; 32]));
        ok && expected.is_some() && presented.is_some()
    }
}

/// A SCIM error as an HTTP response with the RFC 7644 body.
pub struct ScimResponseError(pub ScimError);

impl From<ScimError> for ScimResponseError {
    fn from(e: ScimError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ScimResponseError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.0.body().to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(render::SCIM_JSON),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"oktasync\""),
            );
        }
        response
    }
}

async fn authenticate(
    State(state): State<Arc<ScimState>>,
    request: Request,
    next: Next,
) -> Response {
    let workspace = request
        .uri()
        .path()
        .strip_prefix("/hook/scim/workspaces/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.authorized(&workspace, authorization) {
        return ScimResponseError(ScimError::new(401, None, "missing or invalid bearer token"))
            .into_response();
    }
    next.run(request).await
}

/// The SCIM routes, authenticated, with body and time limits.
pub fn router(state: Arc<ScimState>) -> Router {
    let routes = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{name}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{urn}", get(discovery::schema))
        .route(
            "/Users",
            get(handlers::list_users).post(handlers::create_user),
        )
        .route("/.search", post(handlers::search_all))
        .route("/Users/.search", post(handlers::search_users))
        .route("/Groups/.search", post(handlers::search_groups))
        .route(
            "/Users/{id}",
            get(handlers::get_user)
                .put(handlers::replace_user)
                .patch(handlers::patch_user)
                .delete(handlers::delete_user),
        )
        .route(
            "/Groups",
            get(handlers::list_groups).post(handlers::create_group),
        )
        .route(
            "/Groups/{id}",
            get(handlers::get_group)
                .put(handlers::replace_group)
                .patch(handlers::patch_group)
                .delete(handlers::delete_group),
        )
        .fallback(|| async { ScimResponseError(ScimError::not_found("no such SCIM endpoint")) });
    Router::new()
        .nest("/hook/scim/workspaces/{workspace}", routes)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // Bodies are limited by the handlers, which answer 413 with a SCIM error.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}
