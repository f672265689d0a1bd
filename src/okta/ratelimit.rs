//! Okta's rate limits, per endpoint bucket. Each bucket's limit is learned from
//! `X-Rate-Limit-Limit` at run time and paced with governor at `rate_limit_share` of it; the
//! org-wide `X-Rate-Limit-Remaining` is also honoured, so oktasync stops at its share even
//! when other integrations are busy. A 429 waits until `X-Rate-Limit-Reset`, measured
//! against the server's `Date` header rather than the local clock.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{DATE, HeaderMap};

/// Okta's rate-limit buckets for the endpoints oktasync reads (longest-prefix matching).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    Users,
    User,
    Groups,
    Group,
    Apps,
    Logs,
    Other,
}

impl Bucket {
    pub const ALL: [Bucket; 7] = [
        Self::Users,
        Self::User,
        Self::Groups,
        Self::Group,
        Self::Apps,
        Self::Logs,
        Self::Other,
    ];

    pub fn for_path(path: &str) -> Self {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", "api", "v1", "users"] => Self::Users,
            ["", "api", "v1", "users", ..] => Self::User,
            ["", "api", "v1", "groups"] => Self::Groups,
            ["", "api", "v1", "groups", ..] => Self::Group,
            ["", "api", "v1", "apps", ..] => Self::Apps,
            ["", "api", "v1", "logs", ..] => Self::Logs,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::User => "user",
            Self::Groups => "groups",
            Self::Group => "group",
            Self::Apps => "apps",
            Self::Logs => "logs",
            Self::Other => "other",
        }
    }
}

/// The three rate-limit headers of one response (minimum of duplicates) and its `Date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_epoch: Option<u64>,
    pub server_epoch: Option<u64>,
}

fn min_header<T: std::str::FromStr + Ord>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| v.trim().parse::<T>().ok())
        .min()
}

impl RateHeaders {
    pub fn parse(headers: &HeaderMap) -> Self {
        let server_epoch = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Self {
            limit: min_header(headers, "x-rate-limit-limit"),
            remaining: min_header(headers, "x-rate-limit-remaining"),
            reset_epoch: min_header(headers, "x-rate-limit-reset"),
            server_epoch,
        }
    }

    /// How long until the window resets, by the server's own clock (local clock when the
    /// server sent no `Date`). None when there is no reset header.
    pub fn until_reset(&self) -> Option<Duration> {
        let reset = self.reset_epoch?;
        let now = self.server_epoch.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        Some(Duration::from_secs(reset.saturating_sub(now)))
    }

    /// A concurrency 429: Okta sends Limit = Remaining = 0.
    pub fn is_concurrency_limit(&self) -> bool {
        self.limit == Some(0) && self.remaining == Some(0)
    }
}

#[derive(Default)]
struct BucketState {
    limit: Option<u32>,
    remaining: Option<u32>,
    reset_at: Option<Instant>,
    pacer: Option<(u32, Arc<DefaultDirectRateLimiter>)>,
    calls: u64,
    throttled: u64,
}

/// Per-bucket figures, for logs, metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketStats {
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub calls: u64,
    pub throttled: u64,
}

pub struct RateLimits {
    share: f64,
    window: Duration,
    buckets: Mutex<HashMap<Bucket, BucketState>>,
}

impl RateLimits {
    /// `window` is Okta's rate-limit window (a minute; shorter only against a time-scaled fake).
    pub fn new(share: f64, window: Duration) -> Self {
        Self {
            share,
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A safety margin added to reset waits: Okta's SDKs add a second for clock skew.
    pub fn margin(&self) -> Duration {
        self.window / 60
    }

    /// The most a 429 may make us wait, whatever its reset header says.
    pub fn max_wait(&self) -> Duration {
        self.window * 2 + self.margin()
    }

    fn our_share(&self, limit: u32) -> u32 {
        ((f64::from(limit) * self.share).floor() as u32).max(1)
    }

    /// Waits until a request to `bucket` is within oktasync's share.
    pub async fn acquire(&self, bucket: Bucket) {
        loop {
            let (pacer, wait) = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let state = buckets.entry(bucket).or_default();
                let now = Instant::now();
                if state.reset_at.is_some_and(|r| r <= now) {
                    // A new window: what remains is unknown until the next response.
                    state.remaining = None;
                    state.reset_at = None;
                }
                let reserve = state
                    .limit
                    .map(|l| l - self.our_share(l).min(l))
                    .unwrap_or(0);
                let exhausted = state.remaining.is_some_and(|r| r <= reserve);
                let wait = match (exhausted, state.reset_at) {
                    (true, Some(reset)) => Some(reset.saturating_duration_since(now)),
                    _ => None,
                };
                if wait.is_none() {
                    state.calls += 1;
                    if let Some(r) = state.remaining.as_mut() {
                        *r = r.saturating_sub(1);
                    }
                }
                (state.pacer.as_ref().map(|(_, p)| p.clone()), wait)
            };
            match wait {
                Some(wait) => {
                    tracing::debug!(
                        bucket = bucket.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        "share of the bucket used: waiting for its reset"
                    );
                    tokio::time::sleep(wait).await;
                }
                None => {
                    if let Some(pacer) = pacer {
                        pacer.until_ready().await;
                    }
                    return;
                }
            }
        }
    }

    /// Learns from a response's headers.
    pub fn observe(&self, bucket: Bucket, headers: &RateHeaders) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let state = buckets.entry(bucket).or_default();
        if headers.is_concurrency_limit() {
            return;
        }
        if let Some(limit) = headers.limit.filter(|l| *l > 0) {
            state.limit = Some(limit);
            let per_window = self.our_share(limit);
            if state.pacer.as_ref().is_none_or(|(n, _)| *n != per_window) {
                let period = self.window / per_window;
                if let Some(quota) = Quota::with_period(period) {
                    let quota = quota.allow_burst(NonZeroU32::MIN);
                    state.pacer = Some((per_window, Arc::new(RateLimiter::direct(quota))));
                }
            }
        }
        if let Some(remaining) = headers.remaining {
            state.remaining = Some(remaining);
        }
        if let Some(until) = headers.until_reset() {
            state.reset_at = Some(Instant::now() + until + self.margin());
        }
    }

    /// Records a 429 and returns how long to wait before retrying.
    pub fn throttled(&self, bucket: Bucket, headers: &RateHeaders) -> Duration {
        {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let state = buckets.entry(bucket).or_default();
            state.throttled += 1;
            if !headers.is_concurrency_limit() {
                state.remaining = Some(0);
            }
        }
        self.observe(bucket, headers);
        let wait = headers
            .until_reset()
            .map(|d| d + self.margin())
            .unwrap_or(self.window);
        wait.min(self.max_wait())
    }

    pub fn stats(&self) -> Vec<(Bucket, BucketStats)> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(Bucket, BucketStats)> = buckets
            .iter()
            .map(|(b, s)| {
                (
                    *b,
                    BucketStats {
                        limit: s.limit,
                        remaining: s.remaining,
                        calls: s.calls,
                        throttled: s.throttled,
                    },
                )
            })
            .collect();
        out.sort_by_key(|(b, _)| *b);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!("bad")),
            );
        }
        h
    }

    #[test]
    fn buckets_by_longest_prefix() {
        assert_eq!(Bucket::for_path("/api/v1/users"), Bucket::Users);
        assert_eq!(Bucket::for_path("/api/v1/users/00u1"), Bucket::User);
        assert_eq!(Bucket::for_path("/api/v1/groups"), Bucket::Groups);
        assert_eq!(Bucket::for_path("/api/v1/groups/00g1/users"), Bucket::Group);
        assert_eq!(Bucket::for_path("/api/v1/apps/0oa1/users"), Bucket::Apps);
        assert_eq!(Bucket::for_path("/api/v1/logs"), Bucket::Logs);
        assert_eq!(Bucket::for_path("/api/v1/meta/schemas"), Bucket::Other);
    }

    #[test]
    fn duplicate_reset_headers_take_the_minimum_and_use_the_server_date() {
        let h = headers(&[
            ("x-rate-limit-limit", "600"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1609459230"),
            ("x-rate-limit-reset", "1609459290"),
            ("date", "Fri, 01 Jan 2021 00:00:00 GMT"),
        ]);
        let parsed = RateHeaders::parse(&h);
        assert_eq!(parsed.reset_epoch, Some(1_609_459_230));
        assert_eq!(parsed.server_epoch, Some(1_609_459_200));
        // 30 s by the server's clock, whatever the local clock says
        assert_eq!(parsed.until_reset(), Some(Duration::from_secs(30)));
        let joined = headers(&[("x-rate-limit-reset", "1609459290, 1609459230")]);
        assert_eq!(RateHeaders::parse(&joined).reset_epoch, Some(1_609_459_230));
    }

    #[test]
    fn a_429_waits_until_reset_plus_margin_and_is_capped() {
        let limits = RateLimits::new(0.5, Duration::from_secs(60));
        let h = RateHeaders {
            limit: Some(600),
            remaining: Some(0),
            reset_epoch: Some(1_000_030),
            server_epoch: Some(1_000_000),
        };
        assert_eq!(limits.throttled(Bucket::Users, &h), Duration::from_secs(31));
        let hostile = RateHeaders {
            reset_epoch: Some(9_000_000),
            ..h
        };
        assert_eq!(limits.throttled(Bucket::Users, &hostile), limits.max_wait());
        let stats = limits.stats();
        assert_eq!(stats[0].1.throttled, 2);
    }

    #[tokio::test]
    async fn stops_at_its_share_of_the_org_wide_remaining() {
        let limits = RateLimits::new(0.5, Duration::from_millis(600));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // 100 per window, 50 remaining: the other half belongs to other integrations.
        limits.observe(
            Bucket::Apps,
            &RateHeaders {
                limit: Some(100),
                remaining: Some(50),
                reset_epoch: Some(now),
                server_epoch: Some(now),
            },
        );
        let started = Instant::now();
        limits.acquire(Bucket::Apps).await;
        // had to wait for the window's reset (margin 10 ms) rather than go at once
        assert!(started.elapsed() >= Duration::from_millis(10));
    }
}
