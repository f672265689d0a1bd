//! Downstream SCIM provisioning benchmark (issue 5): the first `oktasync sync` of USERS
//! in-scope Okta users and GROUPS pushed groups into an empty scim2-server, against the
//! capacity of scim2-server itself for the same request mix, measured in the same run.
//!
//! 1. Starts the release `oktasync fake-okta` (rate limits x1000, never a 429) with
//!    `3 × GROUPS` groups (the fake assigns about a third of them to the app) and as many
//!    users as put about USERS in the app's scope (assigned directly or through an assigned
//!    group, and neither SUSPENDED nor DEPROVISIONED); the user count is calibrated from
//!    the fake's `/__admin/state` (a restart or two). `push_groups` lists GROUPS group ids
//!    (`id:…`): the app's assigned groups first, in id order.
//! 2. Starts an empty scim2-server (`../shared/tools/scim-target.sh`) and runs
//!    `oktasync sync` once with `[workspaces.target] kind = "scim"`. Every request the
//!    target answers is counted from its access log (one line per answered request, read as
//!    it is written: the lines carry the time they were first seen, at 2 ms resolution), by
//!    method and kind. The Okta read is timed from the fake's own request log.
//! 3. Reads scim2-server back: every in-scope user exactly once (by userName and
//!    externalId), every pushed group once (by displayName) with its in-scope members.
//! 4. Sends the same request mix from this process to a fresh scim2-server, with
//!    `max_in_flight` concurrent workers: per user `GET /Users?filter=userName eq` then
//!    `POST /Users`; per group `GET /Groups?filter=displayName eq`, `POST /Groups`, then
//!    (when it has members) `GET /Groups/{id}` + `PUT` (put) or one `PATCH add` (patch).
//!
//! Both runs are timed the same way, on the target's access log: first to last answered
//! request of the apply (oktasync: after its read-back listings). An operation is one plan
//! operation (`create_user`, `create_group`, `add_members`); ops/s = operations ÷ that
//! time, and ratio = oktasync ops/s ÷ direct ops/s (target ≥ 0.8). The minimum request
//! count is 2 per user (lookup, POST) + 2 per group (lookup, POST) + 1 per group with
//! members (one membership write).
//!
//! Run: `cargo bench --bench scim_provision -- [USERS] [GROUPS]` (defaults 10000 200).
//! Environment: `SCIM_BENCH_UPDATE_METHOD` = put (default) | patch,
//! `SCIM_BENCH_MAX_IN_FLIGHT` (default: the config's default, 8).
//! Exit status 1 when the sync fails or the read-back finds missing or duplicate objects.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use common::{Proc, arg, free_port};
use serde_json::{Value, json};

const TOKEN: &str = "bench-scim-token";
const OKTA_TOKEN: &str = "bench-okta-token";
const APP: &str = "0oafakeapp0000000001";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// In-scope users per generated user, for the first guess (about 0.62 at any size).
const SCOPE_FRACTION: f64 = 0.62;

// ---------------------------------------------------------------------------------------
// The fake Okta and the world it generated.

struct Fake {
    _proc: Proc,
    url: String,
    log: PathBuf,
}

fn start_fake(dir: &Path, users: usize, groups: usize) -> Result<Fake> {
    let log = dir.join(format!("fake-{users}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_oktasync"))
        .args([
            "--log-format",
            "json",
            "fake-okta",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--users",
            &users.to_string(),
            "--groups",
            &groups.to_string(),
        ])
        .args(["--app", APP, "--api-token", OKTA_TOKEN])
        .args([
            "--time-scale",
            "60",
            "--limit-multiplier",
            "1000",
            "--no-rate-limits",
        ])
        .env("OKTASYNC_LOG", "fake_okta=debug,warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("start oktasync fake-okta")?;
    let stdout = child.stdout.take().context("fake-okta stdout")?;
    let proc = Proc {
        child: Some(child),
        pid: None,
    };
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("FAKE_OKTA_URL=") {
                    break url.trim().to_owned();
                }
            }
            _ => bail!(
                "fake-okta exited before printing FAKE_OKTA_URL (log {})",
                log.display()
            ),
        }
    };
    // Keep its stdout drained.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Fake {
        _proc: proc,
        url,
        log,
    })
}

struct OktaUser {
    id: String,
    login: String,
    email: String,
    first: Option<String>,
    last: Option<String>,
    display: Option<String>,
}

struct World {
    generated_users: usize,
    users: Vec<OktaUser>,
    /// (group id, name, in-scope member logins), the pushed groups.
    groups: Vec<(String, String, Vec<String>)>,
}

impl World {
    fn memberships(&self) -> usize {
        self.groups.iter().map(|g| g.2.len()).sum()
    }
    fn groups_with_members(&self) -> usize {
        self.groups.iter().filter(|g| !g.2.is_empty()).count()
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn ids_of(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The in-scope users and the GROUPS pushed groups, as oktasync's scope rule defines them.
fn world_of(state: &Value, generated_users: usize, want_groups: usize) -> Result<World> {
    let app = state
        .get("apps")
        .and_then(Value::as_array)
        .and_then(|apps| {
            apps.iter()
                .find(|a| str_of(a, "id").as_deref() == Some(APP))
        })
        .ok_or_else(|| anyhow!("the fake has no app {APP}"))?;
    let groups = state
        .get("groups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let assigned: HashSet<String> = ids_of(app, "groups").into_iter().collect();
    let mut assigned_users: HashSet<String> = ids_of(app, "users").into_iter().collect();
    for g in &groups {
        if str_of(g, "id").is_some_and(|id| assigned.contains(&id)) {
            assigned_users.extend(ids_of(g, "members"));
        }
    }
    let mut users = Vec::new();
    let mut login_of = HashMap::new();
    for u in state
        .get("users")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(status)) = (str_of(u, "id"), str_of(u, "status")) else {
            continue;
        };
        if !assigned_users.contains(&id) || status == "SUSPENDED" || status == "DEPROVISIONED" {
            continue;
        }
        let login = str_of(u, "login").unwrap_or_default();
        login_of.insert(id.clone(), login.clone());
        users.push(OktaUser {
            email: str_of(u, "email").unwrap_or_else(|| login.clone()),
            first: str_of(u, "firstName"),
            last: str_of(u, "lastName"),
            display: str_of(u, "displayName"),
            id,
            login,
        });
    }
    // Assigned groups first (their members are all assigned), then the others.
    let (mut pushed, others): (Vec<&Value>, Vec<&Value>) = groups
        .iter()
        .partition(|g| str_of(g, "id").is_some_and(|id| assigned.contains(&id)));
    pushed.extend(others);
    let groups = pushed
        .into_iter()
        .take(want_groups)
        .filter_map(|g| {
            let members = ids_of(g, "members")
                .iter()
                .filter_map(|m| login_of.get(m).cloned())
                .collect();
            Some((str_of(g, "id")?, str_of(g, "name")?, members))
        })
        .collect();
    Ok(World {
        generated_users,
        users,
        groups,
    })
}

/// Starts the fake with as many users as put about `want_users` in scope (within 1%).
async fn calibrated_fake(
    http: &reqwest::Client,
    dir: &Path,
    want_users: usize,
    want_groups: usize,
) -> Result<(Fake, World)> {
    let mut generated = ((want_users as f64 / SCOPE_FRACTION).ceil() as usize).max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let fake = start_fake(dir, generated, want_groups * 3)?;
        let state: Value = http
            .get(format!("{}/__admin/state", fake.url))
            .send()
            .await?
            .json()
            .await?;
        let world = world_of(&state, generated, want_groups)?;
        let have = world.users.len();
        if attempt >= 4 || have.abs_diff(want_users) * 100 <= want_users || have == 0 {
            return Ok((fake, world));
        }
        generated = ((generated as f64 * want_users as f64 / have as f64).round() as usize).max(1);
    }
}

/// First and last `okta request` the fake logged since `from` (a byte offset).
fn okta_read_seconds(log: &Path, from: u64) -> Option<(f64, u64)> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(from as usize..)?).into_owned();
    let mut times = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let is_request = v
            .pointer("/fields/message")
            .and_then(Value::as_str)
            .is_some_and(|m| m == "okta request");
        if let (true, Some(ts)) = (is_request, v.get("timestamp").and_then(Value::as_str))
            && let Ok(t) =
                time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        {
            times.push(t);
        }
    }
    let (first, last) = (times.iter().min()?, times.iter().max()?);
    Some(((*last - *first).as_seconds_f64(), times.len() as u64))
}

// ---------------------------------------------------------------------------------------
// scim2-server and its access log.

struct Target {
    _proc: Proc,
    base: String,
    log: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

fn start_target() -> Result<Target> {
    let port = free_port();
    let out = Command::new("../shared/tools/scim-target.sh")
        .arg(port.to_string())
        .arg(TOKEN)
        .output()
        .context("start scim2-server")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "scim-target.sh printed no {k}: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    let proc = Proc {
        child: None,
        pid: Some(field("PID=")?),
    };
    Ok(Target {
        base: field("BASE_URL=")?,
        log: PathBuf::from(field("LOG=")?),
        _proc: proc,
    })
}

/// One answered request from the access log, stamped when this process first saw it.
struct Seen {
    at: Instant,
    kind: String,
    status: u16,
}

/// `127.0.0.1 - - [date] "GET /v2/Users?filter=... HTTP/1.1" 200 139` → kind and status.
fn parse_access(line: &str) -> Option<(String, u16)> {
    let start = line.find('"')? + 1;
    let len = line.get(start..)?.find('"')?;
    let request = line.get(start..start + len)?;
    let status = line
        .get(start + len + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix("/v2").unwrap_or(path);
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let resource = segments.next().unwrap_or_default();
    let shape = match (segments.next().is_some(), query.contains("filter=")) {
        (true, _) => format!("/{resource}/{{id}}"),
        (false, true) => format!("/{resource}?filter"),
        (false, false) if query.is_empty() => format!("/{resource}"),
        (false, false) => format!("/{resource}?page"),
    };
    Some((format!("{method} {shape}"), status))
}

/// Follows a log file from its current end until stopped.
struct Tail {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Seen>>,
}

impl Tail {
    fn start(path: &Path) -> Result<Tail> {
        let mut file = std::fs::File::open(path)?;
        let mut skipped = Vec::new();
        file.read_to_end(&mut skipped)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut pending = Vec::new();
            loop {
                let last_round = flag.load(Ordering::Acquire);
                let mut chunk = Vec::new();
                let _ = file.read_to_end(&mut chunk);
                if !chunk.is_empty() {
                    let at = Instant::now();
                    pending.extend_from_slice(&chunk);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if let Some((kind, status)) = parse_access(&String::from_utf8_lossy(&line))
                        {
                            seen.push(Seen { at, kind, status });
                        }
                    }
                }
                if last_round {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Ok(Tail { stop, handle })
    }

    /// Waits for the log to go quiet (the last answers written), then returns every line.
    fn finish(self) -> Vec<Seen> {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

/// Requests by kind, answers that were not 2xx, and the apply window (first to last
/// answered request that is not a read-back listing).
struct Traffic {
    by_kind: BTreeMap<String, u64>,
    total: u64,
    not_ok: u64,
    apply: Option<(Instant, Instant)>,
    readback_done: Option<Instant>,
}

impl Traffic {
    fn of(seen: &[Seen]) -> Traffic {
        let mut by_kind = BTreeMap::new();
        let mut apply: Option<(Instant, Instant)> = None;
        let mut readback_done = None;
        for s in seen {
            *by_kind.entry(s.kind.clone()).or_insert(0) += 1;
            let listing =
                s.kind.ends_with("?page") || s.kind == "GET /Users" || s.kind == "GET /Groups";
            if listing && apply.is_none() {
                readback_done = Some(s.at);
            } else if !listing {
                apply = Some(apply.map_or((s.at, s.at), |(a, _)| (a, s.at)));
            }
        }
        Traffic {
            total: by_kind.values().sum(),
            not_ok: seen
                .iter()
                .filter(|s| !(200..300).contains(&s.status))
                .count() as u64,
            by_kind,
            apply,
            readback_done,
        }
    }
    fn apply_seconds(&self) -> f64 {
        self.apply
            .map(|(a, b)| (b - a).as_secs_f64())
            .unwrap_or(f64::NAN)
    }
}

fn scim(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.bearer_auth(TOKEN)
        .header("Accept", "application/scim+json")
}

async fn get_json(http: &reqwest::Client, url: String) -> Result<Value> {
    let r = scim(http.get(&url)).send().await?;
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Every resource of an endpoint, paged.
async fn list_all(http: &reqwest::Client, base: &str, endpoint: &str) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    loop {
        let page = get_json(
            http,
            format!("{base}/{endpoint}?startIndex={}&count=500", all.len() + 1),
        )
        .await?;
        let resources = page
            .get("Resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total = page
            .get("totalResults")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let empty = resources.is_empty();
        all.extend(resources);
        if empty || all.len() as u64 >= total {
            return Ok(all);
        }
    }
}

/// Problems found reading the target back (empty: every object once, members right).
async fn verify(http: &reqwest::Client, base: &str, world: &World) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let users = list_all(http, base, "Users").await?;
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_external: HashMap<String, usize> = HashMap::new();
    let mut login_of_id = HashMap::new();
    for u in &users {
        let name = str_of(u, "userName").unwrap_or_default().to_lowercase();
        *by_name.entry(name.clone()).or_default() += 1;
        if let Some(x) = str_of(u, "externalId") {
            *by_external.entry(x).or_default() += 1;
        }
        if let Some(id) = str_of(u, "id") {
            login_of_id.insert(id, name);
        }
    }
    let dup_names = by_name.values().filter(|n| **n > 1).count();
    let dup_external = by_external.values().filter(|n| **n > 1).count();
    let missing = world
        .users
        .iter()
        .filter(|u| !by_name.contains_key(&u.login.to_lowercase()))
        .count();
    let wrong_external = world
        .users
        .iter()
        .filter(|u| by_external.get(&u.id).copied() != Some(1))
        .count();
    if users.len() != world.users.len() {
        problems.push(format!(
            "{} users, expected {}",
            users.len(),
            world.users.len()
        ));
    }
    for (n, what) in [
        (dup_names, "duplicate userNames"),
        (dup_external, "duplicate externalIds"),
        (missing, "missing users"),
        (wrong_external, "users without their Okta id as externalId"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    let groups = list_all(http, base, "Groups").await?;
    let mut by_display: HashMap<String, Vec<&Value>> = HashMap::new();
    for g in &groups {
        by_display
            .entry(str_of(g, "displayName").unwrap_or_default())
            .or_default()
            .push(g);
    }
    if groups.len() != world.groups.len() {
        problems.push(format!(
            "{} groups, expected {}",
            groups.len(),
            world.groups.len()
        ));
    }
    let (mut dup_groups, mut missing_groups, mut wrong_members) = (0, 0, 0);
    for (_, name, members) in &world.groups {
        match by_display.get(name).map(Vec::as_slice) {
            None | Some([]) => missing_groups += 1,
            Some([g]) => {
                let have: BTreeSet<String> = g
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| str_of(m, "value"))
                    .filter_map(|id| login_of_id.get(&id).cloned())
                    .collect();
                let want: BTreeSet<String> = members.iter().map(|m| m.to_lowercase()).collect();
                if have != want {
                    wrong_members += 1;
                }
            }
            Some(_) => dup_groups += 1,
        }
    }
    for (n, what) in [
        (dup_groups, "duplicate groups"),
        (missing_groups, "missing groups"),
        (wrong_members, "groups with the wrong members"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    Ok(problems)
}

// ---------------------------------------------------------------------------------------
// The oktasync run.

struct SyncRun {
    ok: bool,
    wall: f64,
    okta_read: Option<(f64, u64)>,
    operations: BTreeMap<String, u64>,
    failed: usize,
    traffic: Traffic,
}

fn write_config(
    dir: &Path,
    fake: &Fake,
    target: &Target,
    world: &World,
    method: &str,
    in_flight: Option<usize>,
) -> Result<PathBuf> {
    let push: Vec<String> = world
        .groups
        .iter()
        .map(|(id, _, _)| format!("\"id:{id}\""))
        .collect();
    let in_flight = in_flight
        .map(|n| format!("max_in_flight = {n}\n"))
        .unwrap_or_default();
    let config = dir.join("oktasync.toml");
    std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"{}\"\napi_token = \"{OKTA_TOKEN}\"\nrate_limit_share = 1.0\n\
             rate_limit_window = \"1s\"\n\n[store]\nurl = \"sqlite://{}\"\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\n\n[sync]\nmax_deactivations = 1000000\n\
             max_deactivation_ratio = 1.0\n\n[[workspaces]]\nid = \"bench\"\n\
             okta_app_id = \"{APP}\"\npush_groups = [{}]\n\n[workspaces.target]\n\
             kind = \"scim\"\nbase_url = \"{}\"\ntoken = \"{TOKEN}\"\n\
             update_method = \"{method}\"\n{in_flight}",
            fake.url,
            dir.join("oktasync.db").display(),
            push.join(", "),
            target.base,
        ),
    )?;
    Ok(config)
}

async fn run_sync(dir: &Path, config: &Path, fake: &Fake, target: &Target) -> Result<SyncRun> {
    let fake_from = std::fs::metadata(&fake.log).map(|m| m.len()).unwrap_or(0);
    let tail = Tail::start(&target.log)?;
    let started = Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_oktasync"))
        .arg("--config")
        .arg(config)
        .args(["sync", "--format", "json"])
        .env("OKTASYNC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("sync.log"))?)
        .kill_on_drop(true)
        .output()
        .await
        .context("run oktasync sync")?;
    let wall = started.elapsed().as_secs_f64();
    let traffic = Traffic::of(&tail.finish());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let ws = report
        .pointer("/workspaces/0")
        .cloned()
        .unwrap_or(Value::Null);
    let mut operations = BTreeMap::new();
    for op in ws
        .get("operations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        *operations
            .entry(str_of(op, "op").unwrap_or_default())
            .or_insert(0) += 1;
    }
    let failed = ws
        .get("failed")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let complete = ws.get("complete_read").and_then(Value::as_bool) == Some(true);
    if !output.status.success() || !complete || failed > 0 {
        let log = std::fs::read_to_string(dir.join("sync.log")).unwrap_or_default();
        let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");
        eprintln!(
            "oktasync sync: {} (complete read: {complete}, {failed} failed operations); last log lines:\n{tail}",
            output.status
        );
    }
    Ok(SyncRun {
        ok: output.status.success() && complete && failed == 0,
        wall,
        okta_read: okta_read_seconds(&fake.log, fake_from),
        operations,
        failed,
        traffic,
    })
}

// ---------------------------------------------------------------------------------------
// The same request mix, sent directly.

fn user_doc(u: &OktaUser) -> Value {
    let display = u.display.clone().unwrap_or_else(|| {
        [u.first.as_deref(), u.last.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    });
    json!({"schemas": [USER_URN], "userName": u.login, "displayName": display,
        "externalId": u.id, "active": true,
        "name": {"givenName": u.first, "familyName": u.last},
        "emails": [{"value": u.email, "type": "work", "primary": true}]})
}

/// Sends one request; Err unless it is answered 2xx. Returns the body (Null when none).
async fn send(rb: reqwest::RequestBuilder) -> Result<Value> {
    let r = scim(rb).send().await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn with_body(rb: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    rb.header("Content-Type", "application/scim+json")
        .body(body.to_string())
}

fn filter_query(attr: &str, value: &str) -> [(&'static str, String); 3] {
    [
        ("filter", format!("{attr} eq \"{value}\"")),
        ("startIndex", "1".into()),
        ("count", "100".into()),
    ]
}

struct Direct {
    base: String,
    http: reqwest::Client,
    patch: bool,
    ids: Mutex<HashMap<String, String>>,
}

impl Direct {
    async fn user(&self, u: &OktaUser) -> Result<()> {
        let url = format!("{}/Users", self.base);
        send(
            self.http
                .get(&url)
                .query(&filter_query("userName", &u.login)),
        )
        .await?;
        let created = send(with_body(self.http.post(&url), &user_doc(u))).await?;
        let id = str_of(&created, "id").ok_or_else(|| anyhow!("POST /Users: no id"))?;
        if let Ok(mut ids) = self.ids.lock() {
            ids.insert(u.login.clone(), id);
        }
        Ok(())
    }

    async fn group(&self, name: &str, members: &[String]) -> Result<()> {
        let url = format!("{}/Groups", self.base);
        send(
            self.http
                .get(&url)
                .query(&filter_query("displayName", name)),
        )
        .await?;
        let doc = json!({"schemas": [GROUP_URN], "displayName": name, "members": []});
        let created = send(with_body(self.http.post(&url), &doc)).await?;
        let id = str_of(&created, "id").ok_or_else(|| anyhow!("POST /Groups: no id"))?;
        if members.is_empty() {
            return Ok(());
        }
        let ids: Vec<Value> = match self.ids.lock() {
            Ok(ids) => members
                .iter()
                .filter_map(|m| ids.get(m))
                .map(|id| json!({"value": id, "type": "User"}))
                .collect(),
            Err(_) => bail!("user ids lost"),
        };
        let url = format!("{url}/{id}");
        if self.patch {
            let body = json!({"schemas": [PATCH_URN],
                "Operations": [{"op": "add", "path": "members", "value": ids}]});
            send(with_body(self.http.patch(&url), &body)).await?;
        } else {
            let mut doc = send(self.http.get(&url)).await?;
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("meta");
                obj.insert("members".into(), Value::Array(ids));
            }
            send(with_body(self.http.put(&url), &doc)).await?;
        }
        Ok(())
    }
}

/// Runs `count` jobs on `workers` concurrent tasks; returns the number that failed.
async fn run_jobs<F, Fut>(workers: usize, count: usize, job: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (job, next, failed) = (job.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if let Err(e) = job(i).await
                    && failed.fetch_add(1, Ordering::Relaxed) < 3
                {
                    eprintln!("direct request failed: {e:#}");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    failed.load(Ordering::Relaxed)
}

struct DirectRun {
    wall: f64,
    failed: usize,
    traffic: Traffic,
    problems: Vec<String>,
}

async fn run_direct(world: Arc<World>, workers: usize, patch: bool) -> Result<DirectRun> {
    let target = start_target()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .timeout(Duration::from_secs(60))
        .build()?;
    let direct = Arc::new(Direct {
        base: target.base.clone(),
        http: http.clone(),
        patch,
        ids: Mutex::new(HashMap::new()),
    });
    let tail = Tail::start(&target.log)?;
    let started = Instant::now();
    let (d, w) = (direct.clone(), world.clone());
    let mut failed = run_jobs(workers, world.users.len(), move |i| {
        let (d, w) = (d.clone(), w.clone());
        async move {
            let u = w.users.get(i).ok_or_else(|| anyhow!("no user {i}"))?;
            d.user(u).await
        }
    })
    .await;
    let (d, w) = (direct.clone(), world.clone());
    failed += run_jobs(workers, world.groups.len(), move |i| {
        let (d, w) = (d.clone(), w.clone());
        async move {
            let (_, name, members) = w.groups.get(i).ok_or_else(|| anyhow!("no group {i}"))?;
            d.group(name, members).await
        }
    })
    .await;
    let wall = started.elapsed().as_secs_f64();
    let traffic = Traffic::of(&tail.finish());
    let problems = verify(&http, &target.base, &world).await?;
    Ok(DirectRun {
        wall,
        failed,
        traffic,
        problems,
    })
}

// ---------------------------------------------------------------------------------------

async fn run(dir: &Path) -> Result<bool> {
    let want_users = arg(0, 10_000);
    let want_groups = arg(1, 200);
    let method = match std::env::var("SCIM_BENCH_UPDATE_METHOD").as_deref() {
        Ok("patch") => "patch",
        Ok("put") | Err(_) => "put",
        Ok(other) => bail!("SCIM_BENCH_UPDATE_METHOD={other}: put or patch"),
    };
    let in_flight: Option<usize> = std::env::var("SCIM_BENCH_MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok());
    let workers = in_flight.unwrap_or(8).clamp(1, 64);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;

    let (fake, world) = calibrated_fake(&http, dir, want_users, want_groups).await?;
    let world = Arc::new(world);
    let ops = world.users.len() + world.groups.len() + world.groups_with_members();
    let minimum = 2 * world.users.len() + 2 * world.groups.len() + world.groups_with_members();
    println!(
        "SCIM provisioning benchmark: {} in-scope users (fake-okta generated {}, {} groups), \
         {} pushed groups ({} with members, {} memberships); update_method = {method}, \
         max_in_flight = {workers}{}",
        world.users.len(),
        world.generated_users,
        want_groups * 3,
        world.groups.len(),
        world.groups_with_members(),
        world.memberships(),
        if in_flight.is_some() {
            ""
        } else {
            " (config default)"
        },
    );

    let target = start_target()?;
    let config = write_config(dir, &fake, &target, &world, method, in_flight)?;
    let sync = run_sync(dir, &config, &fake, &target).await?;
    let problems = verify(&http, &target.base, &world).await?;
    drop(target);
    drop(fake);

    let direct = run_direct(world.clone(), workers, method == "patch").await?;

    let o_time = sync.traffic.apply_seconds();
    let d_time = direct.traffic.apply_seconds();
    let (o_rate, d_rate) = (ops as f64 / o_time, ops as f64 / d_time);
    let planned: u64 = sync.operations.values().sum();
    println!("\n== summary ==");
    println!(
        "operations: {ops} = {} create_user + {} create_group + {} add_members \
         (oktasync applied {planned}: {:?}, {} failed)",
        world.users.len(),
        world.groups.len(),
        world.groups_with_members(),
        sync.operations,
        sync.failed
    );
    match sync.okta_read {
        Some((s, calls)) => {
            println!("Okta read (fake's first to last request): {s:.2} s, {calls} calls")
        }
        None => println!("Okta read: not found in the fake's log"),
    }
    let plan_gap = match (sync.traffic.readback_done, sync.traffic.apply) {
        (Some(r), Some((a, _))) => format!("{:.2} s", (a - r).as_secs_f64()),
        _ => "n/a".into(),
    };
    println!(
        "oktasync sync wall {:.2} s; target read-back to first apply answer {plan_gap}",
        sync.wall
    );
    println!(
        "apply (target log, first to last answer): oktasync {o_time:.2} s = {o_rate:.0} ops/s; \
         direct ({workers} workers) {d_time:.2} s = {d_rate:.0} ops/s (client wall {:.2} s)",
        direct.wall
    );
    println!(
        "ratio oktasync / direct ops/s: {:.2} (target >= 0.8)",
        o_rate / d_rate
    );
    println!(
        "requests: oktasync {} = {:.3} x minimum {minimum} (2 per user: lookup + POST; \
         2 per group: lookup + POST; 1 per group with members); direct {} = {:.3} x",
        sync.traffic.total,
        sync.traffic.total as f64 / minimum as f64,
        direct.traffic.total,
        direct.traffic.total as f64 / minimum as f64
    );
    println!("  {:<24} {:>9} {:>9}", "kind", "oktasync", "direct");
    let kinds: BTreeSet<&String> = sync
        .traffic
        .by_kind
        .keys()
        .chain(direct.traffic.by_kind.keys())
        .collect();
    for k in kinds {
        println!(
            "  {k:<24} {:>9} {:>9}",
            sync.traffic.by_kind.get(k).copied().unwrap_or(0),
            direct.traffic.by_kind.get(k).copied().unwrap_or(0)
        );
    }
    println!(
        "  {:<24} {:>9} {:>9}",
        "answers not 2xx", sync.traffic.not_ok, direct.traffic.not_ok
    );
    println!(
        "read-back: oktasync's target {}; direct target {} ({} failed requests)",
        if problems.is_empty() {
            "OK".into()
        } else {
            problems.join(", ")
        },
        if direct.problems.is_empty() {
            "OK".into()
        } else {
            direct.problems.join(", ")
        },
        direct.failed
    );
    Ok(sync.ok && problems.is_empty())
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("oktasync-provision-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    // Ctrl-C drops the run, and with it every child process's guard.
    let result = tokio::select! {
        result = run(&dir) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("FAILED: the sync failed or the target is missing or duplicating objects");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
