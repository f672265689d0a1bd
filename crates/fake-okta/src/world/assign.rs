//! Bookkeeping of effective app assignments: a user is assigned to an app directly (scope
//! USER), through any number of assigned groups (scope GROUP), or both. Each grant or revoke
//! reports whether the user just gained or lost the app, which is when Okta writes
//! `application.user_membership.add` / `.remove`.

use super::{App, AppUser};
use crate::ids;

/// Whether a new assignment of `user_id` to this app is provisioned (about 80%) or SSO-only.
fn provisioned(seed: u64, app: &App, user_id: &str) -> bool {
    ids::mix(seed, 0xA99_0000 + app.index as u64, ids::hash_str(user_id)) % 10 < 8
}

/// Adds a direct (`direct`) or group-derived grant; true when the user newly has the app.
/// `now` is epoch seconds.
pub(crate) fn grant(seed: u64, app: &mut App, user_id: &str, direct: bool, now: i64) -> bool {
    if let Some(au) = app.users.get_mut(user_id) {
        if direct {
            if !au.direct {
                // scope GROUP -> USER is an update of the app user
                au.direct = true;
                au.last_updated = now;
            }
        } else {
            au.via_groups += 1;
        }
        return false;
    }
    let provisioned = provisioned(seed, app, user_id);
    app.users.insert(
        user_id.to_owned(),
        AppUser {
            direct,
            via_groups: u32::from(!direct),
            created: now,
            last_updated: now,
            status_changed: now,
            provisioned,
        },
    );
    true
}

/// Removes a direct or group-derived grant; true when the user no longer has the app.
pub(crate) fn revoke(app: &mut App, user_id: &str, direct: bool, now: i64) -> bool {
    let Some(au) = app.users.get_mut(user_id) else {
        return false;
    };
    if direct {
        if !au.direct {
            return false;
        }
        au.direct = false;
        au.last_updated = now;
    } else {
        au.via_groups = au.via_groups.saturating_sub(1);
    }
    if !au.direct && au.via_groups == 0 {
        app.users.remove(user_id);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn scope_follows_grants() {
        let mut app = App {
            id: "0oa1".into(),
            index: 0,
            label: "app".into(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            push: BTreeMap::new(),
        };
        assert!(grant(1, &mut app, "u", false, 10));
        assert!(!grant(1, &mut app, "u", false, 11));
        assert!(!grant(1, &mut app, "u", true, 12));
        assert_eq!(app.users["u"].last_updated, 12);
        assert!(
            !revoke(&mut app, "u", true, 13),
            "still granted by two groups"
        );
        assert!(!app.users["u"].direct);
        assert!(!revoke(&mut app, "u", false, 14));
        assert!(revoke(&mut app, "u", false, 15));
        assert!(app.users.is_empty());
        assert!(!revoke(&mut app, "u", false, 16));
    }
}
