//! The daemon's state shared by the scheduler, the signal handler and the HTTP server: the
//! settings in effect (swapped whole by a reload), the Okta client, leadership and cycle
//! health for `/readyz`, the cached Okta credential check, the admin token's hash and the
//! manual-cycle request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::okta::OktaClient;
use crate::okta::ratelimit::{Bucket, BucketStats};
use crate::store::Store;

/// How long the Okta credential check may take before it counts as failed.
const OKTA_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the store may take to answer a readiness ping.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Failing cycles make the instance unready once they have failed for this many intervals.
const FAILING_GRACE_INTERVALS: u32 = 3;

pub struct Daemon {
    /// `host/pid`, as recorded in locks and cycles.
    pub instance: String,
    pub store: Store,
    pub config_path: PathBuf,
    /// Cancelled on SIGTERM/SIGINT: no new work.
    pub stop: CancellationToken,
    settings: RwLock<Arc<Settings>>,
    okta: RwLock<Arc<OktaClient>>,
    /// Calls and 429s of Okta clients replaced by reloads, so the counters never go back.
    retired: Mutex<BTreeMap<Bucket, BucketStats>>,
    leading: AtomicBool,
    /// Since when cycles have been failing on this instance (None: the last one did not).
    failing_since: Mutex<Option<Instant>>,
    okta_check: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    manual_requested: AtomicBool,
    /// Wakes the scheduler: a manual cycle was requested, or the settings changed.
    pub wake: Notify,
    reloaded: AtomicBool,
}

/// A bearer token against an expected SHA-256, in constant time.
fn token_matches(expected: &[u8; 32], authorization: Option<&str>) -> bool {
    let presented: [u8; 32] = match authorization.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) {
        Some(token) => Sha256::digest(token.trim().as_bytes()).into(),
        None => return false,
    };
    expected.ct_eq(&presented).into()
}

impl Daemon {
    pub fn new(
        instance: String,
        store: Store,
        config_path: PathBuf,
        settings: Settings,
        okta: OktaClient,
    ) -> Self {
        crate::metrics::set_settings(&settings);
        crate::metrics::set_leader(false);
        crate::metrics::set_running(false);
        Self {
            instance,
            store,
            config_path,
            stop: CancellationToken::new(),
            settings: RwLock::new(Arc::new(settings)),
            okta: RwLock::new(Arc::new(okta)),
            retired: Mutex::default(),
            leading: AtomicBool::new(false),
            failing_since: Mutex::default(),
            okta_check: tokio::sync::Mutex::default(),
            manual_requested: AtomicBool::new(false),
            wake: Notify::new(),
            reloaded: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn okta(&self) -> Arc<OktaClient> {
        self.okta.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts reloaded settings and their Okta client in effect for the next cycle.
    pub fn replace_settings(&self, settings: Settings, okta: OktaClient) {
        crate::metrics::set_settings(&settings);
        let old = {
            let mut current = self.okta.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Arc::new(okta))
        };
        {
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            for (bucket, stats) in old.rate_limits().stats() {
                let total = retired.entry(bucket).or_default();
                total.calls += stats.calls;
                total.throttled += stats.throttled;
            }
        }
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        // The credential check must be redone against the new client.
        if let Ok(mut cached) = self.okta_check.try_lock() {
            *cached = None;
        }
        self.reloaded.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether settings were replaced since the last call (the scheduler re-plans its ticks).
    pub fn take_reloaded(&self) -> bool {
        self.reloaded.swap(false, Ordering::SeqCst)
    }

    /// Okta's per-bucket figures for metrics: cumulative calls and 429s, latest limits.
    pub fn okta_totals(&self) -> Vec<(Bucket, BucketStats)> {
        let mut totals = self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (bucket, stats) in self.okta().rate_limits().stats() {
            let total = totals.entry(bucket).or_default();
            total.calls += stats.calls;
            total.throttled += stats.throttled;
            total.limit = stats.limit;
            total.remaining = stats.remaining;
        }
        totals.into_iter().collect()
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        crate::metrics::set_leader(leading);
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Records whether a run failed in a way that makes this instance unready if it lasts.
    pub fn record_cycle_health(&self, failed: bool) {
        let mut since = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        match (failed, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, _) => *since = None,
            (true, Some(_)) => {}
        }
    }

    /// Asks for a manual cycle; the scheduler runs it as soon as the cycle lock is free.
    pub fn request_manual(&self) {
        self.manual_requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn take_manual(&self) -> bool {
        self.manual_requested.swap(false, Ordering::SeqCst)
    }

    /// Puts back a manual request the scheduler could not start yet.
    pub fn keep_manual(&self) {
        self.manual_requested.store(true, Ordering::SeqCst);
    }

    /// Whether `Authorization` carries the admin token; None when no admin token is set.
    pub fn admin_authorized(&self, authorization: Option<&str>) -> Option<bool> {
        let settings = self.settings();
        let expected = settings.admin_token_sha256.as_ref()?;
        Some(token_matches(expected, authorization))
    }

    /// Why this instance should not receive traffic, if it should not: the store does not
    /// answer, Okta refuses the credentials (or cannot be reached), or cycles have been
    /// failing for longer than the grace.
    pub async fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => reasons.push(format!("store unreachable: {e}")),
            Err(_) => reasons.push("store did not answer within 3 s".into()),
        }
        if let Err(e) = self.okta_credentials().await {
            reasons.push(format!("Okta credentials not usable: {e}"));
        }
        let grace = self.settings().interval * FAILING_GRACE_INTERVALS;
        let failing = *self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = failing.filter(|s| s.elapsed() > grace) {
            reasons.push(format!(
                "cycles have been failing for {} s (grace: {} intervals)",
                since.elapsed().as_secs(),
                FAILING_GRACE_INTERVALS
            ));
        }
        reasons
    }

    /// A cheap authenticated Okta call (one user), its result cached for
    /// `server.okta_check_ttl` so that probes do not spend the rate limit.
    pub async fn okta_credentials(&self) -> Result<(), String> {
        let ttl = self.settings().okta_check_ttl;
        let mut cached = self.okta_check.lock().await;
        if let Some((at, result)) = cached.as_ref()
            && at.elapsed() < ttl
        {
            return result.clone();
        }
        let client = self.okta();
        let check = async {
            let url = client
                .url("/api/v1/users?limit=1")
                .map_err(|e| e.to_string())?;
            client
                .get_page::<IgnoredAny>(&url)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(OKTA_CHECK_TIMEOUT, check).await {
            Ok(result) => result,
            Err(_) => Err("Okta did not answer within 5 s".into()),
        };
        *cached = Some((Instant::now(), result.clone()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_compares_by_hash() {
        let expected: [u8; 32] = Sha256::digest(b"an-admin-token-0123").into();
        assert!(token_matches(&expected, Some("Bearer an-admin-token-0123")));
        assert!(!token_matches(
            &expected,
            Some("Bearer an-admin-token-0124")
        ));
        assert!(!token_matches(&expected, Some("an-admin-token-0123")));
        assert!(!token_matches(&expected, None));
    }
}
