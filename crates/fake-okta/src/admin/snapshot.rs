//! `GET /__admin/state`: the whole org in a compact, test-friendly shape (not Okta's).

use axum::extract::State;
use serde::Serialize;

use crate::clock::Ts;
use crate::paging::{JsonBody, json_one};
use crate::state::AppState;
use crate::world::World;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserState<'a> {
    id: &'a str,
    status: &'static str,
    login: &'a str,
    email: &'a str,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    display_name: Option<&'a str>,
    last_updated: Ts,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupState<'a> {
    id: &'a str,
    name: &'a str,
    last_updated: Ts,
    last_membership_updated: Ts,
    members: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MappingState<'a> {
    id: &'a str,
    source_group_id: &'a str,
    status: &'static str,
}

#[derive(Serialize)]
struct AppSnap<'a> {
    id: &'a str,
    users: Vec<&'a str>,
    groups: Vec<&'a str>,
    push_mappings: Vec<MappingState<'a>>,
}

#[derive(Serialize)]
struct StateJson<'a> {
    users: Vec<UserState<'a>>,
    groups: Vec<GroupState<'a>>,
    apps: Vec<AppSnap<'a>>,
}

fn snapshot(w: &World) -> StateJson<'_> {
    StateJson {
        users: w
            .users
            .values()
            .map(|u| UserState {
                id: &u.id,
                status: u.status.as_str(),
                login: &u.login,
                email: &u.email,
                first_name: u.first_name.as_deref(),
                last_name: u.last_name.as_deref(),
                display_name: u.display_name.as_deref(),
                last_updated: Ts(u.last_updated),
            })
            .collect(),
        groups: w
            .groups
            .values()
            .map(|g| GroupState {
                id: &g.id,
                name: &g.name,
                last_updated: Ts(g.last_updated),
                last_membership_updated: Ts(g.last_membership_updated),
                members: g.members.iter().map(String::as_str).collect(),
            })
            .collect(),
        apps: w
            .apps
            .values()
            .map(|a| AppSnap {
                id: &a.id,
                users: a
                    .users
                    .iter()
                    .filter(|(_, au)| au.direct)
                    .map(|(id, _)| id.as_str())
                    .collect(),
                groups: a.groups.keys().map(String::as_str).collect(),
                push_mappings: a
                    .push
                    .values()
                    .map(|m| MappingState {
                        id: &m.id,
                        source_group_id: &m.source_group_id,
                        status: m.status.as_str(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub async fn state(State(st): State<AppState>) -> JsonBody {
    let world = st.read();
    json_one(&snapshot(&world))
}
