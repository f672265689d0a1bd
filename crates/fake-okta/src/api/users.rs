//! `GET /api/v1/users` and `GET /api/v1/users/{idOrLogin}`.
//!
//! Without `filter`, `search` or `q` the list omits DEPROVISIONED users (Okta's documented
//! default); `filter` and `search` include them; `q` is a name/email prefix match that omits
//! them and does not page.

use axum::Extension;
use axum::extract::{Path, State};

use crate::error::OktaError;
use crate::filter::{self, USER_FILTER, USER_SEARCH};
use crate::paging::{
    self, JsonBody, JsonPage, ReqCtx, json_array, json_one, page_number, take_page,
};
use crate::render;
use crate::state::AppState;
use crate::world::{User, UserStatus};

fn starts_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn q_matches(u: &User, term: &str) -> bool {
    u.status != UserStatus::Deprovisioned
        && (u.first_name.as_deref().is_some_and(|f| starts_ci(f, term))
            || u.last_name.as_deref().is_some_and(|l| starts_ci(l, term))
            || starts_ci(&u.email, term))
}

pub async fn list(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
) -> Result<JsonPage, OktaError> {
    let q = &ctx.query;
    if let Some(term) = q.non_empty("q") {
        let limit = paging::USERS_Q.resolve(q.get("limit"))?;
        let world = st.read();
        let (page, _) = take_page(world.users.values(), limit, |u| q_matches(u, term));
        let body = json_array(page.iter().map(|u| render::user(&ctx.base, u)));
        return Ok(JsonPage::new(
            &ctx,
            body,
            limit,
            None,
            ctx.wants_page.then_some(1),
        ));
    }
    let limit = paging::USERS.resolve(q.get("limit"))?;
    let compile = |name: &str, dialect| {
        q.non_empty(name)
            .map(|expr| filter::compile_str(expr, dialect).ok_or_else(OktaError::invalid_search))
            .transpose()
    };
    let filter = compile("filter", &USER_FILTER)?;
    let search = compile("search", &USER_SEARCH)?;
    let everyone = filter.is_some() || search.is_some();
    let keep = |u: &User| {
        if everyone {
            filter.as_ref().is_none_or(|f| f.matches(u))
                && search.as_ref().is_none_or(|s| s.matches(u))
        } else {
            u.status != UserStatus::Deprovisioned
        }
    };
    let after = q.non_empty("after");
    let world = st.read();
    let range = world
        .users
        .range::<str, _>(paging::after(after))
        .map(|(_, u)| u);
    let (page, more) = take_page(range, limit, |u| keep(u));
    let body = json_array(page.iter().map(|u| render::user(&ctx.base, u)));
    let next = if more {
        page.last().map(|u| u.id.as_str())
    } else {
        None
    };
    let page_no = ctx.wants_page.then(|| {
        let before = after.map_or(0, |a| {
            world
                .users
                .range::<str, _>(paging::up_to(a))
                .filter(|(_, u)| keep(u))
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
    let user = world
        .find_user(&id)
        .ok_or_else(|| OktaError::not_found(&id, "User"))?;
    Ok(json_one(&render::user(&ctx.base, user)))
}
