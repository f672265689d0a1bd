//! What every org change shares: the System Log targets it names, and Okta's error bodies
//! for missing objects and failed validations. The changes themselves live next door:
//! `user_ops` (users), `group_ops` (groups and memberships), `app_ops` (assignments and push
//! mappings). All of them move timestamps in whole seconds of the fake clock and write events
//! with its milliseconds.

use super::{App, Group, User, World};
use crate::error::OktaError;
use crate::syslog::Target;

pub(crate) fn user_target(u: &User) -> Target {
    Target {
        id: u.id.clone(),
        kind: "User",
        alternate_id: u.login.clone(),
        display_name: u.full_name(),
    }
}

pub(crate) fn group_target(g: &Group) -> Target {
    Target {
        id: g.id.clone(),
        kind: "UserGroup",
        // Okta really writes "unknown" here for groups.
        alternate_id: "unknown".into(),
        display_name: g.name.clone(),
    }
}

pub(crate) fn app_target(a: &App) -> Target {
    Target {
        id: a.id.clone(),
        kind: "AppInstance",
        alternate_id: a.label.clone(),
        display_name: a.label.clone(),
    }
}

pub(crate) fn app_user_targets(app: &App, user: &User) -> Vec<Target> {
    vec![
        Target {
            id: World::app_user_id(app, &user.id),
            kind: "AppUser",
            alternate_id: user.login.clone(),
            display_name: user.full_name(),
        },
        app_target(app),
        user_target(user),
    ]
}

pub(crate) fn user_not_found(id: &str) -> OktaError {
    OktaError::not_found(id, "User")
}

pub(crate) fn group_not_found(id: &str) -> OktaError {
    OktaError::not_found(id, "UserGroup")
}

pub(crate) fn app_not_found(id: &str) -> OktaError {
    OktaError::not_found(id, "AppInstance")
}

pub(crate) fn exists_cause(field: &str) -> OktaError {
    OktaError::validation(format!(
        "{field}: An object with this field already exists in the current organization"
    ))
}

pub(crate) fn non_empty(field: &str, v: &str) -> Result<(), OktaError> {
    if v.trim().is_empty() {
        return Err(OktaError::validation(format!(
            "{field}: The field cannot be left blank"
        )));
    }
    Ok(())
}
