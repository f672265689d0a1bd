//! The in-memory Okta org: users, groups, apps (assignments and push mappings) and the System
//! Log, with the indexes every listing pages from.
//!
//! Everything is keyed by id in `BTreeMap`s/`BTreeSet`s because Okta pages in ascending id
//! order with the last id as the cursor: a page is a range scan from the cursor, never a full
//! scan. App assignments are materialised per app (`App::users`) with a direct flag and a
//! count of granting groups, so `scope` (USER or GROUP) and removals are O(1) per change.

mod app_ops;
mod assign;
pub mod generate;
mod group_ops;
mod mutate;
mod user_ops;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use user_ops::{LifecycleOp, NewUser, UserPatch};

use crate::filter::{Field, Record};
use crate::ids;
use crate::syslog::EventLog;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Staged,
    Provisioned,
    Suspended,
    Deprovisioned,
    LockedOut,
    PasswordExpired,
    Recovery,
}

impl UserStatus {
    pub const ALL: [UserStatus; 8] = [
        UserStatus::Active,
        UserStatus::Staged,
        UserStatus::Provisioned,
        UserStatus::Suspended,
        UserStatus::Deprovisioned,
        UserStatus::LockedOut,
        UserStatus::PasswordExpired,
        UserStatus::Recovery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "ACTIVE",
            UserStatus::Staged => "STAGED",
            UserStatus::Provisioned => "PROVISIONED",
            UserStatus::Suspended => "SUSPENDED",
            UserStatus::Deprovisioned => "DEPROVISIONED",
            UserStatus::LockedOut => "LOCKED_OUT",
            UserStatus::PasswordExpired => "PASSWORD_EXPIRED",
            UserStatus::Recovery => "RECOVERY",
        }
    }

    pub fn parse(s: &str) -> Option<UserStatus> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub status: UserStatus,
    /// Epoch seconds; Okta's entity timestamps have whole seconds.
    pub created: i64,
    pub activated: Option<i64>,
    pub status_changed: Option<i64>,
    pub last_login: Option<i64>,
    pub last_updated: i64,
    pub password_changed: Option<i64>,
    pub login: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    /// Ids of the groups the user is a member of.
    pub groups: BTreeSet<String>,
}

impl User {
    /// "First Last" as Okta shows users in log targets.
    pub fn full_name(&self) -> String {
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => format!("{f} {l}"),
            (Some(n), None) | (None, Some(n)) => n.clone(),
            (None, None) => self.login.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created: i64,
    /// Moves on profile (name/description) changes only.
    pub last_updated: i64,
    /// Moves on membership changes only.
    pub last_membership_updated: i64,
    pub members: BTreeSet<String>,
    /// Ids of the apps this group is assigned to.
    pub apps: BTreeSet<String>,
}

/// One user's effective assignment to an app.
#[derive(Debug, Clone)]
pub struct AppUser {
    /// Directly assigned (scope USER).
    pub direct: bool,
    /// Number of assigned groups the user is a member of (scope GROUP when not direct).
    pub via_groups: u32,
    pub created: i64,
    pub last_updated: i64,
    pub status_changed: i64,
    /// PROVISIONED with syncState SYNCHRONIZED, else ACTIVE with syncState DISABLED (SSO only).
    pub provisioned: bool,
}

#[derive(Debug, Clone)]
pub struct GroupAssignment {
    pub priority: u32,
    pub last_updated: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    Active,
    Inactive,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Active => "ACTIVE",
            PushStatus::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<PushStatus> {
        match s {
            "ACTIVE" => Some(PushStatus::Active),
            "INACTIVE" => Some(PushStatus::Inactive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PushMapping {
    pub id: String,
    pub source_group_id: String,
    pub target_group_id: String,
    pub status: PushStatus,
    pub created: i64,
    pub last_updated: i64,
    pub last_push: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    /// Position in `Options::app_ids`; part of derived `0ua…` app-user ids.
    pub index: usize,
    pub label: String,
    /// Effective assignments by user id.
    pub users: BTreeMap<String, AppUser>,
    /// Group assignments by group id.
    pub groups: BTreeMap<String, GroupAssignment>,
    /// Push mappings by mapping id.
    pub push: BTreeMap<String, PushMapping>,
}

impl App {
    pub fn mapping_for_group(&self, group_id: &str) -> Option<&PushMapping> {
        self.push.values().find(|m| m.source_group_id == group_id)
    }
}

#[derive(Debug)]
pub struct World {
    pub users: BTreeMap<String, User>,
    /// Lowercased login → user id (logins are unique regardless of case).
    pub logins: HashMap<String, String>,
    pub groups: BTreeMap<String, Group>,
    /// Lowercased group name → group id.
    pub group_names: HashMap<String, String>,
    pub apps: BTreeMap<String, App>,
    pub log: EventLog,
    pub(crate) seed: u64,
    pub(crate) next_user: u64,
    pub(crate) next_group: u64,
    pub(crate) next_mapping: u64,
}

impl World {
    pub fn empty(seed: u64) -> World {
        World {
            users: BTreeMap::new(),
            logins: HashMap::new(),
            groups: BTreeMap::new(),
            group_names: HashMap::new(),
            apps: BTreeMap::new(),
            log: EventLog::new(seed),
            seed,
            next_user: 0,
            next_group: 0,
            next_mapping: 0,
        }
    }

    /// `GET /api/v1/users/{idOrLogin}`: by id, else by login (case-insensitive).
    pub fn find_user(&self, id_or_login: &str) -> Option<&User> {
        self.users.get(id_or_login).or_else(|| {
            self.logins
                .get(&id_or_login.to_lowercase())
                .and_then(|id| self.users.get(id))
        })
    }

    /// An app user's id as System Log `AppUser` targets carry it.
    pub fn app_user_id(app: &App, user_id: &str) -> String {
        ids::app_user_id(user_id, app.index)
    }
}

fn opt_time(t: Option<i64>) -> Field<'static> {
    t.map_or(Field::Null, |s| Field::Time(s.saturating_mul(1000)))
}

fn opt_str(s: &Option<String>) -> Field<'_> {
    s.as_deref().map_or(Field::Null, Field::Str)
}

impl Record for User {
    fn field(&self, attr: &str) -> Field<'_> {
        match attr {
            "id" => Field::Str(&self.id),
            "status" => Field::Str(self.status.as_str()),
            "created" => opt_time(Some(self.created)),
            "activated" => opt_time(self.activated),
            "statusChanged" => opt_time(self.status_changed),
            "lastLogin" => opt_time(self.last_login),
            "lastUpdated" => opt_time(Some(self.last_updated)),
            "passwordChanged" => opt_time(self.password_changed),
            "type.id" => Field::Str(ids::USER_TYPE_ID),
            "profile.login" => Field::Str(&self.login),
            "profile.email" => Field::Str(&self.email),
            "profile.firstName" => opt_str(&self.first_name),
            "profile.lastName" => opt_str(&self.last_name),
            "profile.displayName" => opt_str(&self.display_name),
            _ => Field::Null,
        }
    }
}

impl Record for Group {
    fn field(&self, attr: &str) -> Field<'_> {
        match attr {
            "id" => Field::Str(&self.id),
            "type" => Field::Str("OKTA_GROUP"),
            "created" => opt_time(Some(self.created)),
            "lastUpdated" => opt_time(Some(self.last_updated)),
            "lastMembershipUpdated" => opt_time(Some(self.last_membership_updated)),
            "profile.name" => Field::Str(&self.name),
            "profile.description" => opt_str(&self.description),
            _ => Field::Null,
        }
    }
}
