//! Incremental reads: bring a complete earlier snapshot up to date with the fewest calls.
//! Users come back by `lastUpdated gt`, groups by `lastUpdated` or `lastMembershipUpdated
//! gt` (memberships re-read only for pushed groups whose membership moved), and what neither
//! timestamp shows (deletions, app assignments by user and by group, group-push mappings)
//! from the System Log, polled by following its `next` link verbatim. Watermarks are Okta's
//! own clock (`Date` of the first page) minus an overlap window: Okta's timestamps are whole
//! seconds and its listings are eventually consistent, so the window re-reads the last
//! moments before each watermark instead of trusting them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::OktaClient;
use super::source::{MEMBER_CONCURRENCY, ServerMarks, failure, urlencode};
use super::wire;
use crate::model::{AssignmentScope, OktaGroup, OktaSnapshot, OktaUser};
use crate::reconcile::ports::ReadRequest;

/// System Log page size (Okta's maximum).
const LOG_LIMIT: usize = 1000;
/// App users re-read one by one at most this many at once.
const APP_USER_CONCURRENCY: usize = 4;

/// The events whose effect no timestamp shows. Profile and lifecycle changes are not asked
/// for: `lastUpdated` already brings those users back, and a busy org's log would otherwise
/// cost pages.
const LOG_FILTER: &str = concat!(
    r#"eventType eq "user.lifecycle.delete.completed""#,
    r#" or eventType eq "group.lifecycle.delete""#,
    r#" or eventType sw "application.user_membership.""#,
    r#" or eventType sw "group.application_assignment.""#,
    r#" or eventType sw "application.provision.group_push.mapping.""#,
);

/// Where the next incremental read resumes. Stored as JSON between cycles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Okta's clock (epoch seconds) when the last users listing began.
    pub users_at: i64,
    /// Okta's clock when the last groups listing began.
    pub groups_at: i64,
    /// The System Log polling URL to follow next, exactly as Okta returned it.
    pub log_next: String,
}

impl Checkpoint {
    /// The checkpoint a complete full read leaves: timestamps from its first pages (local
    /// time when a response had no `Date`), the log polled from the earlier of the two minus
    /// the overlap, so an event during the full read is seen again rather than missed.
    pub fn after_full_read(marks: ServerMarks, overlap: Duration) -> Self {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let users_at = marks.users_at.map_or(now, as_i64);
        let groups_at = marks.groups_at.map_or(now, as_i64);
        let since = iso(users_at.min(groups_at) - overlap_secs(overlap));
        let log_next = format!(
            "/api/v1/logs?since={}&sortOrder=ASCENDING&limit={LOG_LIMIT}&filter={}",
            query(&since),
            query(LOG_FILTER)
        );
        Self {
            users_at,
            groups_at,
            log_next,
        }
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn overlap_secs(overlap: Duration) -> i64 {
    as_i64(overlap.as_secs().max(1))
}

fn iso(epoch_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch_secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map(|s| s.replace('Z', ".000Z"))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

fn query(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
}

fn parse_iso(value: &str) -> Option<i64> {
    OffsetDateTime::parse(value, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// What the System Log says must be re-read.
#[derive(Debug, Default)]
struct LogEffects {
    deleted_users: BTreeSet<String>,
    deleted_groups: BTreeSet<String>,
    /// Per app: users whose assignment changed.
    app_users: BTreeMap<String, BTreeSet<String>>,
    /// Apps whose group assignments changed.
    app_groups: BTreeSet<String>,
    /// Apps whose group-push mappings changed (`None`: an event named no app).
    mappings: BTreeSet<Option<String>>,
}

impl LogEffects {
    fn record(&mut self, event: &wire::LogEvent) {
        let kind = event.event_type.as_str();
        let apps = || event.targets("AppInstance").map(str::to_owned);
        if kind == "user.lifecycle.delete.completed" {
            self.deleted_users
                .extend(event.targets("User").map(str::to_owned));
        } else if kind == "group.lifecycle.delete" {
            self.deleted_groups
                .extend(event.targets("UserGroup").map(str::to_owned));
        } else if kind.starts_with("application.user_membership.") {
            for app in apps() {
                self.app_users
                    .entry(app)
                    .or_default()
                    .extend(event.targets("User").map(str::to_owned));
            }
        } else if kind.starts_with("group.application_assignment.") {
            self.app_groups.extend(apps());
        } else if kind.starts_with("application.provision.group_push.mapping.") {
            let named: Vec<String> = apps().collect();
            if named.is_empty() {
                self.mappings.insert(None);
            }
            self.mappings.extend(named.into_iter().map(Some));
        }
    }

    fn mappings_changed(&self, app_id: &str) -> bool {
        self.mappings.contains(&None) || self.mappings.contains(&Some(app_id.to_owned()))
    }
}

/// What one incremental read learnt, before it is merged into the base snapshot.
struct Changes {
    users: Vec<OktaUser>,
    /// Changed groups, and whether their membership moved within the window.
    groups: Vec<(OktaGroup, bool)>,
    log: LogEffects,
    log_next: String,
    users_at: Option<u64>,
    groups_at: Option<u64>,
}

impl OktaClient {
    /// Brings `base` (a complete snapshot) up to date from `checkpoint`. Returns the merged
    /// snapshot and, when every listing succeeded, the checkpoint to resume from next time.
    /// An incomplete read still merges what it read (the engine removes nothing on its
    /// strength) and returns no checkpoint, so the next read starts from the old one again.
    pub async fn read_changes(
        &self,
        mut base: OktaSnapshot,
        checkpoint: &Checkpoint,
        overlap: Duration,
        request: ReadRequest<'_>,
    ) -> (OktaSnapshot, Option<Checkpoint>) {
        base.read_started_at = crate::store::now_millis();
        base.complete = true;
        base.failures.clear();
        let mut failures = Vec::new();
        let changes = match self.read_change_lists(checkpoint, overlap).await {
            Ok(changes) => Some(changes),
            Err(f) => {
                failures.extend(f);
                None
            }
        };
        let mut membership_moved = BTreeSet::new();
        let mut effects = LogEffects::default();
        let mut resume = None;
        if let Some(changes) = changes {
            for user in changes.users {
                base.users.insert(user.id.clone(), user);
            }
            for (group, moved) in changes.groups {
                if moved {
                    membership_moved.insert(group.id.clone());
                }
                base.groups.insert(group.id.clone(), group);
            }
            effects = changes.log;
            resume = Some((changes.log_next, changes.users_at, changes.groups_at));
        }
        forget_deleted(&mut base, &effects);
        failures.extend(self.reread_apps(&mut base, &effects, &request).await);
        let wanted = (request.select_groups)(&base);
        base.group_members.retain(|g, _| wanted.contains(g));
        let to_read: Vec<String> = wanted
            .iter()
            .filter(|g| membership_moved.contains(*g) || !base.group_members.contains_key(*g))
            .cloned()
            .collect();
        let members = stream::iter(to_read)
            .map(|group_id| async move {
                let members = self.read_members(&group_id).await;
                (group_id, members)
            })
            .buffer_unordered(MEMBER_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (group_id, members) in members {
            match members {
                Ok(members) => {
                    base.group_members.insert(group_id, members);
                }
                Err(f) => {
                    // Stale members would be wrong in both directions: read them again
                    // next time, and let this cycle remove nothing.
                    base.group_members.remove(&group_id);
                    failures.push(f);
                }
            }
        }
        base.complete = failures.is_empty();
        base.failures = failures;
        let next = match resume {
            Some((log_next, users_at, groups_at)) if base.complete => Some(Checkpoint {
                users_at: users_at.map_or(checkpoint.users_at, as_i64),
                groups_at: groups_at.map_or(checkpoint.groups_at, as_i64),
                log_next,
            }),
            _ => None,
        };
        (base, next)
    }

    /// Changed users, changed groups and the log, concurrently (three buckets).
    async fn read_change_lists(
        &self,
        checkpoint: &Checkpoint,
        overlap: Duration,
    ) -> Result<Changes, Vec<String>> {
        let window = overlap_secs(overlap);
        let users_since = iso(checkpoint.users_at - window);
        let groups_since = iso(checkpoint.groups_at - window);
        let users_path = format!(
            "/api/v1/users?limit=200&filter={}",
            query(&format!(r#"lastUpdated gt "{users_since}""#))
        );
        let groups_path = format!(
            "/api/v1/groups?limit=200&filter={}",
            query(&format!(
                r#"lastUpdated gt "{groups_since}" or lastMembershipUpdated gt "{groups_since}""#
            ))
        );
        let (users, groups, log) = tokio::join!(
            self.list_all_dated::<wire::User>(&users_path),
            self.list_all_dated::<wire::Group>(&groups_path),
            self.poll_log(&checkpoint.log_next),
        );
        let mut failures = Vec::new();
        let users = users
            .map_err(|e| failures.push(failure("changed users", &e)))
            .ok();
        let groups = groups
            .map_err(|e| failures.push(failure("changed groups", &e)))
            .ok();
        let log = log.map_err(|f| failures.push(f)).ok();
        let (Some(users), Some(groups), Some((log, log_next))) = (users, groups, log) else {
            return Err(failures);
        };
        let threshold = checkpoint.groups_at - window;
        Ok(Changes {
            users: users.items.into_iter().map(OktaUser::from).collect(),
            groups: groups
                .items
                .into_iter()
                .map(|g| {
                    let moved = g
                        .last_membership_updated
                        .as_deref()
                        .and_then(parse_iso)
                        .is_none_or(|t| t > threshold);
                    (OktaGroup::from(g), moved)
                })
                .collect(),
            log,
            log_next,
            users_at: users.server_epoch,
            groups_at: groups.server_epoch,
        })
    }

    /// Follows the log's `next` links until a page is not full; returns the effects and the
    /// link to follow next time (a polling request always has one, even on an empty page).
    async fn poll_log(&self, from: &str) -> Result<(LogEffects, String), String> {
        let mut url = self.url(from).map_err(|e| failure("System Log", &e))?;
        let mut effects = LogEffects::default();
        loop {
            let page = self
                .get_page::<wire::LogEvent>(&url)
                .await
                .map_err(|e| failure("System Log", &e))?;
            for event in &page.items {
                effects.record(event);
            }
            let full = page.items.len() >= LOG_LIMIT;
            match page.next {
                Some(next) if full => url = next,
                Some(next) => return Ok((effects, relative(&next))),
                // Not a polling answer: ask the same again next time.
                None => return Ok((effects, relative(&url))),
            }
        }
    }

    /// Re-reads, per app, what the log says changed: group assignments, push mappings, and
    /// the assignment of each named user (one by one, or the whole listing when that takes
    /// fewer calls). Returns the failures.
    async fn reread_apps(
        &self,
        snapshot: &mut OktaSnapshot,
        effects: &LogEffects,
        request: &ReadRequest<'_>,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for app_id in &request.app_ids {
            let push = request.push_mapping_app_ids.contains(app_id);
            let groups_changed = effects.app_groups.contains(app_id);
            let mappings_changed = push && effects.mappings_changed(app_id);
            if groups_changed || mappings_changed {
                match self.read_app_groups(app_id, push, None).await {
                    Ok(read) => {
                        let app = snapshot.apps.entry(app_id.clone()).or_default();
                        app.groups = read.groups;
                        if push {
                            app.push_mappings = read.push_mappings;
                        }
                    }
                    Err(f) => failures.push(f),
                }
            }
            let Some(changed) = effects.app_users.get(app_id) else {
                continue;
            };
            let assigned = snapshot.apps.get(app_id).map_or(0, |a| a.users.len());
            let listing_calls = assigned.div_ceil(500).max(1);
            if changed.len() > listing_calls {
                match self.read_app_users(app_id).await {
                    Ok(users) => snapshot.apps.entry(app_id.clone()).or_default().users = users,
                    Err(f) => failures.push(f),
                }
                continue;
            }
            let app_path = urlencode(app_id);
            let looked_up = stream::iter(changed.iter().cloned())
                .map(|user_id| {
                    let path = format!("/api/v1/apps/{app_path}/users/{}", urlencode(&user_id));
                    async move {
                        let found = self.get_object::<wire::AppUser>(&path).await;
                        (user_id, found)
                    }
                })
                .buffer_unordered(APP_USER_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            let app = snapshot.apps.entry(app_id.clone()).or_default();
            for (user_id, found) in looked_up {
                match found {
                    Ok(Some(au)) => {
                        let scope: AssignmentScope = au.assignment_scope();
                        app.users.insert(user_id, scope);
                    }
                    Ok(None) => {
                        app.users.remove(&user_id);
                    }
                    Err(e) => failures.push(failure(&format!("app {app_id} user {user_id}"), &e)),
                }
            }
        }
        failures
    }
}

/// Deleted users and groups vanish from every listing; only the log says so.
fn forget_deleted(snapshot: &mut OktaSnapshot, effects: &LogEffects) {
    for user in &effects.deleted_users {
        snapshot.users.remove(user);
        for members in snapshot.group_members.values_mut() {
            members.remove(user);
        }
        for app in snapshot.apps.values_mut() {
            app.users.remove(user);
        }
    }
    for group in &effects.deleted_groups {
        snapshot.groups.remove(group);
        snapshot.group_members.remove(group);
        for app in snapshot.apps.values_mut() {
            app.groups.remove(group);
            app.push_mappings.remove(group);
        }
    }
}

/// A `next` link as a path and query: the origin is the org's (the client refuses others).
fn relative(url: &reqwest::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_are_okta_timestamps_with_milliseconds() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(parse_iso("2023-11-14T22:13:20.000Z"), Some(1_700_000_000));
    }

    #[test]
    fn a_full_read_starts_the_log_before_its_first_page() {
        let marks = ServerMarks {
            users_at: Some(1_700_000_100),
            groups_at: Some(1_700_000_000),
        };
        let cp = Checkpoint::after_full_read(marks, Duration::from_secs(60));
        assert_eq!(cp.users_at, 1_700_000_100);
        assert_eq!(cp.groups_at, 1_700_000_000);
        assert!(cp.log_next.starts_with("/api/v1/logs?since=2023-11-14T22%3A12%3A20.000Z&sortOrder=ASCENDING&limit=1000&filter="), "{}", cp.log_next);
    }

    fn event(kind: &str, targets: &[(&str, &str)]) -> wire::LogEvent {
        wire::LogEvent {
            event_type: kind.to_owned(),
            target: Some(
                targets
                    .iter()
                    .map(|(kind, id)| wire::LogTarget {
                        id: (*id).to_owned(),
                        kind: (*kind).to_owned(),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn log_events_map_to_targeted_rereads() {
        let mut effects = LogEffects::default();
        effects.record(&event(
            "application.user_membership.add",
            &[
                ("AppUser", "0ua1"),
                ("AppInstance", "0oa1"),
                ("User", "00u1"),
            ],
        ));
        effects.record(&event(
            "user.lifecycle.delete.completed",
            &[("User", "00u2")],
        ));
        effects.record(&event("group.lifecycle.delete", &[("UserGroup", "00g1")]));
        effects.record(&event(
            "group.application_assignment.remove",
            &[("UserGroup", "00g2"), ("AppInstance", "0oa1")],
        ));
        effects.record(&event(
            "application.provision.group_push.mapping.created",
            &[("AppInstance", "0oa2"), ("UserGroup", "00g3")],
        ));
        effects.record(&event("user.account.update_profile", &[("User", "00u3")]));
        assert_eq!(
            effects.app_users["0oa1"],
            BTreeSet::from(["00u1".to_owned()])
        );
        assert_eq!(effects.deleted_users, BTreeSet::from(["00u2".to_owned()]));
        assert_eq!(effects.deleted_groups, BTreeSet::from(["00g1".to_owned()]));
        assert_eq!(effects.app_groups, BTreeSet::from(["0oa1".to_owned()]));
        assert!(effects.mappings_changed("0oa2"));
        assert!(!effects.mappings_changed("0oa1"));
    }
}
