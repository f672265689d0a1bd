//! The System Log: the append-only event store admin changes write to, and the query
//! semantics of `GET /api/v1/logs` (polling versus bounded requests, `<epochMillis>_<seq>`
//! cursors).
//!
//! Events are kept in persistence order (`seq`). A *polling* request (no `until`, ascending)
//! walks that order from the cursor and always gets a `next` link, even on an empty page, so
//! a client can keep following it; a *bounded* request (with `until`, or descending) is sorted
//! by `published` and ends with no `next` link.

use std::fmt;

use crate::filter::{Compiled, Field, Record};
use crate::ids;

/// The event types the fake emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    UserCreate,
    UserActivate,
    UserReactivate,
    UserDeactivate,
    UserSuspend,
    UserUnsuspend,
    UserUnlock,
    UserDeleteInitiated,
    UserDeleteCompleted,
    UserUpdateProfile,
    GroupCreate,
    GroupDelete,
    GroupProfileUpdate,
    GroupMemberAdd,
    GroupMemberRemove,
    AppUserAdd,
    AppUserRemove,
    GroupAppAssignAdd,
    GroupAppAssignRemove,
    PushMappingCreated,
    PushMappingUpdated,
    PushMappingRemoved,
}

impl EventType {
    pub fn name(self) -> &'static str {
        use EventType::*;
        match self {
            UserCreate => "user.lifecycle.create",
            UserActivate => "user.lifecycle.activate",
            UserReactivate => "user.lifecycle.reactivate",
            UserDeactivate => "user.lifecycle.deactivate",
            UserSuspend => "user.lifecycle.suspend",
            UserUnsuspend => "user.lifecycle.unsuspend",
            UserUnlock => "user.account.unlock_by_admin",
            UserDeleteInitiated => "user.lifecycle.delete.initiated",
            UserDeleteCompleted => "user.lifecycle.delete.completed",
            UserUpdateProfile => "user.account.update_profile",
            GroupCreate => "group.lifecycle.create",
            GroupDelete => "group.lifecycle.delete",
            GroupProfileUpdate => "group.profile.update",
            GroupMemberAdd => "group.user_membership.add",
            GroupMemberRemove => "group.user_membership.remove",
            AppUserAdd => "application.user_membership.add",
            AppUserRemove => "application.user_membership.remove",
            GroupAppAssignAdd => "group.application_assignment.add",
            GroupAppAssignRemove => "group.application_assignment.remove",
            PushMappingCreated => "application.provision.group_push.mapping.created",
            PushMappingUpdated => "application.provision.group_push.mapping.updated",
            PushMappingRemoved => "application.provision.group_push.mapping.removed",
        }
    }

    pub fn display_message(self) -> &'static str {
        use EventType::*;
        match self {
            UserCreate => "Create Okta user",
            UserActivate => "Activate Okta user",
            UserReactivate => "Reactivate Okta user",
            UserDeactivate => "Deactivate Okta user",
            UserSuspend => "Suspend Okta user",
            UserUnsuspend => "Unsuspend Okta user",
            UserUnlock => "Unlock user account by admin",
            UserDeleteInitiated => "Delete Okta user initiated",
            UserDeleteCompleted => "Delete Okta user completed",
            UserUpdateProfile => "Update user profile for Okta",
            GroupCreate => "Create okta user group",
            GroupDelete => "Delete okta user group",
            GroupProfileUpdate => "Update group profile",
            GroupMemberAdd => "Add user to group membership",
            GroupMemberRemove => "Remove user from group membership",
            AppUserAdd => "Add user to application membership",
            AppUserRemove => "Remove user from application membership",
            GroupAppAssignAdd => "Add assigned application to group",
            GroupAppAssignRemove => "Remove assigned application from group",
            PushMappingCreated => "Group push mapping created",
            PushMappingUpdated => "Group push mapping updated",
            PushMappingRemoved => "Group push mapping removed",
        }
    }
}

/// One entry of an event's `target` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// `User`, `UserGroup`, `AppInstance`, `AppUser`.
    pub kind: &'static str,
    pub alternate_id: String,
    pub display_name: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub published_ms: i64,
    pub uuid: String,
    pub event_type: EventType,
    pub targets: Vec<Target>,
}

impl Event {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            ms: self.published_ms,
            seq: self.seq,
        }
    }
}

/// The fake admin every event is attributed to.
pub const ACTOR_ID: &str = "00ufake0admin000001";
pub const ACTOR_LOGIN: &str = "admin@example.com";

impl Record for Event {
    fn field(&self, attr: &str) -> Field<'_> {
        match attr {
            "uuid" => Field::Str(&self.uuid),
            "eventType" => Field::Str(self.event_type.name()),
            "displayMessage" => Field::Str(self.event_type.display_message()),
            "severity" => Field::Str("INFO"),
            "version" => Field::Str("0"),
            "outcome.result" => Field::Str("SUCCESS"),
            "actor.id" => Field::Str(ACTOR_ID),
            "actor.type" => Field::Str("User"),
            "actor.alternateId" => Field::Str(ACTOR_LOGIN),
            "actor.displayName" => Field::Str("Fake Admin"),
            _ => Field::Null,
        }
    }

    fn any_field(&self, attr: &str, pred: &mut dyn FnMut(Field<'_>) -> bool) -> bool {
        let pick: fn(&Target) -> &str = match attr {
            "target.id" => |t| &t.id,
            "target.type" => |t| t.kind,
            "target.alternateId" => |t| &t.alternate_id,
            "target.displayName" => |t| &t.display_name,
            _ => return pred(self.field(attr)),
        };
        self.targets.iter().any(|t| pred(Field::Str(pick(t))))
    }
}

/// The `after` cursor: `<epochMillis>_<seq>`; `seq` positions, `ms` orders bounded queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub ms: i64,
    pub seq: u64,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (ms, seq) = s.split_once('_')?;
        Some(Cursor {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.ms, self.seq)
    }
}

#[derive(Debug)]
pub struct EventLog {
    seed: u64,
    events: Vec<Event>,
}

/// What a `GET /api/v1/logs` request asks for, already validated.
#[derive(Debug)]
pub struct LogQuery<'a> {
    pub since_ms: i64,
    pub until_ms: Option<i64>,
    pub descending: bool,
    pub after: Option<Cursor>,
    pub limit: usize,
    pub filter: Option<&'a Compiled>,
    /// `q` keywords, lowercased; every one must occur in the event.
    pub keywords: &'a [String],
    /// The fake's now, the default `until` of a descending query.
    pub now_ms: i64,
}

#[derive(Debug)]
pub struct LogPage<'a> {
    pub events: Vec<&'a Event>,
    pub next: Option<Cursor>,
    /// Number of matching events before this page (for fault matching by page).
    pub position: usize,
}

impl EventLog {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            events: Vec::new(),
        }
    }

    pub fn push(&mut self, now_ms: i64, event_type: EventType, targets: Vec<Target>) {
        let seq = self.events.len() as u64 + 1;
        tracing::debug!(event_type = event_type.name(), seq, "system log event");
        self.events.push(Event {
            seq,
            published_ms: now_ms,
            uuid: ids::uuid(self.seed, seq),
            event_type,
            targets,
        });
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    fn matches(e: &Event, q: &LogQuery<'_>) -> bool {
        q.filter.is_none_or(|f| f.matches(e))
            && q.keywords.iter().all(|k| {
                e.event_type.name().contains(k.as_str())
                    || e.event_type
                        .display_message()
                        .to_lowercase()
                        .contains(k.as_str())
                    || e.targets.iter().any(|t| {
                        t.id.to_lowercase().contains(k.as_str())
                            || t.alternate_id.to_lowercase().contains(k.as_str())
                            || t.display_name.to_lowercase().contains(k.as_str())
                    })
            })
    }

    pub fn query<'a>(&'a self, q: &LogQuery<'_>) -> LogPage<'a> {
        if q.until_ms.is_none() && !q.descending {
            self.poll(q)
        } else {
            self.bounded(q)
        }
    }

    /// Persistence order from the cursor; `next` is always present.
    fn poll<'a>(&'a self, q: &LogQuery<'_>) -> LogPage<'a> {
        let start = q
            .after
            .map_or(0, |c| self.events.partition_point(|e| e.seq <= c.seq));
        // With a cursor the position is the cursor; `since` only seeds the first request.
        let in_scope = |e: &Event| q.after.is_some() || e.published_ms >= q.since_ms;
        let mut page = Vec::new();
        // The cursor resumes after the last event looked at: the last one returned when the
        // page filled up, else the newest (everything was scanned).
        let mut resume = q.after.unwrap_or(Cursor {
            ms: q.since_ms,
            seq: 0,
        });
        for e in &self.events[start..] {
            if page.len() >= q.limit {
                break;
            }
            resume = Cursor {
                ms: e.published_ms,
                seq: e.seq,
            };
            if in_scope(e) && Self::matches(e, q) {
                page.push(e);
            }
        }
        let next = Some(resume);
        let position = self.events[..start]
            .iter()
            .filter(|e| Self::matches(e, q))
            .count();
        LogPage {
            events: page,
            next,
            position,
        }
    }

    /// `published` order within [since, until); no `next` after the last page.
    fn bounded<'a>(&'a self, q: &LogQuery<'_>) -> LogPage<'a> {
        let until = q.until_ms.unwrap_or(q.now_ms.saturating_add(1));
        let mut all: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.published_ms >= q.since_ms && e.published_ms < until)
            .filter(|e| Self::matches(e, q))
            .collect();
        all.sort_by_key(|e| e.cursor());
        if q.descending {
            all.reverse();
        }
        let start = match q.after {
            None => 0,
            Some(c) if q.descending => all.partition_point(|e| e.cursor() >= c),
            Some(c) => all.partition_point(|e| e.cursor() <= c),
        };
        let end = start.saturating_add(q.limit).min(all.len());
        let page = all[start..end].to_vec();
        let next = if end < all.len() {
            page.last().map(|e| e.cursor())
        } else {
            None
        };
        LogPage {
            events: page,
            next,
            position: start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> EventLog {
        let mut log = EventLog::new(1);
        for i in 0..n {
            log.push(
                1_000_000 + i as i64 * 10,
                if i % 2 == 0 {
                    EventType::UserCreate
                } else {
                    EventType::GroupCreate
                },
                vec![],
            );
        }
        log
    }

    fn q(after: Option<Cursor>, until: Option<i64>, limit: usize) -> LogQuery<'static> {
        LogQuery {
            since_ms: 0,
            until_ms: until,
            descending: false,
            after,
            limit,
            filter: None,
            keywords: &[],
            now_ms: 2_000_000,
        }
    }

    #[test]
    fn polling_always_has_next_and_resumes() {
        let mut log = log_with(5);
        let p1 = log.query(&q(None, None, 3));
        assert_eq!(p1.events.len(), 3);
        let c1 = p1.next.unwrap();
        assert_eq!(c1.seq, 3);
        let p2 = log.query(&q(Some(c1), None, 3));
        assert_eq!(p2.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        let c2 = p2.next.unwrap();
        let p3 = log.query(&q(Some(c2), None, 3));
        assert!(p3.events.is_empty());
        let c3 = p3.next.unwrap();
        assert_eq!(c3, c2);
        log.push(3_000_000, EventType::GroupDelete, vec![]);
        let p4 = log.query(&q(Some(c3), None, 3));
        assert_eq!(p4.events.len(), 1);
        assert_eq!(p4.events[0].event_type, EventType::GroupDelete);
        assert_eq!(Cursor::parse(&c3.to_string()), Some(c3));
        // limit 0 returns nothing and does not move the cursor past unseen events
        let p5 = log.query(&q(Some(c3), None, 0));
        assert!(p5.events.is_empty());
        assert_eq!(log.query(&q(p5.next, None, 3)).events.len(), 1);
    }

    #[test]
    fn polling_from_since_on_empty_log_resumes_at_first_event() {
        let mut log = EventLog::new(1);
        let mut query = q(None, None, 10);
        query.since_ms = 500;
        let p = log.query(&query);
        let c = p.next.unwrap();
        log.push(600, EventType::UserCreate, vec![]);
        assert_eq!(log.query(&q(Some(c), None, 10)).events.len(), 1);
    }

    #[test]
    fn bounded_ends_without_next() {
        let log = log_with(5);
        let p1 = log.query(&q(None, Some(1_000_035), 2));
        assert_eq!(p1.events.len(), 2);
        let p2 = log.query(&q(p1.next, Some(1_000_035), 2));
        assert_eq!(p2.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(p2.position, 2);
        assert!(p2.next.is_none(), "event 5 is at the bound, excluded");
        let mut desc = q(None, None, 10);
        desc.descending = true;
        let d = log.query(&desc);
        assert_eq!(d.events[0].seq, 5);
        assert!(d.next.is_none());
    }

    #[test]
    fn filter_on_targets() {
        let mut log = EventLog::new(1);
        let t = Target {
            id: "00uX".into(),
            kind: "User",
            alternate_id: "a@example.com".into(),
            display_name: "A".into(),
        };
        log.push(1, EventType::UserCreate, vec![t]);
        log.push(2, EventType::GroupCreate, vec![]);
        let f = crate::filter::compile_str(r#"target.id eq "00uX""#, &crate::filter::LOG_FILTER)
            .unwrap();
        let mut query = q(None, None, 10);
        query.filter = Some(&f);
        assert_eq!(log.query(&query).events.len(), 1);
        let kw = vec!["group.lifecycle".to_string()];
        let mut query = q(None, None, 10);
        query.keywords = &kw;
        assert_eq!(log.query(&query).events[0].seq, 2);
    }
}
