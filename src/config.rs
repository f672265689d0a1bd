//! Configuration: a TOML file plus `OKTASYNC_<SECTION>__<KEY>` environment overrides, read
//! into raw serde structs (unknown keys rejected) and then validated into `Settings`, naming
//! the key of every problem. Secrets stay `SecretString`s and are never printed.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::okta::auth::{ClientKey, OAuthSettings};
use crate::reconcile::desired::{GroupPattern, GroupSelector, WorkspacePolicy};
use crate::reconcile::plan::{OnUnlink, PlanOptions};
use crate::reconcile::safety::Thresholds;

/// One problem with the configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Read(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {}: {}", p.key, p.message)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    okta: RawOkta,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    workspaces: Vec<RawWorkspace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOkta {
    org_url: String,
    api_token: Option<SecretString>,
    oauth: Option<RawOAuth>,
    #[serde(default = "default_share")]
    rate_limit_share: f64,
    /// Okta's rate-limit window; only shortened against a time-scaled fake Okta.
    #[serde(default = "default_window")]
    rate_limit_window: String,
    #[serde(default = "default_timeout")]
    request_timeout: String,
    #[serde(default = "default_retries")]
    max_retries: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    client_id: String,
    private_key_file: String,
    key_id: Option<String>,
    #[serde(default = "default_scopes")]
    scopes: String,
    #[serde(default = "default_dpop")]
    dpop: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store_url")]
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: default_store_url(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: String,
    /// Bearer token for `POST /admin/sync` (kept only as its SHA-256); none: no admin API.
    admin_token: Option<SecretString>,
    /// The SHA-256 (hex) of the admin token, so the token itself need not be in the file.
    admin_token_sha256: Option<String>,
    /// How long `/readyz` trusts its last check of the Okta credentials.
    #[serde(default = "default_okta_check_ttl")]
    okta_check_ttl: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_token: None,
            admin_token_sha256: None,
            okta_check_ttl: default_okta_check_ttl(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    #[serde(default = "default_interval")]
    interval: String,
    #[serde(default = "default_full_every")]
    full_every: String,
    #[serde(default = "default_overlap")]
    overlap: String,
    #[serde(default = "default_max_deactivations")]
    max_deactivations: usize,
    #[serde(default = "default_ratio")]
    max_deactivation_ratio: f64,
}

impl Default for RawSync {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            full_every: default_full_every(),
            overlap: default_overlap(),
            max_deactivations: default_max_deactivations(),
            max_deactivation_ratio: default_ratio(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPushGroups {
    Keyword(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    id: String,
    okta_app_id: String,
    scim_token: Option<SecretString>,
    /// The SHA-256 (hex) of the SCIM token, so the token itself need not be in the file.
    scim_token_sha256: Option<String>,
    /// false: the workspace is only written over inbound SCIM, never pulled into.
    pull: Option<bool>,
    push_groups: Option<RawPushGroups>,
    on_unlink: Option<String>,
    target: Option<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kind: String,
    base_url: Option<String>,
    token: Option<SecretString>,
    update_method: Option<String>,
    /// Requests in flight at once to the target.
    max_in_flight: Option<usize>,
    request_timeout: Option<String>,
}

/// Where a workspace's operations land.
#[derive(Clone)]
pub enum TargetSettings {
    /// The store itself, served over inbound SCIM.
    Local,
    /// A downstream SCIM 2.0 service provider, provisioned as Okta's own client would.
    Scim(ScimTargetSettings),
}

#[derive(Clone)]
pub struct ScimTargetSettings {
    pub base_url: url::Url,
    pub token: SecretString,
    /// Okta's App-Integration-Wizard behaviour (GET then PUT) or OIN's (PATCH).
    pub use_patch: bool,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
}

fn default_scopes() -> String {
    crate::okta::auth::DEFAULT_SCOPES.into()
}
fn default_dpop() -> bool {
    true
}
fn default_share() -> f64 {
    0.5
}
fn default_window() -> String {
    "60s".into()
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_retries() -> usize {
    4
}
fn default_store_url() -> String {
    "sqlite://data/oktasync.db".into()
}
fn default_okta_check_ttl() -> String {
    "30s".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_interval() -> String {
    "5m".into()
}
fn default_full_every() -> String {
    "1h".into()
}
fn default_overlap() -> String {
    "60s".into()
}
fn default_max_deactivations() -> usize {
    50
}
fn default_ratio() -> f64 {
    0.1
}

/// Validated settings.
#[derive(Clone)]
pub struct Settings {
    pub okta: OktaSettings,
    pub store_url: String,
    pub listen: SocketAddr,
    /// SHA-256 of `server.admin_token` (or `server.admin_token_sha256`).
    pub admin_token_sha256: Option<[u8; 32]>,
    pub okta_check_ttl: Duration,
    pub interval: Duration,
    pub full_every: Duration,
    /// How far before each watermark an incremental read looks again (`sync.overlap`).
    pub overlap: Duration,
    pub thresholds: Thresholds,
    pub workspaces: Vec<WorkspaceSettings>,
}

/// How oktasync authenticates to Okta: exactly one of the two is configured.
#[derive(Clone)]
pub enum OktaCredentials {
    /// `okta.api_token` (SSWS).
    ApiToken(SecretString),
    /// `[okta.oauth]`: a service app, its private key loaded and checked at load time.
    OAuth(OAuthSettings),
}

#[derive(Clone)]
pub struct OktaSettings {
    pub org_url: url::Url,
    pub credentials: OktaCredentials,
    pub rate_limit_share: f64,
    pub rate_limit_window: Duration,
    pub request_timeout: Duration,
    pub max_retries: usize,
}

#[derive(Clone)]
pub struct WorkspaceSettings {
    pub policy: WorkspacePolicy,
    pub plan_options: PlanOptions,
    pub scim_token: Option<SecretString>,
    pub scim_token_sha256: Option<String>,
    /// Whether cycles reconcile this workspace from Okta (`pull`, default true).
    pub pull: bool,
    pub target: TargetSettings,
}

/// The config file: `--config`, else `$OKTASYNC_CONFIG`, else `config/oktasync.toml`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let env = std::env::vars().filter(|(k, _)| k.starts_with("OKTASYNC_") && k.contains("__"));
    load_with_env(path, env.collect())
}

pub fn load_with_env(
    path: &Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::Read(format!(
            "{} does not exist (set --config or OKTASYNC_CONFIG)",
            path.display()
        )));
    }
    let raw: RawConfig = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("OKTASYNC")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        )
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Read(format!("{}: {e}", path.display())))?;
    validate(raw)
}

fn duration(key: &str, value: &str, problems: &mut Vec<Problem>) -> Duration {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(problem(key, "must be longer than zero"));
            Duration::from_secs(1)
        }
        Err(e) => {
            problems.push(problem(
                key,
                &format!("{value:?} is not a duration like \"30s\" or \"5m\": {e}"),
            ));
            Duration::from_secs(1)
        }
    }
}

fn problem(key: &str, message: &str) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Checks a URL's scheme: https, or plain http only to a loopback host.
pub fn check_url(key: &str, value: &str, problems: &mut Vec<Problem>) -> Option<url::Url> {
    match url::Url::parse(value) {
        Ok(url) if url.scheme() == "https" => Some(url),
        Ok(url) if url.scheme() == "http" && is_loopback_host(&url) => Some(url),
        Ok(url) if url.scheme() == "http" => {
            problems.push(problem(
                key,
                "plain http is only allowed to a loopback host; use https",
            ));
            None
        }
        Ok(url) => {
            problems.push(problem(
                key,
                &format!("scheme {:?} is not https", url.scheme()),
            ));
            None
        }
        Err(e) => {
            problems.push(problem(key, &format!("{value:?} is not a URL: {e}")));
            None
        }
    }
}

fn validate(raw: RawConfig) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let org_url = check_url("okta.org_url", &raw.okta.org_url, &mut problems);
    if let Some(url) = &org_url
        && (url.path() != "/" || url.query().is_some())
    {
        problems.push(problem(
            "okta.org_url",
            "must be the org's base URL, like https://acme.okta.com, without a path",
        ));
    }
    let credentials = okta_credentials(raw.okta.api_token, raw.okta.oauth, &mut problems);
    let share = raw.okta.rate_limit_share;
    if !(share > 0.0 && share <= 1.0) {
        problems.push(problem(
            "okta.rate_limit_share",
            "must be greater than 0 and at most 1",
        ));
    }
    let rate_limit_window = duration(
        "okta.rate_limit_window",
        &raw.okta.rate_limit_window,
        &mut problems,
    );
    let request_timeout = duration(
        "okta.request_timeout",
        &raw.okta.request_timeout,
        &mut problems,
    );

    if !(raw.store.url.starts_with("sqlite:")
        || raw.store.url.starts_with("postgres://")
        || raw.store.url.starts_with("postgresql://"))
    {
        problems.push(problem(
            "store.url",
            "must start with sqlite:// or postgres://",
        ));
    }
    let admin_token_sha256 = admin_token_hash(
        raw.server.admin_token.as_ref(),
        raw.server.admin_token_sha256.as_deref(),
        &mut problems,
    );
    let okta_check_ttl = duration(
        "server.okta_check_ttl",
        &raw.server.okta_check_ttl,
        &mut problems,
    );
    let listen = raw.server.listen.parse::<SocketAddr>().unwrap_or_else(|e| {
        problems.push(problem(
            "server.listen",
            &format!(
                "{:?} is not an address like 127.0.0.1:8080: {e}",
                raw.server.listen
            ),
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let interval = duration("sync.interval", &raw.sync.interval, &mut problems);
    let full_every = duration("sync.full_every", &raw.sync.full_every, &mut problems);
    let overlap = duration("sync.overlap", &raw.sync.overlap, &mut problems);
    if overlap < Duration::from_secs(1) {
        problems.push(problem(
            "sync.overlap",
            "must be at least 1s: Okta's timestamps are whole seconds",
        ));
    }
    let ratio = raw.sync.max_deactivation_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        problems.push(problem(
            "sync.max_deactivation_ratio",
            "must be between 0 and 1",
        ));
    }

    if raw.workspaces.is_empty() {
        problems.push(problem("workspaces", "no [[workspaces]] configured"));
    }
    let mut seen = BTreeSet::new();
    let mut workspaces = Vec::new();
    for (i, ws) in raw.workspaces.into_iter().enumerate() {
        let key = |k: &str| format!("workspaces[{i}].{k}");
        if ws.id.is_empty()
            || !ws
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(problem(
                &key("id"),
                "must be non-empty letters, digits, '-' or '_' (it is part of the SCIM URL)",
            ));
        } else if !seen.insert(ws.id.clone()) {
            problems.push(problem(&key("id"), &format!("{:?} is used twice", ws.id)));
        }
        if let Some(hash) = &ws.scim_token_sha256
            && (hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push(problem(
                &key("scim_token_sha256"),
                "must be 64 hexadecimal characters (a SHA-256)",
            ));
        }
        if ws.okta_app_id.trim().is_empty() {
            problems.push(problem(&key("okta_app_id"), "must not be empty"));
        }
        let push_groups = match ws.push_groups {
            None => GroupSelector::Listed(Vec::new()),
            Some(RawPushGroups::Keyword(k)) if k == "assigned" => GroupSelector::Assigned,
            Some(RawPushGroups::Keyword(k)) if k == "okta" => GroupSelector::OktaPushMappings,
            Some(RawPushGroups::Keyword(k)) => {
                problems.push(problem(
                    &key("push_groups"),
                    &format!("{k:?} is neither \"assigned\", \"okta\" nor a list of group names"),
                ));
                GroupSelector::Listed(Vec::new())
            }
            Some(RawPushGroups::List(list)) => GroupSelector::Listed(
                list.into_iter()
                    .filter_map(|entry| {
                        parse_pattern(&entry)
                            .map_err(|m| problems.push(problem(&key("push_groups"), &m)))
                            .ok()
                    })
                    .collect(),
            ),
        };
        let on_unlink = match ws.on_unlink.as_deref() {
            None | Some("keep") => OnUnlink::Keep,
            Some("delete") => OnUnlink::Delete,
            Some(other) => {
                problems.push(problem(
                    &key("on_unlink"),
                    &format!("{other:?} is neither \"keep\" nor \"delete\""),
                ));
                OnUnlink::Keep
            }
        };
        let target = match &ws.target {
            None => TargetSettings::Local,
            Some(t) if t.kind == "local" => TargetSettings::Local,
            Some(t) if t.kind == "scim" => {
                let base_url = match &t.base_url {
                    Some(u) => check_url(&key("target.base_url"), u, &mut problems),
                    None => {
                        problems.push(problem(
                            &key("target.base_url"),
                            "missing: the SCIM base URL of the workspace",
                        ));
                        None
                    }
                };
                if t.token.is_none() {
                    problems.push(problem(
                        &key("target.token"),
                        "missing: the bearer token of the workspace's SCIM endpoint",
                    ));
                }
                let use_patch = match t.update_method.as_deref() {
                    None | Some("put") => false,
                    Some("patch") => true,
                    Some(other) => {
                        problems.push(problem(
                            &key("target.update_method"),
                            &format!("{other:?} is neither \"put\" nor \"patch\""),
                        ));
                        false
                    }
                };
                let timeout = duration(
                    &key("target.request_timeout"),
                    t.request_timeout.as_deref().unwrap_or("30s"),
                    &mut problems,
                );
                match (base_url, &t.token) {
                    (Some(base_url), Some(token)) => TargetSettings::Scim(ScimTargetSettings {
                        base_url,
                        token: token.clone(),
                        use_patch,
                        max_in_flight: t.max_in_flight.unwrap_or(8).clamp(1, 64),
                        request_timeout: timeout,
                    }),
                    _ => TargetSettings::Local,
                }
            }
            Some(t) => {
                problems.push(problem(
                    &key("target.kind"),
                    &format!("{:?} is neither \"local\" nor \"scim\"", t.kind),
                ));
                TargetSettings::Local
            }
        };
        workspaces.push(WorkspaceSettings {
            policy: WorkspacePolicy {
                workspace_id: ws.id,
                okta_app_id: ws.okta_app_id,
                push_groups,
            },
            plan_options: PlanOptions {
                on_unlink,
                read_started_at: None,
            },
            scim_token: ws.scim_token,
            scim_token_sha256: ws.scim_token_sha256,
            pull: ws.pull.unwrap_or(true),
            target,
        });
    }

    match (org_url, credentials) {
        (Some(org_url), Some(credentials)) if problems.is_empty() => Ok(Settings {
            okta: OktaSettings {
                org_url,
                credentials,
                rate_limit_share: share,
                rate_limit_window,
                request_timeout,
                max_retries: raw.okta.max_retries,
            },
            store_url: raw.store.url,
            listen,
            admin_token_sha256,
            okta_check_ttl,
            interval,
            full_every,
            overlap,
            thresholds: Thresholds {
                max_deactivations: raw.sync.max_deactivations,
                max_deactivation_ratio: ratio,
            },
            workspaces,
        }),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// At most one of `server.admin_token` and `server.admin_token_sha256`, as a SHA-256.
fn admin_token_hash(
    token: Option<&SecretString>,
    hex: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<[u8; 32]> {
    use secrecy::ExposeSecret;
    use sha2::Digest;
    match (token, hex) {
        (Some(_), Some(_)) => {
            problems.push(problem(
                "server.admin_token_sha256",
                "set either server.admin_token or server.admin_token_sha256, not both",
            ));
            None
        }
        (Some(token), None) if token.expose_secret().trim().len() < 16 => {
            problems.push(problem(
                "server.admin_token",
                "must be at least 16 characters (it guards POST /admin/sync)",
            ));
            None
        }
        (Some(token), None) => {
            Some(sha2::Sha256::digest(token.expose_secret().trim().as_bytes()).into())
        }
        (None, Some(hex)) => {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect();
            match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(hash) => Some(hash),
                None => {
                    problems.push(problem(
                        "server.admin_token_sha256",
                        "must be 64 hexadecimal characters (a SHA-256)",
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    }
}

/// Exactly one of `okta.api_token` and `[okta.oauth]`.
fn okta_credentials(
    api_token: Option<SecretString>,
    oauth: Option<RawOAuth>,
    problems: &mut Vec<Problem>,
) -> Option<OktaCredentials> {
    match (api_token, oauth) {
        (Some(token), None) => Some(OktaCredentials::ApiToken(token)),
        (None, Some(oauth)) => oauth_settings(oauth, problems).map(OktaCredentials::OAuth),
        (Some(_), Some(_)) => {
            problems.push(problem(
                "okta.oauth",
                "set either okta.api_token or [okta.oauth], not both",
            ));
            None
        }
        (None, None) => {
            problems.push(problem(
                "okta.api_token",
                "missing: set okta.api_token (or OKTASYNC_OKTA__API_TOKEN), or an OAuth service app in [okta.oauth]",
            ));
            None
        }
    }
}

fn oauth_settings(raw: RawOAuth, problems: &mut Vec<Problem>) -> Option<OAuthSettings> {
    let before = problems.len();
    if raw.client_id.trim().is_empty() {
        problems.push(problem("okta.oauth.client_id", "must not be empty"));
    }
    if raw.key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
        problems.push(problem(
            "okta.oauth.key_id",
            "must not be empty (leave it out to send no kid)",
        ));
    }
    let scopes = raw.scopes.split_whitespace().collect::<Vec<_>>().join(" ");
    if scopes.is_empty() {
        problems.push(problem("okta.oauth.scopes", "must name at least one scope"));
    }
    let key = private_key(Path::new(&raw.private_key_file), problems);
    match key {
        Some(key) if problems.len() == before => Some(OAuthSettings {
            client_id: raw.client_id.trim().to_owned(),
            key,
            key_id: raw.key_id,
            scopes,
            dpop: raw.dpop,
        }),
        _ => None,
    }
}

/// Reads and checks the service app's key; problems name the file, never its contents.
fn private_key(path: &Path, problems: &mut Vec<Problem>) -> Option<ClientKey> {
    const KEY: &str = "okta.oauth.private_key_file";
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => {
            problems.push(problem(
                KEY,
                &format!("cannot read {}: {e}", path.display()),
            ));
            return None;
        }
    };
    warn_if_readable_by_others(path);
    ClientKey::from_pem(&pem)
        .map_err(|e| problems.push(problem(KEY, &format!("{} {e}", path.display()))))
        .ok()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                key = "okta.oauth.private_key_file",
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the Okta private key file is accessible by group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// `re:<regex>`, `id:<group id>`, a bare Okta group id (`00g` + 17 characters), or a name.
fn parse_pattern(entry: &str) -> Result<GroupPattern, String> {
    if let Some(re) = entry.strip_prefix("re:") {
        return regex::Regex::new(re)
            .map(GroupPattern::Regex)
            .map_err(|e| format!("{entry:?} is not a valid regex: {e}"));
    }
    if let Some(id) = entry.strip_prefix("id:") {
        return Ok(GroupPattern::Id(id.to_owned()));
    }
    let looks_like_id = entry.len() == 20
        && entry.starts_with("00g")
        && entry.chars().all(|c| c.is_ascii_alphanumeric());
    if looks_like_id {
        Ok(GroupPattern::Id(entry.to_owned()))
    } else if entry.is_empty() {
        Err("an empty group name".into())
    } else {
        Ok(GroupPattern::Name(entry.to_owned()))
    }
}
