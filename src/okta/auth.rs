//! OAuth 2.0 for Okta service apps: the `client_credentials` grant against the org
//! authorization server (`{org}/oauth2/v1/token`) with a `private_key_jwt` client assertion,
//! DPoP (RFC 9449) proofs from an ephemeral P-256 key, and the access-token cache.
//!
//! Owns: loading the service app's private key (RSA → RS256, EC P-256 → ES256), building
//! assertions and proofs, the token request and its `use_dpop_nonce` retry, refreshing the
//! token before it expires (single-flight), and deciding whether a rejected API request is
//! worth one more try (a new nonce, or a new token after a 401). Pacing, 429s on API
//! buckets and backoff stay in `client.rs`; token-endpoint calls never touch the API buckets
//! because Okta counts them in the org-wide `/oauth2/v1/token` bucket.
//!
//! Secrets (the private key, tokens, assertions, proofs) are never logged or put in errors.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::OktaError;
use super::ratelimit::RateHeaders;

/// The read scopes oktasync needs (users, groups and group members, app assignments, logs).
pub const DEFAULT_SCOPES: &str = "okta.users.read okta.groups.read okta.apps.read okta.logs.read";
/// The org authorization server's token endpoint (service apps cannot use custom ones).
pub const TOKEN_PATH: &str = "/oauth2/v1/token";
/// Okta accepts assertions up to an hour ahead; five minutes keeps a leaked one short-lived.
const ASSERTION_LIFETIME_SECS: u64 = 300;
/// Refresh once this share of `expires_in` has passed, well before Okta rejects the token.
const REFRESH_AT: f64 = 0.8;
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Why a private key file cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("is an encrypted private key; give an unencrypted PKCS#8 or PKCS#1 PEM file")]
    Encrypted,
    #[error("holds no PEM private key (a public key or certificate is not enough)")]
    NoPrivateKey,
    #[error("is not a valid PEM file")]
    BadPem,
    #[error("is neither an RSA nor an EC P-256 private key")]
    Unsupported,
    #[error("cannot sign with {alg:?}: {reason}")]
    Unusable { alg: Algorithm, reason: String },
}

/// The service app's private key and the JWS algorithm it signs client assertions with.
#[derive(Clone)]
pub struct ClientKey {
    key: EncodingKey,
    alg: Algorithm,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads a PEM private key: PKCS#1 or PKCS#8 RSA (RS256), PKCS#8 or SEC1 EC P-256
    /// (ES256). The key signs once here so that a bad key fails at load time, not mid-sync.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Encrypted);
        }
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => KeyError::NoPrivateKey,
            _ => KeyError::BadPem,
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => Self {
                key: EncodingKey::from_rsa_der(k.secret_pkcs1_der()),
                alg: Algorithm::RS256,
            },
            PrivateKeyDer::Sec1(k) => Self::p256(k.secret_sec1_der())?,
            PrivateKeyDer::Pkcs8(k) => match Self::p256(k.secret_pkcs8_der()) {
                Ok(key) => key,
                Err(_) => Self::rsa_pkcs8(k.secret_pkcs8_der())?,
            },
            _ => return Err(KeyError::Unsupported),
        };
        jsonwebtoken::crypto::sign(b"oktasync key check", &key.key, key.alg).map_err(|e| {
            KeyError::Unusable {
                alg: key.alg,
                reason: e.to_string(),
            }
        })?;
        Ok(key)
    }

    fn p256(der: &[u8]) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| KeyError::Unsupported)?;
        let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Unsupported)?;
        Ok(Self {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            alg: Algorithm::ES256,
        })
    }

    /// jsonwebtoken wants RSA keys as PKCS#1; its PEM reader unwraps PKCS#8 for us, so the
    /// one PKCS#8 section is handed over alone (the file may hold certificates too).
    fn rsa_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der)
        );
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| KeyError::Unsupported)?;
        Ok(Self {
            key,
            alg: Algorithm::RS256,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `[okta.oauth]` settings the client needs.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    pub client_id: String,
    pub key: ClientKey,
    /// The JWS `kid` of the client assertion (the key's id in the app's JWKS).
    pub key_id: Option<String>,
    /// Space-separated scopes.
    pub scopes: String,
    pub dpop: bool,
}

/// The ephemeral key DPoP proofs are signed with, generated at start-up and never stored.
struct DpopKey {
    key: EncodingKey,
    jwk: Jwk,
}

impl DpopKey {
    fn generate() -> Result<Self, OktaError> {
        let setup = |what: &str| OktaError::Setup(format!("generating the DPoP key: {what}"));
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| setup("key generation failed"))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| setup("serialisation failed"))?;
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk =
            Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| setup(&e.to_string()))?;
        Ok(Self { key, jwk })
    }

    fn sign(&self, claims: &ProofClaims<'_>) -> Result<String, OktaError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| OktaError::Setup(format!("signing a DPoP proof: {e}")))
    }
}

#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

#[derive(Debug, Serialize)]
struct ProofClaims<'a> {
    htm: &'a str,
    htu: String,
    iat: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn fresh_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `htu`: the request URL without query and fragment (RFC 9449 §4.2).
fn htu(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// `ath`: base64url(SHA-256(access token)), binding a resource proof to the token.
fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// How a request authenticates; the token value is only exposed to build the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Ssws,
    Bearer,
    DPoP,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ssws => "SSWS",
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
        }
    }
}

/// The credential one request is sent with; kept so that a rejected one can be replaced
/// without throwing away a token another request has already refreshed.
#[derive(Clone)]
pub struct Credential {
    pub scheme: Scheme,
    pub value: SecretString,
}

impl Credential {
    /// `Authorization: <scheme> <value>`, marked sensitive so it never shows in debug output.
    pub fn header(&self) -> Result<HeaderValue, OktaError> {
        let mut value = HeaderValue::from_str(&format!(
            "{} {}",
            self.scheme.as_str(),
            self.value.expose_secret()
        ))
        .map_err(|_| {
            OktaError::Setup(match self.scheme {
                Scheme::Ssws => "okta.api_token contains invalid characters".into(),
                _ => "Okta issued an access token with invalid characters".into(),
            })
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn same_token(&self, other: &Credential) -> bool {
        self.value.expose_secret() == other.value.expose_secret()
    }
}

struct CachedToken {
    credential: Credential,
    refresh_at: Instant,
    expires_at: Instant,
}

/// What a 400/401 from an API endpoint asks of an OAuth client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` with a `DPoP-Nonce`: retry with it.
    UseNonce,
    /// Any other 401: the token is expired or revoked; refresh it and retry.
    InvalidToken,
}

/// The auth retries one API request has used: one of each kind at most.
#[derive(Debug, Default)]
pub struct AuthRetries {
    nonce: bool,
    refresh: bool,
}

/// Token-endpoint 429 handling, lent by the client's rate-limit settings.
#[derive(Debug, Clone, Copy)]
pub struct TokenThrottle {
    pub max_throttled: usize,
    pub max_wait: Duration,
    pub margin: Duration,
}

#[derive(Deserialize)]
struct TokenResponse {
    token_type: String,
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// OAuth error bodies (`{"error", "error_description"}`); Okta's own `errorCode` shape is
/// read too, for answers from in front of the authorization server (e.g. a 429).
#[derive(Default, Deserialize)]
struct TokenErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    #[serde(rename = "errorSummary")]
    error_summary: Option<String>,
}

/// The OAuth half of the Okta client: one per `OktaClient`.
pub struct OAuthClient {
    settings: OAuthSettings,
    token_url: Url,
    dpop: Option<DpopKey>,
    throttle: TokenThrottle,
    /// Single-flight: whoever holds the lock refreshes; the others wait and reuse the result.
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// Nonces are per server (RFC 9449 §8): the authorization server's and the API's.
    token_nonce: Mutex<Option<String>>,
    resource_nonce: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl OAuthClient {
    pub fn new(
        settings: OAuthSettings,
        org_url: &Url,
        throttle: TokenThrottle,
    ) -> Result<Self, OktaError> {
        let token_url = org_url
            .join(TOKEN_PATH)
            .map_err(|e| OktaError::Setup(format!("token URL: {e}")))?;
        let dpop = if settings.dpop {
            Some(DpopKey::generate()?)
        } else {
            None
        };
        Ok(Self {
            settings,
            token_url,
            dpop,
            throttle,
            token: tokio::sync::Mutex::new(None),
            token_nonce: Mutex::new(None),
            resource_nonce: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one once 80% of its life has passed.
    pub async fn credential(&self, http: &reqwest::Client) -> Result<Credential, OktaError> {
        let mut cached = self.token.lock().await;
        let now = Instant::now();
        if let Some(token) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.credential.clone());
        }
        match self.fetch(http).await {
            Ok(token) => {
                let credential = token.credential.clone();
                *cached = Some(token);
                Ok(credential)
            }
            // Refreshing early must not fail a request the current token still covers.
            Err(error) => match cached.as_ref().filter(|t| now < t.expires_at) {
                Some(token) => {
                    tracing::warn!(error = %error, "refreshing the Okta access token failed; the current one is still valid");
                    Ok(token.credential.clone())
                }
                None => Err(error),
            },
        }
    }

    /// After a 401: drops `rejected` unless another request already replaced it, so that
    /// concurrent listings failing with the same token cause one token request, not many.
    async fn replace(
        &self,
        http: &reqwest::Client,
        rejected: &Credential,
    ) -> Result<(), OktaError> {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| !t.credential.same_token(rejected))
        {
            return Ok(());
        }
        *cached = None;
        *cached = Some(self.fetch(http).await?);
        Ok(())
    }

    /// `Authorization` and, for DPoP tokens, a fresh `DPoP` proof for one API request.
    pub fn request_headers(
        &self,
        method: &Method,
        url: &Url,
        credential: &Credential,
    ) -> Result<HeaderMap, OktaError> {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, credential.header()?);
        if credential.scheme == Scheme::DPoP {
            let nonce = lock(&self.resource_nonce).clone();
            let proof = self.proof(method, url, Some(credential), nonce)?;
            headers.insert(DPOP, proof);
        }
        Ok(headers)
    }

    /// Remembers a `DPoP-Nonce` the API sent (on any response, RFC 9449 §9).
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(nonce) = nonce_header(headers) {
            *lock(&self.resource_nonce) = Some(nonce);
        }
    }

    /// Whether an API answer is worth one more try, and prepares it (a new token after a
    /// 401; the nonce was kept by `observe`). Each kind of retry happens once per request.
    pub async fn retry_rejected(
        &self,
        http: &reqwest::Client,
        status: StatusCode,
        headers: &HeaderMap,
        credential: &Credential,
        retries: &mut AuthRetries,
    ) -> Result<bool, OktaError> {
        match rejection(status, headers) {
            Some(Rejection::UseNonce) if !retries.nonce => {
                retries.nonce = true;
                tracing::info!(
                    status = status.as_u16(),
                    "Okta asked for a new DPoP nonce: retrying with it"
                );
                Ok(true)
            }
            Some(Rejection::InvalidToken) if !retries.refresh => {
                retries.refresh = true;
                tracing::info!("Okta rejected the access token: requesting a new one and retrying");
                self.replace(http, credential).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn proof(
        &self,
        method: &Method,
        url: &Url,
        token: Option<&Credential>,
        nonce: Option<String>,
    ) -> Result<HeaderValue, OktaError> {
        let key = self.dpop.as_ref().ok_or_else(|| {
            OktaError::Setup("Okta issued a DPoP token but okta.oauth.dpop is false".into())
        })?;
        let proof = key.sign(&ProofClaims {
            htm: method.as_str(),
            htu: htu(url),
            iat: epoch_secs(),
            jti: fresh_jti(),
            ath: token.map(|t| ath(t.value.expose_secret())),
            nonce,
        })?;
        let mut value = HeaderValue::from_str(&proof)
            .map_err(|_| OktaError::Setup("a DPoP proof is not a header value".into()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn client_assertion(&self) -> Result<String, OktaError> {
        let iat = epoch_secs();
        let mut header = Header::new(self.settings.key.alg);
        header.kid.clone_from(&self.settings.key_id);
        let claims = AssertionClaims {
            iss: &self.settings.client_id,
            sub: &self.settings.client_id,
            aud: self.token_url.as_str(),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
            jti: fresh_jti(),
        };
        jsonwebtoken::encode(&header, &claims, &self.settings.key.key)
            .map_err(|e| OktaError::Setup(format!("signing the client assertion: {e}")))
    }

    fn token_error_url(&self) -> String {
        self.token_url.path().to_owned()
    }

    /// One token request: a fresh assertion (its `jti` is single-use) and a fresh proof.
    async fn post_token(&self, http: &reqwest::Client) -> Result<reqwest::Response, OktaError> {
        let assertion = self.client_assertion()?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &self.settings.scopes)
            .append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
            .append_pair("client_assertion", &assertion)
            .finish();
        let mut request = http
            .post(self.token_url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                reqwest::header::USER_AGENT,
                concat!("oktasync/", env!("CARGO_PKG_VERSION")),
            )
            .body(body);
        if self.dpop.is_some() {
            let nonce = lock(&self.token_nonce).clone();
            request = request.header(
                DPOP,
                self.proof(&Method::POST, &self.token_url, None, nonce)?,
            );
        }
        request.send().await.map_err(|e| OktaError::TokenTransport {
            url: self.token_error_url(),
            message: e.to_string(),
        })
    }

    /// The token request with its retries: once with the nonce Okta demands
    /// (`use_dpop_nonce`), and after 429s until the token bucket's window resets.
    async fn fetch(&self, http: &reqwest::Client) -> Result<CachedToken, OktaError> {
        let mut nonce_retried = false;
        let mut throttled = 0;
        loop {
            let response = self.post_token(http).await?;
            let status = response.status();
            let headers = response.headers().clone();
            if let Some(nonce) = nonce_header(&headers) {
                *lock(&self.token_nonce) = Some(nonce);
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| OktaError::TokenTransport {
                    url: self.token_error_url(),
                    message: e.to_string(),
                })?;
            if status.is_success() {
                return self.accept_token(&body);
            }
            let error: TokenErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            if status == StatusCode::TOO_MANY_REQUESTS && throttled < self.throttle.max_throttled {
                throttled += 1;
                let wait = RateHeaders::parse(&headers)
                    .until_reset()
                    .unwrap_or(Duration::from_secs(1))
                    .min(self.throttle.max_wait)
                    + self.throttle.margin;
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "Okta token endpoint rate limit hit: waiting for the window to reset"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let nonce_demanded = status == StatusCode::BAD_REQUEST
                && error.error.as_deref() == Some("use_dpop_nonce")
                && nonce_header(&headers).is_some();
            if nonce_demanded && !nonce_retried && self.dpop.is_some() {
                nonce_retried = true;
                tracing::debug!("Okta's token endpoint asked for a DPoP nonce: retrying with it");
                continue;
            }
            return Err(OktaError::TokenRejected {
                url: self.token_error_url(),
                status: status.as_u16(),
                error: error
                    .error
                    .or(error.error_code)
                    .unwrap_or_else(|| "no error code".into()),
                description: error.error_description.or(error.error_summary),
            });
        }
    }

    fn accept_token(&self, body: &[u8]) -> Result<CachedToken, OktaError> {
        // serde's messages may quote the offending value: report the position only.
        let response: TokenResponse =
            serde_json::from_slice(body).map_err(|e| OktaError::TokenTransport {
                url: self.token_error_url(),
                message: format!(
                    "the token response is not the expected JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let scheme = if response.token_type.eq_ignore_ascii_case("DPoP") {
            Scheme::DPoP
        } else if response.token_type.eq_ignore_ascii_case("Bearer") {
            Scheme::Bearer
        } else {
            return Err(OktaError::TokenRejected {
                url: self.token_error_url(),
                status: 200,
                error: "unsupported_token_type".into(),
                description: Some(format!("token_type {:?}", response.token_type)),
            });
        };
        if scheme == Scheme::DPoP && self.dpop.is_none() {
            return Err(OktaError::TokenRejected {
                url: self.token_error_url(),
                status: 200,
                error: "unsupported_token_type".into(),
                description: Some(
                    "Okta issued a DPoP-bound token but okta.oauth.dpop is false".into(),
                ),
            });
        }
        // Okta fixes the lifetime at an hour; a missing value is read as that.
        let lifetime = Duration::from_secs(response.expires_in.unwrap_or(3600));
        let now = Instant::now();
        tracing::info!(
            token_type = scheme.as_str(),
            expires_in_s = lifetime.as_secs(),
            "Okta access token obtained"
        );
        Ok(CachedToken {
            credential: Credential {
                scheme,
                value: SecretString::from(response.access_token),
            },
            refresh_at: now + lifetime.mul_f64(REFRESH_AT),
            expires_at: now + lifetime,
        })
    }
}

fn nonce_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(DPOP_NONCE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The `error` parameter of a `WWW-Authenticate` challenge (any scheme, any header line).
fn challenge_error(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| auth_param(v, "error"))
}

/// A quoted or bare `name=value` parameter of a challenge. Okta's values hold no quotes.
fn auth_param(challenge: &str, name: &str) -> Option<String> {
    let mut rest = challenge;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        return Some(match value.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default().to_owned(),
            None => value
                .split([',', ' '])
                .next()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    None
}

/// Classifies a rejected API answer (RFC 9449 §9 and RFC 6750 §3).
pub fn rejection(status: StatusCode, headers: &HeaderMap) -> Option<Rejection> {
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::BAD_REQUEST {
        return None;
    }
    let error = challenge_error(headers);
    if error.as_deref() == Some("use_dpop_nonce") && nonce_header(headers).is_some() {
        return Some(Rejection::UseNonce);
    }
    (status == StatusCode::UNAUTHORIZED).then_some(Rejection::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::Value;

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn ec_pair() -> EcdsaKeyPair {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap_or_else(|e| panic!("{e}"))
    }

    fn client(key: ClientKey, dpop: bool) -> OAuthClient {
        let org = Url::parse("https://acme.okta.com").unwrap_or_else(|e| panic!("{e}"));
        OAuthClient::new(
            OAuthSettings {
                client_id: "0oaclient".into(),
                key,
                key_id: Some("kid-1".into()),
                scopes: DEFAULT_SCOPES.into(),
                dpop,
            },
            &org,
            TokenThrottle {
                max_throttled: 1,
                max_wait: Duration::from_secs(1),
                margin: Duration::ZERO,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn parts(jwt: &str) -> (Value, Value) {
        let mut it = jwt.split('.');
        let mut part = || {
            let raw = URL_SAFE_NO_PAD
                .decode(it.next().unwrap_or_else(|| panic!("part")))
                .unwrap_or_else(|e| panic!("{e}"));
            serde_json::from_slice::<Value>(&raw).unwrap_or_else(|e| panic!("{e}"))
        };
        (part(), part())
    }

    #[test]
    fn ath_is_the_rfc_9449_example() {
        // RFC 9449 §7.1.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn htu_drops_query_and_fragment() {
        let url = Url::parse("https://acme.okta.com/api/v1/users?limit=200&after=00u1#x")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(htu(&url), "https://acme.okta.com/api/v1/users");
    }

    #[test]
    fn loads_ec_keys_in_sec1_and_pkcs8_and_rejects_other_curves() {
        let pair = ec_pair();
        let sec1 = pair
            .private_key()
            .as_der()
            .unwrap_or_else(|e| panic!("{e}"));
        let key = ClientKey::from_pem(pem("EC PRIVATE KEY", sec1.as_ref()).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.algorithm(), Algorithm::ES256);
        let pkcs8 = pair.to_pkcs8v1().unwrap_or_else(|e| panic!("{e}"));
        let key = ClientKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.algorithm(), Algorithm::ES256);
        let p384 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING)
            .and_then(|p| p.to_pkcs8v1())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            ClientKey::from_pem(pem("PRIVATE KEY", p384.as_ref()).as_bytes()),
            Err(KeyError::Unsupported)
        ));
    }

    #[test]
    fn loads_rsa_keys_and_names_what_is_wrong_with_others() {
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .unwrap_or_else(|e| panic!("{e}"));
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa)
            .unwrap_or_else(|e| panic!("{e}"));
        let text = format!(
            "{}{}",
            pem("CERTIFICATE", b"not really"),
            pem("PRIVATE KEY", pkcs8.as_ref())
        );
        let key = ClientKey::from_pem(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.algorithm(), Algorithm::RS256);
        assert!(format!("{key:?}").contains("RS256"));
        let public = pem("PUBLIC KEY", rsa.public_key().as_ref());
        assert!(matches!(
            ClientKey::from_pem(public.as_bytes()),
            Err(KeyError::NoPrivateKey)
        ));
        assert!(matches!(
            ClientKey::from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            Err(KeyError::Encrypted)
        ));
        assert!(matches!(
            ClientKey::from_pem(b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::BadPem)
        ));
    }

    #[test]
    fn client_assertion_claims_header_and_signature() {
        let pair = ec_pair();
        let pkcs8 = pair.to_pkcs8v1().unwrap_or_else(|e| panic!("{e}"));
        let key = ClientKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let oauth = client(key, true);
        let first = oauth.client_assertion().unwrap_or_else(|e| panic!("{e}"));
        let second = oauth.client_assertion().unwrap_or_else(|e| panic!("{e}"));
        let (header, claims) = parts(&first);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "kid-1");
        assert_eq!(claims["iss"], "0oaclient");
        assert_eq!(claims["sub"], "0oaclient");
        assert_eq!(claims["aud"], "https://acme.okta.com/oauth2/v1/token");
        let iat = claims["iat"].as_u64().unwrap_or_default();
        assert!(iat.abs_diff(epoch_secs()) < 5);
        assert_eq!(claims["exp"].as_u64(), Some(iat + ASSERTION_LIFETIME_SECS));
        assert_ne!(
            claims["jti"],
            parts(&second).1["jti"],
            "a fresh jti per request"
        );
        let public = DecodingKey::from_ec_der(pair.public_key().as_ref());
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://acme.okta.com/oauth2/v1/token"]);
        jsonwebtoken::decode::<Value>(&first, &public, &validation)
            .unwrap_or_else(|e| panic!("the assertion does not verify: {e}"));
    }

    #[test]
    fn dpop_proofs_carry_the_public_jwk_and_bind_the_token() {
        let pkcs8 = ec_pair().to_pkcs8v1().unwrap_or_else(|e| panic!("{e}"));
        let key = ClientKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let oauth = client(key, true);
        let url = Url::parse("https://acme.okta.com/api/v1/groups?limit=200")
            .unwrap_or_else(|e| panic!("{e}"));
        let token = Credential {
            scheme: Scheme::DPoP,
            value: SecretString::from("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        };
        *lock(&oauth.resource_nonce) = Some("n-1".into());
        let headers = oauth
            .request_headers(&Method::GET, &url, &token)
            .unwrap_or_else(|e| panic!("{e}"));
        let authorization = headers
            .get(reqwest::header::AUTHORIZATION)
            .unwrap_or_else(|| panic!("no Authorization"));
        assert!(authorization.is_sensitive());
        assert_eq!(
            authorization.to_str().ok(),
            Some("DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
        );
        let proof = headers
            .get(DPOP)
            .unwrap_or_else(|| panic!("no DPoP header"));
        assert!(proof.is_sensitive());
        let proof = proof.to_str().unwrap_or_else(|e| panic!("{e}"));
        let (header, claims) = parts(proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert_eq!(header["jwk"]["crv"], "P-256");
        assert!(header["jwk"]["x"].is_string() && header["jwk"]["y"].is_string());
        assert!(header["jwk"].get("d").is_none(), "never the private key");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://acme.okta.com/api/v1/groups");
        assert_eq!(claims["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
        assert_eq!(claims["nonce"], "n-1");
        assert!(claims["jti"].is_string() && claims["iat"].is_u64());
        // The proof verifies with the key it carries.
        let jwk: Jwk =
            serde_json::from_value(header["jwk"].clone()).unwrap_or_else(|e| panic!("{e}"));
        let key = DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{e}"));
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<Value>(proof, &key, &validation).unwrap_or_else(|e| panic!("{e}"));
        // A token-endpoint proof has no ath; every proof has its own jti.
        let token_proof = oauth
            .proof(&Method::POST, &oauth.token_url, None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, token_claims) = parts(token_proof.to_str().unwrap_or_default());
        assert_eq!(token_claims["htm"], "POST");
        assert_eq!(token_claims["htu"], "https://acme.okta.com/oauth2/v1/token");
        assert!(token_claims.get("ath").is_none() && token_claims.get("nonce").is_none());
        assert_ne!(token_claims["jti"], claims["jti"]);
    }

    #[test]
    fn rejections_are_read_from_the_challenge() {
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP algs="ES256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#),
        );
        assert_eq!(
            rejection(StatusCode::UNAUTHORIZED, &headers),
            Some(Rejection::InvalidToken),
            "no nonce header: a plain 401"
        );
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-2"));
        assert_eq!(
            rejection(StatusCode::UNAUTHORIZED, &headers),
            Some(Rejection::UseNonce)
        );
        assert_eq!(
            rejection(StatusCode::BAD_REQUEST, &headers),
            Some(Rejection::UseNonce)
        );
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="invalid_dpop_proof", error_description="'htu' claim in the DPoP proof JWT is invalid.""#),
        );
        assert_eq!(rejection(StatusCode::BAD_REQUEST, &headers), None);
        assert_eq!(rejection(StatusCode::FORBIDDEN, &HeaderMap::new()), None);
        assert_eq!(
            auth_param("DPoP error=invalid_token, x=1", "error").as_deref(),
            Some("invalid_token")
        );
        assert_eq!(
            auth_param(r#"DPoP my_error="a", error="b""#, "error").as_deref(),
            Some("b")
        );
    }
}
