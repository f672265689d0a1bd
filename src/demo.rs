//! `demo`: no Okta account needed. Starts the fake Okta in-process, writes a configuration
//! for one local SQLite workspace, shows the plan, syncs, and syncs again to show that a
//! converged workspace plans nothing.

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::{CycleFlags, OutputFormat, cycle};
use crate::config;

pub async fn run(dir: Option<PathBuf>, users: usize, groups: usize) -> anyhow::Result<u8> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("oktasync-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let options = fake_okta::Options {
        users,
        groups,
        ..fake_okta::Options::default()
    };
    let app_id = options
        .app_ids
        .first()
        .cloned()
        .context("the fake Okta has no app")?;
    let token = options.api_token.clone();
    let fake = fake_okta::FakeOkta::start(listener, options).await?;
    let config_path = dir.join("oktasync.toml");
    let db = dir.join("demo.db");
    std::fs::write(
        &config_path,
        format!(
            r#"# Written by `oktasync demo`: a fake Okta and one local workspace.
[okta]
org_url = "{org}"
api_token = "{token}"

[store]
url = "sqlite://{db}"

[sync]
max_deactivations = 50
max_deactivation_ratio = 0.2

[[workspaces]]
id = "demo"
okta_app_id = "{app_id}"
push_groups = ["Engineering", "re:^team-"]
"#,
            org = fake.base_url(),
            db = db.display(),
        ),
    )?;
    println!(
        "fake Okta at {} with {users} users and {groups} groups",
        fake.base_url()
    );
    println!("configuration: {}\n", config_path.display());
    let settings = config::load(&config_path)?;
    println!("== oktasync plan");
    cycle(&settings, None, CycleFlags::PLAN, OutputFormat::Text).await?;
    println!("\n== oktasync sync");
    let code = cycle(&settings, None, CycleFlags::default(), OutputFormat::Text).await?;
    println!("\n== oktasync sync (again: a converged workspace plans nothing)");
    cycle(&settings, None, CycleFlags::default(), OutputFormat::Text).await?;
    println!(
        "\nThe workspace is in {}; rerun with:\n  oktasync --config {} plan",
        db.display(),
        config_path.display()
    );
    fake.shutdown().await;
    Ok(code)
}
