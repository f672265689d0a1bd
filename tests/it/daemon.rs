//! `oktasync run` as operators see it: leader election and failover on PostgreSQL, cycles
//! serialised through the store, SIGTERM in the middle of a cycle, SIGHUP reloads,
//! `/metrics` and `/readyz`, `status` and `history`, and the one-daemon rule on SQLite.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oktasync::store::Store;
use oktasync::store::history::CycleRecord;
use oktasync::store::now_millis;
use serde_json::{Value, json};

use crate::helpers::*;

const ADMIN_TOKEN: &str = "admin-token-for-tests-77f1";
/// Generous bound for things that should happen within seconds.
const WITHIN: Duration = Duration::from_secs(60);

fn with_interval(interval: &str, max_deactivations: usize) -> AppConfig {
    AppConfig {
        sync: format!(
            "interval = \"{interval}\"\nmax_deactivations = {max_deactivations}\nmax_deactivation_ratio = 0.5\n"
        ),
        ..AppConfig::default()
    }
}

async fn cycles_since(store: &Store, since: i64) -> Vec<CycleRecord> {
    store
        .cycles_since(since)
        .await
        .unwrap_or_else(|e| panic!("cycles: {e}"))
}

/// Finished cycles the scheduler started, since `since`.
async fn scheduled(store: &Store, since: i64) -> Vec<CycleRecord> {
    cycles_since(store, since)
        .await
        .into_iter()
        .filter(|c| c.triggered_by.as_deref() == Some("schedule") && c.finished_at.is_some())
        .collect()
}

/// The pid in an instance name (`host/pid`).
fn pid_of(c: &CycleRecord) -> Option<u32> {
    c.instance.as_deref()?.rsplit('/').next()?.parse().ok()
}

/// No two cycles ever ran at once: each ended before the next began (only the latest may
/// still be running).
fn assert_no_overlap(cycles: &[CycleRecord]) {
    let mut sorted = cycles.to_vec();
    sorted.sort_by_key(|c| (c.started_at, c.id));
    for pair in sorted.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let end = a
            .finished_at
            .unwrap_or_else(|| panic!("cycle {} never finished but {} started", a.id, b.id));
        assert!(
            end <= b.started_at,
            "cycles overlap: {} ({:?} on {:?}) ran {}..{}, {} ({:?} on {:?}) started at {}",
            a.id,
            a.triggered_by,
            a.instance,
            a.started_at,
            end,
            b.id,
            b.triggered_by,
            b.instance,
            b.started_at
        );
    }
}

/// After a restart: no duplicate users, exactly the in-scope ones, and nothing to plan.
async fn assert_converged(app: &TestApp) {
    let plan = app.plan();
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        ops(&plan.workspace()).is_empty(),
        "a converged workspace plans nothing: {:?}",
        ops(&plan.workspace())
    );
    let world = app.fake.state().await;
    let state = app.workspace().await;
    let managed: Vec<String> = state
        .users
        .iter()
        .filter_map(|u| u.okta_id.clone())
        .collect();
    let unique: BTreeSet<String> = managed.iter().cloned().collect();
    assert_eq!(managed.len(), unique.len(), "duplicate users");
    assert_eq!(unique, world.in_scope(), "exactly the in-scope users");
}

async fn journal_counts(store: &Store) -> BTreeMap<String, i64> {
    store
        .journal_counts(WS)
        .await
        .unwrap_or_else(|e| panic!("journal: {e}"))
        .into_iter()
        .collect()
}

/// Waits for a run started after `since` to complete with `outcome`.
async fn completed_cycle(store: &Store, since: i64, outcome: &str) -> CycleRecord {
    wait_until(WITHIN, &format!("a cycle ending {outcome}"), || async {
        cycles_since(store, since)
            .await
            .into_iter()
            .find(|c| c.outcome.as_deref() == Some(outcome))
    })
    .await
}

async fn wait_metric(daemon: &Daemon, series: &str, expected: f64) {
    wait_until(WITHIN, &format!("{series} = {expected}"), || async {
        (metric(&daemon.metrics().await, series) == Some(expected)).then_some(())
    })
    .await;
}

async fn wait_ready(daemon: &Daemon, ready: bool, reason: &str) -> String {
    wait_until(
        WITHIN,
        &format!("/readyz {}", if ready { "ready" } else { "unready" }),
        || async {
            let (status, body) = daemon.get("/readyz").await;
            let matches = if ready {
                status == 200
            } else {
                status == 503 && body.contains(reason)
            };
            matches.then_some(body)
        },
    )
    .await
}

/// Must show 1: two daemons on one PostgreSQL database; exactly one runs the scheduled
/// cycles; manual cycles (CLI, and HTTP on the follower) are serialised with them; SIGKILL
/// of the leader and the other runs the next cycle within two intervals; the cycles table
/// never shows two cycles at once.
#[tokio::test]
async fn two_daemons_on_postgres_one_leads_and_the_other_takes_over() {
    const INTERVAL_MS: i64 = 2000;
    let app = spawn_app(Backend::Postgres, 300, 10, with_interval("2s", 50)).await;
    app.add_server_keys(&format!("admin_token = \"{ADMIN_TOKEN}\""));
    let store = app.store().await;
    let started = now_millis();
    let first = app.spawn_daemon(DaemonOptions::default()).await;
    let second = app
        .spawn_daemon(DaemonOptions {
            port: Some(free_port()),
            ..DaemonOptions::default()
        })
        .await;

    let cycles = wait_until(WITHIN, "three scheduled cycles", || async {
        let cycles = scheduled(&store, started).await;
        (cycles.len() >= 3).then_some(cycles)
    })
    .await;
    let runners: BTreeSet<u32> = cycles.iter().filter_map(pid_of).collect();
    assert_eq!(runners.len(), 1, "one daemon runs the cycles: {runners:?}");
    let (mut leader, follower) = if runners.contains(&first.pid()) {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        metric(&leader.metrics().await, "oktasync_leader"),
        Some(1.0)
    );
    assert_eq!(
        metric(&follower.metrics().await, "oktasync_leader"),
        Some(0.0)
    );
    let status = app.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let holder = status.json()["leader"]["instance"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        holder.ends_with(&format!("/{}", leader.pid())),
        "status names the leader: {holder}"
    );

    // Manual cycles are serialised with the leader's: one from the command line, and one
    // asked of the follower over HTTP.
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let response = follower
        .http
        .post(format!("{}/admin/sync", follower.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("admin sync: {e}"));
    assert_eq!(response.status().as_u16(), 202);
    let denied = follower
        .http
        .post(format!("{}/admin/sync", follower.base))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("admin sync: {e}"));
    assert_eq!(denied.status().as_u16(), 401);
    wait_until(WITHIN, "the follower's manual cycle", || async {
        cycles_since(&store, started).await.into_iter().find(|c| {
            c.triggered_by.as_deref() == Some("admin")
                && c.finished_at.is_some()
                && pid_of(c) == Some(follower.pid())
        })
    })
    .await;

    leader
        .child
        .kill()
        .unwrap_or_else(|e| panic!("kill the leader: {e}"));
    let killed_at = now_millis();
    let _ = leader.child.wait();
    let takeover = wait_until(WITHIN, "a scheduled cycle on the follower", || async {
        scheduled(&store, killed_at)
            .await
            .into_iter()
            .find(|c| pid_of(c) == Some(follower.pid()))
    })
    .await;
    assert!(
        takeover.started_at - killed_at <= 2 * INTERVAL_MS,
        "the follower took over {} ms after the kill (interval {INTERVAL_MS} ms)",
        takeover.started_at - killed_at
    );
    eprintln!(
        "takeover: the follower's first cycle started {} ms after the kill",
        takeover.started_at - killed_at
    );
    wait_metric(&follower, "oktasync_leader", 1.0).await;

    let all = cycles_since(&store, started).await;
    assert!(
        all.iter().all(|c| c.instance.is_some()),
        "every cycle names its instance"
    );
    assert_no_overlap(&all);
    store.close().await;
}

/// Must show 2 (during the Okta read): SIGTERM while a page is slow; exit 0 within the
/// deadline; the next start converges with nothing lost or duplicated.
#[tokio::test]
async fn sigterm_during_the_okta_read_exits_0_and_the_next_start_converges() {
    let app = spawn_app(Backend::Sqlite, 1000, 20, with_interval("1h", 50)).await;
    let store = app.store().await;
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(json!({"path": "/api/v1/users", "page": 2, "kind": "delay", "delay_ms": 3000, "times": 1})),
        )
        .await;
    let mut daemon = app.spawn_daemon(DaemonOptions::default()).await;
    wait_until(WITHIN, "the first page of users", || async {
        let stats = app.fake.admin("GET", "/stats", None).await;
        stats["requests"]
            .as_array()?
            .iter()
            .any(|r| r["path"] == "/api/v1/users" && r["status"] == 200)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait_exit(WITHIN).await;
    assert_eq!(code, Some(0), "exit status after SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "stopped within the deadline: {:?}",
        signalled.elapsed()
    );
    assert!(
        journal_counts(&store).await.is_empty(),
        "the cycle stopped during its read: nothing journaled"
    );

    let restarted = now_millis();
    let mut daemon = app.spawn_daemon(DaemonOptions::default()).await;
    completed_cycle(&store, restarted, "ok").await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(WITHIN).await, Some(0));
    assert_converged(&app).await;
    store.close().await;
}

/// Must show 2 (during apply): SIGTERM lets the operation in flight finish and starts no
/// other; the rest stays pending and the cycle is recorded abandoned; the next start
/// supersedes and re-plans them, converging with nothing lost or duplicated.
#[tokio::test]
async fn sigterm_during_apply_stops_after_an_operation_and_the_rerun_converges() {
    let app = spawn_app(Backend::Postgres, 3000, 20, with_interval("1h", 50)).await;
    let store = app.store().await;
    let mut daemon = app.spawn_daemon(DaemonOptions::default()).await;
    wait_until(WITHIN, "the first applied operation", || async {
        (journal_counts(&store)
            .await
            .get("applied")
            .copied()
            .unwrap_or(0)
            > 0)
        .then_some(())
    })
    .await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(WITHIN).await, Some(0));
    let stopped = journal_counts(&store).await;
    let pending = stopped.get("pending").copied().unwrap_or(0);
    assert!(pending > 0, "stopped mid-apply: {stopped:?}");
    let last = store
        .recent_cycles(1)
        .await
        .unwrap_or_else(|e| panic!("cycles: {e}"));
    assert_eq!(last[0].outcome.as_deref(), Some("abandoned"));

    let restarted = now_millis();
    let mut daemon = app.spawn_daemon(DaemonOptions::default()).await;
    completed_cycle(&store, restarted, "ok").await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(WITHIN).await, Some(0));
    let after = journal_counts(&store).await;
    assert_eq!(after.get("pending"), None, "{after:?}");
    assert_eq!(after.get("superseded").copied(), Some(pending), "{after:?}");
    assert_converged(&app).await;
    store.close().await;
}

/// Must show 3: /metrics carries every series with real values after a cycle; /readyz
/// goes unready when Okta refuses the credentials, when the store is unreachable and when
/// cycles keep failing, and ready again when each recovers.
#[tokio::test]
async fn metrics_after_a_cycle_and_readiness_follows_okta_the_store_and_cycles() {
    let app = spawn_app(Backend::Postgres, 300, 10, with_interval("1h", 50)).await;
    app.add_server_keys("okta_check_ttl = \"1s\"");
    let store = app.store().await;
    let world = app.fake.state().await;
    // One 429 on the groups listing, so the throttle counter has something to count.
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(json!({"path": "/api/v1/groups", "kind": "status", "status": 429, "times": 1})),
        )
        .await;
    let daemon = app.spawn_daemon(DaemonOptions::default()).await;
    completed_cycle(&store, 0, "ok").await;
    let (status, _) = daemon
        .call("GET", &format!("{}/Users?count=5", daemon.scim(WS)), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = daemon
        .call(
            "GET",
            &format!("{}/Users/no-such-user", daemon.scim(WS)),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let text = daemon.metrics().await;
    let value = |series: &str| {
        metric(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    };
    let ok = "{result=\"ok\",trigger=\"schedule\"}";
    assert_eq!(value(&format!("oktasync_cycles_total{ok}")), 1.0);
    assert_eq!(
        value(&format!("oktasync_cycle_duration_seconds_count{ok}")),
        1.0
    );
    assert!(value(&format!("oktasync_cycle_duration_seconds_sum{ok}")) > 0.0);
    assert_eq!(
        value("oktasync_operations_total{kind=\"create_user\",outcome=\"applied\"}"),
        world.in_scope().len() as f64
    );
    assert!(value("oktasync_okta_requests_total{bucket=\"users\"}") >= 2.0);
    assert!(value("oktasync_okta_requests_total{bucket=\"apps\"}") >= 2.0);
    assert_eq!(
        value("oktasync_okta_throttled_total{bucket=\"groups\"}"),
        1.0
    );
    assert_eq!(
        value("oktasync_okta_throttled_total{bucket=\"users\"}"),
        0.0
    );
    assert!(value("oktasync_okta_rate_limit_remaining{bucket=\"users\"}") > 0.0);
    assert!(value("oktasync_okta_rate_limit_limit{bucket=\"users\"}") > 0.0);
    assert_eq!(value("oktasync_held_plans"), 0.0);
    let now = now_millis() as f64 / 1000.0;
    let last = value("oktasync_last_success_timestamp_seconds");
    assert!(
        last <= now && last > now - 120.0,
        "last success {last}, now {now}"
    );
    assert_eq!(
        value(
            "oktasync_scim_requests_total{route=\"/hook/scim/workspaces/{workspace}/Users\",method=\"GET\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            "oktasync_scim_requests_total{route=\"/hook/scim/workspaces/{workspace}/Users/{id}\",method=\"GET\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(value("oktasync_leader"), 1.0);

    // Okta refuses the credentials, then accepts them again.
    wait_ready(&daemon, true, "").await;
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(json!({"path": "/api/v1/users", "kind": "status", "status": 401})),
        )
        .await;
    let body = wait_ready(&daemon, false, "Okta credentials").await;
    assert!(body.contains("401"), "{body}");
    app.fake.admin("DELETE", "/faults", None).await;
    wait_ready(&daemon, true, "").await;

    // The store goes away, then comes back.
    let database = app
        .store_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    postgres_admin(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
    ))
    .await;
    postgres_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ))
    .await;
    wait_ready(&daemon, false, "store").await;
    postgres_admin(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true")).await;
    wait_ready(&daemon, true, "").await;
    wait_metric(&daemon, "oktasync_leader", 1.0).await;

    // Cycles that keep failing (an incomplete read every time) make it unready after
    // three intervals; a good cycle makes it ready again.
    app.edit_config(|c| c.replace("interval = \"1h\"", "interval = \"1s\""));
    daemon.signal("HUP");
    wait_metric(&daemon, "oktasync_sync_interval_seconds", 1.0).await;
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(json!({"path": "/api/v1/groups", "kind": "status", "status": 500})),
        )
        .await;
    wait_ready(&daemon, false, "cycles have been failing").await;
    app.fake.admin("DELETE", "/faults", None).await;
    wait_ready(&daemon, true, "").await;
    let failed = daemon.metrics().await;
    assert!(
        metric(
            &failed,
            "oktasync_cycles_total{result=\"failed\",trigger=\"schedule\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "failed runs are counted"
    );
    store.close().await;
}

/// Must show 4: SIGHUP with a valid config changes the interval and a threshold (seen in
/// metrics and in behaviour: deactivations now held), with an invalid one keeps the old
/// config and the daemon running. Also: JSON logs with one span per cycle and no secrets,
/// `status` and `history`, and a second daemon on the same SQLite database refused.
#[tokio::test]
async fn sighup_reloads_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let app = spawn_app(Backend::Sqlite, 300, 10, with_interval("1h", 50)).await;
    app.add_server_keys(&format!("admin_token = \"{ADMIN_TOKEN}\""));
    let store = app.store().await;
    let log = app.dir().join("daemon.log");
    let mut daemon = app
        .spawn_daemon(DaemonOptions {
            args: &["--log-format", "json"],
            log: Some(log.clone()),
            ..DaemonOptions::default()
        })
        .await;
    completed_cycle(&store, 0, "ok").await;
    wait_metric(&daemon, "oktasync_sync_interval_seconds", 3600.0).await;
    assert_eq!(
        metric(&daemon.metrics().await, "oktasync_max_deactivations"),
        Some(50.0)
    );

    // One daemon per SQLite database: a second one refuses to start, naming the first.
    let second = app.run(&["run"]);
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second.stderr.contains("another oktasync daemon is running")
            && second.stderr.contains(&format!("/{}", daemon.pid())),
        "{}",
        second.stderr
    );

    // A valid config: a 1 s interval and at most one deactivation.
    app.edit_config(|c| {
        c.replace("interval = \"1h\"", "interval = \"1s\"")
            .replace("max_deactivations = 50", "max_deactivations = 1")
    });
    daemon.signal("HUP");
    wait_metric(&daemon, "oktasync_config_reloads_total{result=\"ok\"}", 1.0).await;
    assert_eq!(
        metric(&daemon.metrics().await, "oktasync_sync_interval_seconds"),
        Some(1.0)
    );
    assert_eq!(
        metric(&daemon.metrics().await, "oktasync_max_deactivations"),
        Some(1.0)
    );
    // In behaviour: three users leave scope, and the next cycle holds their deactivation.
    let world = app.fake.state().await;
    let leaving: Vec<String> = world
        .direct_only_active_users()
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(leaving.len(), 3);
    for id in &leaving {
        app.fake
            .admin("POST", &format!("/users/{id}/lifecycle/suspend"), None)
            .await;
    }
    let held = wait_until(WITHIN, "a held plan", || async {
        store
            .held_plans()
            .await
            .ok()?
            .into_iter()
            .find(|h| !h.consumed && h.deactivations == 3)
    })
    .await;

    // An invalid config: rejected, the old one stays, cycles go on.
    app.edit_config(|c| c.replace("interval = \"1s\"", "interval = \"soon\""));
    daemon.signal("HUP");
    wait_metric(
        &daemon,
        "oktasync_config_reloads_total{result=\"error\"}",
        1.0,
    )
    .await;
    let after_bad = now_millis();
    assert_eq!(daemon.get("/healthz").await.0, 200);
    assert_eq!(
        metric(&daemon.metrics().await, "oktasync_sync_interval_seconds"),
        Some(1.0)
    );
    completed_cycle(&store, after_bad, "held").await;
    // Valid again for the commands below (which read the file too); no reload asked.
    app.edit_config(|c| c.replace("interval = \"soon\"", "interval = \"1s\""));

    // status: the leader, the held plan; history: the journal, newest last.
    let status = app.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status = status.json();
    assert!(
        status["leader"]["instance"]
            .as_str()
            .is_some_and(|i| i.ends_with(&format!("/{}", daemon.pid()))),
        "{status}"
    );
    assert!(
        status["held_plans"]
            .as_array()
            .is_some_and(|h| h.iter().any(|p| p["id"] == held.id.as_str())),
        "{status}"
    );
    assert!(
        status["cycles"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["outcome"] == "held")),
        "{status}"
    );
    let text = app.run(&["status"]);
    assert!(
        text.stdout
            .contains(&format!("oktasync plan --approve {}", held.id)),
        "{}",
        text.stdout
    );
    let history = app.run(&["history", "--since", "1h", "--format", "json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let entries = history.json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(entries.len() >= world.in_scope().len(), "{}", entries.len());
    let ids: Vec<i64> = entries.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "newest last");
    let bad_since = app.run(&["history", "--since", "last tuesday"]);
    assert_eq!(bad_since.code, 2, "{}", bad_since.stderr);

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(WITHIN).await, Some(0));

    // The logs: JSON lines, one span per cycle carrying its id, the rejected reload named,
    // no secret anywhere.
    let logs = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("log: {e}"));
    for secret in [TOKEN, SCIM_TOKEN, ADMIN_TOKEN] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "cycle finished")
        .collect();
    assert!(finished.len() >= 2);
    assert!(
        finished
            .iter()
            .all(|l| l["span"]["name"] == "cycle" && l["span"]["cycle"].as_str().is_some()),
        "{:?}",
        finished.first()
    );
    let runs: BTreeSet<&str> = finished
        .iter()
        .filter_map(|l| l["span"]["cycle"].as_str())
        .collect();
    assert_eq!(runs.len(), finished.len(), "each cycle has its own id");
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            == "configuration reload rejected: the settings in effect stay"),
        "the rejected reload is logged"
    );
    store.close().await;
}

/// `status`'s failing objects: those whose latest finished operation failed, with its error
/// and how often it failed since it last succeeded; an object that then succeeded is not
/// listed. On both backends (the query is one SQL for both).
#[tokio::test]
async fn failing_objects_are_those_whose_latest_operation_failed() {
    use oktasync::reconcile::plan::{DeactivationReason, Operation};
    use oktasync::reconcile::ports::StateStore;
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = Store::connect(&fresh_store_url(backend, dir.path()).await)
            .await
            .unwrap_or_else(|e| panic!("store: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        let deactivate = |id: &str| Operation::DeactivateUser {
            okta_id: id.to_owned(),
            workspace_id: format!("w-{id}"),
            reason: DeactivationReason::Deleted,
        };
        let ops = [deactivate("00ua"), deactivate("00ub")];
        for (a, b) in [
            (Some("a failed once"), Some("b failed")),
            (Some("a failed twice"), None),
        ] {
            let cycle = store
                .begin_cycle(WS, false)
                .await
                .unwrap_or_else(|e| panic!("cycle: {e}"));
            let entries = store
                .journal_pending(Some(cycle), WS, &ops)
                .await
                .unwrap_or_else(|e| panic!("journal: {e}"));
            let outcomes: Vec<_> = entries.into_iter().zip([a, b]).collect();
            store
                .journal_outcomes(&outcomes)
                .await
                .unwrap_or_else(|e| panic!("outcome: {e}"));
            store
                .finish_cycle(cycle, "failed", "")
                .await
                .unwrap_or_else(|e| panic!("finish: {e}"));
        }
        let failing = store
            .failing_objects(10)
            .await
            .unwrap_or_else(|e| panic!("failing: {e}"));
        assert_eq!(failing.len(), 1, "{backend:?}: {failing:?}");
        assert_eq!(failing[0].okta_id, "00ua");
        assert_eq!(failing[0].op, "deactivate_user");
        assert_eq!(failing[0].error.as_deref(), Some("a failed twice"));
        assert_eq!(failing[0].failures, 2);
        store.close().await;
    }
}
