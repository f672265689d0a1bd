//! `GET /api/v1/apps/{appId}/users` (and one app user by user id), `/groups` and
//! `/group-push/mappings`.
//!
//! App users are the effective assignments (direct = scope USER, else GROUP) in every user
//! status; deleted users are gone. None of these endpoints filter by `lastUpdated` except the
//! push mappings (`lastUpdated` = updated on or after).

use axum::Extension;
use axum::extract::{Path, State};

use crate::clock;
use crate::error::OktaError;
use crate::paging::{
    self, JsonBody, JsonPage, ReqCtx, json_array, json_one, page_number, take_page,
};
use crate::render;
use crate::state::AppState;
use crate::world::{App, PushStatus, World};

fn app<'a>(world: &'a World, id: &str) -> Result<&'a App, OktaError> {
    world
        .apps
        .get(id)
        .ok_or_else(|| OktaError::not_found(id, "AppInstance"))
}

fn starts_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn expands(ctx: &ReqCtx, what: &str) -> bool {
    ctx.query
        .get("expand")
        .is_some_and(|e| e.split(',').any(|x| x.trim() == what))
}

/// `GET /api/v1/apps/{appId}/users/{userId}`: one assignment, 404 (E0000007) when the user
/// is not assigned to the app or does not exist.
pub async fn user(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
    Path((app_id, user_id)): Path<(String, String)>,
) -> Result<JsonBody, OktaError> {
    let world = st.read();
    let app = app(&world, &app_id)?;
    let not_found = || OktaError::not_found(&user_id, "AppUser");
    let au = app.users.get(&user_id).ok_or_else(not_found)?;
    let u = world.users.get(&user_id).ok_or_else(not_found)?;
    Ok(json_one(&render::app_user(
        &ctx.base,
        app,
        u,
        au,
        expands(&ctx, "user"),
    )))
}

pub async fn users(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
    Path(app_id): Path<String>,
) -> Result<JsonPage, OktaError> {
    let limit = paging::APP_USERS.resolve(ctx.query.get("limit"))?;
    let after = ctx.query.non_empty("after");
    let term = ctx.query.non_empty("q");
    let expand_user = expands(&ctx, "user");
    let world = st.read();
    let app = app(&world, &app_id)?;
    let keep = |uid: &str| {
        term.is_none_or(|t| {
            world.users.get(uid).is_some_and(|u| {
                starts_ci(&u.login, t)
                    || starts_ci(&u.email, t)
                    || u.first_name.as_deref().is_some_and(|f| starts_ci(f, t))
                    || u.last_name.as_deref().is_some_and(|l| starts_ci(l, t))
            })
        })
    };
    let range = app
        .users
        .range::<str, _>(paging::after(after))
        .filter_map(|(uid, au)| world.users.get(uid).map(|u| (u, au)));
    let (page, more) = take_page(range, limit, |(u, _)| keep(&u.id));
    let body = json_array(
        page.iter()
            .map(|(u, au)| render::app_user(&ctx.base, app, u, au, expand_user)),
    );
    let next = if more {
        page.last().map(|(u, _)| u.id.as_str())
    } else {
        None
    };
    let page_no = ctx.wants_page.then(|| {
        let before = after.map_or(0, |a| {
            app.users
                .range::<str, _>(paging::up_to(a))
                .filter(|(uid, _)| keep(uid))
                .count()
        });
        page_number(before, limit)
    });
    Ok(JsonPage::new(&ctx, body, limit, next, page_no))
}

pub async fn groups(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
    Path(app_id): Path<String>,
) -> Result<JsonPage, OktaError> {
    let limit = paging::APP_GROUPS.resolve(ctx.query.get("limit"))?;
    let after = ctx.query.non_empty("after");
    let term = ctx.query.non_empty("q");
    let expand_group = expands(&ctx, "group");
    let world = st.read();
    let app = app(&world, &app_id)?;
    let keep = |gid: &str| {
        term.is_none_or(|t| world.groups.get(gid).is_some_and(|g| starts_ci(&g.name, t)))
    };
    let range = app.groups.range::<str, _>(paging::after(after));
    let (page, more) = take_page(range, limit, |(gid, _)| keep(gid));
    let body = json_array(page.iter().map(|(gid, ga)| {
        let embedded = if expand_group {
            world.groups.get(*gid)
        } else {
            None
        };
        render::app_group(&ctx.base, app, gid, ga, embedded)
    }));
    let next = if more {
        page.last().map(|(gid, _)| gid.as_str())
    } else {
        None
    };
    let page_no = ctx.wants_page.then(|| {
        let before = after.map_or(0, |a| {
            app.groups
                .range::<str, _>(paging::up_to(a))
                .filter(|(gid, _)| keep(gid))
                .count()
        });
        page_number(before, limit)
    });
    Ok(JsonPage::new(&ctx, body, limit, next, page_no))
}

pub async fn push_mappings(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
    Path(app_id): Path<String>,
) -> Result<JsonPage, OktaError> {
    let q = &ctx.query;
    let limit = paging::PUSH_MAPPINGS.resolve(q.get("limit"))?;
    let after = q.non_empty("after");
    let since = q
        .non_empty("lastUpdated")
        .map(|s| {
            clock::parse_ms(s)
                .ok_or_else(|| OktaError::validation("lastUpdated: must be an ISO 8601 timestamp"))
        })
        .transpose()?;
    let source = q.non_empty("sourceGroupId");
    let status = q
        .non_empty("status")
        .map(|s| match s {
            "ERROR" => Ok(None),
            s => PushStatus::parse(s).map(Some).ok_or_else(|| {
                OktaError::validation("status: must be one of ACTIVE, INACTIVE, ERROR")
            }),
        })
        .transpose()?;
    let world = st.read();
    let app = app(&world, &app_id)?;
    let keep = |m: &crate::world::PushMapping| {
        since.is_none_or(|t| m.last_updated.saturating_mul(1000) >= t)
            && source.is_none_or(|s| m.source_group_id == s)
            // no mapping of the fake is ever in ERROR
            && status.is_none_or(|st| st == Some(m.status))
    };
    let range = app
        .push
        .range::<str, _>(paging::after(after))
        .map(|(_, m)| m);
    let (page, more) = take_page(range, limit, |m| keep(m));
    let body = json_array(
        page.iter()
            .map(|m| render::push_mapping(&ctx.base, &app.id, m)),
    );
    let next = if more {
        page.last().map(|m| m.id.as_str())
    } else {
        None
    };
    let page_no = ctx.wants_page.then(|| {
        let before = after.map_or(0, |a| {
            app.push
                .range::<str, _>(paging::up_to(a))
                .filter(|(_, m)| keep(m))
                .count()
        });
        page_number(before, limit)
    });
    Ok(JsonPage::new(&ctx, body, limit, next, page_no))
}
