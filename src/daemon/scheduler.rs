//! The scheduler loop. It wakes every tick (at most a second) to feed the systemd watchdog
//! and to check leadership (a leader pings its lock's connection, a follower tries to take
//! the lock), and starts a cycle when one is due on the leader or was requested by hand on
//! any instance. A cycle runs as its own task under the store's cycle lock, so ticks keep
//! coming while it runs and never start a second one; a tick that finds a cycle due while
//! another runs is simply late, and ticks missed by a long cycle are skipped.
//!
//! The schedule lives in the store: a new leader (after a failover or a restart) starts
//! from the last completed cycle's start plus an interval, or at once when the latest cycle
//! was cut off. Each interval is shortened by up to 10% at random so that replicas and
//! restarts do not align with other clients of the same Okta org; never lengthened, so a
//! change in Okta waits at most one `interval` (plus a tick) for the cycle that applies it. A full sweep is due every `full_every`.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinHandle};
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use super::gate::Gate;
use super::shared::Daemon;
use crate::config::Settings;
use crate::pull::PullSource;
use crate::reconcile::cycle::{CycleOptions, CycleReport, WorkspaceSpec, run_cycle};
use crate::reconcile::ports::StateError;
use crate::store::locks::{CycleLock, LeaderCheck, Leadership};
use crate::store::runs::{Run, Trigger};
use crate::store::{Store, now_millis};
use crate::targets::Targets;

/// The longest pause between two ticks.
const MAX_TICK: Duration = Duration::from_secs(1);
/// Intervals are shortened by up to this fraction.
const JITTER: f64 = 0.1;
/// Histogram samples are drained into buckets every this many ticks.
const UPKEEP_TICKS: u32 = 10;

/// A cycle in progress on this instance.
struct Running {
    run: Run,
    lock: CycleLock,
    gate: Gate,
    started: Instant,
    task: JoinHandle<Result<CycleReport, StateError>>,
}

pub struct Scheduler {
    daemon: Arc<Daemon>,
    leadership: Leadership,
    /// When the next scheduled cycle is due (None: read the schedule from the store).
    next_due: Option<Instant>,
    running: Option<Running>,
    watchdog: bool,
    /// When a store failure was last logged: retried every tick, logged once a minute.
    last_store_warning: Option<Instant>,
}

/// A number in [0, 1): `RandomState` is seeded per process and per call, which is all the
/// randomness jitter needs.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `interval` less up to 10%: never later than promised.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - JITTER * random_unit())
}

/// The next due time after a cycle that started at `started` and ended now: one (jittered)
/// interval later, skipping whole intervals already missed.
fn next_after(started: Instant, interval: Duration, now: Instant) -> Instant {
    let mut next = started + jittered(interval);
    while next <= now {
        next += interval;
    }
    next
}

/// The workspaces a cycle reconciles.
fn pulled(settings: &Settings) -> Vec<WorkspaceSpec> {
    settings
        .workspaces
        .iter()
        .filter(|w| w.pull)
        .map(|w| WorkspaceSpec {
            policy: w.policy.clone(),
            plan_options: w.plan_options,
        })
        .collect()
}

/// One line per run for the log (the full plan is in the journal and `history`).
fn summary(report: &CycleReport) -> String {
    report
        .workspaces
        .iter()
        .map(|w| {
            format!(
                "{}: read {}, applied {}, failed {}, held {}{}",
                w.workspace_id,
                if w.complete_read {
                    "complete"
                } else {
                    "INCOMPLETE"
                },
                w.applied.len(),
                w.failed.len(),
                w.held.len(),
                w.held_plan_id
                    .as_deref()
                    .map(|id| format!(" (approve: oktasync plan --approve {id})"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A run's result for metrics and logs, and whether it counts against readiness: an
/// incomplete Okta read, a workspace that could not be loaded, or a store failure (single
/// objects failing show in `status` and metrics, but no restart or re-routing fixes them).
fn classify(joined: &Result<Result<CycleReport, StateError>, JoinError>) -> (&'static str, bool) {
    match joined {
        Ok(Ok(report)) => {
            let unhealthy = report
                .workspaces
                .iter()
                .any(|w| !w.complete_read || w.error.is_some());
            let result = match report.exit_code() {
                0 => "ok",
                3 => "held",
                _ => "failed",
            };
            (result, unhealthy)
        }
        Ok(Err(_)) => ("error", true),
        Err(e) if e.is_cancelled() => ("abandoned", false),
        Err(_) => ("error", true),
    }
}

impl Scheduler {
    pub fn new(daemon: Arc<Daemon>, leadership: Leadership) -> Self {
        Self {
            daemon,
            leadership,
            next_due: None,
            running: None,
            watchdog: sd_notify::watchdog_enabled().is_some(),
            last_store_warning: None,
        }
    }

    /// Logs a store failure unless one was logged in the last minute.
    fn store_warning(&mut self, error: &dyn std::fmt::Display, message: &str) {
        if self
            .last_store_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_store_warning = Some(Instant::now());
            tracing::warn!(error = %error, "{message} (retrying every tick)");
        }
    }

    fn tick_period(&self) -> Duration {
        let interval = self.daemon.settings().interval;
        let mut tick = (interval / 4).clamp(Duration::from_millis(100), MAX_TICK);
        if let Some(watchdog) = sd_notify::watchdog_enabled() {
            tick = tick.min(watchdog / 2);
        }
        tick
    }

    /// Runs until the daemon stops; then stops the current cycle cleanly, or abandons it
    /// once `grace` has passed, and gives up leadership.
    pub async fn run(mut self, grace: Duration) {
        let mut period = self.tick_period();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut upkeep = 0u32;
        loop {
            tokio::select! {
                _ = self.daemon.stop.cancelled() => break,
                _ = ticks.tick() => {}
                _ = self.daemon.wake.notified() => {}
                joined = wait(&mut self.running) => self.finish(joined).await,
            }
            if self.watchdog {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            upkeep += 1;
            if upkeep >= UPKEEP_TICKS {
                upkeep = 0;
                crate::metrics::upkeep();
            }
            if self.daemon.take_reloaded() {
                // The interval may have changed: re-plan the next cycle from the store.
                self.next_due = None;
                if self.tick_period() != period {
                    period = self.tick_period();
                    ticks = tokio::time::interval(period);
                    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
                }
            }
            self.check_leadership().await;
            if self.running.is_none() {
                self.maybe_start().await;
            }
        }
        self.shutdown(Instant::now() + grace).await;
    }

    async fn check_leadership(&mut self) {
        let was = self.daemon.is_leading();
        match self.leadership.check().await {
            LeaderCheck::Leading => {
                if !was {
                    tracing::info!(instance = %self.daemon.instance, "leader: running scheduled cycles");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(
                        "leader: running scheduled cycles",
                    )]);
                    self.daemon.set_leading(true);
                    self.next_due = None;
                }
            }
            LeaderCheck::Following => {
                if was {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(
                        "follower: serving SCIM",
                    )]);
                    self.daemon.set_leading(false);
                }
            }
            LeaderCheck::Lost(reason) => {
                tracing::error!(reason = %reason, "lost leadership: stopping the current cycle at once");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(
                    "follower: lost leadership",
                )]);
                self.daemon.set_leading(false);
                self.next_due = None;
                self.abort().await;
            }
        }
    }

    async fn maybe_start(&mut self) {
        if self.daemon.take_manual() {
            if !self.start(Trigger::Admin).await {
                self.daemon.keep_manual();
            }
            return;
        }
        if !self.leadership.is_leading() {
            return;
        }
        let due = match self.next_due {
            Some(due) => due,
            None => match self.due_from_store().await {
                Some(due) => {
                    self.next_due = Some(due);
                    due
                }
                None => return,
            },
        };
        if Instant::now() >= due {
            // When the lock is busy (a manual cycle elsewhere), the cycle stays due and the
            // next tick tries again.
            self.start(Trigger::Schedule).await;
        }
    }

    /// When the next scheduled cycle is due, from the cycles recorded in the store.
    async fn due_from_store(&mut self) -> Option<Instant> {
        let anchor = match self.daemon.store.schedule_anchor().await {
            Ok(anchor) => anchor,
            Err(e) => {
                self.store_warning(&e, "cannot read the schedule from the store");
                return None;
            }
        };
        let now = Instant::now();
        let interval = self.daemon.settings().interval;
        match anchor.last_completed_start {
            Some(started) if anchor.latest_completed => {
                let ago = Duration::from_millis(u64::try_from(now_millis() - started).unwrap_or(0));
                let due = now.checked_sub(ago).unwrap_or(now) + jittered(interval);
                tracing::info!(
                    in_secs = due.saturating_duration_since(now).as_secs(),
                    "next cycle planned from the last completed one"
                );
                Some(due.max(now))
            }
            // Never ran, or the latest cycle was cut off: run now.
            _ => Some(now),
        }
    }

    /// Takes the cycle lock and starts a run; false when the lock is busy or the store fails.
    async fn start(&mut self, trigger: Trigger) -> bool {
        let daemon = self.daemon.clone();
        let store: Store = daemon.store.clone();
        let lock = match store.try_lock_cycles(&daemon.instance).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::debug!("another process runs a cycle: waiting for the lock");
                return false;
            }
            Err(e) => {
                self.store_warning(&e, "cannot take the cycle lock");
                return false;
            }
        };
        let settings = daemon.settings();
        let targets = match Targets::new(&store, &settings.workspaces) {
            Ok(targets) => targets,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the workspace targets: no cycle");
                lock.release().await;
                return false;
            }
        };
        let full = match trigger {
            Trigger::Schedule => match store.schedule_anchor().await {
                Ok(anchor) => anchor.last_full_start.is_none_or(|t| {
                    now_millis() - t
                        >= i64::try_from(settings.full_every.as_millis()).unwrap_or(i64::MAX)
                }),
                Err(_) => true,
            },
            Trigger::Admin | Trigger::Cli => true,
        };
        let specs = pulled(&settings);
        let source =
            match PullSource::prepare(daemon.okta(), &store, &settings, &specs, full, true).await {
                Ok(source) => source,
                Err(e) => {
                    self.store_warning(&e, "cannot load the last Okta read");
                    lock.release().await;
                    return false;
                }
            };
        let full = source.is_full();
        let run = match store
            .begin_run(&lock, trigger, full, &daemon.instance)
            .await
        {
            Ok(run) => run,
            Err(e) => {
                self.store_warning(&e, "cannot start a run");
                lock.release().await;
                return false;
            }
        };
        let span = tracing::info_span!("cycle", cycle = %run.id, trigger = trigger.as_str(), full);
        span.in_scope(|| tracing::info!("cycle started"));
        let gate = Gate::default();
        let source = gate.wrap(source);
        let target = gate.wrap(targets);
        let state = gate.wrap(run.state(&store));
        let options = CycleOptions {
            dry_run: false,
            force: false,
            thresholds: settings.thresholds,
        };
        let task = tokio::spawn(
            async move {
                let report = run_cycle(&source, &target, &state, &specs, options, &|_, _| {}).await;
                if report.is_ok()
                    && let Err(e) = source.inner().commit().await
                {
                    tracing::warn!(error = %e, "cannot keep this Okta read: the next cycle reads from the last one");
                }
                report
            }
            .instrument(span),
        );
        crate::metrics::set_running(true);
        self.running = Some(Running {
            run,
            lock,
            gate,
            started: Instant::now(),
            task,
        });
        true
    }

    /// Records a finished (or dropped) run and releases the cycle lock.
    async fn finish(&mut self, joined: Result<Result<CycleReport, StateError>, JoinError>) {
        let Some(running) = self.running.take() else {
            return;
        };
        let elapsed = running.started.elapsed();
        let (result, unhealthy) = classify(&joined);
        let span = tracing::info_span!("cycle", cycle = %running.run.id, trigger = running.run.trigger.as_str(), full = running.run.full);
        let _entered = span.enter();
        match &joined {
            Ok(Ok(report)) => {
                crate::metrics::record_report(report);
                tracing::info!(
                    result,
                    exit_code = report.exit_code(),
                    duration_ms = elapsed.as_millis() as u64,
                    workspaces = %summary(report),
                    "cycle finished"
                );
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, duration_ms = elapsed.as_millis() as u64, "cycle failed")
            }
            Err(e) if e.is_cancelled() => tracing::warn!(
                duration_ms = elapsed.as_millis() as u64,
                "cycle abandoned: its pending operations are re-planned by the next cycle"
            ),
            Err(e) => tracing::error!(error = %e, "cycle task failed"),
        }
        match self.daemon.store.end_run(&running.run).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cycles = n, "recorded as abandoned"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot close the run's cycles: the next run will")
            }
        }
        running.lock.release().await;
        crate::metrics::set_running(false);
        crate::metrics::record_run(result, running.run.trigger.as_str(), elapsed);
        self.daemon.record_cycle_health(unhealthy);
        if running.run.trigger == Trigger::Schedule || self.next_due.is_some() {
            // Any completed cycle restarts the interval: a manual cycle just did the work.
            let interval = self.daemon.settings().interval;
            self.next_due = Some(next_after(running.started, interval, Instant::now()));
        }
        drop(joined);
        crate::heap::release_freed();
    }

    /// Drops the running cycle at once (leadership lost).
    async fn abort(&mut self) {
        if let Some(running) = self.running.as_mut() {
            running.gate.close();
            running.task.abort();
            let joined = (&mut running.task).await;
            self.finish(joined).await;
        }
    }

    /// Stops the running cycle at a clean point, or drops it at `deadline`; then gives up
    /// leadership so another replica can take over at once.
    async fn shutdown(mut self, deadline: Instant) {
        if let Some(running) = self.running.as_mut() {
            tracing::info!("stopping: the current cycle stops after its current operation");
            running.gate.close();
            let gate = running.gate.clone();
            let joined = tokio::select! {
                joined = &mut running.task => Some(joined),
                _ = gate.parked() => None,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    tracing::warn!("the current operation did not finish before the deadline: abandoned");
                    None
                }
            };
            let joined = match joined {
                Some(joined) => joined,
                None => {
                    running.task.abort();
                    (&mut running.task).await
                }
            };
            self.finish(joined).await;
        }
        self.daemon.set_leading(false);
        self.leadership.release().await;
    }
}

/// The running cycle's result, or never when there is none.
async fn wait(running: &mut Option<Running>) -> Result<Result<CycleReport, StateError>, JoinError> {
    match running {
        Some(running) => (&mut running.task).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_shortens_by_at_most_ten_percent_and_never_lengthens() {
        let interval = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..1000).map(|_| jittered(interval)).collect();
        for d in &samples {
            assert!(*d > Duration::from_secs(90) && *d <= interval, "{d:?}");
        }
        assert!(
            samples.iter().any(|d| *d < Duration::from_secs(95)),
            "the intervals vary"
        );
    }

    #[test]
    fn missed_intervals_are_skipped() {
        let start = Instant::now();
        let interval = Duration::from_secs(10);
        // A cycle that ran 35 s: the next one comes within the following interval, once.
        let next = next_after(start, interval, start + Duration::from_secs(35));
        assert!(next > start + Duration::from_secs(35));
        assert!(next <= start + Duration::from_secs(46));
    }
}
