//! Group changes: create, rename, delete, and membership. A rename moves the group's
//! `lastUpdated`; a membership change moves `lastMembershipUpdated` only, and grants or
//! revokes the apps the group is assigned to (with `application.user_membership.*` events).

use super::assign::{grant, revoke};
use super::mutate::{
    app_target, app_user_targets, exists_cause, group_not_found, group_target, non_empty,
    user_not_found, user_target,
};
use super::{Group, World};
use crate::error::OktaError;
use crate::ids;
use crate::syslog::EventType;

impl World {
    pub fn create_group(
        &mut self,
        name: String,
        description: Option<String>,
        now_ms: i64,
    ) -> Result<&Group, OktaError> {
        let now = now_ms.div_euclid(1000);
        non_empty("name", &name)?;
        let key = name.to_lowercase();
        if self.group_names.contains_key(&key) {
            return Err(exists_cause("name"));
        }
        let id = ids::okta_id(ids::GROUP_PREFIX, self.next_group);
        self.next_group += 1;
        let group = Group {
            id: id.clone(),
            name,
            description,
            created: now,
            last_updated: now,
            last_membership_updated: now,
            members: Default::default(),
            apps: Default::default(),
        };
        self.log
            .push(now_ms, EventType::GroupCreate, vec![group_target(&group)]);
        self.group_names.insert(key, id.clone());
        Ok(self.groups.entry(id).or_insert(group))
    }

    pub fn update_group(
        &mut self,
        id: &str,
        name: Option<String>,
        description: Option<Option<String>>,
        now_ms: i64,
    ) -> Result<&Group, OktaError> {
        let now = now_ms.div_euclid(1000);
        let group = self.groups.get(id).ok_or_else(|| group_not_found(id))?;
        let mut rename = None;
        if let Some(name) = &name {
            non_empty("name", name)?;
            let key = name.to_lowercase();
            if self.group_names.get(&key).is_some_and(|other| other != id) {
                return Err(exists_cause("name"));
            }
            if *name != group.name {
                rename = Some((group.name.to_lowercase(), key));
            }
        }
        let Some(group) = self.groups.get_mut(id) else {
            return Err(group_not_found(id));
        };
        let mut changed = false;
        if let Some(name) = name
            && name != group.name
        {
            group.name = name;
            changed = true;
        }
        if let Some(d) = description
            && d != group.description
        {
            group.description = d;
            changed = true;
        }
        if changed {
            group.last_updated = now;
            let target = group_target(group);
            if let Some((old, new)) = rename {
                self.group_names.remove(&old);
                self.group_names.insert(new, id.to_owned());
            }
            self.log
                .push(now_ms, EventType::GroupProfileUpdate, vec![target]);
        }
        self.groups.get(id).ok_or_else(|| group_not_found(id))
    }

    pub fn delete_group(&mut self, id: &str, now_ms: i64) -> Result<(), OktaError> {
        let now = now_ms.div_euclid(1000);
        let group = self.groups.remove(id).ok_or_else(|| group_not_found(id))?;
        self.group_names.remove(&group.name.to_lowercase());
        for uid in &group.members {
            if let Some(u) = self.users.get_mut(uid) {
                u.groups.remove(id);
            }
        }
        for app in self.apps.values_mut() {
            if app.groups.remove(id).is_some() {
                self.log.push(
                    now_ms,
                    EventType::GroupAppAssignRemove,
                    vec![app_target(app), group_target(&group)],
                );
                for uid in &group.members {
                    if revoke(app, uid, false, now)
                        && let Some(u) = self.users.get(uid)
                    {
                        self.log
                            .push(now_ms, EventType::AppUserRemove, app_user_targets(app, u));
                    }
                }
            }
            let mappings: Vec<String> = app
                .push
                .values()
                .filter(|m| m.source_group_id == id)
                .map(|m| m.id.clone())
                .collect();
            for m in mappings {
                app.push.remove(&m);
                self.log.push(
                    now_ms,
                    EventType::PushMappingRemoved,
                    vec![app_target(app), group_target(&group)],
                );
            }
        }
        self.log
            .push(now_ms, EventType::GroupDelete, vec![group_target(&group)]);
        Ok(())
    }

    /// Adds a member; `Ok(false)` when it already was one.
    pub fn add_member(
        &mut self,
        group_id: &str,
        user_id: &str,
        now_ms: i64,
    ) -> Result<bool, OktaError> {
        let now = now_ms.div_euclid(1000);
        let seed = self.seed;
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| user_not_found(user_id))?;
        if !group.members.insert(user_id.to_owned()) {
            return Ok(false);
        }
        user.groups.insert(group_id.to_owned());
        group.last_membership_updated = now;
        self.log.push(
            now_ms,
            EventType::GroupMemberAdd,
            vec![user_target(user), group_target(group)],
        );
        for app_id in &group.apps {
            if let Some(app) = self.apps.get_mut(app_id)
                && grant(seed, app, user_id, false, now)
            {
                self.log
                    .push(now_ms, EventType::AppUserAdd, app_user_targets(app, user));
            }
        }
        Ok(true)
    }

    /// Removes a member; `Ok(false)` when it was not one.
    pub fn remove_member(
        &mut self,
        group_id: &str,
        user_id: &str,
        now_ms: i64,
    ) -> Result<bool, OktaError> {
        let now = now_ms.div_euclid(1000);
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| user_not_found(user_id))?;
        if !group.members.remove(user_id) {
            return Ok(false);
        }
        user.groups.remove(group_id);
        group.last_membership_updated = now;
        self.log.push(
            now_ms,
            EventType::GroupMemberRemove,
            vec![user_target(user), group_target(group)],
        );
        for app_id in &group.apps {
            if let Some(app) = self.apps.get_mut(app_id)
                && revoke(app, user_id, false, now)
            {
                self.log.push(
                    now_ms,
                    EventType::AppUserRemove,
                    app_user_targets(app, user),
                );
            }
        }
        Ok(true)
    }
}
