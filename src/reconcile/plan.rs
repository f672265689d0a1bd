//! The plan: a pure diff of the desired workspace against the workspace as last known.
//! `plan()` does no IO, cannot fail and is deterministic (sorted output), so it is
//! property-tested and its result can be printed, held, approved and journaled.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashSet, HashSetExt};

use crate::model::{
    OktaGroupId, OktaUserId, UserAttributes, WorkspaceGroup, WorkspaceObjectId, WorkspaceState,
    WorkspaceUser,
};
use crate::reconcile::desired::{DesiredState, Exclusion};

/// How a pre-existing, unmanaged workspace user was matched to an Okta user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKey {
    ExternalId,
    UserName,
    Email,
}

impl MatchKey {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExternalId => "externalId",
            Self::UserName => "userName",
            Self::Email => "email",
        }
    }
}

/// Why a managed user is deactivated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeactivationReason {
    /// Okta knows the user but it is out of scope (unassigned or a non-provisionable status).
    Excluded(Exclusion),
    /// Okta no longer knows the user at all (deleted).
    Deleted,
}

/// A member removed from a pushed group: the workspace user, and its Okta anchor if managed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemovedMember {
    pub workspace_id: WorkspaceObjectId,
    pub okta_id: Option<OktaUserId>,
}

/// One typed operation. Users are referred to by their Okta id so that an operation can
/// depend on one created earlier in the same plan (group members of a new user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    CreateUser {
        okta_id: OktaUserId,
        attributes: UserAttributes,
    },
    AdoptUser {
        okta_id: OktaUserId,
        workspace_id: WorkspaceObjectId,
        matched_by: MatchKey,
        attributes: UserAttributes,
    },
    UpdateUser {
        okta_id: OktaUserId,
        workspace_id: WorkspaceObjectId,
        from: UserAttributes,
        to: UserAttributes,
    },
    DeactivateUser {
        okta_id: OktaUserId,
        workspace_id: WorkspaceObjectId,
        reason: DeactivationReason,
    },
    ReactivateUser {
        okta_id: OktaUserId,
        workspace_id: WorkspaceObjectId,
        attributes: UserAttributes,
    },
    CreateGroup {
        okta_group_id: OktaGroupId,
        display_name: String,
        /// An unmanaged workspace group with the same display name, linked instead of
        /// creating a second one (what Okta's group push does).
        adopt: Option<WorkspaceObjectId>,
    },
    RenameGroup {
        okta_group_id: OktaGroupId,
        workspace_id: WorkspaceObjectId,
        from: String,
        to: String,
    },
    AddMembers {
        okta_group_id: OktaGroupId,
        members: Vec<OktaUserId>,
    },
    RemoveMembers {
        okta_group_id: OktaGroupId,
        members: Vec<RemovedMember>,
    },
    UnlinkGroup {
        okta_group_id: OktaGroupId,
        workspace_id: WorkspaceObjectId,
        display_name: String,
        delete: bool,
    },
    /// A user written by a SCIM client (inbound SCIM): the whole document as it must be.
    PushUser(PushedObject),
    /// A group written by a SCIM client: the whole document, members included.
    PushGroup(PushedObject),
    /// A user deleted by a SCIM client.
    DeleteUser { workspace_id: WorkspaceObjectId },
    /// A group deleted by a SCIM client.
    DeleteGroup { workspace_id: WorkspaceObjectId },
}

/// An object written over inbound SCIM. The document is opaque to the engine (the SCIM
/// JSON the workspace keeps); `external_id` names where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedObject {
    pub workspace_id: WorkspaceObjectId,
    pub external_id: Option<String>,
    pub document: String,
    /// A POST: the object must not exist yet.
    pub create: bool,
    /// `If-Match`: the write applies only to this version.
    pub expected_version: Option<i64>,
    /// When the request arrived (Unix ms): the object's `meta.lastModified`, and
    /// `meta.created` for a create, so that the answer shows what is stored without
    /// reading it back.
    pub received_at: i64,
}

/// The operation kinds, in the order a plan applies them and the JSON summary names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    CreateUser,
    AdoptUser,
    UpdateUser,
    ReactivateUser,
    DeactivateUser,
    CreateGroup,
    RenameGroup,
    AddMembers,
    RemoveMembers,
    UnlinkGroup,
    PushUser,
    PushGroup,
    DeleteUser,
    DeleteGroup,
}

impl OpKind {
    pub const ALL: [OpKind; 10] = [
        Self::CreateUser,
        Self::UpdateUser,
        Self::DeactivateUser,
        Self::ReactivateUser,
        Self::AdoptUser,
        Self::CreateGroup,
        Self::RenameGroup,
        Self::AddMembers,
        Self::RemoveMembers,
        Self::UnlinkGroup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateUser => "create_user",
            Self::AdoptUser => "adopt_user",
            Self::UpdateUser => "update_user",
            Self::ReactivateUser => "reactivate_user",
            Self::DeactivateUser => "deactivate_user",
            Self::CreateGroup => "create_group",
            Self::RenameGroup => "rename_group",
            Self::AddMembers => "add_members",
            Self::RemoveMembers => "remove_members",
            Self::UnlinkGroup => "unlink_group",
            Self::PushUser => "push_user",
            Self::PushGroup => "push_group",
            Self::DeleteUser => "delete_user",
            Self::DeleteGroup => "delete_group",
        }
    }

    /// Operations that take something away: never computed from an incomplete read.
    pub fn is_removal(self) -> bool {
        matches!(
            self,
            Self::DeactivateUser | Self::RemoveMembers | Self::UnlinkGroup
        )
    }
}

impl Operation {
    pub fn kind(&self) -> OpKind {
        match self {
            Self::CreateUser { .. } => OpKind::CreateUser,
            Self::AdoptUser { .. } => OpKind::AdoptUser,
            Self::UpdateUser { .. } => OpKind::UpdateUser,
            Self::DeactivateUser { .. } => OpKind::DeactivateUser,
            Self::ReactivateUser { .. } => OpKind::ReactivateUser,
            Self::CreateGroup { .. } => OpKind::CreateGroup,
            Self::RenameGroup { .. } => OpKind::RenameGroup,
            Self::AddMembers { .. } => OpKind::AddMembers,
            Self::RemoveMembers { .. } => OpKind::RemoveMembers,
            Self::UnlinkGroup { .. } => OpKind::UnlinkGroup,
            Self::PushUser(_) => OpKind::PushUser,
            Self::PushGroup(_) => OpKind::PushGroup,
            Self::DeleteUser { .. } => OpKind::DeleteUser,
            Self::DeleteGroup { .. } => OpKind::DeleteGroup,
        }
    }

    /// The Okta id (user or group) this operation comes from; for a SCIM push, the
    /// object's externalId, else its workspace id.
    pub fn okta_id(&self) -> &str {
        match self {
            Self::CreateUser { okta_id, .. }
            | Self::AdoptUser { okta_id, .. }
            | Self::UpdateUser { okta_id, .. }
            | Self::DeactivateUser { okta_id, .. }
            | Self::ReactivateUser { okta_id, .. } => okta_id,
            Self::CreateGroup { okta_group_id, .. }
            | Self::RenameGroup { okta_group_id, .. }
            | Self::AddMembers { okta_group_id, .. }
            | Self::RemoveMembers { okta_group_id, .. }
            | Self::UnlinkGroup { okta_group_id, .. } => okta_group_id,
            Self::PushUser(p) | Self::PushGroup(p) => {
                p.external_id.as_deref().unwrap_or(&p.workspace_id)
            }
            Self::DeleteUser { workspace_id } | Self::DeleteGroup { workspace_id } => workspace_id,
        }
    }

    /// How many things this operation changes: memberships count one each.
    pub fn weight(&self) -> usize {
        match self {
            Self::AddMembers { members, .. } => members.len(),
            Self::RemoveMembers { members, .. } => members.len(),
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnlink {
    #[default]
    Keep,
    Delete,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    pub on_unlink: OnUnlink,
    /// When the Okta read began (epoch ms). Objects a SCIM client wrote after it are
    /// left alone: the read cannot know of that write. The next read is the authority.
    pub read_started_at: Option<i64>,
}

impl PlanOptions {
    fn pushed_since_read(&self, pushed_at: Option<i64>) -> bool {
        matches!((pushed_at, self.read_started_at), (Some(p), Some(r)) if p > r)
    }
}

/// Operations in apply order: users first (so memberships can resolve them), then groups,
/// then memberships; removals last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub operations: Vec<Operation>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    pub fn count(&self, kind: OpKind) -> usize {
        self.operations
            .iter()
            .filter(|o| o.kind() == kind)
            .map(Operation::weight)
            .sum()
    }
}

/// Diff `desired` against `current`. Only managed objects (created or adopted by oktasync)
/// are ever changed or deactivated; unmanaged ones can only be adopted.
pub fn plan(desired: &DesiredState, current: &WorkspaceState, options: PlanOptions) -> Plan {
    let mut ops = Vec::new();
    // Hash maps and a seen-list: a plan over 100k users does a few lookups per user and per
    // membership, and ordered maps of Okta ids (long shared prefixes) cost a string
    // comparison per level.
    let managed: HashMap<&str, &WorkspaceUser> = current
        .users
        .iter()
        .filter_map(|u| u.okta_id.as_deref().map(|id| (id, u)))
        .collect();
    let mut desired_managed: HashSet<&str> = HashSet::with_capacity(managed.len());
    let mut adoptable = Adoptable::new(
        current
            .users
            .iter()
            .filter(|u| !options.pushed_since_read(u.pushed_at)),
    );

    for (okta_id, attributes) in &desired.users {
        let user = managed.get(okta_id.as_str());
        if let Some(user) = user {
            desired_managed.insert(user.id.as_str());
            if options.pushed_since_read(user.pushed_at) {
                continue;
            }
        }
        match user {
            Some(user) if !user.active => ops.push(Operation::ReactivateUser {
                okta_id: okta_id.clone(),
                workspace_id: user.id.clone(),
                attributes: attributes.clone(),
            }),
            Some(user) if user.attributes != *attributes => ops.push(Operation::UpdateUser {
                okta_id: okta_id.clone(),
                workspace_id: user.id.clone(),
                from: user.attributes.clone(),
                to: attributes.clone(),
            }),
            Some(_) => {}
            None => match adoptable.take(okta_id, attributes) {
                Some((workspace_id, matched_by)) => ops.push(Operation::AdoptUser {
                    okta_id: okta_id.clone(),
                    workspace_id,
                    matched_by,
                    attributes: attributes.clone(),
                }),
                None => ops.push(Operation::CreateUser {
                    okta_id: okta_id.clone(),
                    attributes: attributes.clone(),
                }),
            },
        }
    }
    for user in &current.users {
        let Some(okta_id) = user.okta_id.as_ref() else {
            continue;
        };
        // Only the user `managed` names for this Okta id (the store keeps one per id); it
        // was seen above exactly when Okta still wants it.
        if user.active
            && managed
                .get(okta_id.as_str())
                .is_some_and(|m| m.id == user.id)
            && !desired_managed.contains(user.id.as_str())
            && !options.pushed_since_read(user.pushed_at)
        {
            let reason = match desired.excluded.get(okta_id) {
                Some(exclusion) => DeactivationReason::Excluded(exclusion.clone()),
                None => DeactivationReason::Deleted,
            };
            ops.push(Operation::DeactivateUser {
                okta_id: okta_id.clone(),
                workspace_id: user.id.clone(),
                reason,
            });
        }
    }

    plan_groups(desired, current, &managed, options, &mut ops);
    ops.sort_by(|a, b| (a.kind(), a.okta_id()).cmp(&(b.kind(), b.okta_id())));
    Plan { operations: ops }
}

fn plan_groups(
    desired: &DesiredState,
    current: &WorkspaceState,
    managed_users: &HashMap<&str, &WorkspaceUser>,
    options: PlanOptions,
    ops: &mut Vec<Operation>,
) {
    // Only needed to name the Okta user of a removed member: built on the first removal.
    let mut okta_of_workspace_user: Option<HashMap<&str, &str>> = None;
    let managed_groups: BTreeMap<&str, &WorkspaceGroup> = current
        .groups
        .iter()
        .filter_map(|g| g.okta_group_id.as_deref().map(|id| (id, g)))
        .collect();
    let mut unmanaged_by_name: BTreeMap<String, &WorkspaceGroup> = current
        .groups
        .iter()
        .filter(|g| g.okta_group_id.is_none())
        .map(|g| (g.display_name.to_lowercase(), g))
        .collect();

    for (okta_group_id, want) in &desired.groups {
        if managed_groups
            .get(okta_group_id.as_str())
            .is_some_and(|g| options.pushed_since_read(g.pushed_at))
        {
            continue;
        }
        let existing = match managed_groups.get(okta_group_id.as_str()) {
            Some(group) => {
                if group.display_name != want.display_name {
                    ops.push(Operation::RenameGroup {
                        okta_group_id: okta_group_id.clone(),
                        workspace_id: group.id.clone(),
                        from: group.display_name.clone(),
                        to: want.display_name.clone(),
                    });
                }
                Some(*group)
            }
            None => {
                let adopt = unmanaged_by_name.remove(&want.display_name.to_lowercase());
                ops.push(Operation::CreateGroup {
                    okta_group_id: okta_group_id.clone(),
                    display_name: want.display_name.clone(),
                    adopt: adopt.map(|g| g.id.clone()),
                });
                adopt
            }
        };
        let no_members = BTreeSet::new();
        let present = existing.map_or(&no_members, |g| &g.members);
        let mut wanted: HashSet<&str> = HashSet::with_capacity(want.members.len());
        let mut to_add: Vec<OktaUserId> = Vec::new();
        for okta in &want.members {
            match managed_users.get(okta.as_str()) {
                Some(user) if present.contains(&user.id) => {
                    wanted.insert(user.id.as_str());
                }
                _ => to_add.push(okta.clone()),
            }
        }
        // In the workspace group's order (sorted by workspace id): the plan is deterministic.
        let to_remove: Vec<RemovedMember> = present
            .iter()
            .filter(|ws| !wanted.contains(ws.as_str()))
            .map(|ws| {
                let okta_of = okta_of_workspace_user.get_or_insert_with(|| {
                    managed_users
                        .iter()
                        .map(|(okta, u)| (u.id.as_str(), *okta))
                        .collect()
                });
                RemovedMember {
                    workspace_id: ws.clone(),
                    okta_id: okta_of.get(ws.as_str()).map(|o| (*o).to_owned()),
                }
            })
            .collect();
        if !to_add.is_empty() {
            ops.push(Operation::AddMembers {
                okta_group_id: okta_group_id.clone(),
                members: to_add,
            });
        }
        if !to_remove.is_empty() {
            ops.push(Operation::RemoveMembers {
                okta_group_id: okta_group_id.clone(),
                members: to_remove,
            });
        }
    }
    for (okta_group_id, group) in &managed_groups {
        if !desired.groups.contains_key(*okta_group_id)
            && !options.pushed_since_read(group.pushed_at)
        {
            ops.push(Operation::UnlinkGroup {
                okta_group_id: (*okta_group_id).to_owned(),
                workspace_id: group.id.clone(),
                display_name: group.display_name.clone(),
                delete: options.on_unlink == OnUnlink::Delete,
            });
        }
    }
}

/// Unmanaged workspace users that may be adopted, each at most once, matched by externalId,
/// then userName (any letter case), then email (any letter case).
struct Adoptable<'a> {
    by_external_id: BTreeMap<&'a str, &'a WorkspaceUser>,
    by_user_name: BTreeMap<String, &'a WorkspaceUser>,
    by_email: BTreeMap<String, &'a WorkspaceUser>,
    taken: BTreeSet<&'a str>,
}

impl<'a> Adoptable<'a> {
    fn new(users: impl Iterator<Item = &'a WorkspaceUser>) -> Self {
        let unmanaged: Vec<&WorkspaceUser> = users.filter(|u| !u.is_managed()).collect();
        let unmanaged = || unmanaged.iter().copied();
        Self {
            by_external_id: unmanaged()
                .filter_map(|u| u.external_id.as_deref().map(|e| (e, u)))
                .collect(),
            by_user_name: unmanaged()
                .map(|u| (u.attributes.user_name.to_lowercase(), u))
                .collect(),
            by_email: unmanaged()
                .filter_map(|u| u.attributes.email.as_ref().map(|e| (e.to_lowercase(), u)))
                .collect(),
            taken: BTreeSet::new(),
        }
    }

    fn take(
        &mut self,
        okta_id: &str,
        attributes: &UserAttributes,
    ) -> Option<(WorkspaceObjectId, MatchKey)> {
        let candidates = [
            (
                self.by_external_id.get(okta_id).copied(),
                MatchKey::ExternalId,
            ),
            (
                self.by_user_name
                    .get(&attributes.user_name.to_lowercase())
                    .copied(),
                MatchKey::UserName,
            ),
            (
                attributes
                    .email
                    .as_ref()
                    .and_then(|e| self.by_email.get(&e.to_lowercase()).copied()),
                MatchKey::Email,
            ),
        ];
        for (candidate, key) in candidates {
            if let Some(user) = candidate
                && self.taken.insert(user.id.as_str())
            {
                return Some((user.id.clone(), key));
            }
        }
        None
    }
}
