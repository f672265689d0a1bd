//! Okta's error body and the error codes the fake answers with.
//!
//! Every error, from the Okta API and the admin API alike, is Okta's
//! `{errorCode, errorSummary, errorLink, errorId, errorCauses}` shape, because clients may
//! only branch on `errorCode` and the daemon's error handling is tested against these bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ids;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaError {
    pub status: StatusCode,
    pub code: &'static str,
    pub summary: String,
    pub causes: Vec<String>,
}

impl OktaError {
    pub fn new(status: StatusCode, code: &'static str, summary: impl Into<String>) -> Self {
        Self {
            status,
            code,
            summary: summary.into(),
            causes: Vec::new(),
        }
    }

    /// 404 E0000007 `Not found: Resource not found: <id> (<kind>)`, exactly as Okta words it.
    pub fn not_found(id: &str, kind: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "E0000007",
            format!("Not found: Resource not found: {id} ({kind})"),
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        )
    }

    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        )
    }

    pub fn invalid_search() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000031",
            "Invalid search criteria.",
        )
    }

    /// System Log parameter errors use E0000053.
    pub fn invalid_log_param(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000053",
            format!("Invalid parameter: {detail}"),
        )
    }

    /// Real Okta answers an unknown API path with 404 and E0000022.
    pub fn unknown_endpoint() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
        )
    }

    /// 400 E0000001 with one cause, e.g. `login: An object with this field already exists…`.
    pub fn validation(cause: impl Into<String>) -> Self {
        let cause = cause.into();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "E0000001",
            format!("Api validation failed: {cause}"),
        );
        e.causes.push(cause);
        e
    }

    pub fn malformed_body(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "E0000003",
            "The request body was not well-formed.",
        );
        e.causes.push(detail.into());
        e
    }

    /// The body Okta sends for a given status, used by injected `status` faults.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, summary) = match status.as_u16() {
            400 => ("E0000001", "Api validation failed"),
            401 => ("E0000011", "Invalid token provided"),
            403 => (
                "E0000006",
                "You do not have permission to perform the requested action",
            ),
            404 => ("E0000007", "Not found: Resource not found"),
            405 => (
                "E0000022",
                "The endpoint does not support the provided HTTP method",
            ),
            429 => (
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            ),
            503 => ("E0000010", "Service is in read only mode"),
            _ => ("E0000009", "Internal Server Error"),
        };
        Self::new(status, code, summary)
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error_code: self.code,
            error_summary: &self.summary,
            error_link: self.code,
            error_id: ids::error_id(),
            error_causes: self
                .causes
                .iter()
                .map(|c| Cause { error_summary: c })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    error_code: &'a str,
    error_summary: &'a str,
    error_link: &'a str,
    error_id: String,
    error_causes: Vec<Cause<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Cause<'a> {
    error_summary: &'a str,
}

impl IntoResponse for OktaError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = OktaError::not_found("x@example.com", "User");
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(v["errorCode"], "E0000007");
        assert_eq!(v["errorLink"], "E0000007");
        assert_eq!(
            v["errorSummary"],
            "Not found: Resource not found: x@example.com (User)"
        );
        assert!(v["errorId"].as_str().unwrap().starts_with("oae"));
        assert_eq!(v["errorCauses"], serde_json::json!([]));
        let v =
            serde_json::to_value(OktaError::for_status(StatusCode::INTERNAL_SERVER_ERROR).body())
                .unwrap();
        assert_eq!(v["errorCode"], "E0000009");
    }
}
