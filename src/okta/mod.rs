//! Okta's Management API: the only module that knows Okta's JSON and HTTP behaviour
//! (paging, rate-limit buckets, error bodies, authentication). `source` turns its listings
//! into the engine's `OktaSnapshot`.

pub mod client;
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
}

impl OktaError {
    /// Errors that may pass on their own: 5xx, timeouts and broken connections, invalid or
    /// truncated JSON. 4xx (bad token, missing permission, unknown app) will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::InvalidResponse { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Setup(_) | Self::RateLimited { .. } => false,
        }
    }
}
