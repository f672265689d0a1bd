//! `spawn_app()`: a fake Okta process, a fresh store (SQLite file or a new PostgreSQL
//! database), a config file, and helpers to run `oktasync` commands and read results.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use oktasync::model::WorkspaceState;
use oktasync::store::Store;
use serde_json::Value;

pub const APP: &str = "0oafakeapp0000000001";
pub const TOKEN: &str = "it-token-not-for-logs-5d1f";
pub const WS: &str = "ws1";
/// The inbound SCIM bearer token of `WS` and `SCRATCH` in generated configs.
pub const SCIM_TOKEN: &str = "scim-token-for-tests-8c2e";
/// A second workspace, never pulled into by tests that use it for SCIM writes.
pub const SCRATCH: &str = "scratch";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_oktasync")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn pg_base() -> String {
    std::env::var("OKTASYNC_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A new, empty store URL for this backend (a new database on PostgreSQL).
pub async fn fresh_store_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("oktasync.db").display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let name = format!("oktasync_it_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {} is needed for the store tests: {e}",
                        pg_base()
                    )
                });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("create database: {e}"));
            format!("{}/{name}", pg_base())
        }
    }
}

pub struct FakeOkta {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl FakeOkta {
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(["fake-okta", "--listen", "127.0.0.1:0", "--api-token", TOKEN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn fake-okta: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read fake-okta url: {e}"));
        let url = line
            .trim()
            .strip_prefix("FAKE_OKTA_URL=")
            .unwrap_or_else(|| panic!("unexpected first line from fake-okta: {line:?}"))
            .to_owned();
        Self {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/__admin{path}", self.url);
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| panic!("method"));
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn state(&self) -> World {
        World(self.admin("GET", "/state", None).await)
    }
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fake's world as its admin API reports it, with the expectations derived from it.
pub struct World(pub Value);

impl World {
    pub fn users(&self) -> &Vec<Value> {
        self.0["users"]
            .as_array()
            .unwrap_or_else(|| panic!("users"))
    }

    pub fn user(&self, id: &str) -> &Value {
        self.users()
            .iter()
            .find(|u| u["id"] == id)
            .unwrap_or_else(|| panic!("user {id}"))
    }

    fn app(&self) -> &Value {
        self.0["apps"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["id"] == APP))
            .unwrap_or_else(|| panic!("app"))
    }

    pub fn strings(v: &Value) -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn direct_assignments(&self) -> BTreeSet<String> {
        Self::strings(&self.app()["users"])
    }

    pub fn assigned_groups(&self) -> BTreeSet<String> {
        Self::strings(&self.app()["groups"])
    }

    pub fn group_by_name(&self, name: &str) -> &Value {
        self.0["groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["name"] == name))
            .unwrap_or_else(|| panic!("group {name}"))
    }

    pub fn groups(&self) -> &Vec<Value> {
        self.0["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("groups"))
    }

    /// Users assigned through one of the app's groups.
    pub fn group_assigned_users(&self) -> BTreeSet<String> {
        let assigned = self.assigned_groups();
        self.groups()
            .iter()
            .filter(|g| g["id"].as_str().is_some_and(|id| assigned.contains(id)))
            .flat_map(|g| Self::strings(&g["members"]))
            .collect()
    }

    /// The scope rule, written independently of the engine: assigned (directly or through
    /// a group) and neither SUSPENDED nor DEPROVISIONED.
    pub fn in_scope(&self) -> BTreeSet<String> {
        let assigned: BTreeSet<String> = self
            .direct_assignments()
            .union(&self.group_assigned_users())
            .cloned()
            .collect();
        self.users()
            .iter()
            .filter(|u| u["id"].as_str().is_some_and(|id| assigned.contains(id)))
            .filter(|u| !matches!(u["status"].as_str(), Some("SUSPENDED" | "DEPROVISIONED")))
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// An ACTIVE user in scope only through a direct assignment.
    pub fn direct_only_active_users(&self) -> Vec<String> {
        let via_group = self.group_assigned_users();
        self.direct_assignments()
            .into_iter()
            .filter(|id| !via_group.contains(id))
            .filter(|id| self.user(id)["status"] == "ACTIVE")
            .collect()
    }
}

pub struct TestApp {
    /// Kept alive for the test's duration: the store and config live in it.
    _dir: tempfile::TempDir,
    pub config: PathBuf,
    pub store_url: String,
    pub fake: FakeOkta,
}

/// Extra TOML for `[sync]` and the workspace, merged into the generated config.
#[derive(Clone)]
pub struct AppConfig {
    pub sync: String,
    pub workspace: String,
    pub okta: String,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            sync: "max_deactivations = 50\nmax_deactivation_ratio = 0.2\n".into(),
            workspace: "push_groups = [\"Engineering\", \"re:^team-\"]\n".into(),
            // Against a fake whose rate-limit windows are time-scaled to one second.
            okta: "max_retries = 2\nrate_limit_window = \"1s\"\n".into(),
        }
    }
}

pub async fn spawn_app(
    backend: Backend,
    users: usize,
    groups: usize,
    config: AppConfig,
) -> TestApp {
    let (users, groups) = (users.to_string(), groups.to_string());
    spawn_app_with_fake(
        backend,
        config,
        &["--users", &users, "--groups", &groups, "--time-scale", "60"],
    )
    .await
}

/// `spawn_app` with the fake's command-line arguments given in full.
pub async fn spawn_app_with_fake(
    backend: Backend,
    config: AppConfig,
    fake_args: &[&str],
) -> TestApp {
    let fake = FakeOkta::spawn(fake_args);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store_url = fresh_store_url(backend, dir.path()).await;
    let path = dir.path().join("oktasync.toml");
    let port = free_port();
    std::fs::write(
        &path,
        format!(
            "[okta]\norg_url = \"{}\"\napi_token = \"{TOKEN}\"\n{}\n[store]\nurl = \"{store_url}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n[sync]\n{}\n[[workspaces]]\nid = \"{WS}\"\nokta_app_id = \"{APP}\"\nscim_token = \"{SCIM_TOKEN}\"\n{}\n[[workspaces]]\nid = \"{SCRATCH}\"\nokta_app_id = \"{APP}\"\nscim_token = \"{SCIM_TOKEN}\"\npull = false\n",
            fake.url, config.okta, config.sync, config.workspace
        ),
    )
    .unwrap_or_else(|e| panic!("write config: {e}"));
    TestApp {
        _dir: dir,
        config: path,
        store_url,
        fake,
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A running `oktasync run`, stopped (SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// The SCIM base URL of a workspace.
    pub fn scim(&self, workspace: &str) -> String {
        format!("{}/hook/scim/workspaces/{workspace}", self.base)
    }

    /// A SCIM request with the workspace token; returns status and parsed body.
    pub async fn call(&self, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| panic!("method"));
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(SCIM_TOKEN)
            .header("Content-Type", "application/scim+json; charset=utf-8")
            .header("User-Agent", "Okta SCIM Client 1.0.0");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The one workspace's entry of the JSON report.
    pub fn workspace(&self) -> Value {
        self.json()["workspaces"][0].clone()
    }
}

impl TestApp {
    pub fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("OKTASYNC_LOG", "oktasync=info")
            .output()
            .unwrap_or_else(|e| panic!("run oktasync: {e}"));
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
            "the API token leaked into the output"
        );
        run
    }

    pub fn sync(&self) -> Run {
        self.run(&["sync", "--format", "json"])
    }

    pub fn plan(&self) -> Run {
        self.run(&["plan", "--format", "json"])
    }

    /// Starts `oktasync run` on this app's config and waits until `/healthz` answers.
    pub async fn daemon(&self) -> Daemon {
        let config = std::fs::read_to_string(&self.config).unwrap_or_default();
        let listen = config
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .map(|l| l.trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no listen in config"));
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("OKTASYNC_LOG", "oktasync=info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn oktasync run: {e}"));
        let daemon = Daemon {
            child,
            base: format!("http://{listen}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if let Ok(r) = daemon
                .http
                .get(format!("{}/healthz", daemon.base))
                .send()
                .await
                && r.status().is_success()
            {
                return daemon;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("oktasync run did not answer /healthz on {listen}");
    }

    pub async fn workspace(&self) -> WorkspaceState {
        let store = Store::connect(&self.store_url)
            .await
            .unwrap_or_else(|e| panic!("store: {e}"));
        let state = store
            .load_workspace(WS)
            .await
            .unwrap_or_else(|e| panic!("load: {e}"));
        store.close().await;
        state
    }
}

/// `summary` of a report, as a map.
pub fn summary(ws: &Value) -> BTreeMap<String, u64> {
    ws["summary"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(u64::MAX)))
                .collect()
        })
        .unwrap_or_default()
}

/// The `(op, okta_id)` pairs of a report's operations.
pub fn ops(ws: &Value) -> Vec<(String, String)> {
    ws["operations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["op"].as_str().unwrap_or("").to_owned(),
                        o["okta_id"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn op(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}
