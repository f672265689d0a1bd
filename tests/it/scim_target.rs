//! The `scim` workspace target against a real SCIM service provider (scim2-server from
//! `../shared/tools/scim-target.sh`): the full lifecycle in put and patch modes, checked
//! by reading the target back; drift; adoption; a misbehaving target; SIGKILL mid-apply.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::*;

const TARGET_TOKEN: &str = "target-token-7f3a";

/// A scim2-server process, stopped on drop.
pub struct ScimServer {
    pub base: String,
    pid: String,
    http: reqwest::Client,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

impl ScimServer {
    pub fn start() -> Self {
        let out = Command::new("../shared/tools/scim-target.sh")
            .arg(free_port().to_string())
            .arg(TARGET_TOKEN)
            .output()
            .unwrap_or_else(|e| panic!("scim-target.sh: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    panic!(
                        "scim-target.sh printed no {k}: {text} {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
        };
        Self {
            base: field("BASE_URL="),
            pid: field("PID="),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| panic!("method"));
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TARGET_TOKEN);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_string());
        }
        let r = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Every resource of an endpoint, read page by page.
    pub async fn all(&self, endpoint: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let (_, page) = self
                .call(
                    "GET",
                    &format!("/{endpoint}?startIndex={}&count=500", out.len() + 1),
                    None,
                )
                .await;
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                return out;
            }
            out.extend(items);
        }
    }

    pub async fn users_by_external_id(&self) -> BTreeMap<String, Value> {
        self.all("Users")
            .await
            .into_iter()
            .filter_map(|u| u["externalId"].as_str().map(|e| (e.to_owned(), u.clone())))
            .collect()
    }
}

fn target_config(server: &ScimServer, mode: &str, extra: &str) -> AppConfig {
    AppConfig {
        workspace: format!(
            "push_groups = [\"Engineering\", \"re:^team-\"]\n{extra}[workspaces.target]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken = \"{TARGET_TOKEN}\"\nupdate_method = \"{mode}\"\n",
            server.base
        ),
        ..AppConfig::default()
    }
}

fn sync_ok(app: &TestApp) -> Value {
    let run = app.sync();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run.workspace()
}

/// Must show 1: the whole lifecycle, read back from the target, in both modes.
async fn lifecycle(mode: &str) {
    let server = ScimServer::start();
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        target_config(&server, mode, ""),
        &["--users", "1200", "--groups", "20", "--time-scale", "60"],
    )
    .await;
    let world = app.fake.state().await;
    let first = sync_ok(&app);
    let expected = world.in_scope();
    assert!(expected.len() >= 500, "{} in scope", expected.len());
    assert_eq!(summary(&first)["create_user"], expected.len() as u64);
    let users = server.users_by_external_id().await;
    assert_eq!(users.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (okta_id, u) in &users {
        let okta = world.user(okta_id);
        assert_eq!(u["userName"], okta["login"]);
        assert_eq!(u["name"]["givenName"], okta["firstName"]);
        assert_eq!(u["emails"][0]["value"], okta["email"]);
        assert_eq!(u["active"], true);
    }
    let groups = server.all("Groups").await;
    let eng = groups
        .iter()
        .find(|g| g["displayName"] == "Engineering")
        .unwrap_or_else(|| panic!("Engineering pushed"));
    let eng_members: BTreeSet<String> = eng["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str().map(str::to_owned))
        .collect();
    let expected_eng: BTreeSet<String> =
        World::strings(&world.group_by_name("Engineering")["members"])
            .intersection(&expected)
            .filter_map(|okta| {
                users
                    .get(okta)
                    .and_then(|u| u["id"].as_str())
                    .map(str::to_owned)
            })
            .collect();
    assert_eq!(eng_members, expected_eng);
    assert!(ops(&sync_ok(&app)).is_empty(), "converged");

    let direct = world.direct_only_active_users();
    let [a, b, c] = [0, 1, 2].map(|i| direct[i].clone());
    let id_of = |users: &BTreeMap<String, Value>, okta: &str| {
        users
            .get(okta)
            .and_then(|u| u["id"].as_str())
            .map(str::to_owned)
    };
    let b_id = id_of(&users, &b);
    let c_id = id_of(&users, &c);

    app.fake
        .admin(
            "PATCH",
            &format!("/users/{a}"),
            Some(json!({"firstName": "Renamed"})),
        )
        .await;
    app.fake
        .admin(
            "PATCH",
            &format!("/users/{b}"),
            Some(json!({"login": "moved@example.org", "email": "moved@example.org"})),
        )
        .await;
    app.fake
        .admin("DELETE", &format!("/apps/{APP}/users/{c}"), None)
        .await;
    sync_ok(&app);
    let users = server.users_by_external_id().await;
    assert_eq!(users[&a]["name"]["givenName"], "Renamed");
    assert_eq!(users[&b]["userName"], "moved@example.org");
    assert_eq!(
        id_of(&users, &b),
        b_id,
        "a login change keeps the target id"
    );
    assert_eq!(
        users[&c]["active"], false,
        "unassigned: deactivated, not deleted"
    );

    app.fake
        .admin("PUT", &format!("/apps/{APP}/users/{c}"), None)
        .await;
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
    let eng_id = world.group_by_name("Engineering")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let members = World::strings(&world.group_by_name("Engineering")["members"]);
    let newcomer = direct[3..]
        .iter()
        .find(|u| !members.contains(*u))
        .cloned()
        .unwrap_or_else(|| panic!("non-member"));
    let leaver = members
        .iter()
        .find(|m| expected.contains(*m))
        .cloned()
        .unwrap_or_else(|| panic!("member"));
    app.fake
        .admin("PUT", &format!("/groups/{eng_id}/users/{newcomer}"), None)
        .await;
    app.fake
        .admin("DELETE", &format!("/groups/{eng_id}/users/{leaver}"), None)
        .await;
    sync_ok(&app);
    let users = server.users_by_external_id().await;
    assert_eq!(
        (users[&c]["active"].clone(), id_of(&users, &c)),
        (json!(true), c_id),
        "reactivated with the same id"
    );
    let groups = server.all("Groups").await;
    assert!(groups.iter().any(|g| g["displayName"] == "team-alpha-2"));
    assert!(
        !groups.iter().any(|g| g["displayName"] == "team-alpha"),
        "renamed, not recreated"
    );
    let eng = groups
        .iter()
        .find(|g| g["displayName"] == "Engineering")
        .unwrap_or_else(|| panic!("eng"));
    let eng_members: BTreeSet<String> = eng["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str().map(str::to_owned))
        .collect();
    assert!(id_of(&users, &newcomer).is_some_and(|id| eng_members.contains(&id)));
    assert!(id_of(&users, &leaver).is_some_and(|id| !eng_members.contains(&id)));
    assert!(ops(&app.plan().workspace()).is_empty(), "converged");

    // A group leaving push: kept by default.
    let beta = world.group_by_name("team-beta")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.fake
        .admin(
            "PATCH",
            &format!("/groups/{beta}"),
            Some(json!({"name": "beta-unpushed"})),
        )
        .await;
    let run = sync_ok(&app);
    assert_eq!(ops(&run), vec![op("unlink_group", &beta)]);
    assert!(
        server
            .all("Groups")
            .await
            .iter()
            .any(|g| g["displayName"] == "team-beta"),
        "kept in the target"
    );
}

#[tokio::test]
async fn scim_target_lifecycle_put_mode() {
    lifecycle("put").await;
}

#[tokio::test]
async fn scim_target_lifecycle_patch_mode() {
    lifecycle("patch").await;
}

/// Unlink with on_unlink = "delete" removes the group from the target.
#[tokio::test]
async fn scim_target_unlink_delete() {
    let server = ScimServer::start();
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        target_config(&server, "patch", "on_unlink = \"delete\"\n"),
        &["--users", "200", "--groups", "10", "--time-scale", "60"],
    )
    .await;
    sync_ok(&app);
    let world = app.fake.state().await;
    let beta = world.group_by_name("team-beta")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.fake
        .admin(
            "PATCH",
            &format!("/groups/{beta}"),
            Some(json!({"name": "beta-unpushed"})),
        )
        .await;
    sync_ok(&app);
    assert!(
        !server
            .all("Groups")
            .await
            .iter()
            .any(|g| g["displayName"] == "team-beta"),
        "deleted in the target"
    );
}

/// Must show 4 and 5: out-of-band edits of managed users are corrected, users created
/// directly in the target are left alone, and a pre-existing user with the same userName
/// in another letter case is adopted, not duplicated.
#[tokio::test]
async fn scim_target_drift_and_adoption() {
    let server = ScimServer::start();
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        target_config(&server, "put", ""),
        &["--users", "200", "--groups", "10", "--time-scale", "60"],
    )
    .await;
    let world = app.fake.state().await;
    let direct = world.direct_only_active_users();
    let okta = world.user(&direct[0]);
    let login = okta["login"].as_str().unwrap_or_default().to_uppercase();
    let (status, pre) = server
        .call("POST", "/Users", Some(json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName": login, "title": "kept"})))
        .await;
    assert_eq!(status, 201, "{pre}");
    let (_, stranger) = server
        .call("POST", "/Users", Some(json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"stranger@elsewhere","displayName":"Not from Okta"})))
        .await;
    let first = sync_ok(&app);
    assert!(
        ops(&first).contains(&op("adopt_user", &direct[0])),
        "{}",
        first["operations"]
    );
    let users = server.all("Users").await;
    let same: Vec<&Value> = users
        .iter()
        .filter(|u| {
            u["userName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&login))
        })
        .collect();
    assert_eq!(same.len(), 1, "adopted, not duplicated");
    assert_eq!(same[0]["id"], pre["id"]);
    assert_eq!(same[0]["externalId"], direct[0].as_str());

    // Out-of-band edit of a managed user; a user created in the target stays untouched.
    let victim = server.users_by_external_id().await[&direct[1]].clone();
    let mut edited = victim.clone();
    edited["name"]["givenName"] = json!("Tampered");
    edited["active"] = json!(false);
    let (status, _) = server
        .call(
            "PUT",
            &format!("/Users/{}", victim["id"].as_str().unwrap_or_default()),
            Some(edited),
        )
        .await;
    assert_eq!(status, 200);
    let run = sync_ok(&app);
    assert!(
        ops(&run).contains(&op("reactivate_user", &direct[1])),
        "{}",
        run["operations"]
    );
    let fixed = &server.users_by_external_id().await[&direct[1]];
    assert_eq!(
        fixed["name"]["givenName"],
        world.user(&direct[1])["firstName"]
    );
    assert_eq!(fixed["active"], true);
    let (_, still) = server
        .call(
            "GET",
            &format!("/Users/{}", stranger["id"].as_str().unwrap_or_default()),
            None,
        )
        .await;
    assert_eq!(still["displayName"], "Not from Okta");
    assert_eq!(still["active"], stranger["active"]);
}

/// Must show 3: SIGKILL in the middle of applying creates, then a rerun: no duplicates,
/// converged.
#[tokio::test]
async fn scim_target_survives_sigkill_mid_apply() {
    let server = ScimServer::start();
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        target_config(&server, "put", ""),
        &["--users", "1200", "--groups", "10", "--time-scale", "60"],
    )
    .await;
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&app.config)
        .args(["sync", "--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Kill once some users exist in the target, well before all of them do.
    for _ in 0..400 {
        let (_, page) = server.call("GET", "/Users?count=1", None).await;
        if page["totalResults"].as_u64().unwrap_or(0) >= 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let partial = server.all("Users").await.len();
    sync_ok(&app);
    assert!(ops(&app.plan().workspace()).is_empty(), "converged");
    let users = server.all("Users").await;
    let names: BTreeSet<String> = users
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_lowercase))
        .collect();
    assert_eq!(names.len(), users.len(), "no duplicates");
    let world = app.fake.state().await;
    assert_eq!(users.len(), world.in_scope().len());
    assert!(
        partial < users.len(),
        "the kill happened mid-apply ({partial} of {})",
        users.len()
    );
}
