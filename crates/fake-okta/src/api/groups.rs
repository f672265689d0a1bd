//! `GET /api/v1/groups`, `/api/v1/groups/{id}` and `/api/v1/groups/{id}/users`.
//!
//! The list takes `filter`/`search` and pages by id; `q` is a name prefix match without
//! paging (Okta: "You can't page a query"). Member listings return full user objects,
//! DEPROVISIONED members included: deactivated users stay in their groups.

use axum::Extension;
use axum::extract::{Path, State};

use crate::error::OktaError;
use crate::filter::{self, GROUP_FILTER, GROUP_SEARCH};
use crate::paging::{
    self, JsonBody, JsonPage, ReqCtx, json_array, json_one, page_number, take_page,
};
use crate::render;
use crate::state::AppState;
use crate::world::Group;

fn expand_stats(ctx: &ReqCtx) -> bool {
    ctx.query
        .get("expand")
        .is_some_and(|e| e.split(',').any(|x| x.trim() == "stats"))
}

pub async fn list(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
) -> Result<JsonPage, OktaError> {
    let q = &ctx.query;
    let stats = expand_stats(&ctx);
    if let Some(term) = q.non_empty("q") {
        let limit = paging::GROUPS_Q.resolve(q.get("limit"))?;
        let world = st.read();
        let prefix = term.to_lowercase();
        let (page, _) = take_page(world.groups.values(), limit, |g| {
            g.name.to_lowercase().starts_with(&prefix)
        });
        let body = json_array(
            page.iter()
                .map(|g| render::group(&ctx.base, g, stats.then_some(&*world))),
        );
        return Ok(JsonPage::new(
            &ctx,
            body,
            limit,
            None,
            ctx.wants_page.then_some(1),
        ));
    }
    let limit = paging::GROUPS.resolve(q.get("limit"))?;
    let compile = |name: &str, dialect| {
        q.non_empty(name)
            .map(|expr| filter::compile_str(expr, dialect).ok_or_else(OktaError::invalid_search))
            .transpose()
    };
    let filter = compile("filter", &GROUP_FILTER)?;
    let search = compile("search", &GROUP_SEARCH)?;
    let keep = |g: &Group| {
        filter.as_ref().is_none_or(|f| f.matches(g)) && search.as_ref().is_none_or(|s| s.matches(g))
    };
    let after = q.non_empty("after");
    let world = st.read();
    let range = world
        .groups
        .range::<str, _>(paging::after(after))
        .map(|(_, g)| g);
    let (page, more) = take_page(range, limit, |g| keep(g));
    let body = json_array(
        page.iter()
            .map(|g| render::group(&ctx.base, g, stats.then_some(&*world))),
    );
    let next = if more {
        page.last().map(|g| g.id.as_str())
    } else {
        None
    };
    let page_no = ctx.wants_page.then(|| {
        let before = after.map_or(0, |a| {
            world
                .groups
                .range::<str, _>(paging::up_to(a))
                .filter(|(_, g)| keep(g))
                .count()
        });
        page_number(before, limit)
    });
    Ok(JsonPage::new(&ctx, body, limit, next, page_no))
}

pub async fn get_one(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
    Path(id): Path<String>,
) -> Result<JsonBody, OktaError> {
    let world = st.read();
    let group = world
        .groups
        .get(&id)
        .ok_or_else(|| OktaError::not_found(&id, "UserGroup"))?;
    Ok(json_one(&render::group(
        &ctx.base,
        group,
        expand_stats(&ctx).then_some(&*world),
    )))
}

pub async fn members(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
    Path(id): Path<String>,
) -> Result<JsonPage, OktaError> {
    let limit = paging::GROUP_USERS.resolve(ctx.query.get("limit"))?;
    let after = ctx.query.non_empty("after");
    let world = st.read();
    let group = world
        .groups
        .get(&id)
        .ok_or_else(|| OktaError::not_found(&id, "UserGroup"))?;
    let range = group
        .members
        .range::<str, _>(paging::after(after))
        .filter_map(|uid| world.users.get(uid));
    let (page, more) = take_page(range, limit, |_| true);
    let body = json_array(page.iter().map(|u| render::user(&ctx.base, u)));
    let next = if more {
        page.last().map(|u| u.id.as_str())
    } else {
        None
    };
    let page_no = ctx.wants_page.then(|| {
        let before = after.map_or(0, |a| {
            group.members.range::<str, _>(paging::up_to(a)).count()
        });
        page_number(before, limit)
    });
    Ok(JsonPage::new(&ctx, body, limit, next, page_no))
}
