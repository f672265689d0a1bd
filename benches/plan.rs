//! Plan benchmark (issue 2): `desired_state` and `plan` over 100,000 users, 5,000 pushed
//! groups and 300,000 memberships, on one thread (both are pure and single-threaded). The
//! workspace is the converged one with 1% of the users changed in Okta (profile updates,
//! deactivations, newcomers) and 1% of the groups' memberships moved, so the plan has real
//! work to find. Prints the minimum and median of several runs.
//!
//! Run: `cargo bench --bench plan -- [USERS] [GROUPS] [MEMBERS_PER_GROUP] [RUNS]`
//! (defaults 100000 5000 60 7).

// Only `arg` is used here; the process helpers serve the SCIM benchmarks.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oktasync::model::{
    AppAssignments, AssignmentScope, OktaGroup, OktaProfile, OktaSnapshot, OktaUser,
    OktaUserStatus, WorkspaceGroup, WorkspaceState, WorkspaceUser,
};
use oktasync::reconcile::desired::{GroupSelector, WorkspacePolicy, desired_state};
use oktasync::reconcile::plan::{PlanOptions, plan};

use common::arg;

const APP: &str = "0oabenchapp";

fn user_id(i: usize) -> String {
    format!("00u{i:017}")
}

fn group_id(i: usize) -> String {
    format!("00g{i:017}")
}

fn okta(users: usize, groups: usize, per_group: usize) -> OktaSnapshot {
    let mut s = OktaSnapshot {
        complete: true,
        ..OktaSnapshot::default()
    };
    let mut app = AppAssignments::default();
    for i in 0..users {
        let id = user_id(i);
        s.users.insert(
            id.clone(),
            OktaUser {
                id: id.clone(),
                status: OktaUserStatus::Active,
                profile: OktaProfile {
                    login: format!("user{i}@example.com"),
                    email: Some(format!("user{i}@example.com")),
                    first_name: Some(format!("First{i}")),
                    last_name: Some(format!("Last{i}")),
                    display_name: None,
                },
            },
        );
        app.users.insert(id, AssignmentScope::User);
    }
    for g in 0..groups {
        let id = group_id(g);
        s.groups.insert(
            id.clone(),
            OktaGroup {
                id: id.clone(),
                name: format!("group-{g}"),
            },
        );
        let members: BTreeSet<String> = (0..per_group)
            .map(|k| user_id((g * 7919 + k * 104_729) % users))
            .collect();
        s.group_members.insert(id.clone(), members);
        app.groups.insert(id);
    }
    s.apps.insert(APP.into(), app);
    s
}

/// The converged workspace for `snapshot`.
fn workspace(snapshot: &OktaSnapshot, policy: &WorkspacePolicy) -> WorkspaceState {
    let desired = desired_state(snapshot, policy);
    let ws_id = |okta: &str| format!("ws-{okta}");
    WorkspaceState {
        users: desired
            .users
            .iter()
            .map(|(okta_id, attributes)| WorkspaceUser {
                id: ws_id(okta_id),
                okta_id: Some(okta_id.clone()),
                external_id: Some(okta_id.clone()),
                attributes: attributes.clone(),
                active: true,
                pushed_at: None,
            })
            .collect(),
        groups: desired
            .groups
            .iter()
            .map(|(okta_id, g)| WorkspaceGroup {
                id: ws_id(okta_id),
                okta_group_id: Some(okta_id.clone()),
                display_name: g.display_name.clone(),
                members: g.members.iter().map(|m| ws_id(m)).collect(),
                pushed_at: None,
            })
            .collect(),
    }
}

/// 1% of the users changed in Okta (a third renamed, a third suspended, a third replaced
/// by newcomers) and 1% of the groups with a member swapped.
fn change(snapshot: &mut OktaSnapshot, users: usize, groups: usize) {
    let step = 100;
    for (n, i) in (0..users).step_by(step).enumerate() {
        let id = user_id(i);
        match n % 3 {
            0 => {
                if let Some(u) = snapshot.users.get_mut(&id) {
                    u.profile.last_name = Some("Changed".into());
                }
            }
            1 => {
                if let Some(u) = snapshot.users.get_mut(&id) {
                    u.status = OktaUserStatus::Suspended;
                }
            }
            _ => {
                let new = format!("00unew{i:014}");
                snapshot.users.insert(
                    new.clone(),
                    OktaUser {
                        id: new.clone(),
                        status: OktaUserStatus::Active,
                        profile: OktaProfile {
                            login: format!("new{i}@example.com"),
                            ..OktaProfile::default()
                        },
                    },
                );
                if let Some(app) = snapshot.apps.get_mut(APP) {
                    app.users.insert(new, AssignmentScope::User);
                }
            }
        }
    }
    for g in (0..groups).step_by(step) {
        if let Some(members) = snapshot.group_members.get_mut(&group_id(g)) {
            if let Some(first) = members.iter().next().cloned() {
                members.remove(&first);
            }
            members.insert(user_id((g * 31 + 17) % users));
        }
    }
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn main() {
    let users = arg(0, 100_000);
    let groups = arg(1, 5_000);
    let per_group = arg(2, 60);
    let runs: usize = arg(3, 7).max(1);
    let policy = WorkspacePolicy {
        workspace_id: "bench".into(),
        okta_app_id: APP.into(),
        push_groups: GroupSelector::Assigned,
    };
    let built = Instant::now();
    let mut snapshot = okta(users, groups, per_group);
    let current = workspace(&snapshot, &policy);
    change(&mut snapshot, users, groups);
    let memberships: usize = snapshot.group_members.values().map(BTreeSet::len).sum();
    println!(
        "plan benchmark: {users} users, {groups} groups, {memberships} memberships (set up in {:.1} s)",
        built.elapsed().as_secs_f64()
    );
    let mut desired_times = Vec::new();
    let mut plan_times = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for run in 0..runs {
        let t = Instant::now();
        let desired = desired_state(&snapshot, &policy);
        desired_times.push(t.elapsed());
        let t = Instant::now();
        let planned = plan(&desired, &current, PlanOptions::default());
        plan_times.push(t.elapsed());
        if run == 0 {
            for op in &planned.operations {
                *kinds.entry(format!("{:?}", op.kind())).or_default() += 1;
            }
        }
        drop(desired);
    }
    let (dmin, dmed) = stats(desired_times);
    let (pmin, pmed) = stats(plan_times);
    println!("operations planned: {kinds:?}");
    println!(
        "desired_state: min {:.1} ms, median {:.1} ms",
        dmin.as_secs_f64() * 1e3,
        dmed.as_secs_f64() * 1e3
    );
    println!(
        "plan:          min {:.1} ms, median {:.1} ms (target: under 300 ms)",
        pmin.as_secs_f64() * 1e3,
        pmed.as_secs_f64() * 1e3
    );
    println!(
        "both:          median {:.1} ms, over {runs} runs on one thread",
        (dmed + pmed).as_secs_f64() * 1e3
    );
}
