//! Admin changes to users, groups, memberships, app assignments and push mappings. Each
//! handler applies one `World` change under the write lock (which also moves timestamps and
//! writes System Log events) and answers with the Okta-shaped object, or 204.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::parse_body;
use crate::error::OktaError;
use crate::paging::json_one;
use crate::render;
use crate::state::AppState;
use crate::world::{LifecycleOp, NewUser, PushStatus, UserPatch};

type Answer = Result<Response, OktaError>;

fn no_content() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn create_user(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let new: NewUser = parse_body(&body)?;
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    let user = world.create_user(new, now)?;
    tracing::info!(user = %user.id, login = %user.login, "admin: user created");
    Ok(json_one(&render::user(&base, user)).into_response())
}

pub async fn update_user(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let patch: UserPatch = parse_body(&body)?;
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    let user = world.update_user(&id, patch, now)?;
    Ok(json_one(&render::user(&base, user)).into_response())
}

pub async fn lifecycle(
    State(st): State<AppState>,
    Path((id, op)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let op = LifecycleOp::parse(&op).ok_or_else(OktaError::unknown_endpoint)?;
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    let user = world.lifecycle(&id, op, now)?;
    tracing::info!(user = %user.id, status = user.status.as_str(), "admin: lifecycle");
    Ok(json_one(&render::user(&base, user)).into_response())
}

pub async fn delete_user(State(st): State<AppState>, Path(id): Path<String>) -> Answer {
    let now = st.clock.now_ms();
    st.write().delete_user(&id, now)?;
    tracing::info!(user = %id, "admin: user deleted");
    no_content()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn create_group(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let new: NewGroup = parse_body(&body)?;
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    let group = world.create_group(new.name, new.description, now)?;
    Ok(json_one(&render::group(&base, group, None)).into_response())
}

pub async fn update_group(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let patch: GroupPatch = parse_body(&body)?;
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    let group = world.update_group(&id, patch.name, patch.description, now)?;
    Ok(json_one(&render::group(&base, group, None)).into_response())
}

pub async fn delete_group(State(st): State<AppState>, Path(id): Path<String>) -> Answer {
    let now = st.clock.now_ms();
    st.write().delete_group(&id, now)?;
    no_content()
}

pub async fn add_member(
    State(st): State<AppState>,
    Path((gid, uid)): Path<(String, String)>,
) -> Answer {
    let now = st.clock.now_ms();
    st.write().add_member(&gid, &uid, now)?;
    no_content()
}

pub async fn remove_member(
    State(st): State<AppState>,
    Path((gid, uid)): Path<(String, String)>,
) -> Answer {
    let now = st.clock.now_ms();
    st.write().remove_member(&gid, &uid, now)?;
    no_content()
}

pub async fn assign_user(
    State(st): State<AppState>,
    Path((app, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    world.assign_user(&app, &uid, now)?;
    let a = world
        .apps
        .get(&app)
        .ok_or_else(|| OktaError::not_found(&app, "AppInstance"))?;
    let (u, au) = world
        .users
        .get(&uid)
        .zip(a.users.get(&uid))
        .ok_or_else(|| OktaError::not_found(&uid, "AppUser"))?;
    Ok(json_one(&render::app_user(&base, a, u, au, false)).into_response())
}

pub async fn unassign_user(
    State(st): State<AppState>,
    Path((app, uid)): Path<(String, String)>,
) -> Answer {
    let now = st.clock.now_ms();
    st.write().unassign_user(&app, &uid, now)?;
    no_content()
}

pub async fn assign_group(
    State(st): State<AppState>,
    Path((app, gid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    world.assign_group(&app, &gid, now)?;
    let a = world
        .apps
        .get(&app)
        .ok_or_else(|| OktaError::not_found(&app, "AppInstance"))?;
    let ga = a
        .groups
        .get(&gid)
        .ok_or_else(|| OktaError::not_found(&gid, "ApplicationGroupAssignment"))?;
    Ok(json_one(&render::app_group(&base, a, &gid, ga, None)).into_response())
}

pub async fn unassign_group(
    State(st): State<AppState>,
    Path((app, gid)): Path<(String, String)>,
) -> Answer {
    let now = st.clock.now_ms();
    st.write().unassign_group(&app, &gid, now)?;
    no_content()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    #[serde(default)]
    status: Option<String>,
}

pub async fn push_group(
    State(st): State<AppState>,
    Path((app, gid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let req: PushBody = parse_body(&body)?;
    let status = match req.status.as_deref() {
        None => PushStatus::Active,
        Some(s) => PushStatus::parse(s)
            .ok_or_else(|| OktaError::validation("status: must be ACTIVE or INACTIVE"))?,
    };
    let base = st.base_for(&headers);
    let now = st.clock.now_ms();
    let mut world = st.write();
    let mapping = world.push_group(&app, &gid, status, now)?;
    Ok(json_one(&render::push_mapping(&base, &app, mapping)).into_response())
}

pub async fn unpush_group(
    State(st): State<AppState>,
    Path((app, gid)): Path<(String, String)>,
) -> Answer {
    let now = st.clock.now_ms();
    st.write().unpush_group(&app, &gid, now)?;
    no_content()
}
