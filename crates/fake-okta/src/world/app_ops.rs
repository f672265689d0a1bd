//! App changes: direct user assignments (scope USER), group assignments (members get scope
//! GROUP) and group push mappings, with their System Log events.

use super::assign::{grant, revoke};
use super::mutate::{
    app_not_found, app_target, app_user_targets, group_not_found, group_target, user_not_found,
};
use super::{GroupAssignment, PushMapping, PushStatus, World};
use crate::error::OktaError;
use crate::ids;
use crate::syslog::EventType;

impl World {
    /// Direct assignment (scope USER).
    pub fn assign_user(
        &mut self,
        app_id: &str,
        user_id: &str,
        now_ms: i64,
    ) -> Result<(), OktaError> {
        let now = now_ms.div_euclid(1000);
        let seed = self.seed;
        let (app, user) = {
            let app = self
                .apps
                .get_mut(app_id)
                .ok_or_else(|| app_not_found(app_id))?;
            let user = self
                .users
                .get(user_id)
                .ok_or_else(|| user_not_found(user_id))?;
            (app, user)
        };
        if grant(seed, app, user_id, true, now) {
            self.log
                .push(now_ms, EventType::AppUserAdd, app_user_targets(app, user));
        }
        Ok(())
    }

    /// Removes a direct assignment; the user keeps the app (scope GROUP) through groups.
    pub fn unassign_user(
        &mut self,
        app_id: &str,
        user_id: &str,
        now_ms: i64,
    ) -> Result<(), OktaError> {
        let now = now_ms.div_euclid(1000);
        let (app, user) = {
            let app = self
                .apps
                .get_mut(app_id)
                .ok_or_else(|| app_not_found(app_id))?;
            let user = self
                .users
                .get(user_id)
                .ok_or_else(|| user_not_found(user_id))?;
            (app, user)
        };
        if !app.users.get(user_id).is_some_and(|au| au.direct) {
            return Err(OktaError::not_found(user_id, "AppUser"));
        }
        if revoke(app, user_id, true, now) {
            self.log.push(
                now_ms,
                EventType::AppUserRemove,
                app_user_targets(app, user),
            );
        }
        Ok(())
    }

    pub fn assign_group(
        &mut self,
        app_id: &str,
        group_id: &str,
        now_ms: i64,
    ) -> Result<(), OktaError> {
        let now = now_ms.div_euclid(1000);
        let seed = self.seed;
        let app = self
            .apps
            .get_mut(app_id)
            .ok_or_else(|| app_not_found(app_id))?;
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        if app.groups.contains_key(group_id) {
            return Ok(());
        }
        let priority = app
            .groups
            .values()
            .map(|g| g.priority + 1)
            .max()
            .unwrap_or(0);
        app.groups.insert(
            group_id.to_owned(),
            GroupAssignment {
                priority,
                last_updated: now,
            },
        );
        group.apps.insert(app_id.to_owned());
        self.log.push(
            now_ms,
            EventType::GroupAppAssignAdd,
            vec![app_target(app), group_target(group)],
        );
        for uid in &group.members {
            if grant(seed, app, uid, false, now)
                && let Some(u) = self.users.get(uid)
            {
                self.log
                    .push(now_ms, EventType::AppUserAdd, app_user_targets(app, u));
            }
        }
        Ok(())
    }

    pub fn unassign_group(
        &mut self,
        app_id: &str,
        group_id: &str,
        now_ms: i64,
    ) -> Result<(), OktaError> {
        let now = now_ms.div_euclid(1000);
        let app = self
            .apps
            .get_mut(app_id)
            .ok_or_else(|| app_not_found(app_id))?;
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        if app.groups.remove(group_id).is_none() {
            return Err(OktaError::not_found(group_id, "ApplicationGroupAssignment"));
        }
        group.apps.remove(app_id);
        self.log.push(
            now_ms,
            EventType::GroupAppAssignRemove,
            vec![app_target(app), group_target(group)],
        );
        for uid in &group.members {
            if revoke(app, uid, false, now)
                && let Some(u) = self.users.get(uid)
            {
                self.log
                    .push(now_ms, EventType::AppUserRemove, app_user_targets(app, u));
            }
        }
        Ok(())
    }

    /// Creates the push mapping for `group_id`, or sets the status of the existing one.
    pub fn push_group(
        &mut self,
        app_id: &str,
        group_id: &str,
        status: PushStatus,
        now_ms: i64,
    ) -> Result<&PushMapping, OktaError> {
        let now = now_ms.div_euclid(1000);
        let app = self
            .apps
            .get_mut(app_id)
            .ok_or_else(|| app_not_found(app_id))?;
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        let existing = app.mapping_for_group(group_id).map(|m| m.id.clone());
        let mapping_id = match existing {
            Some(mid) => {
                if let Some(m) = app.push.get_mut(&mid)
                    && m.status != status
                {
                    m.status = status;
                    m.last_updated = now;
                    self.log.push(
                        now_ms,
                        EventType::PushMappingUpdated,
                        vec![app_target(app), group_target(group)],
                    );
                }
                mid
            }
            None => {
                let index = self.next_mapping;
                self.next_mapping += 1;
                let m = PushMapping {
                    id: ids::okta_id(ids::MAPPING_PREFIX, index),
                    source_group_id: group_id.to_owned(),
                    target_group_id: ids::push_target_group_id(index),
                    status,
                    created: now,
                    last_updated: now,
                    last_push: Some(now),
                };
                let mid = m.id.clone();
                app.push.insert(mid.clone(), m);
                self.log.push(
                    now_ms,
                    EventType::PushMappingCreated,
                    vec![app_target(app), group_target(group)],
                );
                mid
            }
        };
        self.apps
            .get(app_id)
            .and_then(|a| a.push.get(&mapping_id))
            .ok_or_else(|| app_not_found(app_id))
    }

    pub fn unpush_group(
        &mut self,
        app_id: &str,
        group_id: &str,
        now_ms: i64,
    ) -> Result<(), OktaError> {
        let app = self
            .apps
            .get_mut(app_id)
            .ok_or_else(|| app_not_found(app_id))?;
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        let Some(mid) = app.mapping_for_group(group_id).map(|m| m.id.clone()) else {
            return Err(OktaError::not_found(group_id, "GroupPushMapping"));
        };
        app.push.remove(&mid);
        self.log.push(
            now_ms,
            EventType::PushMappingRemoved,
            vec![app_target(app), group_target(group)],
        );
        Ok(())
    }
}
