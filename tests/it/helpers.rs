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

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
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
        let run = Run::from(output);
        assert!(
            !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
            "the API token leaked into the output"
        );
        run
    }

    pub fn sync(&self) -> Run {
        self.run(&["sync", "--format", "json"])
    }

    /// `sync` in the background, for tests that watch it while it runs (`Run::from` its
    /// `wait_with_output`).
    pub fn spawn_sync(&self) -> Child {
        Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(["sync", "--format", "json"])
            .env("OKTASYNC_LOG", "oktasync=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run oktasync: {e}"))
    }

    /// `sync`, asserting that it read Okta incrementally (not a full sweep).
    pub fn sync_incremental(&self) -> Run {
        let run = self.sync();
        assert!(
            run.stderr.contains("incremental Okta read"),
            "expected an incremental read: {}",
            run.stderr
        );
        run
    }

    /// `sync --full`: every listing read whole, as the fault tests need.
    pub fn sync_full(&self) -> Run {
        self.run(&["sync", "--full", "--format", "json"])
    }

    pub fn plan(&self) -> Run {
        self.run(&["plan", "--format", "json"])
    }

    /// Starts `oktasync run` on this app's config and waits until `/healthz` answers.
    pub async fn daemon(&self) -> Daemon {
        self.spawn_daemon(DaemonOptions::default()).await
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

/// How to start a daemon beyond what `TestApp::daemon` does.
#[derive(Default)]
pub struct DaemonOptions<'a> {
    /// Listen here instead of on the config's `server.listen` (a second daemon on one store).
    pub port: Option<u16>,
    /// Global arguments before `run`, e.g. `["--log-format", "json"]`.
    pub args: &'a [&'a str],
    /// Where the daemon's stderr (its logs) goes; discarded when None.
    pub log: Option<PathBuf>,
}

impl TestApp {
    /// The directory holding this app's config and SQLite store.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Rewrites the config file (the daemon sees it on SIGHUP).
    pub fn edit_config(&self, edit: impl FnOnce(&str) -> String) {
        let text =
            std::fs::read_to_string(&self.config).unwrap_or_else(|e| panic!("read config: {e}"));
        std::fs::write(&self.config, edit(&text)).unwrap_or_else(|e| panic!("write config: {e}"));
    }

    /// Adds keys to the config's `[server]` section.
    pub fn add_server_keys(&self, keys: &str) {
        self.edit_config(|c| c.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1));
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.store_url)
            .await
            .unwrap_or_else(|e| panic!("store: {e}"))
    }

    /// Starts `oktasync run` with `options` and waits until `/healthz` answers.
    pub async fn spawn_daemon(&self, options: DaemonOptions<'_>) -> Daemon {
        let config = std::fs::read_to_string(&self.config).unwrap_or_default();
        let listen = match options.port {
            Some(port) => format!("127.0.0.1:{port}"),
            None => config
                .lines()
                .find_map(|l| l.strip_prefix("listen = "))
                .map(|l| l.trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("no listen in config")),
        };
        let stderr = match &options.log {
            Some(path) => Stdio::from(
                std::fs::File::create(path).unwrap_or_else(|e| panic!("create log: {e}")),
            ),
            None => Stdio::null(),
        };
        let child = Command::new(bin())
            .args(options.args)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("OKTASYNC_LOG", "oktasync=info")
            .env("OKTASYNC_SERVER__LISTEN", &listen)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn oktasync run: {e}"));
        let mut daemon = Daemon {
            child,
            base: format!("http://{listen}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..400 {
            if let Ok(r) = daemon
                .http
                .get(format!("{}/healthz", daemon.base))
                .send()
                .await
                && r.status().is_success()
            {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("oktasync run exited with {status} before answering /healthz");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("oktasync run did not answer /healthz on {listen}");
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, HUP, KILL).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill -{name}: {e}"));
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit code once the process exits, or None if it is still running after `within`.
    pub async fn wait_exit(&mut self, within: std::time::Duration) -> Option<i32> {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    /// A GET on the daemon; status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }
}

/// The value of one series in Prometheus text, named with its labels as rendered.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `check` until it gives a value; panics naming `what` after `within`.
pub async fn wait_until<T, F, Fut>(within: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs one statement as the PostgreSQL superuser on the `postgres` database (to take a
/// test database away from its clients and give it back).
pub async fn postgres_admin(sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", pg_base()));
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
