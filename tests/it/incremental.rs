//! Incremental cycles against the fake: few calls, every kind of change picked up by the
//! next incremental cycle (not only by a full sweep), and nothing skipped when a change
//! lands in the overlap second or while a cycle is reading.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

/// Okta calls per bucket since the last stats reset, and their total.
async fn calls(app: &TestApp) -> (u64, Value) {
    let stats = app.fake.admin("GET", "/stats", None).await;
    let total = stats["buckets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.as_str() != "token")
        .map(|(_, b)| b["calls"].as_u64().unwrap_or(0))
        .sum();
    (total, stats["buckets"].clone())
}

async fn reset_stats(app: &TestApp) {
    app.fake.admin("POST", "/stats/reset", None).await;
}

fn converged_sync(app: &TestApp) -> Run {
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// An incremental `sync` that succeeds.
fn incremental_sync(app: &TestApp) -> Run {
    let run = app.sync_incremental();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// Must show 2: no changes, at most 5 calls; K changed users, at most ceil(K/200) + 5.
async fn incremental_cycles_make_few_calls(backend: Backend) {
    let app = spawn_app(backend, 1000, 20, AppConfig::default()).await;
    let first = converged_sync(&app);
    assert!(first.stderr.contains("full Okta read"), "{}", first.stderr);

    reset_stats(&app).await;
    let idle = incremental_sync(&app);
    assert!(ops(&idle.workspace()).is_empty(), "{}", idle.stdout);
    let (total, buckets) = calls(&app).await;
    assert!(total <= 5, "{total} calls for no change: {buckets}");

    let world = app.fake.state().await;
    let changed: Vec<String> = world.in_scope().into_iter().take(450).collect();
    assert_eq!(changed.len(), 450);
    for id in &changed {
        app.fake
            .admin(
                "PATCH",
                &format!("/users/{id}"),
                Some(json!({"lastName": "Changed"})),
            )
            .await;
    }
    reset_stats(&app).await;
    let run = incremental_sync(&app);
    let updated: BTreeSet<String> = ops(&run.workspace())
        .into_iter()
        .filter(|(op, _)| op == "update_user")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(updated, changed.iter().cloned().collect::<BTreeSet<_>>());
    let (total, buckets) = calls(&app).await;
    let bound = changed.len().div_ceil(200) as u64 + 5;
    assert!(
        total <= bound,
        "{total} calls for 450 changes (bound {bound}): {buckets}"
    );
    assert!(
        ops(&converged_sync(&app).workspace()).is_empty(),
        "converged"
    );
}

#[tokio::test]
async fn incremental_cycles_make_few_calls_sqlite() {
    incremental_cycles_make_few_calls(Backend::Sqlite).await;
}

#[tokio::test]
async fn incremental_cycles_make_few_calls_postgres() {
    incremental_cycles_make_few_calls(Backend::Postgres).await;
}

fn kinds(run: &Run) -> BTreeSet<(String, String)> {
    ops(&run.workspace()).into_iter().collect()
}

/// Must show 3 (assignments by group): a group assigned to the app brings its members in,
/// unassigning it takes them out, both by the next incremental cycle. Profile, lifecycle,
/// deletion, membership, direct assignment and rename are in `pipeline`, whose cycles are
/// incremental too.
#[tokio::test]
async fn assignment_by_group_is_picked_up_incrementally() {
    let app = spawn_app(Backend::Sqlite, 400, 20, AppConfig::default()).await;
    converged_sync(&app);
    let world = app.fake.state().await;
    let in_scope = world.in_scope();
    let group = app
        .fake
        .admin("POST", "/groups", Some(json!({"name": "newly-assigned"})))
        .await;
    let gid = group["id"].as_str().unwrap_or_default().to_owned();
    let outsiders: Vec<String> = world
        .users()
        .iter()
        .filter(|u| u["status"] == "ACTIVE")
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .filter(|id| !in_scope.contains(id))
        .take(3)
        .collect();
    assert_eq!(outsiders.len(), 3, "need users outside the app's scope");
    for u in &outsiders {
        app.fake
            .admin("PUT", &format!("/groups/{gid}/users/{u}"), None)
            .await;
    }
    app.fake
        .admin("PUT", &format!("/apps/{APP}/groups/{gid}"), None)
        .await;
    let run = incremental_sync(&app);
    let expected: BTreeSet<(String, String)> =
        outsiders.iter().map(|u| op("create_user", u)).collect();
    assert_eq!(kinds(&run), expected, "{}", run.stdout);

    app.fake
        .admin("DELETE", &format!("/apps/{APP}/groups/{gid}"), None)
        .await;
    let run = incremental_sync(&app);
    let expected: BTreeSet<(String, String)> =
        outsiders.iter().map(|u| op("deactivate_user", u)).collect();
    assert_eq!(kinds(&run), expected, "{}", run.stdout);
}

/// Must show 3 (push mappings): with `push_groups = "okta"`, a new push mapping creates
/// the group and removing it unlinks it, by the next incremental cycle.
#[tokio::test]
async fn push_mapping_changes_are_picked_up_incrementally() {
    let config = AppConfig {
        workspace: "push_groups = \"okta\"\n".into(),
        ..AppConfig::default()
    };
    let app = spawn_app(Backend::Sqlite, 300, 20, config).await;
    converged_sync(&app);
    let world = app.fake.state().await;
    let pushed: BTreeSet<String> = app
        .workspace()
        .await
        .groups
        .iter()
        .filter_map(|g| g.okta_group_id.clone())
        .collect();
    let candidate = world
        .groups()
        .iter()
        .filter_map(|g| g["id"].as_str())
        .find(|id| !pushed.contains(*id))
        .unwrap_or_else(|| panic!("a group not pushed yet"))
        .to_owned();
    app.fake
        .admin("PUT", &format!("/apps/{APP}/push/{candidate}"), None)
        .await;
    let run = incremental_sync(&app);
    assert!(
        kinds(&run).contains(&op("create_group", &candidate)),
        "{}",
        run.stdout
    );
    app.fake
        .admin("DELETE", &format!("/apps/{APP}/push/{candidate}"), None)
        .await;
    let run = incremental_sync(&app);
    assert_eq!(
        kinds(&run),
        BTreeSet::from([op("unlink_group", &candidate)]),
        "{}",
        run.stdout
    );
}

/// Waits until the fake has answered a request matching `pred`.
async fn answered(app: &TestApp, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = app.fake.admin("GET", "/stats", None).await;
        if stats["requests"]
            .as_array()
            .is_some_and(|r| r.iter().any(&pred))
        {
            return;
        }
        assert!(Instant::now() < deadline, "no answer to {what}: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_sync(app: &TestApp) -> std::process::Child {
    std::process::Command::new(bin())
        .arg("--config")
        .arg(&app.config)
        .args(["sync", "--format", "json"])
        .env("OKTASYNC_LOG", "oktasync=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn oktasync: {e}"))
}

/// Must show 4: changes made while an incremental cycle reads (after its users listing
/// answered: in its watermark's second, with the smallest overlap) and changes between
/// its pages are all picked up by the next cycle.
#[tokio::test]
async fn changes_during_a_cycle_and_in_the_overlap_second_are_never_skipped() {
    let config = AppConfig {
        sync: "overlap = \"1s\"\n".into(),
        ..AppConfig::default()
    };
    let app = spawn_app(Backend::Sqlite, 600, 20, config).await;
    converged_sync(&app);
    let world = app.fake.state().await;
    let direct = world.direct_only_active_users();
    let in_scope: Vec<String> = world.in_scope().into_iter().collect();
    // 250 changed users: the incremental users listing has two pages.
    for id in in_scope.iter().take(250) {
        app.fake
            .admin(
                "PATCH",
                &format!("/users/{id}"),
                Some(json!({"displayName": "Before"})),
            )
            .await;
    }
    reset_stats(&app).await;
    // The second page of users and the groups listing are slow: changes land meanwhile.
    for path in ["/api/v1/users", "/api/v1/groups"] {
        let page = if path == "/api/v1/users" { 2 } else { 1 };
        app.fake
            .admin(
                "POST",
                "/faults",
                Some(json!({"path": path, "page": page, "kind": "delay", "delay_ms": 2500, "times": 1})),
            )
            .await;
    }
    let mut child = spawn_sync(&app);
    answered(&app, "the first page of changed users", |r| {
        r["path"] == "/api/v1/users"
            && r["query"]
                .as_str()
                .is_some_and(|q| q.contains("lastUpdated"))
            && r["status"] == 200
    })
    .await;
    // On the page already read, and on the page still to come.
    let early = in_scope[0].clone();
    let late = in_scope[249].clone();
    for id in [&early, &late] {
        app.fake
            .admin(
                "PATCH",
                &format!("/users/{id}"),
                Some(json!({"displayName": "During"})),
            )
            .await;
    }
    let leaver = direct
        .iter()
        .find(|u| **u != early && **u != late)
        .cloned()
        .unwrap_or_else(|| panic!("a direct-only user"));
    app.fake
        .admin("DELETE", &format!("/apps/{APP}/users/{leaver}"), None)
        .await;
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(0));

    let next = incremental_sync(&app);
    let planned = kinds(&next);
    assert!(
        planned.contains(&op("update_user", &early)),
        "a change to a page already read: {}",
        next.stdout
    );
    assert!(
        planned.contains(&op("deactivate_user", &leaver)),
        "an unassignment during the read: {}",
        next.stdout
    );
    let state = app.workspace().await;
    for id in [&early, &late] {
        let user = state
            .users
            .iter()
            .find(|u| u.okta_id.as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} provisioned"));
        assert_eq!(user.attributes.display_name, "During", "{id}");
    }
    assert!(ops(&converged_sync(&app).workspace()).is_empty());
}

/// An incremental read that fails (the System Log answering 500 after every retry) removes
/// nothing, exits 1, and keeps its checkpoint: the next cycle sees the deletion.
#[tokio::test]
async fn a_failing_log_poll_removes_nothing_and_the_next_cycle_catches_up() {
    let app = spawn_app(Backend::Sqlite, 300, 20, AppConfig::default()).await;
    converged_sync(&app);
    let world = app.fake.state().await;
    let gone = world.direct_only_active_users()[0].clone();
    app.fake
        .admin("DELETE", &format!("/users/{gone}"), None)
        .await;
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(json!({"path": "/api/v1/logs", "kind": "status", "status": 500, "times": null})),
        )
        .await;
    let run = app.sync_incremental();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let ws = run.workspace();
    assert_eq!(ws["complete_read"], false);
    assert!(
        !kinds(&run).iter().any(|(op, _)| op == "deactivate_user"),
        "{}",
        run.stdout
    );
    app.fake.admin("DELETE", "/faults", None).await;
    let run = incremental_sync(&app);
    assert_eq!(kinds(&run), BTreeSet::from([op("deactivate_user", &gone)]));
}
