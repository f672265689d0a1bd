//! Turning a served response into the one a fault asks for (the headers a fault changes are
//! set by the middleware).

use axum::body::{Body, to_bytes};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};

use crate::error::OktaError;
use crate::faults::{FaultKind, FaultSpec};

/// Okta pages are a few MB at most; anything larger is not worth truncating precisely.
const MAX_BODY: usize = 256 * 1024 * 1024;

pub async fn apply(spec: &FaultSpec, resp: Response) -> Response {
    match spec.kind {
        FaultKind::Status => {
            let status =
                StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            OktaError::for_status(status).into_response()
        }
        FaultKind::InvalidJson => {
            // What a misbehaving proxy in front of Okta might send with a 200.
            (
                StatusCode::OK,
                "<html><body>upstream temporarily unavailable</body></html>",
            )
                .into_response()
        }
        FaultKind::TruncatedJson => {
            let (mut parts, body) = resp.into_parts();
            let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
            let half = bytes.slice(..bytes.len() / 2);
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(half))
        }
        FaultKind::Delay => {
            tokio::time::sleep(std::time::Duration::from_millis(spec.delay_ms)).await;
            resp
        }
        FaultKind::DuplicateResetHeader => resp,
        FaultKind::Concurrency429 => OktaError::rate_limited().into_response(),
    }
}
