//! An OAuth 2.0 service app on the org authorization server, as Okta runs it for API
//! Services apps: `client_credentials` with a `private_key_jwt` client assertion, DPoP-bound
//! access tokens (RFC 9449) on by default, and the resource-server checks the Management API
//! makes of `Authorization: DPoP <token>` requests.
//!
//! Owns the app's configuration (client id, public key, token lifetime, whether DPoP is
//! required), the issued tokens, the current DPoP nonce and the used `jti`s. `token` serves
//! `POST /oauth2/v1/token`; `resource` authenticates API requests; `jwt` verifies assertions
//! and proofs. All of it reads the fake's clock, so `POST /__admin/clock` ages tokens too.
//!
//! Stricter than Okta on purpose: after `POST /__admin/oauth/rotate-nonce` the API also
//! demands the current nonce in resource proofs (Okta's resource servers do not require one
//! today), so that a client's nonce retry on API requests can be exercised.

mod jwt;
pub mod resource;
pub mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use axum::http::StatusCode;
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use serde_json::{Value, json};

use self::jwt::Proof;
use crate::Options;

/// How long a used `jti` is remembered: longer than any assertion (≤ 1 h) or proof (±5 min)
/// stays acceptable.
const JTI_MEMORY_MS: i64 = 2 * 3600 * 1000;

/// The service app, as configured by the fake's options.
#[derive(Clone)]
pub struct AppConfig {
    pub client_id: String,
    pub public_key: DecodingKey,
    pub family: AlgorithmFamily,
    pub token_ttl_secs: u64,
    pub dpop_required: bool,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("client_id", &self.client_id)
            .field("family", &self.family)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("dpop_required", &self.dpop_required)
            .finish_non_exhaustive()
    }
}

impl AppConfig {
    /// `None` when the options configure no service app (SSWS only).
    pub fn from_options(options: &Options) -> anyhow::Result<Option<AppConfig>> {
        let (Some(client_id), Some(pem)) =
            (&options.oauth_client_id, &options.oauth_public_key_pem)
        else {
            anyhow::ensure!(
                options.oauth_client_id.is_none() && options.oauth_public_key_pem.is_none(),
                "an OAuth service app needs both a client id and a public key"
            );
            return Ok(None);
        };
        let (public_key, family) = match DecodingKey::from_rsa_pem(pem.as_bytes()) {
            Ok(key) => (key, AlgorithmFamily::Rsa),
            Err(_) => (
                DecodingKey::from_ec_pem(pem.as_bytes()).context(
                    "the OAuth public key is neither an RSA nor an EC public key in PEM",
                )?,
                AlgorithmFamily::Ec,
            ),
        };
        Ok(Some(AppConfig {
            client_id: client_id.clone(),
            public_key,
            family,
            token_ttl_secs: options.oauth_token_ttl_seconds.max(1),
            dpop_required: options.dpop_required,
        }))
    }
}

/// Where a DPoP proof was presented: the token endpoint always demands the current nonce,
/// the API only after a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofUse {
    TokenRequest,
    ApiRequest,
}

/// Why a verified proof is still refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Its `jti` was seen before.
    Replayed,
    /// It lacks the current nonce, which is given.
    NeedsNonce(String),
}

/// A refusal in OAuth's terms; the token endpoint and the API render it differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Sent as `DPoP-Nonce` (with `use_dpop_nonce`).
    pub nonce: Option<String>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            nonce: None,
        }
    }

    pub fn invalid_proof(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
    }

    /// The answer to a verified proof that `OAuth::admit` refused.
    pub fn refused(refused: Refused, status: StatusCode, server: &str) -> Self {
        match refused {
            Refused::Replayed => Self::invalid_proof(jwt::REPLAYED),
            Refused::NeedsNonce(nonce) => Self {
                nonce: Some(nonce),
                ..Self::new(
                    status,
                    "use_dpop_nonce",
                    format!("{server} requires nonce in DPoP proof."),
                )
            },
        }
    }
}

/// One issued access token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub expires_at_ms: i64,
    /// `cnf.jkt`: the SHA-256 thumbprint of the DPoP key it is bound to (None: Bearer).
    pub jkt: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    nonce: String,
    /// Set by the first nonce rotation; see the module docs.
    resource_nonce_required: bool,
    tokens: HashMap<String, Issued>,
    used_jtis: HashMap<String, i64>,
    token_requests: u64,
}

/// The service app's state; inert when `config` is `None`.
#[derive(Debug)]
pub struct OAuth {
    pub config: Option<AppConfig>,
    inner: Mutex<Inner>,
}

fn random_string(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl OAuth {
    pub fn new(config: Option<AppConfig>) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                nonce: random_string("n-"),
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a `jti`; false when it was already used (a replay).
    pub fn use_jti(&self, kind: &str, jti: &str, now_ms: i64) -> bool {
        let mut inner = self.lock();
        inner
            .used_jtis
            .retain(|_, at| now_ms.saturating_sub(*at) < JTI_MEMORY_MS);
        inner
            .used_jtis
            .insert(format!("{kind}:{jti}"), now_ms)
            .is_none()
    }

    /// The state-dependent checks of a verified proof: a fresh `jti`, then the nonce.
    pub fn admit(&self, proof: &Proof, used_for: ProofUse, now_ms: i64) -> Result<(), Refused> {
        if !self.use_jti("dpop", &proof.jti, now_ms) {
            return Err(Refused::Replayed);
        }
        let inner = self.lock();
        let nonce_required = used_for == ProofUse::TokenRequest || inner.resource_nonce_required;
        if nonce_required && proof.nonce.as_deref() != Some(inner.nonce.as_str()) {
            return Err(Refused::NeedsNonce(inner.nonce.clone()));
        }
        Ok(())
    }

    pub fn count_token_request(&self) {
        self.lock().token_requests += 1;
    }

    /// Issues a new access token valid for the configured lifetime.
    pub fn issue(
        &self,
        ttl_secs: u64,
        jkt: Option<String>,
        scopes: Vec<String>,
        now_ms: i64,
    ) -> String {
        let token = random_string("fk.at.");
        let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.lock().tokens.insert(
            token.clone(),
            Issued {
                expires_at_ms: now_ms.saturating_add(ttl_ms),
                jkt,
                scopes,
            },
        );
        token
    }

    pub fn token(&self, value: &str) -> Option<Issued> {
        self.lock().tokens.get(value).cloned()
    }

    /// `POST /__admin/oauth/rotate-nonce`: a new nonce, and from now on resource proofs
    /// must carry it too.
    pub fn rotate_nonce(&self) -> String {
        let mut inner = self.lock();
        inner.nonce = random_string("n-");
        inner.resource_nonce_required = true;
        inner.nonce.clone()
    }

    /// `POST /__admin/oauth/expire-tokens`: every issued token stops working.
    pub fn expire_tokens(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.tokens.len();
        inner.tokens.clear();
        n
    }

    /// `GET /__admin/oauth`: the app and its tokens, for tests (a test double may show them).
    pub fn snapshot(&self, now_ms: i64) -> Value {
        let inner = self.lock();
        let tokens: Vec<Value> = inner
            .tokens
            .iter()
            .map(|(value, t)| {
                json!({
                    "access_token": value,
                    "token_type": if t.jkt.is_some() { "DPoP" } else { "Bearer" },
                    "expires_in": (t.expires_at_ms - now_ms).max(0) / 1000,
                    "scope": t.scopes.join(" "),
                })
            })
            .collect();
        json!({
            "client_id": self.config.as_ref().map(|c| c.client_id.clone()),
            "dpop_required": self.config.as_ref().map(|c| c.dpop_required),
            "nonce": inner.nonce,
            "resource_nonce_required": inner.resource_nonce_required,
            "token_requests": inner.token_requests,
            "tokens": tokens,
        })
    }
}
