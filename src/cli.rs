//! The command line: parsing (clap), logging set-up, and one function per command. Exit
//! statuses follow the contract: 0 done or planned, 1 runtime failure, 2 usage or config
//! error, 3 plan held by a safety threshold.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, OktaCredentials, Settings};
use crate::okta::{Auth, ClientSettings, OktaClient};
use crate::pull::PullSource;
use crate::reconcile::cycle::{CycleOptions, WorkspaceSpec, run_cycle};
use crate::render;
use crate::store::Store;
use crate::store::runs::Trigger;
use crate::targets::Targets;

#[derive(Parser, Debug)]
#[command(
    name = "oktasync",
    version,
    about = "Keeps a workspace's members and groups in step with Okta by pulling"
)]
pub struct Cli {
    /// Configuration file [default: $OKTASYNC_CONFIG, else config/oktasync.toml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: scheduled cycles plus the HTTP server (SCIM, /healthz, /readyz,
    /// /metrics, POST /admin/sync). SIGTERM stops it cleanly; SIGHUP reloads the config.
    Run,
    /// The leader, the last cycles, held plans and failing objects.
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// The journal of operations, newest last.
    History {
        /// From this time: RFC 3339 (2026-01-31T12:00:00Z) or a duration ago (2h, 30m).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// At most this many entries (the newest).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Run one cycle (read Okta, plan, apply), then exit.
    Sync {
        /// Read everything (the only mode in this version; accepted for scripts).
        #[arg(long)]
        full: bool,
        /// Plan only: apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply deactivations held by max_deactivations / max_deactivation_ratio.
        #[arg(long)]
        force: bool,
        /// Only this workspace.
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Show the plan without applying it, or approve a held plan.
    Plan {
        /// Approve the held plan with this id: the next sync applies its deactivations.
        #[arg(long, value_name = "ID")]
        approve: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Apply database migrations (also done on every start).
    Migrate,
    /// Validate the configuration and reach Okta and the store; name every problem.
    CheckConfig,
    /// A local stand-in for Okta's Management API, for demos and tests.
    FakeOkta(FakeOktaArgs),
    /// Start a fake Okta, sync it into a local SQLite workspace, print the plan and result.
    Demo {
        /// Where the demo keeps its files [default: a new temporary directory].
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 200)]
        users: usize,
        #[arg(long, default_value_t = 12)]
        groups: usize,
    },
}

#[derive(clap::Args, Debug)]
pub struct FakeOktaArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// App ids to generate assignments for (repeatable).
    #[arg(long = "app", default_value = "0oafakeapp0000000001")]
    pub apps: Vec<String>,
    #[arg(long, default_value = "fake-okta-token", env = "FAKE_OKTA_TOKEN")]
    pub api_token: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rate-limit windows last 60 s divided by this.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Multiplies every bucket's limit.
    #[arg(long, default_value_t = 1.0)]
    pub limit_multiplier: f64,
    /// Never answer 429 (headers are still sent).
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Serve an OAuth service app with this client id (`POST /oauth2/v1/token`).
    #[arg(long, requires = "oauth_public_key_file")]
    pub oauth_client_id: Option<String>,
    /// The service app's public key (PEM) that client assertions must verify with.
    #[arg(long, requires = "oauth_client_id")]
    pub oauth_public_key_file: Option<PathBuf>,
    /// Lifetime of issued access tokens.
    #[arg(long, default_value_t = 3600)]
    pub oauth_token_ttl_seconds: u64,
    /// Issue Bearer tokens to requests without a DPoP proof instead of refusing them.
    #[arg(long)]
    pub no_dpop: bool,
    /// Leave out the nulls real Okta sends in System Log events, which Okta's OpenAPI spec
    /// declares non-nullable (for a run validated against the spec).
    #[arg(long)]
    pub omit_log_nulls: bool,
}

impl FakeOktaArgs {
    pub fn options(&self) -> anyhow::Result<fake_okta::Options> {
        let oauth_public_key_pem =
            match &self.oauth_public_key_file {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("--oauth-public-key-file {}: {e}", path.display())
                })?),
                None => None,
            };
        Ok(fake_okta::Options {
            users: self.users,
            groups: self.groups,
            app_ids: self.apps.clone(),
            api_token: self.api_token.clone(),
            seed: self.seed,
            time_scale: self.time_scale,
            rate_limits: !self.no_rate_limits,
            limit_multiplier: self.limit_multiplier,
            oauth_client_id: self.oauth_client_id.clone(),
            oauth_public_key_pem,
            oauth_token_ttl_seconds: self.oauth_token_ttl_seconds,
            dpop_required: !self.no_dpop,
            omit_log_nulls: self.omit_log_nulls,
        })
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OKTASYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,oktasync=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A command's failure and the exit status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl CommandError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Usage(_) => 2,
            Self::Runtime(_) => 1,
        }
    }
}

fn config_path(cli_path: Option<PathBuf>) -> PathBuf {
    cli_path
        .or_else(|| std::env::var_os("OKTASYNC_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config/oktasync.toml"))
}

async fn dispatch(cli: Cli) -> Result<u8, CommandError> {
    match cli.command {
        Command::FakeOkta(args) => {
            fake_okta::run_until_signal(args.listen, args.options()?).await?;
            Ok(0)
        }
        Command::Demo { dir, users, groups } => Ok(crate::demo::run(dir, users, groups).await?),
        Command::Run => {
            // The daemon keeps the path: SIGHUP reads the file again.
            let path = config_path(cli.config);
            let settings = config::load(&path)?;
            crate::daemon::run(settings, path).await
        }
        command => {
            let settings = config::load(&config_path(cli.config))?;
            run_command(command, settings).await
        }
    }
}

pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    use anyhow::Context;
    let store = Store::connect(&settings.store_url)
        .await
        .context("opening the store (store.url)")?;
    store.migrate().await?;
    Ok(store)
}

pub fn okta_client(settings: &Settings) -> anyhow::Result<OktaClient> {
    Ok(OktaClient::new(ClientSettings {
        org_url: settings.okta.org_url.clone(),
        auth: match &settings.okta.credentials {
            OktaCredentials::ApiToken(token) => Auth::Ssws(token.clone()),
            OktaCredentials::OAuth(oauth) => Auth::OAuth(oauth.clone()),
        },
        rate_limit_share: settings.okta.rate_limit_share,
        rate_limit_window: settings.okta.rate_limit_window,
        request_timeout: settings.okta.request_timeout,
        max_retries: settings.okta.max_retries,
        max_throttled: 10,
    })?)
}

fn workspace_specs(
    settings: &Settings,
    only: Option<&str>,
) -> Result<Vec<WorkspaceSpec>, CommandError> {
    let specs: Vec<WorkspaceSpec> = settings
        .workspaces
        .iter()
        .filter(|w| w.pull && only.is_none_or(|id| w.policy.workspace_id == id))
        .map(|w| WorkspaceSpec {
            policy: w.policy.clone(),
            plan_options: w.plan_options,
        })
        .collect();
    if specs.is_empty() {
        return Err(CommandError::Usage(format!(
            "--workspace {:?} is not configured",
            only.unwrap_or_default()
        )));
    }
    Ok(specs)
}

/// Shows progress on stderr while a long one-shot run reads and applies, when it is a terminal.
struct ProgressLine {
    read: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl ProgressLine {
    fn start(read: Arc<AtomicU64>) -> Arc<Self> {
        let line = Arc::new(Self {
            read,
            applied: Arc::default(),
            total: Arc::default(),
            done: Arc::default(),
        });
        if std::io::stderr().is_terminal() {
            let ticker = line.clone();
            tokio::spawn(async move {
                while !ticker.done.load(Ordering::Relaxed) {
                    let total = ticker.total.load(Ordering::Relaxed);
                    let mut err = std::io::stderr();
                    let _ = if total == 0 {
                        write!(
                            err,
                            "\r\x1b[Kreading Okta: {} objects",
                            ticker.read.load(Ordering::Relaxed)
                        )
                    } else {
                        write!(
                            err,
                            "\r\x1b[Kapplying: {}/{total}",
                            ticker.applied.load(Ordering::Relaxed)
                        )
                    };
                    let _ = err.flush();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            });
        }
        line
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

async fn run_command(command: Command, settings: Settings) -> Result<u8, CommandError> {
    match command {
        Command::Status { format } => Ok(crate::status::status(&settings, format).await?),
        Command::History {
            since,
            limit,
            format,
        } => crate::status::history(&settings, since.as_deref(), limit, format).await,
        Command::Migrate => {
            let store = open_store(&settings).await?;
            println!("migrations applied ({})", store.backend());
            Ok(0)
        }
        Command::CheckConfig => Ok(crate::check::check_config(&settings).await?),
        Command::Plan {
            approve: Some(id), ..
        } => {
            let store = open_store(&settings).await?;
            if store
                .approve_held_plan(&id)
                .await
                .map_err(anyhow::Error::from)?
            {
                println!("held plan {id} approved: the next sync applies its deactivations");
                Ok(0)
            } else {
                Err(CommandError::Usage(format!(
                    "no held plan {id:?} awaiting approval (see `oktasync plan`)"
                )))
            }
        }
        Command::Plan {
            approve: None,
            workspace,
            format,
        } => cycle(&settings, workspace.as_deref(), CycleFlags::PLAN, format).await,
        Command::Sync {
            full,
            dry_run,
            force,
            workspace,
            format,
        } => {
            let flags = CycleFlags {
                full,
                dry_run,
                force,
            };
            cycle(&settings, workspace.as_deref(), flags, format).await
        }
        // Handled by `dispatch`.
        Command::Run | Command::FakeOkta(_) | Command::Demo { .. } => Ok(0),
    }
}

/// `sync`'s flags (`plan` is a dry run).
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleFlags {
    /// Read Okta in full even when an incremental read would do.
    pub full: bool,
    pub dry_run: bool,
    pub force: bool,
}

impl CycleFlags {
    pub const PLAN: Self = Self {
        full: false,
        dry_run: true,
        force: false,
    };
}

/// One cycle for `sync` and `plan`; prints the report and returns the exit status.
pub async fn cycle(
    settings: &Settings,
    only: Option<&str>,
    flags: CycleFlags,
    format: OutputFormat,
) -> Result<u8, CommandError> {
    let CycleFlags {
        full,
        dry_run,
        force,
    } = flags;
    let specs = workspace_specs(settings, only)?;
    let store = open_store(settings).await?;
    let client = std::sync::Arc::new(okta_client(settings)?);
    let target = Targets::new(&store, &settings.workspaces).map_err(anyhow::Error::msg)?;
    let progress_line = ProgressLine::start(client.items_read());
    let line = progress_line.clone();
    let progress = move |done: usize, total: usize| {
        line.total.store(total as u64, Ordering::Relaxed);
        line.applied.store(done as u64, Ordering::Relaxed);
    };
    // Serialised with every other cycle on this store (a running daemon's included).
    let instance = crate::store::locks::instance_name();
    let lock = store
        .lock_cycles(&instance)
        .await
        .map_err(anyhow::Error::from)?;
    // The stored read covers every pulled workspace: a `--workspace` cycle reads its own
    // app in full and keeps nothing, so the stored read stays whole.
    let keep = !dry_run && only.is_none();
    let source = PullSource::prepare(client.clone(), &store, settings, &specs, full, keep)
        .await
        .map_err(anyhow::Error::from)?;
    let run = store
        .begin_run(&lock, Trigger::Cli, source.is_full(), &instance)
        .await
        .map_err(anyhow::Error::from)?;
    let report = run_cycle(
        &source,
        &target,
        &run.state(&store),
        &specs,
        CycleOptions {
            dry_run,
            force,
            thresholds: settings.thresholds,
        },
        &progress,
    )
    .await;
    if report.is_ok()
        && let Err(e) = source.commit().await
    {
        tracing::warn!(error = %e, "cannot keep this Okta read: the next cycle reads from the last one");
    }
    if let Err(e) = store.end_run(&run).await {
        tracing::warn!(error = %e, "cannot close the run's cycles: the next run will");
    }
    lock.release().await;
    let report = report.map_err(anyhow::Error::from)?;
    progress_line.finish();
    for (bucket, stats) in client.rate_limits().stats() {
        tracing::debug!(bucket = bucket.as_str(), calls = stats.calls, throttled = stats.throttled, limit = ?stats.limit, "Okta calls");
    }
    match format {
        OutputFormat::Json => println!("{}", render::report_json(&report, dry_run)),
        OutputFormat::Text => print!("{}", render::report_text(&report, dry_run)),
    }
    store.close().await;
    Ok(report.exit_code())
}
