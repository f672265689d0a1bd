//! The pull → plan → apply pipeline end to end: the `oktasync` binary against the fake Okta
//! process, on both store backends.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::helpers::*;

/// Must show 1: exactly the in-scope users with the default mapping, the push groups with
/// their in-scope members; a second sync plans nothing.
async fn provisions_exactly_the_in_scope_users(backend: Backend) {
    let app = spawn_app(backend, 1000, 50, AppConfig::default()).await;
    let world = app.fake.state().await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["complete_read"], true);

    let expected = world.in_scope();
    assert!(
        expected.len() > 300 && expected.len() < 1000,
        "the fake's scope is a real subset: {}",
        expected.len()
    );
    let state = app.workspace().await;
    let managed: BTreeMap<String, _> = state
        .users
        .iter()
        .filter_map(|u| u.okta_id.clone().map(|id| (id, u)))
        .collect();
    assert_eq!(managed.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(state.users.iter().all(|u| u.active));
    for (id, user) in &managed {
        let okta = world.user(id);
        let first = okta["firstName"].as_str();
        let last = okta["lastName"].as_str();
        let display = okta["displayName"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                [first, last]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        assert_eq!(
            user.attributes.user_name,
            okta["login"].as_str().unwrap_or_default(),
            "userName <- login"
        );
        assert_eq!(
            user.attributes.given_name.as_deref(),
            first,
            "givenName <- firstName"
        );
        assert_eq!(
            user.attributes.family_name.as_deref(),
            last,
            "familyName <- lastName"
        );
        assert_eq!(
            user.attributes.email.as_deref(),
            okta["email"].as_str(),
            "email"
        );
        assert_eq!(user.attributes.display_name, display, "displayName");
        assert_eq!(
            user.external_id.as_deref(),
            Some(id.as_str()),
            "externalId <- Okta id"
        );
    }
    assert_eq!(summary(&report)["create_user"], expected.len() as u64);

    // Push groups: "Engineering" and every group matching ^team-, with in-scope members.
    let pushed: BTreeMap<String, BTreeSet<String>> = world
        .groups()
        .iter()
        .filter(|g| {
            g["name"] == "Engineering" || g["name"].as_str().is_some_and(|n| n.starts_with("team-"))
        })
        .map(|g| {
            let members = World::strings(&g["members"])
                .intersection(&expected)
                .cloned()
                .collect();
            (g["name"].as_str().unwrap_or_default().to_owned(), members)
        })
        .collect();
    assert!(pushed.len() >= 3);
    let by_ws_id: BTreeMap<&str, &str> = state
        .users
        .iter()
        .filter_map(|u| u.okta_id.as_deref().map(|o| (u.id.as_str(), o)))
        .collect();
    let actual: BTreeMap<String, BTreeSet<String>> = state
        .groups
        .iter()
        .map(|g| {
            let members = g
                .members
                .iter()
                .filter_map(|m| by_ws_id.get(m.as_str()).map(|s| (*s).to_owned()))
                .collect();
            (g.display_name.clone(), members)
        })
        .collect();
    assert_eq!(actual, pushed);
    assert!(pushed.values().any(|m| !m.is_empty()));

    let again = app.sync();
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again = again.workspace();
    assert!(
        summary(&again).values().all(|n| *n == 0),
        "second sync planned {:?}",
        summary(&again)
    );
    assert!(ops(&again).is_empty());
}

#[tokio::test]
async fn provisions_exactly_the_in_scope_users_sqlite() {
    provisions_exactly_the_in_scope_users(Backend::Sqlite).await;
}

#[tokio::test]
async fn provisions_exactly_the_in_scope_users_postgres() {
    provisions_exactly_the_in_scope_users(Backend::Postgres).await;
}

/// Plans (and asserts) exactly one expected operation list, then applies it.
async fn expect_then_apply(app: &TestApp, expected: Vec<(String, String)>) -> serde_json::Value {
    let plan = app.plan();
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(ops(&plan.workspace()), expected, "plan: {}", plan.stdout);
    // Picked up by an incremental cycle, not only by a full sweep (issue 3).
    let run = app.sync_incremental();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ops(&run.workspace()), expected);
    run.workspace()
}

async fn workspace_id_of(app: &TestApp, okta_id: &str) -> (String, bool) {
    let state = app.workspace().await;
    let user = state
        .users
        .iter()
        .find(|u| u.okta_id.as_deref() == Some(okta_id))
        .unwrap_or_else(|| panic!("no workspace user for {okta_id}"));
    (user.id.clone(), user.active)
}

/// Must show 2: each Okta change yields exactly the right operation.
async fn each_change_yields_exactly_the_right_operation(backend: Backend) {
    let app = spawn_app(backend, 300, 20, AppConfig::default()).await;
    assert_eq!(app.sync().code, 0);
    let world = app.fake.state().await;
    let direct = world.direct_only_active_users();
    assert!(
        direct.len() >= 8,
        "need direct-only users, have {}",
        direct.len()
    );
    let [a, b, c, d, e, f] = [0, 1, 2, 3, 4, 5].map(|i| direct[i].clone());

    // profile update
    app.fake
        .admin(
            "PATCH",
            &format!("/users/{a}"),
            Some(json!({"firstName": "Renamed"})),
        )
        .await;
    let run = expect_then_apply(&app, vec![op("update_user", &a)]).await;
    assert_eq!(run["operations"][0]["to"]["givenName"], "Renamed");

    // login and email change: an update of the same workspace object
    let (before, _) = workspace_id_of(&app, &b).await;
    app.fake
        .admin(
            "PATCH",
            &format!("/users/{b}"),
            Some(json!({"login": "moved@example.org", "email": "moved@example.org"})),
        )
        .await;
    expect_then_apply(&app, vec![op("update_user", &b)]).await;
    let state = app.workspace().await;
    let user = state
        .users
        .iter()
        .find(|u| u.id == before)
        .unwrap_or_else(|| panic!("same id"));
    assert_eq!(user.attributes.user_name, "moved@example.org");
    assert_eq!(user.okta_id.as_deref(), Some(b.as_str()));

    // unassign, DEPROVISIONED, SUSPENDED, deleted: deactivate
    app.fake
        .admin("DELETE", &format!("/apps/{APP}/users/{c}"), None)
        .await;
    expect_then_apply(&app, vec![op("deactivate_user", &c)]).await;
    app.fake
        .admin("POST", &format!("/users/{d}/lifecycle/deactivate"), None)
        .await;
    expect_then_apply(&app, vec![op("deactivate_user", &d)]).await;
    app.fake
        .admin("POST", &format!("/users/{e}/lifecycle/suspend"), None)
        .await;
    expect_then_apply(&app, vec![op("deactivate_user", &e)]).await;
    let (deleted_ws, _) = workspace_id_of(&app, &f).await;
    app.fake.admin("DELETE", &format!("/users/{f}"), None).await;
    let run = expect_then_apply(&app, vec![op("deactivate_user", &f)]).await;
    assert_eq!(run["operations"][0]["reason"], "deleted in Okta");
    assert_eq!(
        workspace_id_of(&app, &f).await,
        (deleted_ws, false),
        "deactivated, never deleted"
    );

    // reassign and unsuspend: reactivate, same workspace id
    let (c_ws, c_active) = workspace_id_of(&app, &c).await;
    assert!(!c_active);
    app.fake
        .admin("PUT", &format!("/apps/{APP}/users/{c}"), None)
        .await;
    expect_then_apply(&app, vec![op("reactivate_user", &c)]).await;
    assert_eq!(workspace_id_of(&app, &c).await, (c_ws, true));
    let (e_ws, _) = workspace_id_of(&app, &e).await;
    app.fake
        .admin("POST", &format!("/users/{e}/lifecycle/unsuspend"), None)
        .await;
    expect_then_apply(&app, vec![op("reactivate_user", &e)]).await;
    assert_eq!(workspace_id_of(&app, &e).await, (e_ws, true));

    // group rename (still pushed by ^team-)
    let alpha = world.group_by_name("team-alpha")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.fake
        .admin(
            "PATCH",
            &format!("/groups/{alpha}"),
            Some(json!({"name": "team-alpha-2"})),
        )
        .await;
    expect_then_apply(&app, vec![op("rename_group", &alpha)]).await;
    assert!(
        app.workspace()
            .await
            .groups
            .iter()
            .any(|g| g.display_name == "team-alpha-2")
    );

    // member add and remove
    let eng = world.group_by_name("Engineering");
    let eng_id = eng["id"].as_str().unwrap_or_default().to_owned();
    let members = World::strings(&eng["members"]);
    let newcomer = direct[6..]
        .iter()
        .find(|u| !members.contains(*u))
        .cloned()
        .unwrap_or_else(|| panic!("a non-member"));
    app.fake
        .admin("PUT", &format!("/groups/{eng_id}/users/{newcomer}"), None)
        .await;
    let run = expect_then_apply(&app, vec![op("add_members", &eng_id)]).await;
    assert_eq!(run["operations"][0]["members"], json!([newcomer]));
    assert_eq!(summary(&run)["add_members"], 1);
    app.fake
        .admin(
            "DELETE",
            &format!("/groups/{eng_id}/users/{newcomer}"),
            None,
        )
        .await;
    let run = expect_then_apply(&app, vec![op("remove_members", &eng_id)]).await;
    assert_eq!(
        run["operations"][0]["members"][0]["okta_id"],
        json!(newcomer)
    );

    // a group leaving push: unlink (kept in the workspace by default)
    let beta = world.group_by_name("team-beta")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.fake
        .admin(
            "PATCH",
            &format!("/groups/{beta}"),
            Some(json!({"name": "beta-no-longer-pushed"})),
        )
        .await;
    expect_then_apply(&app, vec![op("unlink_group", &beta)]).await;
    let state = app.workspace().await;
    let kept = state
        .groups
        .iter()
        .find(|g| g.display_name == "team-beta")
        .unwrap_or_else(|| panic!("kept"));
    assert_eq!(kept.okta_group_id, None);

    let last = app.plan();
    assert!(
        ops(&last.workspace()).is_empty(),
        "converged: {}",
        last.stdout
    );
}

#[tokio::test]
async fn each_change_yields_exactly_the_right_operation_sqlite() {
    each_change_yields_exactly_the_right_operation(Backend::Sqlite).await;
}

#[tokio::test]
async fn each_change_yields_exactly_the_right_operation_postgres() {
    each_change_yields_exactly_the_right_operation(Backend::Postgres).await;
}

/// Must show 3: page 3 of users keeps failing; nobody is deactivated, exit 1; a rerun after
/// the fault clears converges.
async fn a_failing_listing_deactivates_nobody(backend: Backend) {
    let app = spawn_app(backend, 1000, 20, AppConfig::default()).await;
    assert_eq!(app.sync().code, 0);
    let world = app.fake.state().await;
    let gone = world.direct_only_active_users()[0].clone();
    app.fake
        .admin("DELETE", &format!("/apps/{APP}/users/{gone}"), None)
        .await;
    let fresh = app
        .fake
        .admin(
            "POST",
            "/users",
            Some(json!({"login": "newcomer@example.com", "firstName": "New", "lastName": "Comer"})),
        )
        .await;
    let fresh_id = fresh["id"].as_str().unwrap_or_default().to_owned();
    app.fake
        .admin("PUT", &format!("/apps/{APP}/users/{fresh_id}"), None)
        .await;
    let active_before = app
        .workspace()
        .await
        .users
        .iter()
        .filter(|u| u.active)
        .count();

    app.fake.admin("POST", "/faults", Some(json!({"path": "/api/v1/users", "page": 3, "kind": "status", "status": 500, "times": null}))).await;
    let run = app.sync_full();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["complete_read"], false);
    assert!(
        report["read_failures"][0]
            .as_str()
            .is_some_and(|f| f.contains("users") && f.contains("500")),
        "{}",
        report["read_failures"]
    );
    assert_eq!(summary(&report)["deactivate_user"], 0);
    let state = app.workspace().await;
    assert!(
        state.users.iter().filter(|u| u.active).count() >= active_before,
        "nobody deactivated"
    );
    assert!(
        state
            .users
            .iter()
            .any(|u| u.okta_id.as_deref() == Some(gone.as_str()) && u.active)
    );

    app.fake.admin("DELETE", "/faults", None).await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["complete_read"], true);
    assert!(ops(&report).contains(&op("deactivate_user", &gone)));
    assert!(
        app.workspace()
            .await
            .users
            .iter()
            .any(|u| u.okta_id.as_deref() == Some(fresh_id.as_str()) && u.active)
    );
    assert!(ops(&app.plan().workspace()).is_empty(), "converged");
}

#[tokio::test]
async fn a_failing_listing_deactivates_nobody_sqlite() {
    a_failing_listing_deactivates_nobody(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_failing_listing_deactivates_nobody_postgres() {
    a_failing_listing_deactivates_nobody(Backend::Postgres).await;
}

/// Must show 4: over the threshold the deactivations are held (exit 3) while creates and
/// updates apply; `--force` applies them, and so does an approval by plan id.
async fn a_plan_over_the_threshold_is_held(backend: Backend) {
    let config = AppConfig {
        sync: "max_deactivations = 5\nmax_deactivation_ratio = 0.5\n".into(),
        ..AppConfig::default()
    };
    let app = spawn_app(backend, 400, 20, config).await;
    assert_eq!(app.sync().code, 0);
    let world = app.fake.state().await;
    let direct = world.direct_only_active_users();
    let leaving: Vec<String> = direct[..8].to_vec();
    for id in &leaving {
        app.fake
            .admin("DELETE", &format!("/apps/{APP}/users/{id}"), None)
            .await;
    }
    let changed = direct[8].clone();
    app.fake
        .admin(
            "PATCH",
            &format!("/users/{changed}"),
            Some(json!({"lastName": "Changed"})),
        )
        .await;

    let run = app.sync();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["held"], true);
    assert_eq!(summary(&report)["deactivate_user"], 0);
    assert_eq!(summary(&report)["update_user"], 1, "updates still apply");
    assert_eq!(report["held_operations"].as_array().map(Vec::len), Some(8));
    let held_id = report["held_plan_id"]
        .as_str()
        .unwrap_or_else(|| panic!("held plan id"))
        .to_owned();
    let state = app.workspace().await;
    assert!(leaving.iter().all(|id| {
        state
            .users
            .iter()
            .any(|u| u.okta_id.as_deref() == Some(id.as_str()) && u.active)
    }));

    // Still held on the next run, with the same id; then approved by id.
    let again = app.sync();
    assert_eq!(again.code, 3);
    assert_eq!(again.workspace()["held_plan_id"], held_id.as_str());
    let text = app.run(&["plan"]);
    assert!(
        text.stdout.contains(&format!("plan --approve {held_id}")),
        "{}",
        text.stdout
    );
    assert_eq!(app.run(&["plan", "--approve", "nope"]).code, 2);
    let approve = app.run(&["plan", "--approve", &held_id]);
    assert_eq!(approve.code, 0, "{}", approve.stderr);
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(summary(&run.workspace())["deactivate_user"], 8);

    // --force releases a new over-threshold plan at once.
    let more: Vec<String> = direct[9..16].to_vec();
    for id in &more {
        app.fake
            .admin("DELETE", &format!("/apps/{APP}/users/{id}"), None)
            .await;
    }
    assert_eq!(app.sync().code, 3);
    let forced = app.run(&["sync", "--force", "--format", "json"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(summary(&forced.workspace())["deactivate_user"], 7);
    let state = app.workspace().await;
    assert!(more.iter().all(|id| {
        state
            .users
            .iter()
            .any(|u| u.okta_id.as_deref() == Some(id.as_str()) && !u.active)
    }));
}

#[tokio::test]
async fn a_plan_over_the_threshold_is_held_sqlite() {
    a_plan_over_the_threshold_is_held(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_plan_over_the_threshold_is_held_postgres() {
    a_plan_over_the_threshold_is_held(Backend::Postgres).await;
}

#[tokio::test]
async fn demo_runs_without_an_okta_account() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = std::process::Command::new(bin())
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("planned"), "{stdout}");
    assert!(stdout.contains("create_user"), "{stdout}");
    let last = stdout
        .rsplit("== oktasync sync (again")
        .next()
        .unwrap_or_default();
    assert!(last.contains("nothing to do"), "{stdout}");
}

/// A full read hands the engine every user and app assignment as soon as those listings
/// end: the workspace's users are created while the group members are still being read,
/// and the cycle's report still lists each operation once.
#[tokio::test]
async fn users_are_applied_while_group_members_are_still_read() {
    let app = spawn_app(Backend::Sqlite, 300, 12, AppConfig::default()).await;
    let expected = app.fake.state().await.in_scope().len();
    // The first member listings answer after 4 s: the read cannot end before.
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(
                json!({"path": "/api/v1/groups/*", "kind": "delay", "delay_ms": 4000, "times": 4}),
            ),
        )
        .await;
    let mut child = app.spawn_sync();
    let store = oktasync::store::Store::connect(&app.store_url)
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    let mut users_in_place_at = None;
    let exited_at = loop {
        if child.try_wait().ok().flatten().is_some() {
            break std::time::Instant::now();
        }
        // Before the sync has migrated the store, loading fails: nothing is in place yet.
        if users_in_place_at.is_none()
            && let Ok(state) = store.load_workspace(WS).await
            && state.users.iter().filter(|u| u.okta_id.is_some()).count() == expected
        {
            users_in_place_at = Some(std::time::Instant::now());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    let run = Run::from(output);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let Some(users_in_place_at) = users_in_place_at else {
        panic!("the users were never all in place before the sync ended")
    };
    let ahead = exited_at - users_in_place_at;
    assert!(
        ahead > std::time::Duration::from_secs(2),
        "users in place only {ahead:?} before the read's end"
    );
    let created = ops(&run.workspace())
        .into_iter()
        .filter(|(op, _)| op == "create_user")
        .count();
    assert_eq!(created, expected, "each creation reported once");
    let state = app.workspace().await;
    assert!(
        state.groups.iter().any(|g| !g.members.is_empty()),
        "the groups and their members follow once the read is complete"
    );
}
