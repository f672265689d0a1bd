//! Prometheus metrics: the series oktasync exports, the recorder rendered by `GET /metrics`,
//! and the helpers that record them. Events are counted where they happen (a run ending in
//! the daemon, a SCIM request in `track_scim`); the Okta client's per-bucket figures are
//! sampled when /metrics is scraped. Built on the `metrics` facade, so emitters need no
//! registry handle; without an installed recorder (every command but `run`) it all costs
//! nothing.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::okta::ratelimit::{Bucket, BucketStats};
use crate::reconcile::cycle::CycleReport;

pub const CYCLES: &str = "oktasync_cycles_total";
pub const CYCLE_DURATION: &str = "oktasync_cycle_duration_seconds";
pub const CYCLE_RUNNING: &str = "oktasync_cycle_running";
pub const LAST_SUCCESS: &str = "oktasync_last_success_timestamp_seconds";
pub const OPERATIONS: &str = "oktasync_operations_total";
pub const HELD_PLANS: &str = "oktasync_held_plans";
pub const OKTA_REQUESTS: &str = "oktasync_okta_requests_total";
pub const OKTA_THROTTLED: &str = "oktasync_okta_throttled_total";
pub const OKTA_LIMIT: &str = "oktasync_okta_rate_limit_limit";
pub const OKTA_REMAINING: &str = "oktasync_okta_rate_limit_remaining";
pub const SCIM_REQUESTS: &str = "oktasync_scim_requests_total";
pub const SCIM_DURATION: &str = "oktasync_scim_request_duration_seconds";
pub const LEADER: &str = "oktasync_leader";
pub const RELOADS: &str = "oktasync_config_reloads_total";
pub const INTERVAL: &str = "oktasync_sync_interval_seconds";
pub const MAX_DEACTIVATIONS: &str = "oktasync_max_deactivations";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once); later calls are no-ops.
pub fn install() {
    if HANDLE.get().is_some() {
        return;
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(CYCLE_DURATION.into()),
            &[
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(SCIM_DURATION.into()),
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
        });
    let installed = builder.and_then(|b| b.install_recorder());
    match installed {
        Ok(handle) => {
            let _ = HANDLE.set(handle);
            describe();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the metrics recorder: /metrics stays empty")
        }
    }
}

fn describe() {
    describe_counter!(
        CYCLES,
        "Runs (one cycle across the pulled workspaces), by result and trigger"
    );
    describe_histogram!(
        CYCLE_DURATION,
        Unit::Seconds,
        "Run durations, by result and trigger"
    );
    describe_gauge!(CYCLE_RUNNING, "1 while this instance runs a cycle");
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last run that completed without failure on this instance"
    );
    describe_counter!(
        OPERATIONS,
        "Operations by kind and outcome (applied, failed, held)"
    );
    describe_gauge!(
        HELD_PLANS,
        "Workspaces whose deactivations the last run held for approval"
    );
    describe_counter!(OKTA_REQUESTS, "Requests to Okta, by rate-limit bucket");
    describe_counter!(
        OKTA_THROTTLED,
        "Okta answers 429 (rate limited), by rate-limit bucket"
    );
    describe_gauge!(OKTA_LIMIT, "Okta's X-Rate-Limit-Limit last seen, by bucket");
    describe_gauge!(
        OKTA_REMAINING,
        "Okta's X-Rate-Limit-Remaining last seen (org-wide budget left), by bucket"
    );
    describe_counter!(
        SCIM_REQUESTS,
        "Inbound SCIM requests, by route template, method and status"
    );
    describe_histogram!(
        SCIM_DURATION,
        Unit::Seconds,
        "Inbound SCIM request durations, by route template and method"
    );
    describe_gauge!(
        LEADER,
        "1 while this instance is the leader (runs scheduled cycles)"
    );
    describe_counter!(RELOADS, "Configuration reloads (SIGHUP), by result");
    describe_gauge!(INTERVAL, Unit::Seconds, "sync.interval in effect");
    describe_gauge!(MAX_DEACTIVATIONS, "sync.max_deactivations in effect");
}

/// The Prometheus text exposition; None when no recorder is installed.
pub fn render() -> Option<String> {
    HANDLE.get().map(PrometheusHandle::render)
}

/// Drains histogram samples into their buckets; call now and then (the daemon's tick).
pub fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// A run ended: `result` is ok, held, failed, error or abandoned.
pub fn record_run(result: &'static str, trigger: &'static str, duration: Duration) {
    counter!(CYCLES, "result" => result, "trigger" => trigger).increment(1);
    histogram!(CYCLE_DURATION, "result" => result, "trigger" => trigger)
        .record(duration.as_secs_f64());
    if matches!(result, "ok" | "held") {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        gauge!(LAST_SUCCESS).set(now as f64);
    }
}

/// Operations by kind and outcome, and the plans held, from a finished run's report.
pub fn record_report(report: &CycleReport) {
    for ws in &report.workspaces {
        for op in &ws.applied {
            counter!(OPERATIONS, "kind" => op.kind().as_str(), "outcome" => "applied").increment(1);
        }
        for (op, _) in &ws.failed {
            counter!(OPERATIONS, "kind" => op.kind().as_str(), "outcome" => "failed").increment(1);
        }
        for op in &ws.held {
            counter!(OPERATIONS, "kind" => op.kind().as_str(), "outcome" => "held").increment(1);
        }
    }
    let held = report
        .workspaces
        .iter()
        .filter(|w| w.held_plan_id.is_some())
        .count();
    gauge!(HELD_PLANS).set(held as f64);
}

pub fn set_running(running: bool) {
    gauge!(CYCLE_RUNNING).set(if running { 1.0 } else { 0.0 });
}

pub fn set_leader(leading: bool) {
    gauge!(LEADER).set(if leading { 1.0 } else { 0.0 });
}

pub fn record_reload(ok: bool) {
    counter!(RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// The settings in effect, so a reload can be seen from outside.
pub fn set_settings(settings: &crate::config::Settings) {
    gauge!(INTERVAL).set(settings.interval.as_secs_f64());
    gauge!(MAX_DEACTIVATIONS).set(settings.thresholds.max_deactivations as f64);
}

/// Okta's per-bucket figures: `totals` are cumulative for the process (calls and 429s
/// of clients replaced by a reload included); limit and remaining are the latest seen.
pub fn record_okta(totals: &[(Bucket, BucketStats)]) {
    for (bucket, stats) in totals {
        let b = bucket.as_str();
        counter!(OKTA_REQUESTS, "bucket" => b).absolute(stats.calls);
        counter!(OKTA_THROTTLED, "bucket" => b).absolute(stats.throttled);
        if let Some(limit) = stats.limit {
            gauge!(OKTA_LIMIT, "bucket" => b).set(f64::from(limit));
        }
        if let Some(remaining) = stats.remaining {
            gauge!(OKTA_REMAINING, "bucket" => b).set(f64::from(remaining));
        }
    }
}

/// Middleware for the SCIM router: counts requests by route template (not the raw URI,
/// which holds ids and would make a series per user), method and status.
pub async fn track_scim(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(SCIM_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    histogram!(SCIM_DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
