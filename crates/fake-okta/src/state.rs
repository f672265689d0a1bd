//! The state every request handler shares: the world behind its lock, the clock, the rate
//! limiter, faults and stats. Handlers take the world lock only for synchronous work
//! (reading a page and serialising it, or applying one change) and never across an await.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::http::HeaderMap;
use axum::http::header::HOST;

use crate::clock::FakeClock;
use crate::faults::Faults;
use crate::ids::IdGen;
use crate::oauth::OAuth;
use crate::ratelimit::RateLimiter;
use crate::stats::Stats;
use crate::world::World;

#[derive(Debug)]
pub struct Shared {
    pub world: Arc<RwLock<World>>,
    pub clock: FakeClock,
    pub limiter: RateLimiter,
    pub faults: Faults,
    pub stats: Stats,
    pub ids: IdGen,
    pub api_token: String,
    /// See `Options::omit_log_nulls`.
    pub omit_log_nulls: bool,
    /// The OAuth service app (inert when none is configured).
    pub oauth: OAuth,
    /// `http://127.0.0.1:PORT`, used when a request has no usable `Host` header.
    pub base_url: String,
    /// The origin clients reach the fake at when a proxy in front of it rewrites `Host`
    /// (Prism's validating proxy does): set with `PUT /__admin/public-url`.
    pub public_url: RwLock<Option<String>>,
}

pub type AppState = Arc<Shared>;

impl Shared {
    /// A poisoned lock only means a handler panicked mid-read; the data is still consistent
    /// enough for a test double, so keep serving.
    pub fn read(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The origin the client used (links must point back at the address it can reach, e.g.
    /// through a proxy), falling back to the bound address. A configured public URL wins:
    /// behind a proxy that rewrites `Host`, it is the only origin the client knows.
    pub fn base_for(&self, headers: &HeaderMap) -> String {
        if let Some(public) = self
            .public_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return public.clone();
        }
        headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .map_or_else(|| self.base_url.clone(), |h| format!("http://{h}"))
    }
}
