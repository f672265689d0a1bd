//! `check-config`: after the configuration validated, reach every system it names (the
//! store, Okta with its token, each workspace's Okta app) and name each that fails.

use crate::cli::{okta_client, open_store};
use crate::config::Settings;
use crate::okta::wire;

pub async fn check_config(settings: &Settings) -> anyhow::Result<u8> {
    let mut failed = 0;
    let mut report = |what: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("ok    {what}: {detail}"),
        Err(e) => {
            failed += 1;
            println!("FAIL  {what}: {e}");
        }
    };
    report(
        "configuration",
        Ok(format!("{} workspace(s)", settings.workspaces.len())),
    );
    let store = open_store(settings).await;
    report(
        "store.url",
        store
            .as_ref()
            .map(|s| format!("{} reachable, migrations applied", s.backend()))
            .map_err(|e| format!("{e:#}")),
    );
    let client = okta_client(settings)?;
    let users = match client.url("/api/v1/users?limit=1") {
        Ok(url) => client
            .get_page::<wire::User>(&url)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    report(
        "okta.org_url + credentials",
        users.map(|()| format!("{} answers, token can list users", settings.okta.org_url)),
    );
    for ws in &settings.workspaces {
        let app = &ws.policy.okta_app_id;
        let result = match client.url(&format!("/api/v1/apps/{app}/users?limit=1")) {
            Ok(url) => client
                .get_page::<wire::AppUser>(&url)
                .await
                .map(|_| format!("app {app} readable"))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        report(
            &format!("workspaces[{}].okta_app_id", ws.policy.workspace_id),
            result,
        );
    }
    if let Ok(store) = store {
        store.close().await;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
