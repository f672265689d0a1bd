//! User changes: create, profile update, lifecycle transitions and deletion, with Okta's
//! side effects (`lastUpdated`, `statusChanged`, `activated`, app-user `lastUpdated`) and
//! System Log events.

use serde::{Deserialize, Deserializer};

use super::mutate::{exists_cause, non_empty, user_not_found, user_target};
use super::{User, UserStatus, World};
use crate::error::OktaError;
use crate::ids;
use crate::syslog::EventType;

/// Body of `POST /__admin/users`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub login: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub status: Option<String>,
}

/// Body of `PATCH /__admin/users/{id}`; `null` clears the optional names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatch {
    pub login: Option<String>,
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub display_name: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /__admin/users/{id}/lifecycle/{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleOp {
    Deactivate,
    Suspend,
    Unsuspend,
    Activate,
    Reactivate,
    Unlock,
}

impl LifecycleOp {
    pub fn parse(s: &str) -> Option<LifecycleOp> {
        Some(match s {
            "deactivate" => LifecycleOp::Deactivate,
            "suspend" => LifecycleOp::Suspend,
            "unsuspend" => LifecycleOp::Unsuspend,
            "activate" => LifecycleOp::Activate,
            "reactivate" => LifecycleOp::Reactivate,
            "unlock" => LifecycleOp::Unlock,
            _ => return None,
        })
    }

    /// The status after the operation, if allowed from `from` (Okta's lifecycle rules, made
    /// a little lenient so tests can bring a deactivated user back with either verb).
    fn target(self, from: UserStatus) -> Option<UserStatus> {
        use UserStatus::*;
        match (self, from) {
            (LifecycleOp::Deactivate, Deprovisioned) => None,
            (LifecycleOp::Deactivate, _) => Some(Deprovisioned),
            (LifecycleOp::Suspend, Active) => Some(Suspended),
            (LifecycleOp::Unsuspend, Suspended) => Some(Active),
            (LifecycleOp::Activate, Staged | Deprovisioned | Provisioned) => Some(Active),
            (LifecycleOp::Reactivate, Provisioned | Deprovisioned) => Some(Active),
            (LifecycleOp::Unlock, LockedOut) => Some(Active),
            _ => None,
        }
    }

    fn event(self) -> EventType {
        match self {
            LifecycleOp::Deactivate => EventType::UserDeactivate,
            LifecycleOp::Suspend => EventType::UserSuspend,
            LifecycleOp::Unsuspend => EventType::UserUnsuspend,
            LifecycleOp::Activate => EventType::UserActivate,
            LifecycleOp::Reactivate => EventType::UserReactivate,
            LifecycleOp::Unlock => EventType::UserUnlock,
        }
    }
}

impl World {
    /// Bumps `lastUpdated` of the user's app users: Okta re-pushes the profile/status to apps.
    fn touch_app_users(&mut self, user_id: &str, now: i64) {
        for app in self.apps.values_mut() {
            if let Some(au) = app.users.get_mut(user_id) {
                au.last_updated = now;
            }
        }
    }

    pub fn create_user(&mut self, new: NewUser, now_ms: i64) -> Result<&User, OktaError> {
        let now = now_ms.div_euclid(1000);
        non_empty("login", &new.login)?;
        let status = match new.status.as_deref() {
            None => UserStatus::Active,
            Some(s) => UserStatus::parse(s)
                .ok_or_else(|| OktaError::validation(format!("status: invalid value {s}")))?,
        };
        let key = new.login.to_lowercase();
        if self.logins.contains_key(&key) {
            return Err(exists_cause("login"));
        }
        let id = ids::okta_id(ids::USER_PREFIX, self.next_user);
        self.next_user += 1;
        let activated = (status != UserStatus::Staged).then_some(now);
        let user = User {
            id: id.clone(),
            status,
            created: now,
            activated,
            status_changed: activated,
            last_login: None,
            last_updated: now,
            password_changed: None,
            email: new.email.unwrap_or_else(|| new.login.clone()),
            login: new.login,
            first_name: new.first_name,
            last_name: new.last_name,
            display_name: new.display_name,
            groups: Default::default(),
        };
        self.log
            .push(now_ms, EventType::UserCreate, vec![user_target(&user)]);
        if status == UserStatus::Active {
            self.log
                .push(now_ms, EventType::UserActivate, vec![user_target(&user)]);
        }
        self.logins.insert(key, id.clone());
        Ok(self.users.entry(id).or_insert(user))
    }

    pub fn update_user(
        &mut self,
        id: &str,
        patch: UserPatch,
        now_ms: i64,
    ) -> Result<&User, OktaError> {
        let now = now_ms.div_euclid(1000);
        let user = self.users.get(id).ok_or_else(|| user_not_found(id))?;
        let mut changed = false;
        let mut new_key = None;
        if let Some(login) = &patch.login {
            non_empty("login", login)?;
            if *login != user.login {
                let key = login.to_lowercase();
                if self.logins.get(&key).is_some_and(|other| other != id) {
                    return Err(exists_cause("login"));
                }
                new_key = Some((user.login.to_lowercase(), key));
            }
        }
        let Some(user) = self.users.get_mut(id) else {
            return Err(user_not_found(id));
        };
        if let Some(login) = patch.login
            && login != user.login
        {
            user.login = login;
            changed = true;
        }
        if let Some(email) = patch.email
            && email != user.email
        {
            user.email = email;
            changed = true;
        }
        for (slot, value) in [
            (&mut user.first_name, patch.first_name),
            (&mut user.last_name, patch.last_name),
            (&mut user.display_name, patch.display_name),
        ] {
            if let Some(v) = value
                && *slot != v
            {
                *slot = v;
                changed = true;
            }
        }
        if changed {
            user.last_updated = now;
            let target = user_target(user);
            if let Some((old, new)) = new_key {
                self.logins.remove(&old);
                self.logins.insert(new, id.to_owned());
            }
            self.log
                .push(now_ms, EventType::UserUpdateProfile, vec![target]);
            self.touch_app_users(id, now);
        }
        self.users.get(id).ok_or_else(|| user_not_found(id))
    }

    pub fn lifecycle(
        &mut self,
        id: &str,
        op: LifecycleOp,
        now_ms: i64,
    ) -> Result<&User, OktaError> {
        let now = now_ms.div_euclid(1000);
        let user = self.users.get_mut(id).ok_or_else(|| user_not_found(id))?;
        let to = op.target(user.status).ok_or_else(|| {
            OktaError::validation(format!(
                "status: cannot {op:?} a user whose status is {}",
                user.status.as_str()
            ))
        })?;
        user.status = to;
        user.status_changed = Some(now);
        user.last_updated = now;
        if matches!(op, LifecycleOp::Activate | LifecycleOp::Reactivate) {
            user.activated = Some(now);
        }
        let target = user_target(user);
        self.log.push(now_ms, op.event(), vec![target]);
        self.touch_app_users(id, now);
        self.users.get(id).ok_or_else(|| user_not_found(id))
    }

    /// Okta's second DELETE: the user disappears from every list, group and app.
    pub fn delete_user(&mut self, id: &str, now_ms: i64) -> Result<(), OktaError> {
        let now = now_ms.div_euclid(1000);
        let user = self.users.remove(id).ok_or_else(|| user_not_found(id))?;
        self.logins.remove(&user.login.to_lowercase());
        if user.status != UserStatus::Deprovisioned {
            // A DELETE on a live user deactivates it first.
            self.log
                .push(now_ms, EventType::UserDeactivate, vec![user_target(&user)]);
        }
        for gid in &user.groups {
            if let Some(g) = self.groups.get_mut(gid) {
                g.members.remove(id);
                g.last_membership_updated = now;
            }
        }
        for app in self.apps.values_mut() {
            app.users.remove(id);
        }
        self.log.push(
            now_ms,
            EventType::UserDeleteInitiated,
            vec![user_target(&user)],
        );
        self.log.push(
            now_ms,
            EventType::UserDeleteCompleted,
            vec![user_target(&user)],
        );
        Ok(())
    }
}
