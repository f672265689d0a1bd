//! Desired workspace state: which Okta users and groups a workspace should hold, and with
//! which attributes (scope plus Okta's default SCIM attribute mapping). Pure: no IO, no errors.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashSet, HashSetExt};

use crate::model::{
    AssignmentScope, OktaGroup, OktaGroupId, OktaSnapshot, OktaUser, OktaUserId, OktaUserStatus,
    UserAttributes,
};

/// Which Okta groups a workspace pushes (`push_groups` in the config).
#[derive(Debug, Clone)]
pub enum GroupSelector {
    /// Groups named in the config: exact names, `re:` regexes, or Okta group ids.
    Listed(Vec<GroupPattern>),
    /// Every group assigned to the workspace's Okta app.
    Assigned,
    /// The app's group-push mappings in Okta (ACTIVE ones).
    OktaPushMappings,
}

#[derive(Debug, Clone)]
pub enum GroupPattern {
    Name(String),
    Regex(regex::Regex),
    Id(OktaGroupId),
}

impl GroupPattern {
    fn matches(&self, group: &OktaGroup) -> bool {
        match self {
            Self::Name(name) => group.name == *name,
            Self::Regex(re) => re.is_match(&group.name),
            Self::Id(id) => group.id == *id,
        }
    }
}

/// What the engine needs to know about one workspace to compute its desired state.
#[derive(Debug, Clone)]
pub struct WorkspacePolicy {
    pub workspace_id: String,
    pub okta_app_id: String,
    pub push_groups: GroupSelector,
}

/// Why a user known to Okta is not in a workspace's scope (shown in plans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    NotAssigned,
    Status(OktaUserStatus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    pub display_name: String,
    /// In-scope Okta members only.
    pub members: BTreeSet<OktaUserId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub users: BTreeMap<OktaUserId, UserAttributes>,
    pub groups: BTreeMap<OktaGroupId, DesiredGroup>,
    /// Users Okta knows but this workspace must not have, with the reason.
    pub excluded: BTreeMap<OktaUserId, Exclusion>,
}

/// Okta's default SCIM mapping: userName <- login, name.givenName <- firstName,
/// name.familyName <- lastName, emails[primary work] <- email,
/// displayName <- displayName, else "first last", else login.
pub fn map_attributes(user: &OktaUser) -> UserAttributes {
    let profile = &user.profile;
    let non_empty = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
    let given_name = non_empty(&profile.first_name);
    let family_name = non_empty(&profile.last_name);
    let display_name = non_empty(&profile.display_name).unwrap_or_else(|| {
        let joined = [given_name.as_deref(), family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if joined.is_empty() {
            profile.login.clone()
        } else {
            joined
        }
    });
    UserAttributes {
        user_name: profile.login.clone(),
        given_name,
        family_name,
        display_name,
        email: non_empty(&profile.email),
    }
}

/// The Okta groups whose memberships a workspace needs: the groups it pushes.
pub fn pushed_groups(snapshot: &OktaSnapshot, policy: &WorkspacePolicy) -> BTreeSet<OktaGroupId> {
    let app = snapshot.apps.get(&policy.okta_app_id);
    match &policy.push_groups {
        GroupSelector::Listed(patterns) => snapshot
            .groups
            .values()
            .filter(|g| patterns.iter().any(|p| p.matches(g)))
            .map(|g| g.id.clone())
            .collect(),
        GroupSelector::Assigned => app
            .map(|a| {
                a.groups
                    .iter()
                    .filter(|g| snapshot.groups.contains_key(*g))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        GroupSelector::OktaPushMappings => app
            .map(|a| {
                a.push_mappings
                    .iter()
                    .filter(|g| snapshot.groups.contains_key(*g))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The users part of the desired state (scope plus mapping), from every Okta user and the
/// users assigned to the workspace's app: all it takes, so it is known before a read ends.
pub fn desired_users(
    okta_users: &BTreeMap<OktaUserId, OktaUser>,
    assigned: Option<&BTreeMap<OktaUserId, AssignmentScope>>,
) -> DesiredState {
    // Collected in Okta-id order, then built in bulk (no ordered-map search per insert).
    let mut users = Vec::new();
    let mut excluded = Vec::new();
    for user in okta_users.values() {
        let is_assigned = assigned.is_some_and(|a| a.contains_key(&user.id));
        if !is_assigned {
            excluded.push((user.id.clone(), Exclusion::NotAssigned));
        } else if !user.status.is_provisionable() {
            excluded.push((user.id.clone(), Exclusion::Status(user.status.clone())));
        } else {
            users.push((user.id.clone(), map_attributes(user)));
        }
    }
    DesiredState {
        users: users.into_iter().collect(),
        groups: BTreeMap::new(),
        excluded: excluded.into_iter().collect(),
    }
}

/// Scope plus mapping: the workspace as Okta says it should be.
pub fn desired_state(snapshot: &OktaSnapshot, policy: &WorkspacePolicy) -> DesiredState {
    let assigned = snapshot.apps.get(&policy.okta_app_id).map(|a| &a.users);
    let mut desired = desired_users(&snapshot.users, assigned);
    // Memberships are checked against a hash set: hundreds of thousands of lookups in an
    // ordered map of Okta ids (long shared prefixes) cost a string comparison per level.
    let mut in_scope: HashSet<&str> = HashSet::with_capacity(desired.users.len());
    in_scope.extend(desired.users.keys().map(String::as_str));
    for group_id in pushed_groups(snapshot, policy) {
        let Some(group) = snapshot.groups.get(&group_id) else {
            continue;
        };
        let members = snapshot
            .group_members
            .get(&group_id)
            .map(|m| {
                m.iter()
                    .filter(|u| in_scope.contains(u.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        desired.groups.insert(
            group_id,
            DesiredGroup {
                display_name: group.name.clone(),
                members,
            },
        );
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppAssignments, AssignmentScope, OktaProfile};

    fn user(id: &str, status: OktaUserStatus) -> OktaUser {
        OktaUser {
            id: id.into(),
            status,
            profile: OktaProfile {
                login: format!("{id}@example.com"),
                email: Some(format!("{id}@example.com")),
                first_name: Some("Ada".into()),
                last_name: Some("Lovelace".into()),
                display_name: None,
            },
        }
    }

    fn policy(push: GroupSelector) -> WorkspacePolicy {
        WorkspacePolicy {
            workspace_id: "ws1".into(),
            okta_app_id: "app".into(),
            push_groups: push,
        }
    }

    #[test]
    fn default_mapping_builds_display_name_from_first_and_last() {
        let attrs = map_attributes(&user("u1", OktaUserStatus::Active));
        assert_eq!(attrs.user_name, "u1@example.com");
        assert_eq!(attrs.display_name, "Ada Lovelace");
        assert_eq!(attrs.given_name.as_deref(), Some("Ada"));
        assert_eq!(attrs.email.as_deref(), Some("u1@example.com"));
        let mut u = user("u2", OktaUserStatus::Active);
        u.profile.display_name = Some("The Countess".into());
        assert_eq!(map_attributes(&u).display_name, "The Countess");
        u.profile.display_name = None;
        u.profile.first_name = None;
        u.profile.last_name = Some("  ".into());
        assert_eq!(map_attributes(&u).display_name, "u2@example.com");
    }

    #[test]
    fn scope_is_assignment_and_provisionable_status() {
        let mut snap = OktaSnapshot::default();
        for (id, st) in [
            ("a", OktaUserStatus::Active),
            ("b", OktaUserStatus::Suspended),
            ("c", OktaUserStatus::Deprovisioned),
            ("d", OktaUserStatus::Active),
            ("e", OktaUserStatus::Staged),
        ] {
            snap.users.insert(id.into(), user(id, st));
        }
        let mut app = AppAssignments::default();
        for id in ["a", "b", "c", "e"] {
            app.users.insert(id.into(), AssignmentScope::User);
        }
        snap.apps.insert("app".into(), app);
        let d = desired_state(&snap, &policy(GroupSelector::Assigned));
        assert_eq!(d.users.keys().cloned().collect::<Vec<_>>(), vec!["a", "e"]);
        assert_eq!(d.excluded.get("d"), Some(&Exclusion::NotAssigned));
        assert_eq!(
            d.excluded.get("b"),
            Some(&Exclusion::Status(OktaUserStatus::Suspended))
        );
    }

    #[test]
    fn pushed_group_members_are_in_scope_members_only() {
        let mut snap = OktaSnapshot::default();
        snap.users
            .insert("a".into(), user("a", OktaUserStatus::Active));
        snap.users
            .insert("b".into(), user("b", OktaUserStatus::Active));
        let mut app = AppAssignments::default();
        app.users.insert("a".into(), AssignmentScope::Group);
        snap.apps.insert("app".into(), app);
        for (id, name) in [("g1", "Engineering"), ("g2", "team-x"), ("g3", "Sales")] {
            snap.groups.insert(
                id.into(),
                OktaGroup {
                    id: id.into(),
                    name: name.into(),
                },
            );
            snap.group_members
                .insert(id.into(), ["a".to_string(), "b".to_string()].into());
        }
        let Ok(re) = regex::Regex::new("^team-") else {
            panic!("regex")
        };
        let p = policy(GroupSelector::Listed(vec![
            GroupPattern::Name("Engineering".into()),
            GroupPattern::Regex(re),
        ]));
        let d = desired_state(&snap, &p);
        assert_eq!(
            d.groups.keys().cloned().collect::<Vec<_>>(),
            vec!["g1", "g2"]
        );
        assert_eq!(d.groups["g1"].members, ["a".to_string()].into());
    }
}
