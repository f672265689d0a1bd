//! Bad configuration of every kind: exit 2 with a message naming the key, secrets never
//! printed; and the command line's own shape.

use std::process::Command;

use crate::helpers::bin;

const SECRET: &str = "super-secret-token-value-0042";

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env_remove("OKTASYNC_OKTA__API_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(SECRET), "secret printed: {text}");
    (out.status.code().unwrap_or(-1), text)
}

fn valid(okta: &str, rest: &str) -> String {
    format!(
        "[okta]\n{okta}\n[store]\nurl = \"sqlite::memory:\"\n{rest}\n[[workspaces]]\nid = \"ws1\"\nokta_app_id = \"0oa1\"\n"
    )
}

#[test]
fn bad_configurations_exit_2_naming_the_key() {
    let token = format!("api_token = \"{SECRET}\"");
    let cases = [
        (
            valid(
                &format!("org_url = \"https://acme.okta.com\"\n{token}\nbogus = 1"),
                "",
            ),
            "bogus",
        ),
        (
            valid(&format!("org_url = \"not a url\"\n{token}"), ""),
            "okta.org_url",
        ),
        (
            valid(&format!("org_url = \"http://acme.okta.com\"\n{token}"), ""),
            "okta.org_url",
        ),
        (
            valid("org_url = \"https://acme.okta.com\"", ""),
            "okta.api_token",
        ),
        (
            valid(
                &format!("org_url = \"https://acme.okta.com\"\n{token}\nrate_limit_share = 1.5"),
                "",
            ),
            "okta.rate_limit_share",
        ),
        (
            valid(
                &format!("org_url = \"https://acme.okta.com\"\n{token}"),
                "[sync]\ninterval = \"soon\"",
            ),
            "sync.interval",
        ),
        (
            valid(
                &format!("org_url = \"https://acme.okta.com\"\n{token}"),
                "[server]\nlisten = \"everywhere\"",
            ),
            "server.listen",
        ),
        (
            format!(
                "[okta]\norg_url = \"https://acme.okta.com\"\n{token}\n[[workspaces]]\nid = \"ws 1\"\nokta_app_id = \"0oa1\"\npush_groups = [\"re:(\"]\n"
            ),
            "workspaces[0].push_groups",
        ),
        (
            format!("[okta]\norg_url = \"https://acme.okta.com\"\n{token}\n"),
            "workspaces",
        ),
    ];
    for (config, key) in cases {
        let (code, text) = check(&config);
        assert_eq!(code, 2, "{key}: {text}");
        assert!(text.contains(key), "message does not name {key}: {text}");
    }
    let (code, text) = check(&format!(
        "[okta]\norg_url = \"https://acme.okta.com\"\n{token}\n[[workspaces]]\nid = \"ws 1\"\nokta_app_id = \"0oa1\"\n"
    ));
    assert_eq!(code, 2);
    assert!(text.contains("workspaces[0].id"), "{text}");
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let out = Command::new(bin())
        .args(["--config", "/nonexistent/oktasync.toml", "sync"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/oktasync.toml"));
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("c.toml");
    std::fs::write(&path, valid("org_url = \"https://acme.okta.com\"", ""))
        .unwrap_or_else(|e| panic!("{e}"));
    // The token comes only from the environment; the bad share too, and it is named.
    let out = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env("OKTASYNC_OKTA__API_TOKEN", SECRET)
        .env("OKTASYNC_OKTA__RATE_LIMIT_SHARE", "7")
        .env("OKTASYNC_CONFIG", "/ignored/because/--config/wins")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("okta.rate_limit_share"), "{text}");
    assert!(
        !text.contains("okta.api_token"),
        "the env token counted: {text}"
    );
    assert!(!text.contains(SECRET));
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(bin())
        .args(["sync", "--format", "yaml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
}
