//! SCIM endpoint benchmark: `oktasync run` (release build, SQLite) side by side with the
//! reference server scim2-server, both holding the same users. Measures Okta's most
//! frequent call, `GET /Users?filter=userName eq "..."`, and `POST /Users`: throughput and
//! latency percentiles under concurrent load from this process.
//!
//! Run: `cargo bench --bench scim -- [USERS] [SECONDS] [CONCURRENCY]` (defaults 100000, 10,
//! 16). Needs the peers installed (`../shared/tools/peer-install.sh`).

#[path = "common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, arg, free_port};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token";

/// A server under test; its process is killed when this is dropped.
struct Server {
    name: &'static str,
    base: String,
    _proc: Proc,
}

fn user(i: u64) -> Value {
    json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("bench.user{i}@example.com"),
        "name": {"givenName": format!("Bench{i}"), "familyName": "User"},
        "emails": [{"value": format!("bench.user{i}@example.com"), "type": "work", "primary": true}],
        "displayName": format!("Bench{i} User"), "externalId": format!("00ubench{i:011}"), "active": true})
}

async fn start_oktasync(dir: &std::path::Path) -> Server {
    let port = free_port();
    let config = dir.join("bench.toml");
    let db = dir.join("bench.db");
    let _ = std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"http://127.0.0.1:9\"\napi_token = \"unused\"\n[store]\nurl = \"sqlite://{}\"\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n[sync]\ninterval = \"24h\"\n\
             [[workspaces]]\nid = \"bench\"\nokta_app_id = \"0oabench\"\nscim_token = \"{TOKEN}\"\npull = false\n",
            db.display()
        ),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_oktasync"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("OKTASYNC_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start oktasync: {e}"));
    let server = Server {
        name: "oktasync",
        base: format!("http://127.0.0.1:{port}/hook/scim/workspaces/bench"),
        _proc: Proc {
            child: Some(child),
            pid: None,
        },
    };
    wait_ready(&format!("http://127.0.0.1:{port}/healthz")).await;
    server
}

async fn start_scim2_server() -> Server {
    let port = free_port();
    let out = Command::new("../shared/tools/scim-target.sh")
        .arg(port.to_string())
        .arg(TOKEN)
        .output()
        .unwrap_or_else(|e| panic!("start scim2-server: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("scim-target.sh printed no {k}: {text}"))
    };
    Server {
        name: "scim2-server",
        base: field("BASE_URL="),
        _proc: Proc {
            child: None,
            pid: Some(field("PID=")),
        },
    }
}

async fn wait_ready(url: &str) {
    for _ in 0..200 {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered");
}

struct Figures {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Runs `concurrency` workers issuing requests made by `make(i)` for `seconds`.
async fn load<F>(client: &reqwest::Client, concurrency: usize, seconds: u64, make: F) -> Figures
where
    F: Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, make, counter, errors) = (
            client.clone(),
            make.clone(),
            counter.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match make(&client, i).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        requests: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

async fn seed(client: &reqwest::Client, server: &Server, users: u64, concurrency: usize) -> f64 {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url) = (
            client.clone(),
            next.clone(),
            format!("{}/Users", server.base),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    break;
                }
                let _ = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/scim+json")
                    .body(user(i).to_string())
                    .send()
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    users as f64 / started.elapsed().as_secs_f64()
}

fn report(name: &str, what: &str, f: &Figures) {
    println!(
        "{name:>13} {what:<24} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests, {} errors)",
        f.rate(),
        f.p50.as_secs_f64() * 1000.0,
        f.p99.as_secs_f64() * 1000.0,
        f.requests,
        f.errors
    );
}

#[tokio::main]
async fn main() {
    let users: u64 = arg(0, 100_000);
    let seconds: u64 = arg(1, 10);
    let concurrency: usize = arg(2, 16);
    let dir = std::env::temp_dir().join(format!("oktasync-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_default();
    println!(
        "SCIM benchmark: {users} users, {seconds} s per measurement, {concurrency} concurrent clients"
    );

    let mut results = Vec::new();
    let mut servers = vec![start_oktasync(&dir).await];
    // SCIM_BENCH_PEER=off measures oktasync alone (quick runs while working on it).
    if std::env::var("SCIM_BENCH_PEER").as_deref() != Ok("off") {
        servers.push(start_scim2_server().await);
    }
    for server in servers {
        let rate = seed(&client, &server, users, concurrency).await;
        println!(
            "{:>13} seeded {users} users at {rate:.0} POST/s",
            server.name
        );
        let base = server.base.clone();
        let get = load(&client, concurrency, seconds, move |c, i| {
            let name = format!("bench.user{}@example.com", (i * 7919) % users);
            c.get(format!("{base}/Users"))
                .query(&[
                    ("filter", format!("userName eq \"{name}\"")),
                    ("startIndex", "1".into()),
                    ("count", "100".into()),
                ])
                .bearer_auth(TOKEN)
        })
        .await;
        report(server.name, "GET userName eq", &get);
        let base = server.base.clone();
        let post = load(&client, concurrency, seconds, move |c, i| {
            c.post(format!("{base}/Users"))
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/scim+json")
                .body(user(users + 1_000_000 + i).to_string())
        })
        .await;
        report(server.name, "POST /Users", &post);
        results.push((server.name, get, post));
        drop(server);
    }
    if let [(_, og, op), (_, sg, sp)] = results.as_slice() {
        println!(
            "ratio oktasync / scim2-server: GET {:.1}x, POST {:.1}x (targets: p99 under 5 ms, at least 20x)",
            og.rate() / sg.rate().max(f64::MIN_POSITIVE),
            op.rate() / sp.rate().max(f64::MIN_POSITIVE)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
