//! `oktasync run`: the HTTP server and the scheduler in one process. Cycles run at start
//! and then every `sync.interval`, never overlapping (a tick that comes while a cycle runs
//! is skipped). SIGTERM or SIGINT stop taking work, let the current cycle finish within a
//! deadline, and exit 0. systemd is told READY once serving, and WATCHDOG from the loop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::cli::{okta_client, open_store};
use crate::config::Settings;
use crate::reconcile::cycle::{CycleOptions, WorkspaceSpec, run_cycle};
use crate::scim::{ScimState, TokenHash};
use crate::targets::local::LocalTarget;
use secrecy::ExposeSecret;

/// How long a running cycle may take to finish after a stop signal.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(25);

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(settings: Settings) -> anyhow::Result<u8> {
    let store = open_store(&settings).await?;
    let tokens = settings
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
        .collect();
    let state = Arc::new(ScimState::new(store.clone(), tokens));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen = {}", settings.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving SCIM, /healthz and /readyz");
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, crate::http::app(state))
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await
    });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let scheduler_stop = stop.clone();
    let scheduler = tokio::spawn(scheduler(settings, store.clone(), scheduler_stop));
    stop_signal().await;
    tracing::info!("stopping: no new cycles; waiting for the current one");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    stop.cancel();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, scheduler)
        .await
        .is_err()
    {
        tracing::warn!("the cycle did not finish in time: abandoned; the next start re-plans it");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    store.close().await;
    Ok(0)
}

async fn scheduler(settings: Settings, store: crate::store::Store, stop: CancellationToken) {
    let specs: Vec<WorkspaceSpec> = settings
        .workspaces
        .iter()
        .filter(|w| w.pull)
        .map(|w| WorkspaceSpec {
            policy: w.policy.clone(),
            plan_options: w.plan_options,
        })
        .collect();
    let client = match okta_client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the Okta client: no cycles will run");
            return;
        }
    };
    let target = LocalTarget::new(store.clone());
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_ticks =
        tokio::time::interval(watchdog.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = watchdog_ticks.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                continue;
            }
            _ = ticks.tick() => {}
        }
        let cycle = run_cycle(
            &client,
            &target,
            &store,
            &specs,
            CycleOptions {
                dry_run: false,
                force: false,
                thresholds: settings.thresholds,
            },
            &|_, _| {},
        );
        match cycle.await {
            Ok(report) => {
                let code = report.exit_code();
                let summary = crate::render::report_text(&report, false);
                tracing::info!(exit_code = code, report = %summary.trim_end(), "cycle finished");
            }
            Err(e) => tracing::error!(error = %e, "cycle failed"),
        }
    }
}
