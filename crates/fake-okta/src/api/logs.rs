//! `GET /api/v1/logs`: parameter validation and paging over the System Log.
//!
//! A polling request (no `until`, ascending) always gets a `next` link, even with `[]`, so a
//! client can persist it as its checkpoint; bounded requests end without one.

use axum::Extension;
use axum::extract::State;

use crate::clock;
use crate::error::OktaError;
use crate::filter::{self, LOG_FILTER};
use crate::paging::{self, JsonPage, ReqCtx, json_array, page_number};
use crate::render;
use crate::state::AppState;
use crate::syslog::{Cursor, LogQuery};

const DAY_MS: i64 = 86_400_000;

fn time_param(ctx: &ReqCtx, name: &str) -> Result<Option<i64>, OktaError> {
    ctx.query
        .non_empty(name)
        .map(|s| {
            clock::parse_ms(s).ok_or_else(|| {
                OktaError::invalid_log_param(&format!("{name} is not a valid ISO 8601 timestamp"))
            })
        })
        .transpose()
}

pub async fn list(
    State(st): State<AppState>,
    Extension(ctx): Extension<ReqCtx>,
) -> Result<JsonPage, OktaError> {
    let q = &ctx.query;
    let now = st.clock.now_ms();
    let limit = paging::LOGS.resolve(q.get("limit"))?;
    let until = time_param(&ctx, "until")?;
    let since = time_param(&ctx, "since")?.unwrap_or(until.unwrap_or(now) - 7 * DAY_MS);
    if since < now - 180 * DAY_MS {
        return Err(OktaError::invalid_log_param(
            "The since parameter is over 180 days prior to the current day.",
        ));
    }
    let descending = match q.non_empty("sortOrder") {
        None | Some("ASCENDING") => false,
        Some("DESCENDING") => true,
        Some(_) => {
            return Err(OktaError::invalid_log_param(
                "sortOrder must be ASCENDING or DESCENDING",
            ));
        }
    };
    let after = q
        .non_empty("after")
        .map(|a| Cursor::parse(a).ok_or_else(|| OktaError::invalid_log_param("after")))
        .transpose()?;
    let compiled = q
        .non_empty("filter")
        .map(|f| {
            filter::compile_str(f, &LOG_FILTER)
                .ok_or_else(|| OktaError::invalid_log_param("filter is not a valid SCIM filter"))
        })
        .transpose()?;
    let keywords: Vec<String> = q
        .get("q")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    if keywords.len() > 10 || keywords.iter().any(|k| k.chars().count() > 40) {
        return Err(OktaError::invalid_log_param(
            "q allows at most 10 keywords of at most 40 characters",
        ));
    }
    let query = LogQuery {
        since_ms: since,
        until_ms: until,
        descending,
        after,
        limit,
        filter: compiled.as_ref(),
        keywords: &keywords,
        now_ms: now,
    };
    let world = st.read();
    let page = world.log.query(&query);
    let body = if st.omit_log_nulls {
        json_array(
            page.events
                .iter()
                .map(|e| render::without_nulls(serde_json::to_value(render::event(e)))),
        )
    } else {
        json_array(page.events.iter().map(|e| render::event(e)))
    };
    let next = page.next.map(|c| c.to_string());
    let page_no = ctx.wants_page.then(|| page_number(page.position, limit));
    Ok(JsonPage::new(&ctx, body, limit, next.as_deref(), page_no))
}
