//! The HTTP client for Okta's Management API: authentication (SSWS, or OAuth through
//! `auth`), one page at a time with pacing, 429 waits and retries, and whole listings by
//! following `next` links.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::OktaError;
use super::auth::{AuthRetries, Credential, OAuthClient, OAuthSettings, Scheme, TokenThrottle};
use super::paging::next_link;
use super::ratelimit::{Bucket, RateHeaders, RateLimits};
use super::wire::ErrorBody;

/// How the client authenticates.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: SSWS <token>`.
    Ssws(SecretString),
    /// An OAuth 2.0 service app: `Authorization: DPoP <token>` (or `Bearer`).
    OAuth(OAuthSettings),
}

#[derive(Clone)]
pub struct ClientSettings {
    pub org_url: Url,
    pub auth: Auth,
    pub rate_limit_share: f64,
    pub rate_limit_window: Duration,
    pub request_timeout: Duration,
    /// Retries of a failing request (5xx, timeouts, invalid JSON) before the listing fails.
    pub max_retries: usize,
    /// 429 answers tolerated for one request before the listing fails.
    pub max_throttled: usize,
}

pub struct OktaClient {
    http: reqwest::Client,
    settings: ClientSettings,
    limits: RateLimits,
    items_read: Arc<AtomicU64>,
    authorizer: Authorizer,
}

/// `ClientSettings::auth`, ready to sign requests.
enum Authorizer {
    Ssws(Credential),
    /// Tokens and DPoP proofs (boxed: far larger than a token).
    OAuth(Box<OAuthClient>),
}

/// One page of a listing.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Url>,
    /// The server's `Date` (epoch seconds): incremental reads take their watermarks from
    /// Okta's clock, never the local one.
    pub server_epoch: Option<u64>,
}

/// A whole listing, with the server's time when its first page was answered.
pub struct Listing<T> {
    pub items: Vec<T>,
    pub server_epoch: Option<u64>,
}

impl OktaClient {
    pub fn new(settings: ClientSettings) -> Result<Self, OktaError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| OktaError::Setup(e.to_string()))?;
        let limits = RateLimits::new(settings.rate_limit_share, settings.rate_limit_window);
        let authorizer = match &settings.auth {
            Auth::Ssws(token) => Authorizer::Ssws(Credential {
                scheme: Scheme::Ssws,
                value: token.clone(),
            }),
            Auth::OAuth(oauth) => Authorizer::OAuth(Box::new(OAuthClient::new(
                oauth.clone(),
                &settings.org_url,
                TokenThrottle {
                    max_throttled: settings.max_throttled,
                    max_wait: limits.max_wait(),
                    margin: limits.margin(),
                },
            )?)),
        };
        Ok(Self {
            limits,
            http,
            settings,
            items_read: Arc::new(AtomicU64::new(0)),
            authorizer,
        })
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Objects read so far (for progress display).
    pub fn items_read(&self) -> Arc<AtomicU64> {
        self.items_read.clone()
    }

    pub fn url(&self, path_and_query: &str) -> Result<Url, OktaError> {
        self.settings
            .org_url
            .join(path_and_query)
            .map_err(|e| OktaError::Setup(format!("bad URL {path_and_query}: {e}")))
    }

    /// Refuses `next` links that leave the org: the API token must never go elsewhere.
    fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.settings.org_url.origin()
    }

    /// The credential for the next request: the API token, or an OAuth access token
    /// (fetched or refreshed first, outside the API buckets' pacing).
    async fn credential(&self) -> Result<Credential, OktaError> {
        match &self.authorizer {
            Authorizer::Ssws(token) => Ok(token.clone()),
            Authorizer::OAuth(oauth) => oauth.credential(&self.http).await,
        }
    }

    /// `Authorization`, plus a fresh DPoP proof for DPoP tokens (one per request and retry).
    fn auth_headers(&self, url: &Url, credential: &Credential) -> Result<HeaderMap, OktaError> {
        match &self.authorizer {
            Authorizer::Ssws(_) => Ok(HeaderMap::from_iter([(
                AUTHORIZATION,
                credential.header()?,
            )])),
            Authorizer::OAuth(oauth) => oauth.request_headers(&Method::GET, url, credential),
        }
    }

    /// One GET, paced, with 429 waits but no other retry. `T` is the whole body.
    async fn get_once<T: DeserializeOwned>(&self, url: &Url) -> Result<Page<T>, OktaError> {
        let (body, next, server_epoch) = self.get_body::<Vec<T>>(url).await?;
        self.items_read
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(Page {
            items: body,
            next,
            server_epoch,
        })
    }

    async fn get_body<T: DeserializeOwned>(
        &self,
        url: &Url,
    ) -> Result<(T, Option<Url>, Option<u64>), OktaError> {
        let bucket = Bucket::for_path(url.path());
        let mut throttled = 0;
        let mut auth_retries = AuthRetries::default();
        loop {
            let credential = self.credential().await?;
            self.limits.acquire(bucket).await;
            let response = self
                .http
                .get(url.clone())
                .headers(self.auth_headers(url, &credential)?)
                .header(ACCEPT, "application/json")
                .header(USER_AGENT, concat!("oktasync/", env!("CARGO_PKG_VERSION")))
                .send()
                .await
                .map_err(|e| OktaError::Transport {
                    url: redact(url),
                    timeout: e.is_timeout(),
                    message: e.to_string(),
                })?;
            let headers = RateHeaders::parse(response.headers());
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = self.limits.throttled(bucket, &headers);
                throttled += 1;
                if throttled > self.settings.max_throttled {
                    return Err(OktaError::RateLimited {
                        url: redact(url),
                        attempts: throttled,
                    });
                }
                tracing::info!(
                    bucket = bucket.as_str(),
                    wait_ms = wait.as_millis() as u64,
                    concurrency = headers.is_concurrency_limit(),
                    "Okta rate limit hit: waiting for the window to reset"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            self.limits.observe(bucket, &headers);
            if let Authorizer::OAuth(oauth) = &self.authorizer {
                oauth.observe(response.headers());
                if oauth
                    .retry_rejected(
                        &self.http,
                        status,
                        response.headers(),
                        &credential,
                        &mut auth_retries,
                    )
                    .await?
                {
                    continue;
                }
            }
            let next = next_link(response.headers());
            let body = response.bytes().await.map_err(|e| OktaError::Transport {
                url: redact(url),
                timeout: e.is_timeout(),
                message: e.to_string(),
            })?;
            if !status.is_success() {
                let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                return Err(OktaError::Status {
                    url: redact(url),
                    status: status.as_u16(),
                    code: error.error_code,
                    summary: error.error_summary,
                });
            }
            let parsed: T =
                serde_json::from_slice(&body).map_err(|e| OktaError::InvalidResponse {
                    url: redact(url),
                    message: e.to_string(),
                })?;
            let next = match next {
                Some(link) => {
                    let next = Url::parse(&link).map_err(|e| OktaError::InvalidResponse {
                        url: redact(url),
                        message: format!("next link {link:?} is not a URL: {e}"),
                    })?;
                    if !self.same_origin(&next) {
                        return Err(OktaError::InvalidResponse {
                            url: redact(url),
                            message: format!("next link leaves the org: {}", redact(&next)),
                        });
                    }
                    Some(next)
                }
                None => None,
            };
            return Ok((parsed, next, headers.server_epoch));
        }
    }

    /// One page, retried with exponential backoff on errors that may pass.
    pub async fn get_page<T: DeserializeOwned>(&self, url: &Url) -> Result<Page<T>, OktaError> {
        (|| self.get_once(url))
            .retry(self.backoff())
            .when(OktaError::is_retryable)
            .notify(notify_retry)
            .await
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.settings.max_retries)
    }

    /// One object (`GET /api/v1/apps/{app}/users/{user}`), retried like a page; `None` when
    /// Okta answers 404.
    pub async fn get_object<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<Option<T>, OktaError> {
        let url = self.url(path_and_query)?;
        let fetched = (|| self.get_body::<T>(&url))
            .retry(self.backoff())
            .when(OktaError::is_retryable)
            .notify(notify_retry)
            .await;
        match fetched {
            Ok((object, _, _)) => Ok(Some(object)),
            Err(OktaError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every page of a listing, following `next` links verbatim.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<Vec<T>, OktaError> {
        Ok(self.list_all_dated(path_and_query).await?.items)
    }

    /// `list_all`, with the server's time at the first page.
    pub async fn list_all_dated<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<Listing<T>, OktaError> {
        let mut items = Vec::new();
        let server_epoch = self
            .each_page(path_and_query, |page: Vec<T>| items.extend(page))
            .await?;
        Ok(Listing {
            items,
            server_epoch,
        })
    }

    /// Every page of a listing, each handed to `on_page` as it arrives (so a reader can act
    /// on a listing before its last page); the server's time at the first page.
    pub async fn each_page<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        mut on_page: impl FnMut(Vec<T>),
    ) -> Result<Option<u64>, OktaError> {
        let mut url = self.url(path_and_query)?;
        let mut server_epoch = None;
        loop {
            let page = self.get_page::<T>(&url).await?;
            server_epoch = server_epoch.or(page.server_epoch);
            on_page(page.items);
            match page.next {
                Some(next) => url = next,
                None => return Ok(server_epoch),
            }
        }
    }
}

fn notify_retry(error: &OktaError, wait: Duration) {
    tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "Okta request failed, retrying");
}

/// A URL fit for logs: path and query only (no host credentials, nothing secret in Okta URLs).
fn redact(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}
