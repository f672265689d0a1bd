//! The inbound SCIM endpoint of `oktasync run`: the external compliance checkers, Okta's
//! exact request sequences and SPEC test, push/pull convergence, and bad input.

use serde_json::{Value, json};

use crate::helpers::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

fn okta_user(user_name: &str, external_id: &str) -> Value {
    json!({"schemas":[USER],"userName":user_name,
        "name":{"givenName":"Test","familyName":"User"},
        "emails":[{"primary":true,"value":user_name,"type":"work"}],
        "displayName":"Test User","locale":"en-US","externalId":external_id,
        "groups":[],"password":"1mz050nq","active":true})
}

fn is_error(body: &Value, status: u16) -> bool {
    body["schemas"][0] == ERROR
        && body["status"].as_str() == Some(status.to_string().as_str())
        && body["detail"].as_str().is_some_and(|d| !d.is_empty())
}

/// Must show 1: both external checkers against a running `oktasync run`.
#[tokio::test]
async fn external_compliance_checkers_pass() {
    let app = spawn_app(Backend::Sqlite, 50, 5, AppConfig::default()).await;
    let daemon = app.daemon().await;
    let out = std::process::Command::new("../shared/tools/scim-compliance.sh")
        .arg(daemon.scim(SCRATCH))
        .arg(SCIM_TOKEN)
        .output()
        .unwrap_or_else(|e| panic!("run scim-compliance.sh (../shared/tools): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tester = stdout
        .lines()
        .find(|l| l.starts_with("scim2-tester: "))
        .unwrap_or_default();
    let sanity = stdout
        .lines()
        .find(|l| l.starts_with("scim-sanity: "))
        .unwrap_or_default();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: u32 = tester
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 135 && tester.contains(" 0 failed"), "{tester}");
    assert!(
        sanity.contains(" 0 failed") && !sanity.starts_with("scim-sanity: 0 passed"),
        "{sanity}"
    );
}

/// Must show 2: Okta's PUT-mode (App Integration Wizard) user lifecycle, replayed.
async fn okta_put_mode_user_lifecycle(backend: Backend) {
    let app = spawn_app(backend, 20, 3, AppConfig::default()).await;
    let d = app.daemon().await;
    let base = d.scim(SCRATCH);
    let lookup = format!(
        "{base}/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100"
    );
    let (status, list) = d.call("GET", &lookup, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["itemsPerPage"], 0);
    assert_eq!(list["Resources"], json!([]));

    let (status, created) = d
        .call(
            "POST",
            &format!("{base}/Users"),
            Some(okta_user("test.user@okta.local", "00ujl29u0le5T6Aj10h7")),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty());
    assert_eq!(created["externalId"], "00ujl29u0le5T6Aj10h7");
    assert!(
        created.get("password").is_none(),
        "passwords are never returned"
    );
    assert_eq!(created["name"]["givenName"], "Test");

    let (_, found) = d.call("GET", &lookup, None).await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], id.as_str());

    // Update: GET, then PUT of the whole resource with a change.
    let (status, mut user) = d.call("GET", &format!("{base}/Users/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(user, created, "a create answers with the user as stored");
    user["name"]["givenName"] = json!("Updated");
    let (status, put) = d
        .call("PUT", &format!("{base}/Users/{id}"), Some(user.clone()))
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"]["givenName"], "Updated");
    assert_eq!(put["id"], id.as_str(), "read-only id kept");
    assert_eq!(
        put["meta"]["created"], created["meta"]["created"],
        "read-only meta kept"
    );
    let (_, stored) = d.call("GET", &format!("{base}/Users/{id}"), None).await;
    assert_eq!(stored, put, "an update answers with the user as stored");
    assert_eq!(put["meta"]["version"], "W/\"2\"");

    // Deactivate: GET, PUT active=false; still readable by id (Okta's CRUD test).
    let (_, mut user) = d.call("GET", &format!("{base}/Users/{id}"), None).await;
    user["active"] = json!(false);
    let (status, off) = d
        .call("PUT", &format!("{base}/Users/{id}"), Some(user))
        .await;
    assert_eq!((status, off["active"].clone()), (200, json!(false)));
    let (status, still) = d.call("GET", &format!("{base}/Users/{id}"), None).await;
    assert_eq!((status, still["active"].clone()), (200, json!(false)));

    // Reactivate: lookup finds the same user; PUT active=true keeps the id.
    let (_, found) = d.call("GET", &lookup, None).await;
    let mut user = found["Resources"][0].clone();
    user["active"] = json!(true);
    let (status, on) = d
        .call("PUT", &format!("{base}/Users/{id}"), Some(user))
        .await;
    assert_eq!(
        (status, on["active"].clone(), on["id"].clone()),
        (200, json!(true), json!(id))
    );

    // The journal has every write, as push operations.
    let store = oktasync::store::Store::connect(&app.store_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counts = store
        .journal_counts(SCRATCH)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts, vec![("applied".to_string(), 4)]);
}

/// Must show 2: OIN (PATCH-mode) apps deactivate and reactivate with a path-less replace.
#[tokio::test]
async fn okta_patch_mode_user_lifecycle() {
    let app = spawn_app(Backend::Sqlite, 20, 3, AppConfig::default()).await;
    let d = app.daemon().await;
    let base = d.scim(SCRATCH);
    let (_, created) = d
        .call(
            "POST",
            &format!("{base}/Users"),
            Some(okta_user("patch.user@okta.local", "00upatch")),
        )
        .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    for active in [false, true] {
        let body =
            json!({"schemas":[PATCH],"Operations":[{"op":"replace","value":{"active":active}}]});
        let (status, user) = d
            .call("PATCH", &format!("{base}/Users/{id}"), Some(body))
            .await;
        assert_eq!(status, 200, "Okta wants 200 with the resource: {user}");
        assert_eq!(user["active"], json!(active));
        assert_eq!(user["userName"], "patch.user@okta.local");
    }
}

/// Must show 2: group push (displayName lookup, POST without externalId, GET, PUT with
/// members, PATCH add/remove, rename, DELETE 204).
async fn okta_group_push_sequence(backend: Backend) {
    let app = spawn_app(backend, 20, 3, AppConfig::default()).await;
    let d = app.daemon().await;
    let base = d.scim(SCRATCH);
    let mut users = Vec::new();
    for i in 0..3 {
        let (_, u) = d
            .call(
                "POST",
                &format!("{base}/Users"),
                Some(okta_user(&format!("m{i}@okta.local"), &format!("00um{i}"))),
            )
            .await;
        users.push(u["id"].as_str().unwrap_or_default().to_owned());
    }
    let lookup = format!(
        "{base}/Groups?filter=displayName%20eq%20%22Test%20SCIMv2%22&startIndex=1&count=100"
    );
    assert_eq!(d.call("GET", &lookup, None).await.1["totalResults"], 0);
    let (status, group) = d
        .call(
            "POST",
            &format!("{base}/Groups"),
            Some(json!({"schemas":[GROUP],"displayName":"Test SCIMv2","members":[]})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        d.call("GET", &lookup, None).await.1["Resources"][0]["id"],
        gid.as_str()
    );
    let (status, _) = d.call("GET", &format!("{base}/Groups/{gid}"), None).await;
    assert_eq!(status, 200);

    let members = json!([{"value": users[0], "display": "m0@okta.local"}, {"value": users[1], "display": "m1@okta.local"}]);
    let (status, put) = d
        .call(
            "PUT",
            &format!("{base}/Groups/{gid}"),
            Some(json!({"schemas":[GROUP],"displayName":"Test SCIMv2","members":members})),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["members"], members);

    let body = json!({"schemas":[PATCH],"Operations":[
        {"op":"remove","path":format!("members[value eq \"{}\"]", users[0])},
        {"op":"add","path":"members","value":[{"value":users[2],"display":"m2@okta.local"}]}]});
    let (status, patched) = d
        .call("PATCH", &format!("{base}/Groups/{gid}"), Some(body))
        .await;
    assert_eq!(status, 200, "{patched}");
    let ids: Vec<&str> = patched["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(ids, vec![users[1].as_str(), users[2].as_str()]);
    let (_, stored) = d.call("GET", &format!("{base}/Groups/{gid}"), None).await;
    assert_eq!(stored, patched, "a PATCH answers with the group as stored");
    let by_member = format!("{base}/Groups?filter=members%20eq%20%22{}%22", users[2]);
    assert_eq!(d.call("GET", &by_member, None).await.1["totalResults"], 1);

    let rename = json!({"schemas":[PATCH],"Operations":[{"op":"replace","value":{"id":gid,"displayName":"Renamed"}}]});
    let (status, renamed) = d
        .call("PATCH", &format!("{base}/Groups/{gid}"), Some(rename))
        .await;
    assert_eq!(
        (status, renamed["displayName"].clone()),
        (200, json!("Renamed"))
    );

    let (status, _) = d
        .call("DELETE", &format!("{base}/Groups/{gid}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        d.call("GET", &format!("{base}/Groups/{gid}"), None).await.0,
        404
    );
}

/// Must show 2: the required checks of Okta's SCIM 2.0 SPEC test (Runscope), reproduced.
async fn okta_spec_test_required_checks(backend: Backend) {
    let app = spawn_app(backend, 20, 3, AppConfig::default()).await;
    let d = app.daemon().await;
    let base = d.scim(SCRATCH);
    // "Create at least one user in your SCIM server before running."
    d.call(
        "POST",
        &format!("{base}/Users"),
        Some(okta_user("seed@atko.com", "00useed")),
    )
    .await;
    // 1: GET /Users?count=1&startIndex=1
    let (status, list) = d
        .call("GET", &format!("{base}/Users?count=1&startIndex=1"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        list["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert!(
        list["itemsPerPage"].is_number()
            && list["startIndex"].is_number()
            && list["totalResults"].is_number()
    );
    let first = &list["Resources"][0];
    for field in [
        "/id",
        "/name/familyName",
        "/name/givenName",
        "/userName",
        "/emails/0/value",
    ] {
        assert!(
            first.pointer(field).is_some_and(|v| v != ""),
            "{field} in {first}"
        );
    }
    assert!(first["active"].is_boolean());
    let isv_id = first["id"].as_str().unwrap_or_default().to_owned();
    // 3: GET /Users/{id}
    let (status, user) = d.call("GET", &format!("{base}/Users/{isv_id}"), None).await;
    assert_eq!((status, user["id"].as_str()), (200, Some(isv_id.as_str())));
    // 5 and 9: filters that match nothing
    for name in ["abcdefgh@atko.com", "Runscope123Zzzzzzzzz456@atko.com"] {
        let (status, none) = d
            .call(
                "GET",
                &format!("{base}/Users?filter=userName%20eq%20%22{name}%22"),
                None,
            )
            .await;
        assert_eq!((status, none["totalResults"].clone()), (200, json!(0)));
    }
    // 7 and 23: unknown ids are 404 with a SCIM error body
    for unknown in ["010101001010101011001010101011", "00919288221112222"] {
        let (status, error) = d
            .call("GET", &format!("{base}/Users/{unknown}"), None)
            .await;
        assert_eq!(status, 404);
        assert!(is_error(&error, 404), "{error}");
    }
    // 11 and 13: create, then read back
    let body = json!({"schemas":[USER],"userName":"Runscope123Abcdefghi123@atko.com",
        "name":{"givenName":"Runscope123","familyName":"Abcdefghi123"},
        "emails":[{"primary":true,"value":"Runscope123Abcdefghi123@atko.com","type":"work"}],
        "displayName":"Runscope123 Abcdefghi123","active":true});
    let (status, created) = d
        .call("POST", &format!("{base}/Users"), Some(body.clone()))
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["active"], true);
    assert_eq!(created["userName"], "Runscope123Abcdefghi123@atko.com");
    assert!(
        created["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(USER)))
    );
    let id = created["id"].as_str().unwrap_or_default();
    let (_, read) = d.call("GET", &format!("{base}/Users/{id}"), None).await;
    assert_eq!(read["name"]["familyName"], "Abcdefghi123");
    // 15: the same POST again is 409
    let (status, dup) = d.call("POST", &format!("{base}/Users"), Some(body)).await;
    assert_eq!(status, 409);
    assert_eq!(dup["scimType"], "uniqueness");
    // 17: the userName filter is case-insensitive
    let caps = "RUNSCOPE123ABCDEFGHI123@ATKO.COM";
    let (status, found) = d
        .call(
            "GET",
            &format!("{base}/Users?filter=userName%20eq%20%22{caps}%22"),
            None,
        )
        .await;
    assert_eq!((status, found["totalResults"].clone()), (200, json!(1)));
    // 19: GET /Groups
    let (status, groups) = d.call("GET", &format!("{base}/Groups"), None).await;
    assert!(status == 200 && groups["Resources"].is_array());
    // 21: a wrong token is 401 with a SCIM error
    let response = d
        .http
        .get(format!("{base}/Users?filter=userName%20eq%20%22x%22"))
        .header("Authorization", "non-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(is_error(&body, 401), "{body}");
}

/// Must show 3: a pushed deactivation survives a pull whose Okta read began before it; a
/// later pull is the authority again.
#[tokio::test]
async fn push_and_pull_converge() {
    let app = spawn_app(Backend::Sqlite, 100, 5, AppConfig::default()).await;
    assert_eq!(app.sync().code, 0);
    let d = app.daemon().await;
    let state = app.workspace().await;
    let user = state
        .users
        .iter()
        .find(|u| u.active && u.okta_id.is_some())
        .unwrap_or_else(|| panic!("a managed user"));
    let okta_id = user.okta_id.clone().unwrap_or_default();
    let base = d.scim(WS);

    // A pull whose read starts now and is held up on its first page of users...
    app.fake
        .admin("POST", "/faults", Some(json!({"path": "/api/v1/users", "page": 1, "kind": "delay", "delay_ms": 1500, "times": 1})))
        .await;
    let config = app.config.clone();
    let pull = std::thread::spawn(move || {
        std::process::Command::new(bin())
            .arg("--config")
            .arg(config)
            .args(["sync", "--format", "json"])
            .output()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // ...while Okta push deactivates the user.
    let body = json!({"schemas":[PATCH],"Operations":[{"op":"replace","value":{"active":false}}]});
    let (status, pushed) = d
        .call("PATCH", &format!("{base}/Users/{}", user.id), Some(body))
        .await;
    assert_eq!((status, pushed["active"].clone()), (200, json!(false)));
    let out = pull
        .join()
        .unwrap_or_else(|_| panic!("join"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = app.workspace().await;
    let still = after
        .users
        .iter()
        .find(|u| u.id == user.id)
        .unwrap_or_else(|| panic!("same user"));
    assert!(!still.active, "the older pull must not revert the push");

    // Okta changes the user; the next pull (begun after the push) is the authority.
    app.fake
        .admin(
            "PATCH",
            &format!("/users/{okta_id}"),
            Some(json!({"lastName": "Changed"})),
        )
        .await;
    let run = app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let now = app.workspace().await;
    let user_now = now
        .users
        .iter()
        .find(|u| u.id == user.id)
        .unwrap_or_else(|| panic!("same user"));
    assert!(user_now.active);
    assert_eq!(user_now.attributes.family_name.as_deref(), Some("Changed"));
}

/// Must show 4: bad input of every kind is a clear SCIM error, and nothing is stored.
async fn bad_input_is_a_scim_error_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend, 20, 3, AppConfig::default()).await;
    let d = app.daemon().await;
    let base = d.scim(SCRATCH);
    let (_, first) = d
        .call(
            "POST",
            &format!("{base}/Users"),
            Some(okta_user("Taken@Okta.Local", "00utaken")),
        )
        .await;
    assert!(first["id"].is_string());

    let r = d
        .http
        .post(format!("{base}/Users"))
        .bearer_auth(SCIM_TOKEN)
        .header("Content-Type", "application/scim+json")
        .body("{\"schemas\": [")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = (
        r.status().as_u16(),
        r.json::<Value>().await.unwrap_or(Value::Null),
    );
    assert!(
        status == 400 && body["scimType"] == "invalidSyntax",
        "{body}"
    );

    let cases = [
        (
            json!({"schemas":[GROUP],"userName":"x@y"}),
            400,
            "invalidValue",
        ),
        (
            json!({"schemas":["urn:example:bogus"],"userName":"x@y"}),
            400,
            "invalidValue",
        ),
        (json!({"userName":"x@y"}), 400, "invalidSyntax"),
        (
            json!({"schemas":[USER],"userName":"x@y","shoeSize":44}),
            400,
            "invalidSyntax",
        ),
        (
            json!({"schemas":[USER],"userName":"x@y","active":"perhaps"}),
            400,
            "invalidValue",
        ),
        (json!({"schemas":[USER]}), 400, "invalidValue"),
        (okta_user("TAKEN@okta.local", "00uother"), 409, "uniqueness"),
        (okta_user("taken@OKTA.LOCAL", "00uother"), 409, "uniqueness"),
    ];
    for (body, status, scim_type) in cases {
        let (got, error) = d
            .call("POST", &format!("{base}/Users"), Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(error["scimType"], scim_type, "{body}: {error}");
        assert!(is_error(&error, status), "{error}");
    }
    for filter in [
        "userName%20eq",
        "title%20eq%20%22x%22",
        "userName%20zz%20%22x%22",
    ] {
        let (status, error) = d
            .call("GET", &format!("{base}/Users?filter={filter}"), None)
            .await;
        assert_eq!(
            (status, error["scimType"].clone()),
            (400, json!("invalidFilter")),
            "{filter}: {error}"
        );
    }
    let deep = format!(
        "{}userName%20eq%20%22a%22{}",
        "not%20(".repeat(30),
        ")".repeat(30)
    );
    let (status, error) = d
        .call("GET", &format!("{base}/Users?filter={deep}"), None)
        .await;
    assert_eq!(
        (status, error["scimType"].clone()),
        (400, json!("invalidFilter")),
        "{error}"
    );

    let huge = format!(
        "{{\"schemas\":[\"{USER}\"],\"userName\":\"big@x\",\"title\":\"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let r = d
        .http
        .post(format!("{base}/Users"))
        .bearer_auth(SCIM_TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(huge)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 413);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(is_error(&body, 413), "{body}");

    // Authentication: a wrong token, no token, and an unknown workspace look the same.
    let mut answers = Vec::new();
    for (url, token) in [
        (format!("{base}/Users"), Some("wrong")),
        (format!("{base}/Users"), None),
        (format!("{}/Users", d.scim("nope")), Some(SCIM_TOKEN)),
    ] {
        let mut request = d.http.get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let r = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        answers.push((r.status().as_u16(), r.text().await.unwrap_or_default()));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]) && answers[0].0 == 401,
        "{answers:?}"
    );

    let (_, all) = d.call("GET", &format!("{base}/Users"), None).await;
    assert_eq!(
        all["totalResults"], 1,
        "nothing stored by bad requests: {all}"
    );
}

#[tokio::test]
async fn okta_put_mode_user_lifecycle_sqlite() {
    okta_put_mode_user_lifecycle(Backend::Sqlite).await;
}

#[tokio::test]
async fn okta_put_mode_user_lifecycle_postgres() {
    okta_put_mode_user_lifecycle(Backend::Postgres).await;
}

#[tokio::test]
async fn okta_group_push_sequence_sqlite() {
    okta_group_push_sequence(Backend::Sqlite).await;
}

#[tokio::test]
async fn okta_group_push_sequence_postgres() {
    okta_group_push_sequence(Backend::Postgres).await;
}

#[tokio::test]
async fn okta_spec_test_required_checks_sqlite() {
    okta_spec_test_required_checks(Backend::Sqlite).await;
}

#[tokio::test]
async fn okta_spec_test_required_checks_postgres() {
    okta_spec_test_required_checks(Backend::Postgres).await;
}

#[tokio::test]
async fn bad_input_is_a_scim_error_and_stores_nothing_sqlite() {
    bad_input_is_a_scim_error_and_stores_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_input_is_a_scim_error_and_stores_nothing_postgres() {
    bad_input_is_a_scim_error_and_stores_nothing(Backend::Postgres).await;
}
