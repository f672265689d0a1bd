//! The pull's Okta side as the engine sees it: one `OktaSource` that reads Okta in full, or
//! only what changed since the last complete read kept in the store, and stages what it
//! read. `commit` promotes the staged read once the cycle has applied, so watermarks and
//! the log checkpoint never advance past a cycle that did not finish.
//!
//! A read is full when asked (`sync --full`, a due full sweep), when no complete read is
//! stored, when the stored one covered other apps, or when `sync.full_every` has passed
//! since the last full one. Full sweeps also catch what the System Log cannot.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Settings;
use crate::model::OktaSnapshot;
use crate::okta::OktaClient;
use crate::okta::incremental::Checkpoint;
use crate::reconcile::cycle::{WorkspaceSpec, read_scope};
use crate::reconcile::ports::{OktaSource, ReadRequest};
use crate::store::{Store, StoreError, now_millis};

/// A complete earlier read to bring up to date.
struct Base {
    snapshot: OktaSnapshot,
    checkpoint: Checkpoint,
}

pub struct PullSource {
    client: Arc<OktaClient>,
    store: Store,
    org: String,
    scope: String,
    overlap: Duration,
    /// Dry runs (`plan`, `sync --dry-run`) read but keep nothing.
    keep: bool,
    base: Mutex<Option<Base>>,
    full: bool,
    staged: Mutex<bool>,
}

/// The stored read's scope key: the apps it covers and those whose push mappings it reads.
fn scope_key(workspaces: &[WorkspaceSpec]) -> String {
    let (apps, push) = read_scope(workspaces);
    let join = |s: std::collections::BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(",");
    format!("apps={};push={}", join(apps), join(push))
}

impl PullSource {
    /// Decides between a full and an incremental read and loads the base for the latter.
    pub async fn prepare(
        client: Arc<OktaClient>,
        store: &Store,
        settings: &Settings,
        workspaces: &[WorkspaceSpec],
        force_full: bool,
        keep: bool,
    ) -> Result<Self, StoreError> {
        let org = settings.okta.org_url.as_str().to_owned();
        let scope = scope_key(workspaces);
        let full_every = i64::try_from(settings.full_every.as_millis()).unwrap_or(i64::MAX);
        let mut base = None;
        if !force_full
            && let Some(info) = store.okta_snapshot_info(&org).await?
            && info.scope == scope
            && now_millis().saturating_sub(info.full_read_at) < full_every
        {
            match serde_json::from_str::<Checkpoint>(&info.checkpoint) {
                Ok(checkpoint) => {
                    base = store.load_okta_snapshot(&org).await?.map(|snapshot| Base {
                        snapshot,
                        checkpoint,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stored Okta checkpoint unreadable: reading Okta in full")
                }
            }
        }
        Ok(Self {
            client,
            store: store.clone(),
            org,
            scope,
            overlap: settings.overlap,
            keep,
            full: base.is_none(),
            base: Mutex::new(base),
            staged: Mutex::new(false),
        })
    }

    /// Whether this cycle reads Okta in full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Puts the staged read in effect (after the cycle applied). A no-op after an
    /// incomplete read or a dry run.
    pub async fn commit(&self) -> Result<(), StoreError> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()));
        if staged {
            self.store.promote_okta_snapshot(&self.org).await?;
        }
        Ok(())
    }

    async fn stage(&self, snapshot: &OktaSnapshot, checkpoint: &Checkpoint) {
        let staged = match serde_json::to_string(checkpoint) {
            Ok(json) => self
                .store
                .stage_okta_snapshot(&self.org, &self.scope, snapshot, &json, self.full)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match staged {
            Ok(()) => *self.staged.lock().unwrap_or_else(|p| p.into_inner()) = true,
            // The cycle goes on; the next one reads again from the old checkpoint.
            Err(e) => tracing::warn!(error = %e, "cannot keep this Okta read for the next cycle"),
        }
    }
}

impl OktaSource for PullSource {
    async fn read(&self, request: ReadRequest<'_>) -> OktaSnapshot {
        let base = self.base.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (snapshot, checkpoint) = match base {
            Some(Base {
                snapshot,
                checkpoint,
            }) => {
                tracing::info!("incremental Okta read");
                self.client
                    .read_changes(snapshot, &checkpoint, self.overlap, request)
                    .await
            }
            None => {
                tracing::info!("full Okta read");
                let (snapshot, marks) = self.client.read_full(request).await;
                let checkpoint = snapshot
                    .complete
                    .then(|| Checkpoint::after_full_read(marks, self.overlap));
                (snapshot, checkpoint)
            }
        };
        if self.keep
            && let Some(checkpoint) = checkpoint
        {
            let staging = std::time::Instant::now();
            self.stage(&snapshot, &checkpoint).await;
            tracing::debug!(
                elapsed_ms = staging.elapsed().as_millis() as u64,
                "Okta read staged"
            );
            // The stored form of a 100k-user read is tens of MB, copied on its way into
            // the store; what follows (planning) would otherwise sit on top of it.
            crate::heap::release_freed();
        }
        snapshot
    }
}
