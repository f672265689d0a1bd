//! OAuth 2.0 service apps (private_key_jwt + DPoP) end to end: the `oktasync` binary against
//! the fake Okta serving a service app. Keys are generated at test time (aws-lc-rs), never
//! committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oktasync::model::{UserAttributes, WorkspaceState};
use serde_json::{Value, json};

use crate::helpers::*;

const CLIENT_ID: &str = "0oaittestservice0001";
/// Enough users for several pages of `/api/v1/users` (oktasync asks for 200 a page).
const USERS: &str = "600";

#[derive(Clone, Copy, Debug)]
enum KeyKind {
    Rsa,
    Ec,
}

/// A test-only key pair as PEM text: private (PKCS#8) and public (SPKI).
struct TestKey {
    private_pem: String,
    public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl TestKey {
    fn generate(kind: KeyKind) -> Self {
        match kind {
            KeyKind::Rsa => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .unwrap_or_else(|e| panic!("RSA key: {e}"));
                let private = AsDer::<Pkcs8V1Der>::as_der(&pair)
                    .unwrap_or_else(|e| panic!("RSA PKCS#8: {e}"));
                let public = pair
                    .public_key()
                    .as_der()
                    .unwrap_or_else(|e| panic!("RSA SPKI: {e}"));
                Self {
                    private_pem: pem("PRIVATE KEY", private.as_ref()),
                    public_pem: pem("PUBLIC KEY", public.as_ref()),
                }
            }
            KeyKind::Ec => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .unwrap_or_else(|e| panic!("EC key: {e}"));
                let private = pair
                    .to_pkcs8v1()
                    .unwrap_or_else(|e| panic!("EC PKCS#8: {e}"));
                let public = pair
                    .public_key()
                    .as_der()
                    .unwrap_or_else(|e| panic!("EC SPKI: {e}"));
                Self {
                    private_pem: pem("PRIVATE KEY", private.as_ref()),
                    public_pem: pem("PUBLIC KEY", public.as_ref()),
                }
            }
        }
    }

    /// The base64 lines of the private key: none of them may ever be printed.
    fn secret_lines(&self) -> Vec<&str> {
        self.private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }
}

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
}

/// A `TestApp` whose oktasync authenticates as a service app, against a fake that trusts
/// `trusted` (the client signs with `signing`; they differ to test a wrong key).
struct OAuthApp {
    app: TestApp,
    /// Holds the key files.
    _keys: tempfile::TempDir,
    private_key_file: PathBuf,
}

async fn spawn_oauth_app(
    signing: &TestKey,
    trusted: &TestKey,
    extra_fake_args: &[&str],
) -> OAuthApp {
    let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let private_key_file = keys.path().join("test-only-client-key.pem");
    let public_key_file = keys.path().join("test-only-client-key.pub.pem");
    write_file(&private_key_file, &signing.private_pem, 0o600);
    write_file(&public_key_file, &trusted.public_pem, 0o644);
    let public = public_key_file.display().to_string();
    let mut fake_args = vec![
        "--users",
        USERS,
        "--groups",
        "10",
        "--time-scale",
        "60",
        "--oauth-client-id",
        CLIENT_ID,
        "--oauth-public-key-file",
        &public,
    ];
    fake_args.extend_from_slice(extra_fake_args);
    let okta = format!(
        "{}\n[okta.oauth]\nclient_id = \"{CLIENT_ID}\"\nprivate_key_file = \"{}\"\nkey_id = \"test-kid\"\n",
        AppConfig::default().okta,
        private_key_file.display()
    );
    let app = spawn_app_with_fake(
        Backend::Sqlite,
        AppConfig {
            okta,
            ..AppConfig::default()
        },
        &fake_args,
    )
    .await;
    // The service app replaces the SSWS token the helper writes.
    let config = std::fs::read_to_string(&app.config)
        .unwrap_or_else(|e| panic!("read config: {e}"))
        .replace(&format!("api_token = \"{TOKEN}\"\n"), "");
    std::fs::write(&app.config, config).unwrap_or_else(|e| panic!("write config: {e}"));
    OAuthApp {
        app,
        _keys: keys,
        private_key_file,
    }
}

/// Managed users by Okta id, and pushed groups by name with their members' Okta ids.
type Outcome = (
    BTreeMap<String, (UserAttributes, bool)>,
    BTreeMap<String, BTreeSet<String>>,
);

fn outcome(state: &WorkspaceState) -> Outcome {
    let users = state
        .users
        .iter()
        .filter_map(|u| {
            u.okta_id
                .clone()
                .map(|id| (id, (u.attributes.clone(), u.active)))
        })
        .collect();
    let okta_id = |ws_id: &String| state.users.iter().find(|u| &u.id == ws_id)?.okta_id.clone();
    let groups = state.groups.iter().map(|g| {
        (
            g.display_name.clone(),
            g.members.iter().filter_map(okta_id).collect(),
        )
    });
    (users, groups.collect())
}

async fn oauth_state(app: &TestApp) -> Value {
    app.fake.admin("GET", "/oauth", None).await
}

fn requests_with_status(stats: &Value, status: u64) -> Vec<String> {
    stats["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == status)
        .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Must show 1: with a private key and DPoP, a cycle provisions exactly what the SSWS one
/// does, token requests count in their own bucket, and a second cycle plans nothing.
async fn converges_like_ssws(kind: KeyKind) {
    let key = TestKey::generate(kind);
    let ssws = spawn_app(Backend::Sqlite, 600, 10, AppConfig::default()).await;
    let ssws_run = ssws.sync();
    assert_eq!(ssws_run.code, 0, "{}", ssws_run.stderr);

    let oauth = spawn_oauth_app(&key, &key, &[]).await;
    let run = oauth.app.sync();
    assert_eq!(run.code, 0, "{kind:?}: {}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["complete_read"], true, "{report}");
    assert_eq!(summary(&report), summary(&ssws_run.workspace()));
    let expected = outcome(&ssws.workspace().await);
    assert!(expected.0.len() > 100, "a real scope: {}", expected.0.len());
    assert_eq!(outcome(&oauth.app.workspace().await), expected);

    let state = oauth_state(&oauth.app).await;
    assert_eq!(state["tokens"][0]["token_type"], "DPoP", "{state}");
    let stats = oauth.app.fake.admin("GET", "/stats", None).await;
    // One proof without a nonce, then the grant: in the token bucket, none in the API ones.
    assert_eq!(stats["buckets"]["token"]["calls"], 2, "{stats}");
    assert_eq!(stats["buckets"]["other"]["calls"], 0, "{stats}");
    assert!(requests_with_status(&stats, 401).is_empty(), "{stats}");

    let again = oauth.app.sync();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        summary(&again.workspace()).values().all(|n| *n == 0),
        "{}",
        again.stdout
    );
}

#[tokio::test]
async fn oauth_rs256_dpop_cycle_converges_like_ssws() {
    converges_like_ssws(KeyKind::Rsa).await;
}

#[tokio::test]
async fn oauth_es256_dpop_cycle_converges_like_ssws() {
    converges_like_ssws(KeyKind::Ec).await;
}

/// Runs `sync` in the background; once page 2 of `/api/v1/users` is being delayed by the
/// fake, calls `admin` on it, then waits for the cycle.
async fn sync_with_admin_call_between_pages(
    app: TestApp,
    delay_ms: u64,
    admin: &[&str],
) -> (TestApp, Run) {
    app.fake
        .admin(
            "POST",
            "/faults",
            Some(json!({"path": "/api/v1/users", "page": 2, "kind": "delay", "delay_ms": delay_ms, "times": 1})),
        )
        .await;
    let app = Arc::new(app);
    let syncing = app.clone();
    let run = tokio::task::spawn_blocking(move || syncing.sync());
    // The fault leaves the list when page 2 takes it: from then on the page is delayed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.fake.admin("GET", "/faults", None).await != json!([]) {
        assert!(Instant::now() < deadline, "page 2 was never requested");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in admin {
        app.fake.admin("POST", path, None).await;
    }
    let run = run.await.unwrap_or_else(|e| panic!("sync thread: {e}"));
    let app = Arc::into_inner(app).unwrap_or_else(|| panic!("the app is still shared"));
    (app, run)
}

/// Exit 0 and a complete read.
fn assert_complete(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["complete_read"], true, "{report}");
    assert!(
        report["read_failures"].as_array().is_none_or(Vec::is_empty),
        "{report}"
    );
}

/// A cycle disturbed between pages still converged: complete, exactly the in-scope users,
/// though some API request after the disturbance was refused (whichever listing came first;
/// the others then reuse its nonce or token). Returns the fake's stats.
async fn assert_recovered(app: &TestApp, run: &Run, world: &World) -> Value {
    assert_complete(run);
    let managed = outcome(&app.workspace().await).0.into_keys();
    assert_eq!(managed.collect::<BTreeSet<_>>(), world.in_scope());
    let stats = app.fake.admin("GET", "/stats", None).await;
    let refused = requests_with_status(&stats, 401);
    assert!(refused.iter().any(|p| p.starts_with("/api/v1/")), "{stats}");
    stats
}

/// Must show 2a: a nonce rotation between two pages costs one `use_dpop_nonce` retry per
/// request in flight, not the cycle.
#[tokio::test]
async fn oauth_cycle_recovers_from_a_nonce_rotation_between_pages() {
    let key = TestKey::generate(KeyKind::Ec);
    let oauth = spawn_oauth_app(&key, &key, &[]).await;
    let world = oauth.app.fake.state().await;
    let (app, run) =
        sync_with_admin_call_between_pages(oauth.app, 1500, &["/oauth/rotate-nonce"]).await;
    assert_recovered(&app, &run, &world).await;
    assert!(run.stderr.contains("DPoP nonce"), "{}", run.stderr);
    assert_eq!(
        oauth_state(&app).await["token_requests"],
        2,
        "the token stayed valid"
    );
}

/// Must show 2b: every token expiring between two pages costs one refresh (single-flight)
/// and one retry per request in flight, not the cycle.
#[tokio::test]
async fn oauth_cycle_recovers_from_token_expiry_between_pages() {
    let key = TestKey::generate(KeyKind::Rsa);
    let oauth = spawn_oauth_app(&key, &key, &[]).await;
    let world = oauth.app.fake.state().await;
    let (app, run) = sync_with_admin_call_between_pages(
        oauth.app,
        1500,
        // Rotating first makes the count below exact: the refresh always meets a new nonce.
        &["/oauth/rotate-nonce", "/oauth/expire-tokens"],
    )
    .await;
    let stats = assert_recovered(&app, &run, &world).await;
    assert!(
        run.stderr.contains("rejected the access token"),
        "{}",
        run.stderr
    );
    // The first grant (2 calls), then one refresh that met the rotated nonce (2 calls).
    assert_eq!(stats["buckets"]["token"]["calls"], 4, "{stats}");
}

/// A token is replaced at 80% of its life, before Okta would refuse it: no 401 at all.
/// (6 s tokens; page 3 is asked for after 5 s, past 4.8 s and a second before expiry.)
#[tokio::test]
async fn oauth_token_is_refreshed_before_it_expires() {
    let key = TestKey::generate(KeyKind::Ec);
    let oauth = spawn_oauth_app(&key, &key, &["--oauth-token-ttl-seconds", "6"]).await;
    let (app, run) = sync_with_admin_call_between_pages(oauth.app, 5000, &[]).await;
    assert_complete(&run);
    let stats = app.fake.admin("GET", "/stats", None).await;
    assert!(requests_with_status(&stats, 401).is_empty(), "{stats}");
    assert!(
        oauth_state(&app).await["token_requests"]
            .as_u64()
            .unwrap_or(0)
            >= 3,
        "a second grant (the nonce is known by then)"
    );
}

/// Must show 3: an assertion signed by another key fails the read, naming the token endpoint
/// and `invalid_client`; nothing is deactivated.
#[tokio::test]
async fn oauth_wrong_key_fails_the_read_and_removes_nothing() {
    let key = TestKey::generate(KeyKind::Rsa);
    let oauth = spawn_oauth_app(&key, &key, &[]).await;
    let first = oauth.app.sync();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = oauth.app.workspace().await;
    assert!(!before.users.is_empty());

    let other = TestKey::generate(KeyKind::Rsa);
    write_file(&oauth.private_key_file, &other.private_pem, 0o600);
    let run = oauth.app.sync();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.workspace();
    assert_eq!(report["complete_read"], false);
    let failures = report["read_failures"].to_string();
    assert!(failures.contains("/oauth2/v1/token"), "{failures}");
    assert!(failures.contains("invalid_client"), "{failures}");
    assert_eq!(summary(&report)["deactivate_user"], 0);
    assert_eq!(oauth.app.workspace().await, before);
}

/// Must show 4: no access token, private key, assertion or proof in the output, even with
/// every log on; a key file others can read is warned about.
#[tokio::test]
async fn oauth_secrets_never_reach_the_output() {
    let key = TestKey::generate(KeyKind::Ec);
    let oauth = spawn_oauth_app(&key, &key, &[]).await;
    write_file(&oauth.private_key_file, &key.private_pem, 0o644);
    let output = Command::new(bin())
        .arg("--config")
        .arg(&oauth.app.config)
        .args(["sync", "--format", "json"])
        .env("OKTASYNC_LOG", "trace")
        .output()
        .unwrap_or_else(|e| panic!("run oktasync: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{text}");
    let state = oauth_state(&oauth.app).await;
    let tokens: Vec<&str> = state["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["access_token"].as_str())
        .collect();
    assert!(!tokens.is_empty(), "{state}");
    for token in tokens {
        assert!(!text.contains(token), "an access token was printed");
    }
    for line in key.secret_lines() {
        assert!(!text.contains(line), "private key material was printed");
    }
    // Assertions and proofs are JWTs, whose JSON header always encodes to `eyJ`.
    assert!(!text.contains("eyJ"), "a JWT was printed");
    assert!(
        text.contains("okta.oauth.private_key_file") && text.contains("chmod 600"),
        "no warning about the readable key file"
    );
    // And through the helper, which also checks the SSWS token.
    write_file(&oauth.private_key_file, &key.private_pem, 0o600);
    let run = oauth.app.sync();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("chmod 600"), "{}", run.stderr);
}

/// Configuration mistakes around `[okta.oauth]` exit 2 naming the key, never the key itself.
#[tokio::test]
async fn oauth_config_mistakes_name_the_key() {
    let key = TestKey::generate(KeyKind::Ec);
    let oauth = spawn_oauth_app(&key, &key, &[]).await;
    let good = std::fs::read_to_string(&oauth.app.config).unwrap_or_else(|e| panic!("{e}"));
    let key_line = format!(
        "private_key_file = \"{}\"",
        oauth.private_key_file.display()
    );
    let not_a_key = oauth.private_key_file.with_extension("txt");
    write_file(&not_a_key, "just text\n", 0o600);
    let cases = [
        (
            good.replace(&key_line, "private_key_file = \"/nonexistent/key.pem\""),
            "okta.oauth.private_key_file",
        ),
        (
            good.replace(
                &key_line,
                &format!("private_key_file = \"{}\"", not_a_key.display()),
            ),
            "okta.oauth.private_key_file",
        ),
        (
            good.replace(
                "[okta.oauth]",
                &format!("api_token = \"{TOKEN}\"\n[okta.oauth]"),
            ),
            "okta.oauth",
        ),
        (
            good.replace(&format!("client_id = \"{CLIENT_ID}\""), "client_id = \" \""),
            "okta.oauth.client_id",
        ),
    ];
    for (config, name) in cases {
        std::fs::write(&oauth.app.config, config).unwrap_or_else(|e| panic!("{e}"));
        let run = oauth.app.run(&["check-config"]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(name), "{name}: {}", run.stderr);
        for line in key.secret_lines() {
            assert!(!run.stderr.contains(line));
        }
    }
}
