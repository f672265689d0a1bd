//! Okta's Management API: the only module that knows Okta's JSON and HTTP behaviour
//! (paging, rate-limit buckets, error bodies, authentication). `source` turns its listings
//! into the engine's `OktaSnapshot`; `auth` owns OAuth service-app tokens and DPoP.

pub mod auth;
pub mod client;
pub mod incremental;
pub mod paging;
pub mod ratelimit;
pub mod source;
pub mod wire;

pub use client::{Auth, ClientSettings, OktaClient};

#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    #[error("Okta client setup: {0}")]
    Setup(String),
    #[error("GET {url}: {message}")]
    Transport {
        url: String,
        timeout: bool,
        message: String,
    },
    #[error("GET {url}: HTTP {status}{}{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default(), summary.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        code: Option<String>,
        summary: Option<String>,
    },
    #[error("GET {url}: invalid response from Okta: {message}")]
    InvalidResponse { url: String, message: String },
    #[error("GET {url}: still rate limited after {attempts} waits for the window to reset")]
    RateLimited { url: String, attempts: usize },
    /// The token endpoint could not be reached, or its answer was not a token response.
    #[error("POST {url}: {message}")]
    TokenTransport { url: String, message: String },
    /// The token endpoint refused (OAuth `error`, e.g. `invalid_client`, `invalid_scope`).
    #[error("POST {url}: HTTP {status} {error}{}", description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    TokenRejected {
        url: String,
        status: u16,
        error: String,
        description: Option<String>,
    },
}

impl OktaError {
    /// Errors that may pass on their own: 5xx, timeouts and broken connections, invalid or
    /// truncated JSON. 4xx (bad token, missing permission, unknown app) will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::InvalidResponse { .. } | Self::TokenTransport { .. } => {
                true
            }
            Self::Status { status, .. } | Self::TokenRejected { status, .. } => *status >= 500,
            Self::Setup(_) | Self::RateLimited { .. } => false,
        }
    }
}
