//! `oktasync run`: the daemon. It opens the store (migrations), joins the leader election
//! (on SQLite: refuses to start beside another daemon), serves HTTP (SCIM on every
//! instance, `/healthz`, `/readyz`, `/metrics`, `POST /admin/sync`), tells systemd READY,
//! and runs the scheduler (`scheduler.rs`) until SIGTERM or SIGINT: then it takes no new
//! work, stops the current cycle after its current operation (`gate.rs`), gives up
//! leadership and exits 0 within `SHUTDOWN_DEADLINE`. SIGHUP re-reads the configuration
//! file: an invalid one is rejected and the settings in effect are kept.

pub mod gate;
pub mod scheduler;
pub mod shared;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::cli::{CommandError, okta_client, open_store};
use crate::config::Settings;
use crate::scim::{ScimState, TokenHash};
use crate::store::locks::{LeaderError, instance_name};
use crate::targets::Targets;
use scheduler::Scheduler;
use shared::Daemon;

/// From a stop signal to the exit; systemd's TimeoutStopSec and Kubernetes' grace period
/// (30 s) leave room beyond it.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(25);
/// The part of it the current cycle may use to reach a clean stopping point.
const CYCLE_GRACE: Duration = Duration::from_secs(20);

/// The inbound SCIM tokens, by workspace, as hashes.
fn scim_tokens(settings: &Settings) -> HashMap<String, TokenHash> {
    settings
        .workspaces
        .iter()
        .filter_map(|w| {
            let hash = match (&w.scim_token, &w.scim_token_sha256) {
                (Some(token), _) => Some(TokenHash::of(token.expose_secret())),
                (None, Some(hex)) => TokenHash::from_hex(hex),
                (None, None) => None,
            };
            hash.map(|h| (w.policy.workspace_id.clone(), h))
        })
        .collect()
}

pub async fn run(settings: Settings, config_path: PathBuf) -> Result<u8, CommandError> {
    // Signals first: a SIGTERM during start-up then stops the daemon cleanly too.
    let mut signals = Signals::new()?;
    crate::metrics::install();
    let instance = instance_name();
    let store = open_store(&settings).await?;
    let leadership = store.leadership(&instance).map_err(|e| match e {
        // Another daemon owns this SQLite database: a restart cannot fix that (exit 2, which
        // the systemd unit does not restart on).
        LeaderError::AlreadyRunning { .. } => CommandError::Usage(e.to_string()),
        LeaderError::LockFile { .. } => CommandError::Runtime(e.into()),
    })?;
    let okta = okta_client(&settings)?;
    // Inbound SCIM writes to a workspace with a downstream target go to that target.
    let targets = Targets::new(&store, &settings.workspaces).map_err(anyhow::Error::msg)?;
    let scim =
        Arc::new(ScimState::new(store.clone(), scim_tokens(&settings)).with_targets(targets));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen = {}", settings.listen))?;
    let address = listener.local_addr().map_err(anyhow::Error::from)?;
    let daemon = Arc::new(Daemon::new(
        instance.clone(),
        store.clone(),
        config_path,
        settings,
        okta,
    ));
    tracing::info!(%address, %instance, backend = store.backend(), "serving SCIM, /healthz, /readyz and /metrics");
    let stop = daemon.stop.clone();
    let app = crate::http::app(scim, daemon.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    match daemon.okta_credentials().await {
        Ok(()) => tracing::info!("Okta accepts the credentials"),
        Err(e) => {
            tracing::warn!(error = %e, "Okta credential check failed: /readyz stays unready until it passes")
        }
    }
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving; waiting for leadership or the next cycle"),
    ]);
    let scheduler = tokio::spawn(Scheduler::new(daemon.clone(), leadership).run(CYCLE_GRACE));

    loop {
        match signals.next().await {
            Signal::Stop => break,
            Signal::Reload => reload(&daemon),
        }
    }
    tracing::info!("stopping: no new cycles");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    daemon.stop.cancel();
    let started = tokio::time::Instant::now();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, scheduler)
        .await
        .is_err()
    {
        tracing::warn!("the scheduler did not stop in time");
    }
    let left = SHUTDOWN_DEADLINE.saturating_sub(started.elapsed());
    let _ = tokio::time::timeout(left.max(Duration::from_secs(1)), server).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(0)
}

enum Signal {
    Stop,
    Reload,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}

/// Replaces every secret of `settings` found in `text`: a syntax error in the file can
/// quote the line it is on.
fn redact(text: &str, settings: &Settings) -> String {
    let mut secrets: Vec<&str> = Vec::new();
    if let crate::config::OktaCredentials::ApiToken(token) = &settings.okta.credentials {
        secrets.push(token.expose_secret());
    }
    for w in &settings.workspaces {
        if let Some(token) = &w.scim_token {
            secrets.push(token.expose_secret());
        }
    }
    secrets
        .into_iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |t, s| t.replace(s, "[redacted]"))
}

/// The keys whose values differ, for the reload log (names only, never values).
fn changed_keys(old: &Settings, new: &Settings) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    let check = |differs: bool, key: &'static str, list: &mut Vec<&'static str>| {
        if differs {
            list.push(key);
        }
    };
    check(old.interval != new.interval, "sync.interval", &mut applied);
    check(
        old.full_every != new.full_every,
        "sync.full_every",
        &mut applied,
    );
    check(
        old.thresholds.max_deactivations != new.thresholds.max_deactivations,
        "sync.max_deactivations",
        &mut applied,
    );
    check(
        old.thresholds.max_deactivation_ratio != new.thresholds.max_deactivation_ratio,
        "sync.max_deactivation_ratio",
        &mut applied,
    );
    check(
        old.okta.org_url != new.okta.org_url,
        "okta.org_url",
        &mut applied,
    );
    check(
        old.okta.rate_limit_share != new.okta.rate_limit_share,
        "okta.rate_limit_share",
        &mut applied,
    );
    check(
        old.admin_token_sha256 != new.admin_token_sha256,
        "server.admin_token",
        &mut applied,
    );
    let ids = |s: &Settings| -> Vec<(String, bool)> {
        s.workspaces
            .iter()
            .map(|w| (w.policy.workspace_id.clone(), w.pull))
            .collect()
    };
    check(ids(old) != ids(new), "workspaces", &mut applied);
    check(old.store_url != new.store_url, "store.url", &mut restart);
    check(old.listen != new.listen, "server.listen", &mut restart);
    let tokens = |s: &Settings| -> Vec<(String, Option<String>, Option<String>)> {
        s.workspaces
            .iter()
            .map(|w| {
                (
                    w.policy.workspace_id.clone(),
                    w.scim_token.as_ref().map(|t| t.expose_secret().to_owned()),
                    w.scim_token_sha256.clone(),
                )
            })
            .collect()
    };
    check(
        tokens(old) != tokens(new),
        "workspaces[].scim_token",
        &mut restart,
    );
    (applied, restart)
}

/// SIGHUP: re-reads the configuration file. A valid one is in effect from the next cycle
/// (interval, thresholds, workspaces, Okta settings, admin token); an invalid one is
/// rejected and the settings in effect stay.
fn reload(daemon: &Daemon) {
    let old = daemon.settings();
    let path = daemon.config_path.display().to_string();
    let loaded = crate::config::load(&daemon.config_path)
        .map_err(|e| e.to_string())
        .and_then(|new| {
            okta_client(&new)
                .map(|c| (new, c))
                .map_err(|e| format!("{e:#}"))
        });
    match loaded {
        Err(e) => {
            tracing::error!(path, error = %redact(&e, &old), "configuration reload rejected: the settings in effect stay");
            crate::metrics::record_reload(false);
        }
        Ok((new, okta)) => {
            let (applied, restart) = changed_keys(&old, &new);
            if !restart.is_empty() {
                tracing::warn!(keys = ?restart, "these settings take effect only after a restart");
            }
            tracing::info!(path, changed = ?applied, "configuration reloaded: in effect from the next cycle");
            daemon.replace_settings(new, okta);
            crate::metrics::record_reload(true);
        }
    }
}
