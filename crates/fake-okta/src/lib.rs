//! A local stand-in for Okta's Management API, with Okta's documented behaviour, for the
//! `oktasync` daemon's integration tests and demo.
//!
//! It serves the read endpoints the daemon uses (users, groups, group members, app users,
//! app groups, group push mappings, System Log) from a deterministic generated org, with
//! Okta's paging (`link` headers, `after` cursors, default and maximum limits), filters,
//! rate-limit buckets and headers, and error bodies. An admin API under `/__admin` changes
//! the org (moving timestamps and writing System Log events as Okta does), injects faults,
//! reports request stats and moves the fake's clock.
//!
//! With `oauth_client_id` and `oauth_public_key_pem` it also serves an OAuth service app on
//! the org authorization server (`POST /oauth2/v1/token`, private_key_jwt, DPoP) and accepts
//! its access tokens on the API, next to SSWS.
//!
//! Map: [`world`] (org model, generation, changes) · [`syslog`] (System Log) · [`filter`]
//! (filter/search expressions) · [`paging`] (limits, cursors, link headers) · [`ratelimit`]
//! · [`faults`] · [`stats`] · [`oauth`] (service app: tokens, DPoP) · `api` (Okta routes +
//! middleware) · `admin` (admin routes) · [`render`] (Okta JSON shapes) · [`clock`] ·
//! [`ids`] · [`error`].

mod admin;
mod api;
pub mod clock;
pub mod error;
pub mod faults;
pub mod filter;
pub mod ids;
pub mod oauth;
pub mod paging;
pub mod ratelimit;
pub mod render;
mod state;
pub mod stats;
pub mod syslog;
pub mod world;

#[cfg(test)]
mod testutil;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::Shared;

/// How the fake org is generated and how strict the fake is.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Number of generated users.
    pub users: usize,
    /// Number of generated groups.
    pub groups: usize,
    /// The apps that exist; the first gets Engineering and team-alpha assigned and pushed.
    pub app_ids: Vec<String>,
    /// Requests need `Authorization: SSWS <api_token>`.
    pub api_token: String,
    /// Data generation is deterministic from the seed.
    pub seed: u64,
    /// Rate-limit windows last `60s / time_scale`.
    pub time_scale: f64,
    /// Enforce bucket limits (when false the headers are still sent, but never a 429).
    pub rate_limits: bool,
    /// Multiplies every bucket limit.
    pub limit_multiplier: f64,
    /// The OAuth service app's client id (with `oauth_public_key_pem`; `None`: SSWS only).
    pub oauth_client_id: Option<String>,
    /// The service app's public key (PEM, RSA or EC) its client assertions must verify with.
    pub oauth_public_key_pem: Option<String>,
    /// Lifetime of issued access tokens (Okta fixes it at an hour).
    pub oauth_token_ttl_seconds: u64,
    /// Token requests must carry a DPoP proof (Okta's default for new service apps since
    /// 2024); when false, requests without one get Bearer tokens.
    pub dpop_required: bool,
    /// Leave out the `null`s real Okta puts in System Log events (`detailEntry`,
    /// `legacyEventType`, `client.id`, `outcome.reason`), which Okta's OpenAPI spec declares
    /// non-nullable: for runs that validate every response against the spec.
    pub omit_log_nulls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: 100,
            groups: 10,
            app_ids: vec!["0oafakeapp0000000001".into()],
            api_token: "fake-okta-token".into(),
            seed: 1,
            time_scale: 1.0,
            rate_limits: true,
            limit_multiplier: 1.0,
            oauth_client_id: None,
            oauth_public_key_pem: None,
            oauth_token_ttl_seconds: 3600,
            dpop_required: true,
            omit_log_nulls: false,
        }
    }
}

/// Handle to a running fake; dropping it stops the server too.
#[derive(Debug)]
pub struct FakeOkta {
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How long `shutdown` waits for in-flight requests (e.g. a `delay` fault) before aborting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn base_url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}", addr.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", addr.port()),
    }
}

impl FakeOkta {
    /// Generates the org and serves on `listener` in a background tokio task.
    pub async fn start(listener: TcpListener, options: Options) -> anyhow::Result<FakeOkta> {
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        let base_url = base_url_of(addr);
        let started = std::time::Instant::now();
        let oauth_app = oauth::AppConfig::from_options(&options)?;
        let gen_options = options.clone();
        // Generating a large org takes a moment of CPU: keep it off the async workers.
        let world = tokio::task::spawn_blocking(move || {
            world::generate::generate(&world::generate::Spec {
                users: gen_options.users,
                groups: gen_options.groups,
                app_ids: &gen_options.app_ids,
                seed: gen_options.seed,
            })
        })
        .await
        .context("generating the fake org")?;
        tracing::info!(
            users = world.users.len(),
            groups = world.groups.len(),
            apps = world.apps.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fake okta org generated"
        );
        let shared = Arc::new(Shared {
            world: Arc::new(RwLock::new(world)),
            clock: clock::FakeClock::default(),
            limiter: ratelimit::RateLimiter::new(
                options.rate_limits,
                options.time_scale,
                options.limit_multiplier,
            ),
            faults: faults::Faults::default(),
            stats: stats::Stats::default(),
            ids: ids::IdGen::new(options.seed),
            api_token: options.api_token.clone(),
            omit_log_nulls: options.omit_log_nulls,
            oauth: oauth::OAuth::new(oauth_app),
            base_url: base_url.clone(),
            public_url: RwLock::new(None),
        });
        let app = api::router(shared).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                // A dropped sender also means stop.
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "fake okta server failed");
            }
        });
        tracing::info!(url = %base_url, "fake okta listening");
        Ok(FakeOkta {
            base_url,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to a grace period), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            tracing::warn!("fake okta did not stop within the grace period; aborting");
            task.abort();
        }
        tracing::info!(url = %self.base_url, "fake okta stopped");
    }
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs until ctrl-c / SIGTERM. Prints exactly one line `FAKE_OKTA_URL=http://127.0.0.1:PORT`
/// to stdout once listening; everything else goes to tracing.
pub async fn run_until_signal(listen: SocketAddr, options: Options) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let fake = FakeOkta::start(listener, options).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "FAKE_OKTA_URL={}", fake.base_url()).context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    wait_for_signal().await?;
    tracing::info!("signal received; stopping fake okta");
    fake.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")
}
