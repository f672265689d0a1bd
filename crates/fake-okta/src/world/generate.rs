//! Deterministic generation of the initial org from a seed.
//!
//! Every decision is `ids::mix(seed, stream, index)`, a pure function of its coordinates, so
//! the same options always give the same org regardless of generation order. All generated
//! timestamps fall in 2024–2025, before anything the admin API writes with the real clock,
//! so incremental `lastUpdated` queries see admin changes as the newest.

use std::collections::BTreeMap;

use super::assign::grant;
use super::{App, Group, GroupAssignment, PushMapping, PushStatus, User, UserStatus, World};
use crate::ids::{self, mix};

/// 2024-01-01T00:00:00Z.
const ANCHOR: i64 = 1_704_067_200;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The first group names, in id order; the rest are `group-{index}`.
pub const NAMED_GROUPS: [&str; 5] = ["Engineering", "Sales", "Support", "team-alpha", "team-beta"];

// Streams: one per independent decision.
const S_CREATED: u64 = 1;
const S_ACTIVATED: u64 = 2;
const S_CHANGED: u64 = 3;
const S_LOGIN: u64 = 4;
const S_UPDATED: u64 = 5;
const S_DISPLAY: u64 = 6;
const S_MEMBER_COUNT: u64 = 7;
const S_MEMBER_PICK: u64 = 8; // + pick number
const S_GROUP_TIME: u64 = 16;
const S_APP_DIRECT: u64 = 0x100; // + app index
const S_APP_GROUP: u64 = 0x200; // + app index
const S_APP_TIME: u64 = 0x300; // + app index

#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub users: usize,
    pub groups: usize,
    pub app_ids: &'a [String],
    pub seed: u64,
}

/// Status by position in a seed-rotated permutation of 0..100: every 100 consecutive users
/// get exactly 86 ACTIVE and 2 of each other status, so even small orgs have every status.
fn status_for(seed: u64, i: u64) -> UserStatus {
    let p = ((i % 100 + seed % 100) * 37) % 100;
    use UserStatus::*;
    match p {
        0..=85 => Active,
        86..=87 => Staged,
        88..=89 => Provisioned,
        90..=91 => Suspended,
        92..=93 => Deprovisioned,
        94..=95 => LockedOut,
        96..=97 => PasswordExpired,
        _ => Recovery,
    }
}

fn gen_user(seed: u64, i: u64, step: i64) -> User {
    let r = |stream: u64, modulo: i64| (mix(seed, stream, i) % modulo.max(1) as u64) as i64;
    let created = ANCHOR + i as i64 * step + r(S_CREATED, step);
    let status = status_for(seed, i);
    use UserStatus::*;
    let activated = (status != Staged).then(|| created + 1 + r(S_ACTIVATED, HOUR));
    let status_changed = match status {
        Staged => None,
        Active | Provisioned => activated,
        _ => activated.map(|a| a + HOUR + r(S_CHANGED, 60 * DAY)),
    };
    let last_login = match status {
        Staged | Provisioned | Deprovisioned => None,
        _ => activated.map(|a| a + HOUR + r(S_LOGIN, 90 * DAY)),
    };
    let password_changed = match status {
        Staged | Provisioned => None,
        _ => activated,
    };
    let last_updated = [Some(created), status_changed, password_changed]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(created)
        + r(S_UPDATED, 10 * DAY);
    let display_name = (r(S_DISPLAY, 5) == 0).then(|| format!("First{i} X. Last{i}"));
    User {
        id: ids::okta_id(ids::USER_PREFIX, i),
        status,
        created,
        activated,
        status_changed,
        last_login,
        last_updated,
        password_changed,
        login: format!("user{i}@example.com"),
        email: format!("user{i}@example.com"),
        first_name: Some(format!("First{i}")),
        last_name: Some(format!("Last{i}")),
        display_name,
        groups: Default::default(),
    }
}

fn gen_group(seed: u64, j: u64) -> Group {
    let r = |k: u64, modulo: i64| (mix(seed, S_GROUP_TIME + k, j) % modulo as u64) as i64;
    let created = ANCHOR - 30 * DAY + j as i64 * 60 + r(0, 60);
    let (name, description) = match NAMED_GROUPS.get(j as usize) {
        Some(n) => (n.to_string(), Some(format!("The {n} group"))),
        None => (format!("group-{j}"), None),
    };
    Group {
        id: ids::okta_id(ids::GROUP_PREFIX, j),
        name,
        description,
        created,
        last_updated: created + r(1, 200 * DAY),
        last_membership_updated: created + 30 * DAY + r(2, 400 * DAY),
        members: Default::default(),
        apps: Default::default(),
    }
}

/// Whether group `j` is assigned to app `a`: about a third, with the first app fixed to have
/// Engineering and team-alpha and not Sales (tests and the demo rely on that).
fn group_assigned(seed: u64, a: usize, j: u64) -> bool {
    match (a, j) {
        (0, 0 | 3) => true,
        (0, 1) => false,
        _ => mix(seed, S_APP_GROUP + a as u64, j).is_multiple_of(3),
    }
}

pub fn generate(spec: &Spec<'_>) -> World {
    let seed = spec.seed;
    let mut w = World::empty(seed);
    let n = spec.users as u64;
    // Spread creation over about a year, at most 5 minutes apart.
    let step = (365 * DAY / (n.max(1) as i64)).clamp(1, 300);
    for i in 0..n {
        let u = gen_user(seed, i, step);
        w.logins.insert(u.login.to_lowercase(), u.id.clone());
        w.users.insert(u.id.clone(), u);
    }
    let g = spec.groups as u64;
    let group_ids: Vec<String> = (0..g).map(|j| ids::okta_id(ids::GROUP_PREFIX, j)).collect();
    for j in 0..g {
        let grp = gen_group(seed, j);
        w.group_names
            .insert(grp.name.to_lowercase(), grp.id.clone());
        w.groups.insert(grp.id.clone(), grp);
    }
    if g > 0 {
        for (i, user) in w.users.values_mut().enumerate() {
            let i = i as u64;
            // 0-3 groups; users in other statuses get at least one, so that member listings
            // show what Okta's do: deactivated and suspended users stay in their groups.
            let mut count = mix(seed, S_MEMBER_COUNT, i) % 4;
            if user.status != UserStatus::Active {
                count = count.max(1);
            }
            for pick in 0..count {
                let gid = &group_ids[(mix(seed, S_MEMBER_PICK + pick, i) % g) as usize];
                if user.groups.insert(gid.clone())
                    && let Some(grp) = w.groups.get_mut(gid)
                {
                    grp.members.insert(user.id.clone());
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (a, app_id) in spec.app_ids.iter().enumerate() {
        if !seen.insert(app_id.as_str()) {
            continue;
        }
        let mut app = App {
            id: app_id.clone(),
            index: a,
            label: format!("Fake App {}", a + 1),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            push: BTreeMap::new(),
        };
        // App-user timestamps: a few days after the user's creation, independent of order.
        let at = |user: &User| {
            user.created
                + DAY
                + (mix(seed, S_APP_TIME + a as u64, ids::hash_str(&user.id)) % (7 * DAY as u64))
                    as i64
        };
        for (i, user) in w.users.values().enumerate() {
            if mix(seed, S_APP_DIRECT + a as u64, i as u64) % 100 < 40 {
                grant(seed, &mut app, &user.id, true, at(user));
            }
        }
        let mut priority = 0;
        for (j, gid) in group_ids.iter().enumerate() {
            if !group_assigned(seed, a, j as u64) {
                continue;
            }
            let Some(grp) = w.groups.get_mut(gid) else {
                continue;
            };
            grp.apps.insert(app_id.clone());
            app.groups.insert(
                gid.clone(),
                GroupAssignment {
                    priority,
                    last_updated: grp.created + DAY,
                },
            );
            priority += 1;
            for uid in &grp.members {
                if let Some(user) = w.users.get(uid) {
                    grant(seed, &mut app, uid, false, at(user));
                }
            }
        }
        if a == 0 {
            for j in [0usize, 3] {
                let Some(gid) = group_ids.get(j) else {
                    continue;
                };
                let index = w.next_mapping;
                w.next_mapping += 1;
                let created = ANCHOR + 60 * DAY + index as i64 * HOUR;
                let m = PushMapping {
                    id: ids::okta_id(ids::MAPPING_PREFIX, index),
                    source_group_id: gid.clone(),
                    target_group_id: ids::push_target_group_id(index),
                    status: PushStatus::Active,
                    created,
                    last_updated: created,
                    last_push: Some(created + HOUR),
                };
                app.push.insert(m.id.clone(), m);
            }
        }
        w.apps.insert(app_id.clone(), app);
    }
    w.next_user = n;
    w.next_group = g;
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Vec<String> {
        vec!["0oafakeapp0000000001".into(), "0oafakeapp0000000002".into()]
    }

    fn spec(app_ids: &[String]) -> Spec<'_> {
        Spec {
            users: 100,
            groups: 10,
            app_ids,
            seed: 1,
        }
    }

    #[test]
    fn deterministic_and_shaped() {
        let app_ids = apps();
        let a = generate(&spec(&app_ids));
        let b = generate(&spec(&app_ids));
        assert_eq!(format!("{:?}", a.users), format!("{:?}", b.users));
        assert_eq!(format!("{:?}", a.apps), format!("{:?}", b.apps));
        assert_eq!(a.users.len(), 100);
        assert_eq!(a.groups.len(), 10);
        let ids: Vec<&String> = a.users.keys().collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            a.users.values().next().map(|u| u.login.as_str()),
            Some("user0@example.com")
        );
        for st in UserStatus::ALL {
            assert!(a.users.values().any(|u| u.status == st), "no {st:?}");
        }
        let active = a
            .users
            .values()
            .filter(|u| u.status == UserStatus::Active)
            .count();
        assert!((80..=90).contains(&active), "{active}");
        assert!(a.users.values().all(|u| u.groups.len() <= 3));
        assert!(a.users.values().any(|u| u.display_name.is_some()));
        assert!(
            a.users
                .values()
                .filter(|u| u.display_name.is_some())
                .count()
                < 50
        );
        let names: Vec<&str> = a.groups.values().map(|g| g.name.as_str()).collect();
        assert_eq!(
            &names[..6],
            [
                "Engineering",
                "Sales",
                "Support",
                "team-alpha",
                "team-beta",
                "group-5"
            ]
        );
        let c = generate(&Spec {
            seed: 2,
            ..spec(&app_ids)
        });
        assert_ne!(format!("{:?}", a.apps), format!("{:?}", c.apps));
    }

    #[test]
    fn first_app_assignments() {
        let app_ids = apps();
        let w = generate(&spec(&app_ids));
        let app = &w.apps["0oafakeapp0000000001"];
        let by_name = |n: &str| w.group_names[&n.to_lowercase()].clone();
        assert!(app.groups.contains_key(&by_name("Engineering")));
        assert!(app.groups.contains_key(&by_name("team-alpha")));
        assert!(!app.groups.contains_key(&by_name("Sales")));
        let direct = app.users.values().filter(|u| u.direct).count();
        assert!((25..=55).contains(&direct), "{direct}");
        assert!(
            app.users.values().any(|u| !u.direct),
            "some GROUP-scoped users"
        );
        // every member of an assigned group has the app
        for gid in app.groups.keys() {
            for uid in &w.groups[gid].members {
                assert!(app.users.contains_key(uid));
            }
        }
        let pushed: Vec<&str> = app
            .push
            .values()
            .map(|m| w.groups[&m.source_group_id].name.as_str())
            .collect();
        assert_eq!(pushed, ["Engineering", "team-alpha"]);
        assert!(w.apps["0oafakeapp0000000002"].push.is_empty());
    }

    #[test]
    fn large_org_generates_quickly() {
        let app_ids = apps();
        let t = std::time::Instant::now();
        let w = generate(&Spec {
            users: 100_000,
            groups: 5_000,
            app_ids: &app_ids[..1],
            seed: 7,
        });
        let elapsed = t.elapsed();
        assert_eq!(w.users.len(), 100_000);
        let assigned = w.apps.values().map(|a| a.users.len()).sum::<usize>();
        assert!(assigned > 40_000, "{assigned}");
        // Generous for unoptimised test builds on a loaded 2-core machine; release is ~10x faster.
        assert!(elapsed.as_secs_f64() < 8.0, "took {elapsed:?}");
    }
}
