//! End-to-end tests of the admin API and the side effects Okta would show.

use serde_json::{Value, json};

use crate::Options;
use crate::testutil::{admin, get, start};

const APP: &str = "0oafakeapp0000000001";

async fn events_of(base: &str, filter: &str) -> Vec<Value> {
    let r = get(base, &format!("/api/v1/logs?filter={filter}")).await;
    assert_eq!(r.status, 200);
    r.json().as_array().unwrap().clone()
}

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn user_lifecycle_moves_timestamps_and_writes_events() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let created = admin(
        &base,
        "POST",
        "/__admin/users",
        Some(r#"{"login":"Zed@example.com","firstName":"Zed","lastName":"Z"}"#),
    )
    .await;
    assert_eq!(created.status, 200);
    let u = created.json();
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(u["status"], "ACTIVE");
    assert_eq!(u["profile"]["email"], "Zed@example.com");
    let state = admin(&base, "GET", "/__admin/state", None).await.json();
    let max_generated = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .filter(|i| *i != id)
        .max()
        .unwrap()
        .to_owned();
    assert!(
        id.as_str() > max_generated.as_str(),
        "allocated above every existing id"
    );
    assert_eq!(id.len(), 20);
    let dup = admin(
        &base,
        "POST",
        "/__admin/users",
        Some(r#"{"login":"zed@EXAMPLE.com"}"#),
    )
    .await;
    assert_eq!((dup.status, dup.error_code()), (400, "E0000001".into()));
    // the new user is the newest by lastUpdated
    let lu = u["lastUpdated"].as_str().unwrap();
    let r = get(
        &base,
        &format!("/api/v1/users?filter=lastUpdated+ge+%22{lu}%22"),
    )
    .await;
    assert_eq!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].clone())
            .collect::<Vec<_>>(),
        [json!(id)]
    );

    admin(
        &base,
        "POST",
        "/__admin/clock",
        Some(r#"{"advance_seconds": 10}"#),
    )
    .await;
    let patched = admin(
        &base,
        "PATCH",
        &format!("/__admin/users/{id}"),
        Some(r#"{"displayName":"Zed Z.","login":"zed2@example.com"}"#),
    )
    .await
    .json();
    assert_eq!(patched["profile"]["displayName"], "Zed Z.");
    assert_eq!(patched["profile"]["login"], "zed2@example.com");
    assert!(patched["lastUpdated"].as_str().unwrap() > lu);
    assert_eq!(
        get(&base, "/api/v1/users/zed2%40example.com").await.json()["id"],
        json!(id)
    );
    assert_eq!(
        get(&base, "/api/v1/users/zed%40example.com").await.status,
        404
    );

    admin(
        &base,
        "POST",
        "/__admin/clock",
        Some(r#"{"advance_seconds": 10}"#),
    )
    .await;
    let d = admin(
        &base,
        "POST",
        &format!("/__admin/users/{id}/lifecycle/deactivate"),
        None,
    )
    .await
    .json();
    assert_eq!(d["status"], "DEPROVISIONED");
    assert_eq!(d["statusChanged"], d["lastUpdated"]);
    assert!(d["lastUpdated"].as_str().unwrap() > patched["lastUpdated"].as_str().unwrap());
    let again = admin(
        &base,
        "POST",
        &format!("/__admin/users/{id}/lifecycle/suspend"),
        None,
    )
    .await;
    assert_eq!((again.status, again.error_code()), (400, "E0000001".into()));
    let listed = get(&base, "/api/v1/users?limit=200").await.json();
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == json!(id)),
        "DEPROVISIONED hidden by default"
    );
    let a = admin(
        &base,
        "POST",
        &format!("/__admin/users/{id}/lifecycle/activate"),
        None,
    )
    .await
    .json();
    assert_eq!(a["status"], "ACTIVE");
    let bad = admin(
        &base,
        "POST",
        &format!("/__admin/users/{id}/lifecycle/explode"),
        None,
    )
    .await;
    assert_eq!(bad.status, 404);

    assert_eq!(
        admin(&base, "DELETE", &format!("/__admin/users/{id}"), None)
            .await
            .status,
        204
    );
    let gone = get(&base, &format!("/api/v1/users/{id}")).await;
    assert_eq!(
        gone.json()["errorSummary"],
        format!("Not found: Resource not found: {id} (User)")
    );
    assert_eq!(
        admin(&base, "DELETE", &format!("/__admin/users/{id}"), None)
            .await
            .status,
        404
    );
    let evs = events_of(&base, &format!("target.id+eq+%22{id}%22")).await;
    assert_eq!(
        event_types(&evs),
        [
            "user.lifecycle.create",
            "user.lifecycle.activate",
            "user.account.update_profile",
            "user.lifecycle.deactivate",
            "user.lifecycle.activate",
            "user.lifecycle.deactivate",
            "user.lifecycle.delete.initiated",
            "user.lifecycle.delete.completed",
        ]
    );
    let bad = admin(
        &base,
        "POST",
        "/__admin/users",
        Some(r#"{"login":"x@example.com","nickname":"x"}"#),
    )
    .await;
    assert_eq!((bad.status, bad.error_code()), (400, "E0000003".into()));
    let bad = admin(&base, "POST", "/__admin/users", Some("{not json")).await;
    assert_eq!(bad.status, 400);
    fake.shutdown().await;
}

#[tokio::test]
async fn groups_membership_and_app_assignment_side_effects() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let g = admin(
        &base,
        "POST",
        "/__admin/groups",
        Some(r#"{"name":"team-gamma"}"#),
    )
    .await
    .json();
    let gid = g["id"].as_str().unwrap().to_owned();
    assert_eq!(g["profile"]["name"], "team-gamma");
    assert_eq!(
        admin(
            &base,
            "POST",
            "/__admin/groups",
            Some(r#"{"name":"Team-Gamma"}"#)
        )
        .await
        .status,
        400
    );
    let state = admin(&base, "GET", "/__admin/state", None).await.json();
    // a user with no direct assignment to the app
    let direct: Vec<&str> = state["apps"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let app_users: Vec<String> = {
        let r = get(&base, &format!("/api/v1/apps/{APP}/users?limit=500")).await;
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let uid = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .find(|id| !direct.contains(&id.as_str()) && !app_users.contains(id))
        .unwrap();

    admin(
        &base,
        "POST",
        "/__admin/clock",
        Some(r#"{"advance_seconds": 5}"#),
    )
    .await;
    assert_eq!(
        admin(
            &base,
            "PUT",
            &format!("/__admin/groups/{gid}/users/{uid}"),
            None
        )
        .await
        .status,
        204
    );
    let after_add = get(&base, &format!("/api/v1/groups/{gid}")).await.json();
    assert_eq!(
        after_add["lastUpdated"], g["lastUpdated"],
        "membership does not move lastUpdated"
    );
    assert!(
        after_add["lastMembershipUpdated"].as_str().unwrap()
            > g["lastMembershipUpdated"].as_str().unwrap()
    );
    let members = get(&base, &format!("/api/v1/groups/{gid}/users"))
        .await
        .json();
    assert_eq!(members[0]["id"], json!(uid));

    admin(
        &base,
        "POST",
        "/__admin/clock",
        Some(r#"{"advance_seconds": 5}"#),
    )
    .await;
    let renamed = admin(
        &base,
        "PATCH",
        &format!("/__admin/groups/{gid}"),
        Some(r#"{"name":"team-delta"}"#),
    )
    .await
    .json();
    assert!(renamed["lastUpdated"].as_str().unwrap() > g["lastUpdated"].as_str().unwrap());
    assert_eq!(
        renamed["lastMembershipUpdated"],
        after_add["lastMembershipUpdated"]
    );

    // assigning the group gives its member the app with scope GROUP
    let ga = admin(
        &base,
        "PUT",
        &format!("/__admin/apps/{APP}/groups/{gid}"),
        None,
    )
    .await;
    assert_eq!(ga.status, 200);
    assert_eq!(ga.json()["id"], json!(gid));
    let app_user = |base: String, uid: String| async move {
        let r = get(&base, &format!("/api/v1/apps/{APP}/users?limit=500")).await;
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == json!(uid))
            .cloned()
    };
    assert_eq!(
        app_user(base.clone(), uid.clone()).await.unwrap()["scope"],
        "GROUP"
    );
    let au = admin(
        &base,
        "PUT",
        &format!("/__admin/apps/{APP}/users/{uid}"),
        None,
    )
    .await
    .json();
    assert_eq!(au["scope"], "USER");
    assert_eq!(
        admin(
            &base,
            "DELETE",
            &format!("/__admin/apps/{APP}/users/{uid}"),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app_user(base.clone(), uid.clone()).await.unwrap()["scope"],
        "GROUP"
    );
    assert_eq!(
        admin(
            &base,
            "DELETE",
            &format!("/__admin/apps/{APP}/users/{uid}"),
            None
        )
        .await
        .status,
        404
    );

    // push mapping
    let m = admin(
        &base,
        "PUT",
        &format!("/__admin/apps/{APP}/push/{gid}"),
        None,
    )
    .await
    .json();
    assert_eq!(m["sourceGroupId"], json!(gid));
    assert_eq!(m["status"], "ACTIVE");
    let maps = get(&base, &format!("/api/v1/apps/{APP}/group-push/mappings"))
        .await
        .json();
    assert_eq!(maps.as_array().unwrap().len(), 3);
    let m2 = admin(
        &base,
        "PUT",
        &format!("/__admin/apps/{APP}/push/{gid}"),
        Some(r#"{"status":"INACTIVE"}"#),
    )
    .await
    .json();
    assert_eq!(
        (m2["id"].clone(), m2["status"].clone()),
        (m["id"].clone(), json!("INACTIVE"))
    );

    // removing the member takes the app away; deleting the group cleans everything up
    assert_eq!(
        admin(
            &base,
            "DELETE",
            &format!("/__admin/groups/{gid}/users/{uid}"),
            None
        )
        .await
        .status,
        204
    );
    assert!(app_user(base.clone(), uid.clone()).await.is_none());
    assert_eq!(
        admin(&base, "DELETE", &format!("/__admin/groups/{gid}"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        get(&base, &format!("/api/v1/groups/{gid}")).await.status,
        404
    );
    assert_eq!(
        get(&base, &format!("/api/v1/apps/{APP}/group-push/mappings"))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let state = admin(&base, "GET", "/__admin/state", None).await.json();
    assert!(
        !state["apps"][0]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!(gid))
    );

    let evs = events_of(&base, &format!("target.id+eq+%22{gid}%22")).await;
    assert_eq!(
        event_types(&evs),
        [
            "group.lifecycle.create",
            "group.user_membership.add",
            "group.profile.update",
            "group.application_assignment.add",
            "application.provision.group_push.mapping.created",
            "application.provision.group_push.mapping.updated",
            "group.user_membership.remove",
            "group.application_assignment.remove",
            "application.provision.group_push.mapping.removed",
            "group.lifecycle.delete",
        ]
    );
    let app_evs = events_of(
        &base,
        &format!("eventType+sw+%22application.user_membership%22+and+target.id+eq+%22{uid}%22"),
    )
    .await;
    assert_eq!(
        event_types(&app_evs),
        [
            "application.user_membership.add",
            "application.user_membership.remove"
        ]
    );
    let types: Vec<&str> = app_evs[0]["target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["AppUser", "AppInstance", "User"]);
    assert!(
        app_evs[0]["target"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("0ua")
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn state_shape_and_clock() {
    let fake = start(Options {
        users: 20,
        groups: 6,
        app_ids: vec![APP.into(), "0oafakeapp0000000002".into()],
        ..Options::default()
    })
    .await;
    let base = fake.base_url();
    let s = admin(&base, "GET", "/__admin/state", None).await.json();
    assert_eq!(s["users"].as_array().unwrap().len(), 20);
    let u = &s["users"][0];
    for k in [
        "id",
        "status",
        "login",
        "email",
        "firstName",
        "lastName",
        "displayName",
        "lastUpdated",
    ] {
        assert!(u.get(k).is_some(), "state user lacks {k}");
    }
    let g = &s["groups"][0];
    for k in [
        "id",
        "name",
        "lastUpdated",
        "lastMembershipUpdated",
        "members",
    ] {
        assert!(g.get(k).is_some(), "state group lacks {k}");
    }
    assert_eq!(s["apps"].as_array().unwrap().len(), 2);
    assert_eq!(s["apps"][0]["push_mappings"][0]["status"], "ACTIVE");
    assert_eq!(
        s["apps"][0]["push_mappings"][0]["sourceGroupId"],
        s["groups"][0]["id"]
    );
    let before = get(&base, "/api/v1/groups").await;
    let date = |r: &crate::testutil::Resp| {
        time::OffsetDateTime::parse(
            r.header("date").unwrap(),
            &time::format_description::well_known::Rfc2822,
        )
        .unwrap()
        .unix_timestamp()
    };
    let r = admin(
        &base,
        "POST",
        "/__admin/clock",
        Some(r#"{"advance_seconds": 3600}"#),
    )
    .await;
    assert_eq!(r.json()["offset_seconds"], 3600);
    let after = get(&base, "/api/v1/groups").await;
    let skew = date(&after) - date(&before);
    assert!((3599..=3602).contains(&skew), "{skew}");
    // Reset stays consistent with Date on the fake's clock
    let reset: i64 = after.header("x-rate-limit-reset").unwrap().parse().unwrap();
    assert!((0..=61).contains(&(reset - date(&after))));
    fake.shutdown().await;
}

/// Behind a proxy that rewrites `Host` (Prism's validating proxy), links must still name the
/// origin the client reached: the admin-set public URL, until it is cleared.
#[tokio::test]
async fn public_url_names_the_proxy_in_links_until_cleared() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let set = admin(
        &base,
        "PUT",
        "/__admin/public-url",
        Some(r#"{"url":"http://127.0.0.1:4010/"}"#),
    )
    .await;
    assert_eq!(set.status, 200);
    assert_eq!(set.json()["url"], "http://127.0.0.1:4010");
    let page = get(&base, "/api/v1/users?limit=10").await;
    let next = page.link("next").unwrap();
    assert!(
        next.starts_with("http://127.0.0.1:4010/api/v1/users?"),
        "{next}"
    );
    assert!(
        page.json()[0]["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:4010/")
    );
    for bad in [
        r#"{"url":"ftp://x"}"#,
        r#"{"url":"http://x/path"}"#,
        r#"{"uri":"x"}"#,
    ] {
        let r = admin(&base, "PUT", "/__admin/public-url", Some(bad)).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    admin(&base, "PUT", "/__admin/public-url", Some(r#"{"url":null}"#)).await;
    let page = get(&base, "/api/v1/users?limit=10").await;
    assert!(page.link("next").unwrap().starts_with(&base));
}
