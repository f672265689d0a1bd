//! The domain model shared by every layer: Okta's state as oktasync understands it, and the
//! workspace's state. No wire format lives here (no serde derives on purpose: `okta/` and the
//! store translate at their edges), and nothing here does IO.

use std::collections::{BTreeMap, BTreeSet};

/// An Okta user id (`00u…`), the anchor of a workspace user's identity.
pub type OktaUserId = String;
/// An Okta group id (`00g…`), the anchor of a pushed workspace group.
pub type OktaGroupId = String;
/// The id a workspace gives its own object (a UUID for the local target).
pub type WorkspaceObjectId = String;

/// Okta's user lifecycle statuses (`UserStatus`). Unknown future statuses are kept verbatim
/// and treated as out of scope, the conservative reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OktaUserStatus {
    Active,
    Staged,
    Provisioned,
    Recovery,
    PasswordExpired,
    LockedOut,
    Suspended,
    Deprovisioned,
    Other(String),
}

impl OktaUserStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "ACTIVE" => Self::Active,
            "STAGED" => Self::Staged,
            "PROVISIONED" => Self::Provisioned,
            "RECOVERY" => Self::Recovery,
            "PASSWORD_EXPIRED" => Self::PasswordExpired,
            "LOCKED_OUT" => Self::LockedOut,
            "SUSPENDED" => Self::Suspended,
            "DEPROVISIONED" => Self::Deprovisioned,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "ACTIVE",
            Self::Staged => "STAGED",
            Self::Provisioned => "PROVISIONED",
            Self::Recovery => "RECOVERY",
            Self::PasswordExpired => "PASSWORD_EXPIRED",
            Self::LockedOut => "LOCKED_OUT",
            Self::Suspended => "SUSPENDED",
            Self::Deprovisioned => "DEPROVISIONED",
            Self::Other(s) => s,
        }
    }

    /// Whether a user in this status keeps access to assigned apps. Okta push deactivates
    /// SUSPENDED and DEPROVISIONED users; the other statuses (including STAGED, PROVISIONED,
    /// LOCKED_OUT, RECOVERY, PASSWORD_EXPIRED) are still provisioned, as Okta push does.
    pub fn is_provisionable(&self) -> bool {
        !matches!(self, Self::Suspended | Self::Deprovisioned | Self::Other(_))
    }
}

/// The Okta profile attributes the default mapping reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OktaProfile {
    pub login: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaUser {
    pub id: OktaUserId,
    pub status: OktaUserStatus,
    pub profile: OktaProfile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaGroup {
    pub id: OktaGroupId,
    pub name: String,
}

/// How a user is assigned to an app (Okta's `AppUser.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentScope {
    User,
    Group,
}

/// One app's assignments, as listed by `/apps/{id}/users` and `/apps/{id}/groups`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppAssignments {
    pub users: BTreeMap<OktaUserId, AssignmentScope>,
    pub groups: BTreeSet<OktaGroupId>,
    /// Source groups of the app's ACTIVE group-push mappings (read only when needed).
    pub push_mappings: BTreeSet<OktaGroupId>,
}

/// What one read of Okta produced. `complete` is true only when every page of every
/// listing succeeded: the engine never removes anything on the strength of an incomplete one.
#[derive(Debug, Clone, Default)]
pub struct OktaSnapshot {
    pub users: BTreeMap<OktaUserId, OktaUser>,
    pub groups: BTreeMap<OktaGroupId, OktaGroup>,
    /// Members of the groups whose membership was read (pushed groups only).
    pub group_members: BTreeMap<OktaGroupId, BTreeSet<OktaUserId>>,
    /// Assignments per Okta app id.
    pub apps: BTreeMap<String, AppAssignments>,
    pub complete: bool,
    /// When the read began (epoch ms): changes pushed over SCIM after it win over it.
    pub read_started_at: i64,
    /// Human-readable reasons the read is incomplete (listing and error), empty when complete.
    pub failures: Vec<String>,
}

/// The workspace-side attributes of a user, after mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct UserAttributes {
    pub user_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: String,
    pub email: Option<String>,
}

/// A user as the workspace holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceUser {
    pub id: WorkspaceObjectId,
    /// Set when oktasync manages this object (created or adopted it): the Okta anchor.
    pub okta_id: Option<OktaUserId>,
    /// The SCIM externalId the workspace stores, used to match pre-existing objects.
    pub external_id: Option<String>,
    pub attributes: UserAttributes,
    pub active: bool,
    /// When a SCIM client last wrote this user (epoch ms): a pull whose Okta read began
    /// earlier must not revert that write.
    pub pushed_at: Option<i64>,
}

impl WorkspaceUser {
    pub fn is_managed(&self) -> bool {
        self.okta_id.is_some()
    }
}

/// A group as the workspace holds it. `members` are workspace user ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceGroup {
    pub id: WorkspaceObjectId,
    /// Set while the group is pushed from this Okta group.
    pub okta_group_id: Option<OktaGroupId>,
    pub display_name: String,
    pub members: BTreeSet<WorkspaceObjectId>,
    /// When a SCIM client last wrote this group (epoch ms).
    pub pushed_at: Option<i64>,
}

/// Everything the workspace holds, as last known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceState {
    pub users: Vec<WorkspaceUser>,
    pub groups: Vec<WorkspaceGroup>,
}
