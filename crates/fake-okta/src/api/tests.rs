//! End-to-end tests of the Okta API surface over real loopback HTTP.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::Options;
use crate::testutil::{TOKEN, admin, get, send, start};

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows `next` links from `first`, returning every page.
async fn walk(base: &str, first: &str) -> Vec<crate::testutil::Resp> {
    let mut pages = Vec::new();
    let mut url = Some(first.to_owned());
    while let Some(u) = url {
        let r = get(base, &u).await;
        assert_eq!(r.status, 200, "{u}: {}", String::from_utf8_lossy(&r.body));
        url = r.link("next");
        pages.push(r);
        assert!(pages.len() < 1000, "runaway paging");
    }
    pages
}

#[tokio::test]
async fn users_page_by_id_with_separate_link_lines_and_hide_deprovisioned() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let pages = walk(&base, "/api/v1/users?limit=40").await;
    assert_eq!(pages.len(), 3);
    let first = &pages[0];
    assert_eq!(
        first.all("link").len(),
        2,
        "self and next as separate lines"
    );
    assert_eq!(
        first.link("self").unwrap(),
        format!("{base}/api/v1/users?limit=40")
    );
    let first_ids = ids(&first.json());
    assert_eq!(
        first.link("next").unwrap(),
        format!(
            "{base}/api/v1/users?limit=40&after={}",
            first_ids.last().unwrap()
        )
    );
    assert_eq!(pages[2].all("link").len(), 1, "no next on the last page");
    let all: Vec<String> = pages.iter().flat_map(|p| ids(&p.json())).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ascending ids");
    assert_eq!(all.len(), 98, "100 users minus the 2 DEPROVISIONED");
    for p in &pages {
        assert!(
            p.json()
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["status"] != "DEPROVISIONED")
        );
    }
    // every standard header
    for h in [
        "x-okta-request-id",
        "date",
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        assert!(first.header(h).is_some(), "missing {h}");
    }
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("x-rate-limit-limit"), Some("600"));
    assert!(
        first
            .header("x-okta-request-id")
            .unwrap()
            .starts_with("req")
    );
    assert!(first.header("date").unwrap().ends_with(" GMT"));
    let u = &first.json()[0];
    for k in [
        "id",
        "status",
        "created",
        "activated",
        "statusChanged",
        "lastLogin",
        "lastUpdated",
        "passwordChanged",
        "type",
        "profile",
        "credentials",
        "_links",
    ] {
        assert!(u.get(k).is_some(), "user lacks {k}");
    }
    assert!(u["created"].as_str().unwrap().ends_with(".000Z"));
    assert_eq!(
        u["_links"]["self"]["href"],
        format!("{base}/api/v1/users/{}", u["id"].as_str().unwrap())
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn users_default_and_max_limits_and_expressions() {
    let fake = start(Options {
        users: 250,
        ..Options::default()
    })
    .await;
    let base = fake.base_url();
    let r = get(&base, "/api/v1/users").await;
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/users?limit=200")
    );
    assert_eq!(r.json().as_array().unwrap().len(), 200);
    let r = get(&base, "/api/v1/users?limit=1000").await;
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/users?limit=200")
    );
    assert!(r.link("next").unwrap().contains("limit=200&after="));
    // search=status pr lists everyone, DEPROVISIONED included, and keeps the param in next
    let pages = walk(&base, "/api/v1/users?search=status%20pr&limit=100").await;
    assert!(
        pages[0]
            .link("next")
            .unwrap()
            .contains("search=status+pr&limit=100&after=")
    );
    let all: Vec<Value> = pages
        .iter()
        .flat_map(|p| p.json().as_array().unwrap().clone())
        .collect();
    assert_eq!(all.len(), 250);
    let deprovisioned = all
        .iter()
        .filter(|u| u["status"] == "DEPROVISIONED")
        .count();
    assert!(deprovisioned >= 4);
    let r = get(
        &base,
        "/api/v1/users?filter=status%20eq%20%22DEPROVISIONED%22",
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), deprovisioned);
    let r = get(
        &base,
        "/api/v1/users?filter=profile.login+eq+%22user7%40example.com%22",
    )
    .await;
    assert_eq!(r.json()[0]["profile"]["login"], "user7@example.com");
    // lastUpdated gt: strictly newer than the 10th user's lastUpdated
    let pivot = all[10]["lastUpdated"].as_str().unwrap().to_owned();
    let r = get(
        &base,
        &format!("/api/v1/users?limit=200&filter=lastUpdated+gt+%22{pivot}%22"),
    )
    .await;
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["lastUpdated"].as_str().unwrap() > pivot.as_str())
    );
    for bad in [
        "status%20ne%20%22ACTIVE%22",
        "status%20eq",
        "profile.nickName%20eq%20%22x%22",
        "lastUpdated%20gt%20%22yesterday%22",
    ] {
        let r = get(&base, &format!("/api/v1/users?filter={bad}")).await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "E0000031".into()),
            "{bad}"
        );
        assert_eq!(r.json()["errorSummary"], "Invalid search criteria.");
        assert_eq!(r.json()["errorCauses"], serde_json::json!([]));
    }
    // q: prefix match, no paging, DEPROVISIONED hidden, default limit 10
    let r = get(&base, "/api/v1/users?q=first1").await;
    assert_eq!(r.json().as_array().unwrap().len(), 10);
    assert!(r.link("next").is_none());
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/users?q=first1&limit=10")
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn auth_errors_and_unknown_paths() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    for token in [None, Some("wrong")] {
        let r = send(&base, "GET", "/api/v1/users", token, None).await;
        assert_eq!((r.status, r.error_code()), (401, "E0000011".into()));
        assert_eq!(r.json()["errorSummary"], "Invalid token provided");
        assert!(r.header("x-rate-limit-remaining").is_some());
    }
    let r = get(&base, "/api/v1/nope").await;
    assert_eq!((r.status, r.error_code()), (404, "E0000022".into()));
    let r = send(&base, "DELETE", "/api/v1/users", Some(TOKEN), None).await;
    assert_eq!((r.status, r.error_code()), (405, "E0000022".into()));
    let r = get(&base, "/api/v1/users/00unope").await;
    assert_eq!((r.status, r.error_code()), (404, "E0000007".into()));
    assert_eq!(
        r.json()["errorSummary"],
        "Not found: Resource not found: 00unope (User)"
    );
    assert!(r.json()["errorId"].as_str().unwrap().starts_with("oae"));
    let by_login = get(&base, "/api/v1/users/user3%40example.com").await;
    let by_id = get(
        &base,
        &format!("/api/v1/users/{}", by_login.json()["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(by_login.json(), by_id.json());
    assert!(by_id.link("self").is_none() || by_id.all("link").len() <= 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn groups_members_and_filters() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let r = get(&base, "/api/v1/groups").await;
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/groups?limit=10000")
    );
    let groups = r.json();
    assert_eq!(groups.as_array().unwrap().len(), 10);
    let eng = &groups[0];
    assert_eq!(eng["profile"]["name"], "Engineering");
    assert_eq!(eng["type"], "OKTA_GROUP");
    assert_eq!(eng["objectClass"][0], "okta:user_group");
    assert!(
        eng["lastMembershipUpdated"]
            .as_str()
            .unwrap()
            .ends_with(".000Z")
    );
    assert!(
        groups[7]["profile"]["description"].is_null(),
        "null, not absent"
    );
    let pages = walk(&base, "/api/v1/groups?limit=3").await;
    assert_eq!(pages.len(), 4);
    let r = get(&base, "/api/v1/groups?q=team").await;
    let names: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["profile"]["name"].clone())
        .collect();
    assert_eq!(names, ["team-alpha", "team-beta"]);
    let r = get(&base, "/api/v1/groups?filter=type+eq+%22OKTA_GROUP%22+and+lastUpdated+gt+%222000-01-01T00%3A00%3A00.000Z%22").await;
    assert_eq!(r.json().as_array().unwrap().len(), 10);
    let r = get(&base, "/api/v1/groups?filter=profile.name+eq+%22Sales%22").await;
    assert_eq!((r.status, r.error_code()), (400, "E0000031".into()));
    let r = get(&base, "/api/v1/groups?search=profile.name+sw+%22sal%22").await;
    assert_eq!(ids(&r.json()), [groups[1]["id"].as_str().unwrap()]);
    // members: full users, DEPROVISIONED included, across all groups
    let mut statuses = BTreeSet::new();
    for g in groups.as_array().unwrap() {
        let gid = g["id"].as_str().unwrap();
        let r = get(&base, &format!("/api/v1/groups/{gid}/users")).await;
        assert_eq!(
            r.link("self").unwrap(),
            format!("{base}/api/v1/groups/{gid}/users?limit=1000")
        );
        for u in r.json().as_array().unwrap() {
            assert!(u["profile"]["login"].is_string());
            statuses.insert(u["status"].as_str().unwrap().to_owned());
        }
    }
    assert!(statuses.contains("DEPROVISIONED"), "{statuses:?}");
    let r = get(&base, "/api/v1/groups/00gnope/users").await;
    assert_eq!(
        r.json()["errorSummary"],
        "Not found: Resource not found: 00gnope (UserGroup)"
    );
    let r = get(
        &base,
        &format!("/api/v1/groups/{}", eng["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(r.json(), *eng);
    assert_eq!(r.header("x-rate-limit-limit"), Some("1000"), "group bucket");
    fake.shutdown().await;
}

#[tokio::test]
async fn app_users_groups_and_push_mappings() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let app = "0oafakeapp0000000001";
    let pages = walk(&base, &format!("/api/v1/apps/{app}/users")).await;
    assert_eq!(
        pages[0].link("self").unwrap(),
        format!("{base}/api/v1/apps/{app}/users?limit=50")
    );
    let all: Vec<Value> = pages
        .iter()
        .flat_map(|p| p.json().as_array().unwrap().clone())
        .collect();
    assert!(all.iter().any(|u| u["scope"] == "USER") && all.iter().any(|u| u["scope"] == "GROUP"));
    let au = &all[0];
    assert!(au["id"].as_str().unwrap().starts_with("00u"));
    assert!(matches!(
        au["status"].as_str(),
        Some("PROVISIONED" | "ACTIVE")
    ));
    for k in [
        "created",
        "lastUpdated",
        "statusChanged",
        "syncState",
        "credentials",
        "profile",
        "_links",
    ] {
        assert!(au.get(k).is_some(), "app user lacks {k}");
    }
    assert!(
        au["credentials"]["userName"]
            .as_str()
            .unwrap()
            .ends_with("@example.com")
    );
    assert!(au.get("_embedded").is_none());
    let r = get(
        &base,
        &format!("/api/v1/apps/{app}/users?limit=2&expand=user"),
    )
    .await;
    let first = &r.json()[0];
    assert_eq!(first["_embedded"]["user"]["id"], first["id"]);
    assert!(
        r.link("next")
            .unwrap()
            .contains("expand=user&limit=2&after=")
            || r.link("next")
                .unwrap()
                .contains("limit=2&expand=user&after=")
    );
    // app groups: min 20, Engineering and team-alpha assigned, Sales not
    let r = get(&base, &format!("/api/v1/apps/{app}/groups?limit=5")).await;
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/apps/{app}/groups?limit=20")
    );
    let groups = get(&base, "/api/v1/groups").await.json();
    let gid = |i: usize| groups[i]["id"].as_str().unwrap().to_owned();
    let assigned = ids(&r.json());
    assert!(
        assigned.contains(&gid(0)) && assigned.contains(&gid(3)) && !assigned.contains(&gid(1))
    );
    assert_eq!(r.json()[0]["profile"], serde_json::json!({}));
    // push mappings: no milliseconds
    let r = get(&base, &format!("/api/v1/apps/{app}/group-push/mappings")).await;
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/apps/{app}/group-push/mappings?limit=100")
    );
    let m = r.json();
    assert_eq!(m.as_array().unwrap().len(), 2);
    assert_eq!(m[0]["sourceGroupId"], gid(0).as_str());
    assert_eq!(m[1]["sourceGroupId"], gid(3).as_str());
    assert_eq!(m[0]["status"], "ACTIVE");
    let created = m[0]["created"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && !created.contains('.'),
        "{created}"
    );
    let r = get(
        &base,
        &format!("/api/v1/apps/{app}/group-push/mappings?lastUpdated=2030-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(r.json(), serde_json::json!([]));
    let r = get(&base, "/api/v1/apps/0oanope/users").await;
    assert_eq!((r.status, r.error_code()), (404, "E0000007".into()));
    assert_eq!(r.header("x-rate-limit-limit"), Some("100"), "apps bucket");
    fake.shutdown().await;
}

#[tokio::test]
async fn system_log_polling_always_has_next() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let r = get(
        &base,
        "/api/v1/logs?since=2020-01-01T00:00:00.000Z&sortOrder=ASCENDING",
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "E0000053".into()),
        "since over 180 days back"
    );
    let r = get(&base, "/api/v1/logs?sortOrder=ASCENDING").await;
    assert_eq!(r.json(), serde_json::json!([]));
    assert_eq!(
        r.link("self").unwrap(),
        format!("{base}/api/v1/logs?sortOrder=ASCENDING&limit=100")
    );
    let next = r.link("next").expect("polling always has next");
    let r = get(&base, &next).await;
    assert_eq!(r.json(), serde_json::json!([]));
    let next = r.link("next").expect("still next on an empty page");
    // a change writes events that the stored next link then returns
    let user = admin(
        &base,
        "POST",
        "/__admin/users",
        Some(r#"{"login":"new@example.com"}"#),
    )
    .await
    .json();
    let uid = user["id"].as_str().unwrap();
    let r = get(&base, &next).await;
    let events = r.json();
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["user.lifecycle.create", "user.lifecycle.activate"]);
    let e = &events[0];
    assert_eq!(e["target"][0]["id"], uid);
    assert_eq!(e["target"][0]["type"], "User");
    assert_eq!(e["target"][0]["alternateId"], "new@example.com");
    let published = e["published"].as_str().unwrap();
    assert_eq!(published.len(), "2024-08-13T15:58:20.353Z".len());
    assert_eq!(e["uuid"].as_str().unwrap().len(), 36);
    let after = r.link("next").unwrap();
    assert!(after.contains("after=") && after.contains("sortOrder=ASCENDING"));
    assert_eq!(get(&base, &after).await.json(), serde_json::json!([]));
    // bounded request: no next on the last page
    let r = get(
        &base,
        "/api/v1/logs?since=2000-01-01T00:00:00.000Z&until=2999-01-01T00:00:00.000Z&limit=1",
    )
    .await;
    assert_eq!((r.status, r.error_code()), (400, "E0000053".into()));
    let now = time::OffsetDateTime::now_utc();
    let since = (now - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let until = (now + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let pages = walk(
        &base,
        &format!("/api/v1/logs?since={since}&until={until}&limit=1"),
    )
    .await;
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[1].all("link").len(), 1);
    let r = get(
        &base,
        "/api/v1/logs?filter=eventType+eq+%22user.lifecycle.create%22",
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = get(&base, "/api/v1/logs?filter=eventType+eqq+%22x%22").await;
    assert_eq!((r.status, r.error_code()), (400, "E0000053".into()));
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limit_429_headers_and_stats() {
    // apps bucket: 100 * 0.03 = 3 per window
    let fake = start(Options {
        limit_multiplier: 0.03,
        ..Options::default()
    })
    .await;
    let base = fake.base_url();
    let url = "/api/v1/apps/0oafakeapp0000000001/groups";
    let mut remaining = Vec::new();
    let mut resets = BTreeSet::new();
    for _ in 0..4 {
        let r = get(&base, url).await;
        remaining.push((
            r.status,
            r.header("x-rate-limit-remaining").unwrap().to_owned(),
        ));
        resets.insert(r.header("x-rate-limit-reset").unwrap().to_owned());
        if r.status == 429 {
            assert_eq!(r.error_code(), "E0000047");
            assert_eq!(r.header("x-rate-limit-limit"), Some("3"));
            let reset: i64 = r.header("x-rate-limit-reset").unwrap().parse().unwrap();
            let date = time::OffsetDateTime::parse(
                r.header("date").unwrap(),
                &time::format_description::well_known::Rfc2822,
            )
            .unwrap();
            let wait = reset - date.unix_timestamp();
            assert!((0..=61).contains(&wait), "Reset - Date = {wait}");
        }
    }
    let got: Vec<(u16, &str)> = remaining.iter().map(|(s, r)| (*s, r.as_str())).collect();
    assert_eq!(got, [(200, "2"), (200, "1"), (200, "0"), (429, "0")]);
    assert_eq!(resets.len(), 1, "one window, one reset");
    // other buckets are untouched
    assert_eq!(get(&base, "/api/v1/users?limit=1").await.status, 200);
    let stats = admin(&base, "GET", "/__admin/stats", None).await.json();
    assert_eq!(
        stats["buckets"]["apps"],
        serde_json::json!({"calls": 4, "throttled": 1})
    );
    assert_eq!(stats["buckets"]["users"]["calls"], 1);
    let reqs = stats["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[3]["status"], 429);
    assert_eq!(reqs[4]["query"], "limit=1");
    assert_eq!(
        admin(&base, "POST", "/__admin/stats/reset", None)
            .await
            .status,
        204
    );
    assert_eq!(
        admin(&base, "GET", "/__admin/stats", None).await.json()["requests"],
        serde_json::json!([])
    );
    assert_eq!(
        admin(&base, "POST", "/__admin/ratelimit/reset", None)
            .await
            .status,
        204
    );
    assert_eq!(get(&base, url).await.status, 200);
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limit_windows_follow_time_scale() {
    // 60 / 600 = 0.1 s windows; apps limit 1
    let fake = start(Options {
        limit_multiplier: 0.01,
        time_scale: 600.0,
        ..Options::default()
    })
    .await;
    let base = fake.base_url();
    let url = "/api/v1/apps/0oafakeapp0000000001/groups";
    assert_eq!(get(&base, url).await.status, 200);
    assert_eq!(get(&base, url).await.status, 429);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(get(&base, url).await.status, 200, "a new window opened");
    fake.shutdown().await;
    let fake = start(Options {
        limit_multiplier: 0.01,
        rate_limits: false,
        ..Options::default()
    })
    .await;
    let base = fake.base_url();
    for _ in 0..3 {
        let r = get(&base, url).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-rate-limit-remaining"), Some("0"));
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_by_page_and_kind() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let add = |body: &'static str| {
        let base = base.clone();
        async move {
            let r = admin(&base, "POST", "/__admin/faults", Some(body)).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()["id"].as_u64().unwrap()
        }
    };
    add(r#"{"path":"/api/v1/users","page":2,"kind":"status","status":500,"times":1}"#).await;
    let p1 = get(&base, "/api/v1/users?limit=30").await;
    assert_eq!(p1.status, 200);
    let next = p1.link("next").unwrap();
    let p2 = get(&base, &next).await;
    assert_eq!((p2.status, p2.error_code()), (500, "E0000009".into()));
    assert!(p2.header("x-rate-limit-reset").is_some());
    let p2 = get(&base, &next).await;
    assert_eq!(p2.status, 200, "times: 1 used up");
    // page 3 = cursor at position 60 with limit 30
    add(r#"{"path":"/api/v1/users","page":3,"kind":"truncated_json"}"#).await;
    let p3 = get(&base, &p2.link("next").unwrap()).await;
    assert_eq!(p3.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&p3.body).is_err(),
        "truncated"
    );
    assert!(p3.body.starts_with(b"[{"));
    assert_eq!(get(&base, &next).await.status, 200, "page 2 unaffected");
    assert_eq!(
        admin(&base, "DELETE", "/__admin/faults", None).await.status,
        204
    );
    add(r#"{"path":"/api/v1/groups*","kind":"invalid_json","times":1}"#).await;
    let r = get(&base, "/api/v1/groups/00gx/users").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    add(r#"{"path":"/api/v1/logs","kind":"duplicate_reset_header","times":1}"#).await;
    let r = get(&base, "/api/v1/logs").await;
    let resets: Vec<i64> = r
        .all("x-rate-limit-reset")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(resets.len(), 2);
    assert_ne!(resets[0], resets[1]);
    assert_eq!(r.status, 200);
    add(r#"{"path":"/api/v1/apps/*","kind":"concurrency_429","times":1}"#).await;
    let r = get(&base, "/api/v1/apps/0oafakeapp0000000001/users").await;
    assert_eq!((r.status, r.error_code()), (429, "E0000047".into()));
    assert_eq!(r.header("x-rate-limit-limit"), Some("0"));
    assert_eq!(r.header("x-rate-limit-remaining"), Some("0"));
    add(r#"{"path":"/api/v1/users/*","kind":"delay","delay_ms":200,"times":1}"#).await;
    let t = std::time::Instant::now();
    let r = get(&base, "/api/v1/users/user1%40example.com").await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= std::time::Duration::from_millis(200));
    let bad = admin(
        &base,
        "POST",
        "/__admin/faults",
        Some(r#"{"path":"/x","kind":"explode"}"#),
    )
    .await;
    assert_eq!((bad.status, bad.error_code()), (400, "E0000003".into()));
    fake.shutdown().await;
}
