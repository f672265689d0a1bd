//! Okta misbehaving in the middle of a full read (issue 3, "Faults"): duplicate
//! `X-Rate-Limit-Reset` headers, a server clock far from ours, pages slower than the
//! request timeout, truncated JSON, storms of 429s. Each fault either recovers (the read is
//! complete) or fails the read as a whole; it never deactivates anyone from a partial read.
//!
//! Every test converges a workspace first, then unassigns a few users in the fake, so that
//! a read which lost any page of the app's assignments would look like a reason to
//! deactivate many more. After the fault run either the read was complete and exactly the
//! unassigned users were deactivated, or it was not and the workspace is untouched; and once
//! the fault is gone, the next sync deactivates the unassigned users (the test could have
//! caught a wrong deactivation).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;

/// Enough users for two pages of the app's assignments (500 a page), so a fault can hit
/// the second page after the first one was read.
const USERS: &str = "1300";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Retries or waits absorb the fault: the read is complete.
    Recovers,
    /// The fault outlasts the client's patience: the read fails as a whole.
    FailsTheRead,
}

/// A converged workspace over a fake started with `fake_args` (on top of the world size and
/// the time scale the default config's one-second windows match), with `okta` config lines.
async fn converged(fake_args: &[&str], okta: &str) -> TestApp {
    let mut args = vec!["--users", USERS, "--groups", "12", "--time-scale", "60"];
    args.extend_from_slice(fake_args);
    let config = AppConfig {
        okta: format!("{}{okta}", AppConfig::default().okta),
        ..AppConfig::default()
    };
    let app = spawn_app_with_fake(Backend::Sqlite, config, &args).await;
    let run = app.sync();
    assert_eq!(run.code, 0, "initial sync: {}", run.stderr);
    assert_eq!(run.workspace()["complete_read"], true);
    app
}

/// Unassigns `n` users that are in scope only through a direct assignment; returns them.
async fn unassign_some(app: &TestApp, n: usize) -> BTreeSet<String> {
    let world = app.fake.state().await;
    let chosen: BTreeSet<String> = world
        .direct_only_active_users()
        .into_iter()
        .take(n)
        .collect();
    assert_eq!(chosen.len(), n, "not enough directly assigned users");
    for id in &chosen {
        app.fake
            .admin("DELETE", &format!("/apps/{APP}/users/{id}"), None)
            .await;
    }
    chosen
}

async fn add_fault(app: &TestApp, fault: Value) {
    app.fake.admin("POST", "/faults", Some(fault)).await;
}

fn deactivated(ws: &Value) -> BTreeSet<String> {
    ops(ws)
        .into_iter()
        .filter(|(op, _)| op == "deactivate_user")
        .map(|(_, id)| id)
        .collect()
}

/// One round: a few users leave the app, `inject` sets the fault up, a sync runs under it.
/// Checks the run against `expect` and the never-deactivate-from-a-partial-read rule, then
/// (on a failed read) lifts the fault with `lift` and checks that the next sync converges.
/// Returns the run under the fault.
async fn round<I, L>(app: &TestApp, expect: Expect, inject: I, lift: L) -> Run
where
    I: AsyncFnOnce(&TestApp),
    L: AsyncFnOnce(&TestApp),
{
    let unassigned = unassign_some(app, 2).await;
    let before = app.workspace().await;
    inject(app).await;
    let run = app.sync_full();
    let ws = run.workspace();
    let complete = ws["complete_read"] == true;
    if complete {
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            deactivated(&ws),
            unassigned,
            "a complete read deactivates exactly the unassigned users"
        );
    } else {
        assert_eq!(run.code, 1, "an incomplete read exits 1: {}", run.stderr);
        assert_eq!(deactivated(&ws), BTreeSet::new(), "{ws}");
        assert!(
            ws["read_failures"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{ws}"
        );
        assert_eq!(
            app.workspace().await,
            before,
            "a failed read changed the workspace"
        );
    }
    assert_eq!(
        complete,
        expect == Expect::Recovers,
        "expected {expect:?}; report {ws}\nstderr: {}",
        run.stderr
    );
    lift(app).await;
    if !complete {
        let rerun = app.sync();
        assert_eq!(rerun.code, 0, "{}", rerun.stderr);
        assert_eq!(deactivated(&rerun.workspace()), unassigned);
    }
    run
}

/// A fault of `kind` (with `extra` fields) on the second page of the app's assignments,
/// for `times` requests (`None`: every one).
fn on_app_users_page_2(kind: &str, extra: Value, times: Option<u64>) -> Value {
    let mut fault = json!({"path": format!("/api/v1/apps/{APP}/users"), "page": 2,
                           "kind": kind, "times": times});
    if let (Some(fault), Some(extra)) = (fault.as_object_mut(), extra.as_object()) {
        fault.extend(extra.clone());
    }
    fault
}

/// Two rounds of a fault on the app's second page of assignments: `passing` times in a
/// row (`Recovers`), then on every attempt (`FailsTheRead`).
async fn passing_then_lasting(app: &TestApp, kind: &str, extra: Value, passing: u64) {
    for (times, expect) in [
        (Some(passing), Expect::Recovers),
        (None, Expect::FailsTheRead),
    ] {
        let fault = on_app_users_page_2(kind, extra.clone(), times);
        round(
            app,
            expect,
            async |app| add_fault(app, fault).await,
            clear_faults,
        )
        .await;
    }
}

async fn clear_faults(app: &TestApp) {
    app.fake.admin("DELETE", "/faults", None).await;
}

async fn nothing(_: &TestApp) {}

/// Every response of every listing carries two `X-Rate-Limit-Reset` lines (the later one
/// first), under limits so small that oktasync keeps reaching its share and waiting for the
/// reset: the read completes.
#[tokio::test]
async fn duplicate_reset_headers_on_every_response_recover() {
    let app = converged(&["--limit-multiplier", "0.03"], "").await;
    round(
        &app,
        Expect::Recovers,
        async |app| {
            add_fault(
                app,
                json!({"path": "/api/v1/*", "kind": "duplicate_reset_header"}),
            )
            .await;
        },
        clear_faults,
    )
    .await;
}

/// The server's clock two hours ahead of ours, then two hours behind: waits are measured
/// against its `Date` header, so the concurrency 429s and the exhausted shares in between
/// still wait about a window, and the read completes both times.
#[tokio::test]
async fn server_clock_skew_either_way_recovers() {
    let app = converged(&["--limit-multiplier", "0.03"], "").await;
    for skew in [7200, -14_400] {
        round(
            &app,
            Expect::Recovers,
            async |app| {
                app.fake
                    .admin("POST", "/clock", Some(json!({ "advance_seconds": skew })))
                    .await;
                add_fault(
                    app,
                    on_app_users_page_2("concurrency_429", json!({}), Some(3)),
                )
                .await;
            },
            clear_faults,
        )
        .await;
    }
}

/// A page slower than `okta.request_timeout` once is retried; a page that is always slower
/// fails the read as a whole after the retries.
#[tokio::test]
async fn slow_pages_past_the_timeout_retry_or_fail_the_read() {
    let app = converged(&[], "request_timeout = \"1s\"\n").await;
    passing_then_lasting(&app, "delay", json!({"delay_ms": 3000}), 1).await;
}

/// The second page of the app's assignments always truncated: the read fails as a whole,
/// although its first page (and every other listing) was read.
#[tokio::test]
async fn truncated_json_on_every_retry_fails_the_read() {
    let app = converged(&[], "").await;
    let fault = on_app_users_page_2("truncated_json", json!({}), None);
    round(
        &app,
        Expect::FailsTheRead,
        async |app| add_fault(app, fault).await,
        clear_faults,
    )
    .await;
    round(&app, Expect::Recovers, nothing, nothing).await;
}

/// A storm of concurrency 429s (Limit = Remaining = 0) on one page: shorter than the
/// client's patience it is waited out; endless, it fails the read as a whole.
#[tokio::test]
async fn a_429_storm_is_waited_out_or_fails_the_read() {
    let app = converged(&[], "").await;
    passing_then_lasting(&app, "concurrency_429", json!({}), 6).await;
}

/// An org whose buckets allow ~1% of Okta's limits, drained by another integration for the
/// first seconds of the sync: oktasync's first requests in each bucket are answered 429 (a
/// real storm from the fake's limiter, not an injected fault), and it waits them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_org_is_waited_out() {
    let app = converged(&["--limit-multiplier", "0.01"], "").await;
    let run = round(
        &app,
        Expect::Recovers,
        async |app| {
            // Runs on a worker thread while the test thread waits for `oktasync sync`.
            let (url, drain_for) = (app.fake.url.clone(), std::time::Duration::from_secs(4));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let until = std::time::Instant::now() + drain_for;
                while std::time::Instant::now() < until {
                    for path in [
                        "/api/v1/users".to_owned(),
                        "/api/v1/groups".to_owned(),
                        format!("/api/v1/apps/{APP}/users"),
                    ] {
                        let _ = http
                            .get(format!("{url}{path}?limit=1"))
                            .header("Authorization", format!("SSWS {TOKEN}"))
                            .send()
                            .await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            });
            // Let the drain take the current windows before oktasync starts.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        },
        nothing,
    )
    .await;
    assert!(
        run.stderr.contains("Okta rate limit hit"),
        "oktasync was never answered 429: {}",
        run.stderr
    );
}
