//! The `scim` target against misbehaving servers: a proxy in front of scim2-server that
//! fails a fifth of the requests (500, and 429 with or without Retry-After, some after the
//! write went through), and a fake with Bytebase's documented quirks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Response, StatusCode};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::scim_target::ScimServer;

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

struct Chaos {
    upstream: String,
    counter: AtomicU64,
    http: reqwest::Client,
}

/// Every fifth request fails, in rotating ways; one in three of those fails only after the
/// upstream server applied the request.
async fn chaos(State(c): State<Arc<Chaos>>, request: Request) -> Response<Body> {
    let n = c.counter.fetch_add(1, Ordering::Relaxed);
    let fail = n % 5 == 2;
    let kind = (n / 5) % 3;
    if fail && kind != 2 {
        let mut r = Response::new(Body::from("{\"detail\":\"try later\"}"));
        *r.status_mut() = if kind == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        if kind == 1 && n % 2 == 0 {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        return r;
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let url = format!(
        "{}{}",
        c.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut forward = c.http.request(parts.method.clone(), url).body(bytes);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            forward = forward.header(k, v);
        }
    }
    let upstream = forward.send().await;
    if fail {
        // The write happened upstream, but the client is told it failed.
        let mut r = Response::new(Body::from("<html>bad gateway</html>"));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        return r;
    }
    match upstream {
        Ok(u) => {
            let status = u.status();
            let headers = u.headers().clone();
            let mut r = Response::new(Body::from(u.bytes().await.unwrap_or_default()));
            *r.status_mut() = status;
            if let Some(ct) = headers.get("content-type") {
                r.headers_mut().insert("content-type", ct.clone());
            }
            r
        }
        Err(e) => {
            let mut r = Response::new(Body::from(e.to_string()));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    }
}

fn config_for(base: &str, mode: &str) -> AppConfig {
    AppConfig {
        workspace: format!(
            "push_groups = [\"Engineering\", \"re:^team-\"]\n[workspaces.target]\nkind = \"scim\"\nbase_url = \"{base}\"\ntoken = \"target-token-7f3a\"\nupdate_method = \"{mode}\"\n"
        ),
        ..AppConfig::default()
    }
}

/// Must show 2: a target failing 20% of requests still converges, with no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_target_converges_without_duplicates() {
    let server = ScimServer::start();
    let upstream = server.base.trim_end_matches("/v2").to_owned();
    let proxy = serve(
        Router::new()
            .fallback(any(chaos))
            .with_state(Arc::new(Chaos {
                upstream,
                counter: AtomicU64::new(0),
                http: reqwest::Client::new(),
            })),
    )
    .await;
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        config_for(&format!("{proxy}/v2"), "patch"),
        &["--users", "300", "--groups", "10", "--time-scale", "60"],
    )
    .await;
    let mut converged = false;
    for _ in 0..8 {
        let run = app.sync();
        if run.code == 0 && ops(&app.plan().workspace()).is_empty() {
            converged = true;
            break;
        }
    }
    assert!(converged, "did not converge in 8 cycles");
    let users = server.all("Users").await;
    let names: BTreeSet<String> = users
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_lowercase))
        .collect();
    assert_eq!(names.len(), users.len(), "no duplicate users");
    assert_eq!(users.len(), app.fake.state().await.in_scope().len());
    let groups = server.all("Groups").await;
    let group_names: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| g["displayName"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(group_names.len(), groups.len(), "no duplicate groups");
}

/// Bytebase's SCIM server as documented in ../shared/reference/scim-okta-bytebase.md §1.
#[derive(Default)]
struct Bytebase {
    users: BTreeMap<String, (Value, bool)>,
    groups: BTreeMap<String, (String, Vec<String>)>,
    next: u64,
}

type Shared = Arc<Mutex<Bytebase>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Bytebase> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn bb_user(id: &str, doc: &Value, deleted: bool) -> Value {
    // No `name`, externalId always "", userName lower-cased, active = !deleted.
    json!({"id": id, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "",
        "userName": doc["userName"], "active": !deleted, "displayName": doc["displayName"],
        "emails": [{"type": "work", "value": doc["userName"], "primary": true}], "meta": {"resourceType": "User"}})
}

fn list(items: Vec<Value>) -> Json<Value> {
    Json(
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": items.len(), "Resources": items}),
    )
}

async fn bb_list_users(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let Some(filter) = q.get("filter") else {
        return list(vec![]);
    };
    let wanted = filter.split('"').nth(1).unwrap_or_default().to_lowercase();
    let db = lock(&s);
    list(
        db.users
            .iter()
            .filter(|(_, (d, deleted))| !deleted && d["userName"] == wanted)
            .map(|(id, (d, del))| bb_user(id, d, *del))
            .collect(),
    )
}

async fn bb_post_user(
    State(s): State<Shared>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut db = lock(&s);
    let name = body["userName"].as_str().unwrap_or_default().to_lowercase();
    let doc = json!({"userName": name, "displayName": body["displayName"]});
    let existing = db
        .users
        .iter()
        .find(|(_, (d, _))| d["userName"] == name)
        .map(|(id, _)| id.clone());
    let id = match existing {
        // An upsert, never 409; it also undeletes (deleted = !active).
        Some(id) => {
            let active = body["active"].as_bool().unwrap_or(false);
            db.users.insert(id.clone(), (doc.clone(), !active));
            id
        }
        None => {
            db.next += 1;
            let id = db.next.to_string();
            // store.CreateUser ignores `active`: a new user is always active.
            db.users.insert(id.clone(), (doc.clone(), false));
            id
        }
    };
    let (d, del) = db.users[&id].clone();
    (StatusCode::CREATED, Json(bb_user(&id, &d, del)))
}

async fn bb_get_user(State(s): State<Shared>, Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    let db = lock(&s);
    match db.users.get(&id) {
        // Deactivated users are invisible by id.
        Some((d, false)) => (StatusCode::OK, Json(bb_user(&id, d, false))),
        _ => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "404"}),
            ),
        ),
    }
}

async fn bb_put_user(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut db = lock(&s);
    match db.users.get(&id) {
        Some((_, false)) => {
            let doc = json!({"userName": body["userName"].as_str().unwrap_or_default().to_lowercase(), "displayName": body["displayName"]});
            // A PUT without `active` deactivates (Go's zero value).
            let deleted = !body["active"].as_bool().unwrap_or(false);
            db.users.insert(id.clone(), (doc.clone(), deleted));
            (StatusCode::OK, Json(bb_user(&id, &doc, deleted)))
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "404"}),
            ),
        ),
    }
}

async fn bb_post_group(
    State(s): State<Shared>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut db = lock(&s);
    db.next += 1;
    let id = format!("g{}", db.next);
    let members = body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str().map(str::to_owned))
        .collect();
    db.groups.insert(
        id.clone(),
        (
            body["displayName"].as_str().unwrap_or_default().to_owned(),
            members,
        ),
    );
    (
        StatusCode::CREATED,
        Json(
            json!({"id": id, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": body["displayName"], "members": []}),
        ),
    )
}

async fn bb_get_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let db = lock(&s);
    match db.groups.get(&id) {
        // Members are always [] in responses.
        Some((name, _)) => (
            StatusCode::OK,
            Json(
                json!({"id": id, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": []}),
            ),
        ),
        None => (StatusCode::NOT_FOUND, Json(json!({"status": "404"}))),
    }
}

async fn bb_put_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut db = lock(&s);
    let members: Vec<String> = body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str().map(str::to_owned))
        .collect();
    let name = body["displayName"].as_str().unwrap_or_default().to_owned();
    db.groups.insert(id.clone(), (name.clone(), members));
    (
        StatusCode::OK,
        Json(json!({"id": id, "displayName": name, "members": []})),
    )
}

async fn bb_patch_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut db = lock(&s);
    let Some(group) = db.groups.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"status": "404"})));
    };
    for op in body["Operations"].as_array().into_iter().flatten() {
        // `members` add works; `members[value eq "…"]` removal is ignored (still 200).
        if op["path"] == "members"
            && op["op"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case("add"))
        {
            for m in op["value"].as_array().into_iter().flatten() {
                if let Some(v) = m["value"].as_str()
                    && !group.1.iter().any(|x| x == v)
                {
                    group.1.push(v.to_owned());
                }
            }
        }
    }
    (
        StatusCode::OK,
        Json(json!({"id": id, "displayName": group.0, "members": []})),
    )
}

async fn bb_list_groups() -> Json<Value> {
    // `displayName eq` (Okta's lookup) is ignored: always empty.
    list(vec![])
}

/// Must show 6: a Bytebase-like server (no 409, upserts, deactivated users 404 by id,
/// paging ignored, member removal by filter ignored) is provisioned correctly in put mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bytebase_like_target_is_provisioned_correctly() {
    let db: Shared = Arc::default();
    let base = serve(
        Router::new()
            .route("/Users", get(bb_list_users).post(bb_post_user))
            .route("/Users/{id}", get(bb_get_user).put(bb_put_user))
            .route("/Groups", get(bb_list_groups).post(bb_post_group))
            .route(
                "/Groups/{id}",
                get(bb_get_group).put(bb_put_group).patch(bb_patch_group),
            )
            .with_state(db.clone()),
    )
    .await;
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        config_for(&base, "put"),
        &["--users", "150", "--groups", "10", "--time-scale", "60"],
    )
    .await;
    let world = app.fake.state().await;
    let expected = world.in_scope();
    let active = |db: &Shared| -> BTreeSet<String> {
        lock(db)
            .users
            .values()
            .filter(|(_, deleted)| !deleted)
            .filter_map(|(d, _)| d["userName"].as_str().map(str::to_owned))
            .collect()
    };
    let logins = |ids: &BTreeSet<String>| -> BTreeSet<String> {
        ids.iter()
            .filter_map(|id| world.user(id)["login"].as_str().map(str::to_lowercase))
            .collect()
    };
    let run = app.sync();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(active(&db), logins(&expected));
    let second = app.sync();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        ops(&second.workspace()).is_empty(),
        "converged: {}",
        second.stdout
    );

    // Deactivate, then reactivate: Bytebase hides the deactivated user by id.
    let user = world.direct_only_active_users()[0].clone();
    let login = world.user(&user)["login"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let id_before = lock(&db)
        .users
        .iter()
        .find(|(_, (d, _))| d["userName"] == login)
        .map(|(id, _)| id.clone());
    app.fake
        .admin("DELETE", &format!("/apps/{APP}/users/{user}"), None)
        .await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!active(&db).contains(&login));
    app.fake
        .admin("PUT", &format!("/apps/{APP}/users/{user}"), None)
        .await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(active(&db).contains(&login));
    let id_after = lock(&db)
        .users
        .iter()
        .find(|(_, (d, _))| d["userName"] == login)
        .map(|(id, _)| id.clone());
    assert_eq!(id_before, id_after, "reactivated, not duplicated");
    assert_eq!(lock(&db).users.len(), expected.len());

    // Member removal through a full PUT of the member list (put mode) takes effect.
    let eng = world.group_by_name("Engineering");
    let eng_id = eng["id"].as_str().unwrap_or_default().to_owned();
    let leaver = World::strings(&eng["members"])
        .into_iter()
        .find(|m| expected.contains(m))
        .unwrap_or_else(|| panic!("member"));
    app.fake
        .admin("DELETE", &format!("/groups/{eng_id}/users/{leaver}"), None)
        .await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let leaver_login = world.user(&leaver)["login"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let db_now = lock(&db);
    let leaver_id = db_now
        .users
        .iter()
        .find(|(_, (d, _))| d["userName"] == leaver_login)
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    let engineering = db_now
        .groups
        .values()
        .find(|(name, _)| name == "Engineering")
        .unwrap_or_else(|| panic!("pushed"));
    assert!(!engineering.1.contains(&leaver_id), "removed");
    assert_eq!(
        db_now
            .groups
            .values()
            .filter(|(name, _)| name == "Engineering")
            .count(),
        1,
        "one group"
    );
}
