//! Building an `OktaSnapshot` from Okta's listings: users (with DEPROVISIONED ones), groups,
//! app group assignments and group-push mappings, then the members of the groups that are
//! pushed and the apps' users.
//! Listings in different rate-limit buckets run concurrently. A listing that fails after its
//! retries marks the snapshot incomplete and is named in its failures; the rest still count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures_util::{StreamExt, stream};

use super::client::OktaClient;
use super::{OktaError, wire};
use crate::model::{AppAssignments, AssignmentScope, OktaGroup, OktaSnapshot, OktaUser};
use crate::reconcile::ports::{GroupSelection, OktaSource, ReadRequest, UsersRead};

/// Okta's clock (epoch seconds, from `Date`) when a read's users and groups listings began.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerMarks {
    pub users_at: Option<u64>,
    pub groups_at: Option<u64>,
}

/// Group member listings in flight at once (they share one bucket, paced anyway).
pub(super) const MEMBER_CONCURRENCY: usize = 4;

pub(super) fn failure(listing: &str, error: &OktaError) -> String {
    format!("{listing}: {error}")
}

impl OktaClient {
    /// Every user. Okta's plain listing omits DEPROVISIONED users, so they are read by a
    /// `filter` too (rather than `search`, whose results are capped and eventually consistent).
    /// Also returns Okta's clock at the first page: where the next incremental read resumes.
    async fn read_users(&self) -> Result<(BTreeMap<String, OktaUser>, Option<u64>), String> {
        let (active, deprovisioned) = tokio::join!(
            self.list_all_dated::<wire::User>("/api/v1/users?limit=200"),
            self.list_all::<wire::User>(
                "/api/v1/users?limit=200&filter=status%20eq%20%22DEPROVISIONED%22"
            ),
        );
        let active = active.map_err(|e| failure("users", &e))?;
        let deprovisioned = deprovisioned.map_err(|e| failure("deprovisioned users", &e))?;
        let users = active
            .items
            .into_iter()
            .chain(deprovisioned)
            .map(|u| (u.id.clone(), OktaUser::from(u)))
            .collect();
        Ok((users, active.server_epoch))
    }

    async fn read_groups(
        &self,
        early: Option<&EarlySelection<'_>>,
    ) -> Result<(BTreeMap<String, OktaGroup>, Option<u64>), String> {
        let mut map = BTreeMap::new();
        let server_epoch = self
            .each_page("/api/v1/groups?limit=200", |page: Vec<wire::Group>| {
                let page: Vec<OktaGroup> = page.into_iter().map(OktaGroup::from).collect();
                if let Some(early) = early {
                    early.listed(|partial| {
                        for group in &page {
                            partial.groups.insert(group.id.clone(), group.clone());
                        }
                    });
                }
                map.extend(page.into_iter().map(|g| (g.id.clone(), g)));
            })
            .await
            .map_err(|e| failure("groups", &e))?;
        Ok((map, server_epoch))
    }

    /// The app's group assignments and (when asked) its ACTIVE group-push mappings: all the
    /// group selection needs from the app, so they are read before its users.
    pub(super) async fn read_app_groups(
        &self,
        app_id: &str,
        push_mappings: bool,
        early: Option<&EarlySelection<'_>>,
    ) -> Result<AppAssignments, String> {
        let app = urlencode(app_id);
        let groups_path = format!("/api/v1/apps/{app}/groups?limit=200");
        let mut groups = BTreeSet::new();
        self.each_page(&groups_path, |page: Vec<wire::AppGroup>| {
            let page: Vec<String> = page.into_iter().map(|g| g.id).collect();
            if let Some(early) = early {
                early.listed(|partial| {
                    let listed = partial.apps.entry(app_id.to_owned()).or_default();
                    listed.groups.extend(page.iter().cloned());
                });
            }
            groups.extend(page);
        })
        .await
        .map_err(|e| failure(&format!("app {app_id} groups"), &e))?;
        let mut mappings = BTreeSet::new();
        if push_mappings {
            let path = format!("/api/v1/apps/{app}/group-push/mappings?limit=1000");
            self.each_page(&path, |page: Vec<wire::GroupPushMapping>| {
                let page: Vec<String> = page
                    .into_iter()
                    .filter(|m| m.status == "ACTIVE")
                    .map(|m| m.source_group_id)
                    .collect();
                if let Some(early) = early {
                    early.listed(|partial| {
                        let listed = partial.apps.entry(app_id.to_owned()).or_default();
                        listed.push_mappings.extend(page.iter().cloned());
                    });
                }
                mappings.extend(page);
            })
            .await
            .map_err(|e| failure(&format!("app {app_id} group-push mappings"), &e))?;
        }
        Ok(AppAssignments {
            users: BTreeMap::new(),
            groups,
            push_mappings: mappings,
        })
    }

    pub(super) async fn read_app_users(
        &self,
        app_id: &str,
    ) -> Result<BTreeMap<String, AssignmentScope>, String> {
        let path = format!("/api/v1/apps/{}/users?limit=500", urlencode(app_id));
        let users = self
            .list_all::<wire::AppUser>(&path)
            .await
            .map_err(|e| failure(&format!("app {app_id} users"), &e))?;
        Ok(users
            .into_iter()
            .map(|u| {
                let scope = u.assignment_scope();
                (u.id, scope)
            })
            .collect())
    }

    pub(super) async fn read_members(&self, group_id: &str) -> Result<BTreeSet<String>, String> {
        let path = format!("/api/v1/groups/{}/users?limit=1000", urlencode(group_id));
        let members = self
            .list_all::<wire::Member>(&path)
            .await
            .map_err(|e| failure(&format!("members of group {group_id}"), &e))?;
        Ok(members.into_iter().map(|m| m.id).collect())
    }
}

pub(super) fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

impl OktaSource for OktaClient {
    async fn read(&self, request: ReadRequest<'_>) -> OktaSnapshot {
        self.read_full(request).await.0
    }
}

impl OktaClient {
    /// A full read, and Okta's clock when its users and groups listings began (for the
    /// incremental reads that follow it; `None` when a listing failed).
    ///
    /// Users (their own bucket) all along; meanwhile groups and the apps' group assignments
    /// and mappings, then, at once, the selected groups' members (the group bucket) and the
    /// apps' users (the apps bucket). The selection reads groups, app group assignments and
    /// mappings, never app users, so the two largest listings after users need not wait for
    /// each other: a full read takes about as long as its slowest bucket, not the sum of two.
    pub async fn read_full(&self, request: ReadRequest<'_>) -> (OktaSnapshot, ServerMarks) {
        let read_started_at = crate::store::now_millis();
        // Users come out of `groups_then_members`, which needs them for `on_users_read`.
        let (users_tx, users_rx) = tokio::sync::oneshot::channel();
        let users = async move {
            let _ = users_tx.send(self.read_users().await);
        };
        let groups_then_members = async {
            let (early, wanted_rx) = EarlySelection::new(request.select_groups);
            let members = stream::unfold(wanted_rx, |mut wanted| async move {
                wanted.recv().await.map(|group_id| (group_id, wanted))
            })
            .map(|group_id| async move {
                let members = self.read_members(&group_id).await;
                (group_id, members)
            })
            .buffer_unordered(MEMBER_CONCURRENCY)
            .collect::<Vec<(String, Result<BTreeSet<String>, String>)>>();
            let groups = self.read_groups(Some(&early));
            let app_groups = async {
                let mut apps = BTreeMap::new();
                let mut failures = Vec::new();
                for app_id in &request.app_ids {
                    let push = request.push_mapping_app_ids.contains(app_id);
                    match self.read_app_groups(app_id, push, Some(&early)).await {
                        Ok(app) => {
                            apps.insert(app_id.clone(), app);
                        }
                        Err(f) => failures.push(f),
                    }
                }
                (apps, failures)
            };
            let listings_then_app_users = async {
                let mut snapshot = OktaSnapshot::default();
                let mut failures = Vec::new();
                let (groups, (apps, app_failures)) = tokio::join!(groups, app_groups);
                let mut groups_at = None;
                match groups {
                    Ok((groups, at)) => {
                        snapshot.groups = groups;
                        groups_at = at;
                    }
                    Err(f) => failures.push(f),
                }
                snapshot.apps = apps;
                failures.extend(app_failures);
                // The selection on the complete listings is the one that counts.
                let wanted = (request.select_groups)(&snapshot);
                early.finish(&wanted);
                // Only for the apps whose groups were read: an app is in the snapshot whole or not
                // at all.
                let app_ids: Vec<String> = snapshot.apps.keys().cloned().collect();
                let app_users = async {
                    let mut read = Vec::new();
                    for app_id in app_ids {
                        let users = self.read_app_users(&app_id).await;
                        read.push((app_id, users));
                    }
                    // Usually long done: users have a bucket of their own.
                    let users = users_rx
                        .await
                        .unwrap_or_else(|_| Err("users: the listing was abandoned".into()));
                    if let (Some(on_users_read), Ok((users, _))) = (request.on_users_read, &users)
                        && read.len() == request.app_ids.len()
                        && read.iter().all(|(_, assigned)| assigned.is_ok())
                    {
                        on_users_read(&UsersRead {
                            users,
                            assigned: read
                                .iter()
                                .filter_map(|(id, a)| a.as_ref().ok().map(|a| (id.as_str(), a)))
                                .collect(),
                            read_started_at,
                        });
                    }
                    (read, users)
                };
                let (app_users, users) = app_users.await;
                (snapshot, failures, groups_at, wanted, app_users, users)
            };
            let (members, (mut snapshot, mut failures, groups_at, wanted, app_users, users)) =
                tokio::join!(members, listings_then_app_users);
            for (group_id, members) in members {
                if !wanted.contains(&group_id) {
                    // Selected from part of the listings only.
                    continue;
                }
                match members {
                    Ok(members) => {
                        snapshot.group_members.insert(group_id, members);
                    }
                    Err(f) => failures.push(f),
                }
            }
            for (app_id, users) in app_users {
                match users {
                    Ok(users) => {
                        if let Some(app) = snapshot.apps.get_mut(&app_id) {
                            app.users = users;
                        }
                    }
                    Err(f) => {
                        snapshot.apps.remove(&app_id);
                        failures.push(f);
                    }
                }
            }
            (snapshot, failures, groups_at, users)
        };
        let ((), (mut snapshot, mut failures, groups_at, users)) =
            tokio::join!(users, groups_then_members);
        let mut users_at = None;
        match users {
            Ok((users, at)) => {
                snapshot.users = users;
                users_at = at;
            }
            Err(f) => failures.insert(0, f),
        }
        snapshot.complete = failures.is_empty();
        snapshot.failures = failures;
        snapshot.read_started_at = read_started_at;
        (
            snapshot,
            ServerMarks {
                users_at,
                groups_at,
            },
        )
    }
}

/// The group selection made while groups and the apps' group assignments (and push
/// mappings) are still being listed: after every page, the selection on what has arrived so
/// far, and each group it names for the first time has its members read at once. The member
/// listings (a bucket of their own, the slowest) then start a page into the read rather than
/// after the last page of the apps bucket. The selection is made once more on the complete
/// listings and only its groups are kept: a selection that is not monotone in what is
/// listed costs calls, never a wrong snapshot (every selection oktasync makes is monotone).
pub(super) struct EarlySelection<'r> {
    select: GroupSelection<'r>,
    partial: Mutex<Partial>,
}

struct Partial {
    /// What is listed so far.
    snapshot: OktaSnapshot,
    /// The groups whose members are being read.
    started: BTreeSet<String>,
    /// Where they are started; gone once the final selection is made.
    start: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Partial {
    fn start_new(&mut self, selected: impl IntoIterator<Item = String>) {
        let Some(start) = &self.start else {
            return;
        };
        for group_id in selected {
            if self.started.insert(group_id.clone()) {
                // The receiver lives as long as the read.
                let _ = start.send(group_id);
            }
        }
    }
}

impl<'r> EarlySelection<'r> {
    fn new(select: GroupSelection<'r>) -> (Self, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (start, started) = tokio::sync::mpsc::unbounded_channel();
        let early = Self {
            select,
            partial: Mutex::new(Partial {
                snapshot: OktaSnapshot::default(),
                started: BTreeSet::new(),
                start: Some(start),
            }),
        };
        (early, started)
    }

    /// Adds a page to what is listed so far and starts the groups it newly selects.
    fn listed(&self, add: impl FnOnce(&mut OktaSnapshot)) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        add(&mut partial.snapshot);
        let selected = (self.select)(&partial.snapshot);
        partial.start_new(selected);
    }

    /// The final selection: starts what is not started yet and ends the queue.
    fn finish(&self, wanted: &BTreeSet<String>) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        partial.start_new(wanted.iter().cloned());
        partial.start = None;
        partial.snapshot = OktaSnapshot::default();
    }
}
