//! oktasync's Okta client against the fake's documented behaviour: pacing under the
//! rate limits, 429 handling, retries of passing faults.

use serde_json::json;

use crate::helpers::*;

/// With small, time-scaled buckets, oktasync paces itself at its share and is never
/// answered 429 by a quiet org.
#[tokio::test]
async fn paces_each_bucket_at_its_share_without_429s() {
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        AppConfig::default(),
        &[
            "--users",
            "2000",
            "--groups",
            "30",
            "--time-scale",
            "60",
            "--limit-multiplier",
            "0.02",
        ],
    )
    .await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.workspace()["complete_read"], true);
    let stats = app.fake.admin("GET", "/stats", None).await;
    let users = &stats["buckets"]["users"];
    assert!(users["calls"].as_u64().unwrap_or(0) >= 10, "{stats}");
    for (bucket, s) in stats["buckets"].as_object().into_iter().flatten() {
        assert_eq!(s["throttled"], 0, "bucket {bucket} was throttled: {stats}");
    }
}

/// A 429 (a concurrency one: Limit = Remaining = 0) and invalid or truncated JSON pass
/// with retries: the read stays complete.
#[tokio::test]
async fn passing_faults_are_retried_and_the_read_stays_complete() {
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        AppConfig::default(),
        &["--users", "600", "--groups", "10", "--time-scale", "60"],
    )
    .await;
    for (path, kind) in [
        ("/api/v1/users", "invalid_json"),
        ("/api/v1/groups", "truncated_json"),
        (&*format!("/api/v1/apps/{APP}/users"), "concurrency_429"),
        ("/api/v1/users", "status"),
    ] {
        app.fake
            .admin(
                "POST",
                "/faults",
                Some(json!({"path": path, "page": 2, "kind": kind, "status": 503, "times": 1})),
            )
            .await;
    }
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.workspace()["complete_read"], true);
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
}

/// A wrong token is not retried and fails the read as a whole.
#[tokio::test]
async fn a_rejected_token_fails_the_cycle_without_removing_anything() {
    let app = spawn_app(Backend::Sqlite, 200, 10, AppConfig::default()).await;
    assert_eq!(app.sync().code, 0);
    let before = app.workspace().await;
    let config = std::fs::read_to_string(&app.config)
        .unwrap_or_default()
        .replace(TOKEN, "wrong-token");
    std::fs::write(&app.config, config).unwrap_or_else(|e| panic!("{e}"));
    let run = app.sync();
    assert_eq!(run.code, 1);
    let report = run.workspace();
    assert_eq!(report["complete_read"], false);
    assert!(
        report["read_failures"].to_string().contains("401"),
        "{report}"
    );
    assert_eq!(app.workspace().await, before);
}

/// Member listings start as soon as a page of the app's group assignments names groups,
/// not after the listing's last page: the group bucket (the slowest in a large org) is not
/// left idle while the apps bucket pages through. The read stays exact: every assigned
/// group, and only those, is pushed with its members.
#[tokio::test]
async fn member_listings_start_before_the_app_groups_listing_ends() {
    let config = AppConfig {
        workspace: "push_groups = \"assigned\"\n".into(),
        ..AppConfig::default()
    };
    let app = spawn_app(Backend::Sqlite, 300, 700, config).await;
    let assigned = app.fake.state().await.assigned_groups();
    assert!(
        assigned.len() > 200,
        "two pages of assignments: {}",
        assigned.len()
    );
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(
                json!({"path": format!("/api/v1/apps/{APP}/groups"), "page": 2,
                "kind": "delay", "delay_ms": 4000, "times": 1}),
            ),
        )
        .await;
    let mut child = app.spawn_sync();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let stats = app.fake.admin("GET", "/stats", None).await;
    let still_reading = child.try_wait().ok().flatten().is_none();
    let run = Run::from(
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait: {e}")),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        still_reading,
        "the delayed page should hold the read for 4 s"
    );
    let member_listings = stats["buckets"]["group"]["calls"].as_u64().unwrap_or(0);
    assert!(
        member_listings >= 50,
        "only {member_listings} member listings while the second page was delayed: {stats}"
    );
    let state = app.workspace().await;
    let pushed: std::collections::BTreeSet<String> = state
        .groups
        .iter()
        .filter_map(|g| g.okta_group_id.clone())
        .collect();
    assert_eq!(pushed, assigned);
    assert!(state.groups.iter().any(|g| !g.members.is_empty()));
}
