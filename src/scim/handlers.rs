//! The resource handlers for `/Users` and `/Groups`: list with filter and paging, get,
//! create, replace, patch and delete. Writes are validated against the schema, turned
//! into one engine operation and applied through `reconcile::apply`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::Value;

use super::render::{self, Projection, json_response, parse_etag};
use super::{MAX_BODY_BYTES, MAX_PAGE, ScimResponseError, ScimState};

/// How much of an oversized body is read and discarded before the connection is dropped.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
use crate::reconcile::apply::apply;
use crate::reconcile::plan::{Operation, PushedObject};
use crate::reconcile::ports::{TargetError, TargetErrorKind};
use crate::scim_wire::{ResourceType, ScimError, normalize, user_columns};
use crate::store::now_millis;
use crate::store::scim::StoredResource;

type Result<T> = std::result::Result<T, ScimResponseError>;
type Params = Query<HashMap<String, String>>;

fn store_error(e: impl std::fmt::Display) -> ScimResponseError {
    tracing::error!(error = %e, "SCIM request failed in the store");
    ScimError::new(500, None, "internal error; see the server log").into()
}

/// Reads a request body of at most `MAX_BODY_BYTES`. A larger one is read to its end (up
/// to `DRAIN_LIMIT`, then the connection is dropped) before the 413, so that the client
/// receives the answer instead of a reset connection.
async fn body_json(body: Body) -> Result<Value> {
    let mut stream = body.into_data_stream();
    let mut bytes: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ScimError::invalid_syntax(format!("cannot read the body: {e}")))?;
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_BODY_BYTES {
        let detail = format!("the body is larger than {MAX_BODY_BYTES} bytes");
        return Err(ScimError::new(413, None, detail).into());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")).into())
}

fn if_match(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.trim() != "*")
        .and_then(parse_etag)
}

async fn fetch(state: &ScimState, rt: ResourceType, ws: &str, id: &str) -> Result<StoredResource> {
    state
        .store
        .scim_get(rt, ws, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", rt.name())).into())
}

async fn list(
    state: Arc<ScimState>,
    rt: ResourceType,
    ws: String,
    params: HashMap<String, String>,
) -> Result<Response> {
    let int = |name: &str, default: i64| -> Result<i64> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                ScimError::invalid_value(format!("{name} must be an integer, got {v:?}")).into()
            }),
        }
    };
    let start_index = int("startIndex", 1)?.max(1);
    let count = int("count", 100)?.clamp(0, MAX_PAGE);
    let filter = match params
        .get("filter")
        .map(|f| f.trim())
        .filter(|f| !f.is_empty())
    {
        Some(raw) => Some(super::filter::to_sql(
            raw,
            rt,
            "r",
            state.store.dialect(),
            2,
        )?),
        None => None,
    };
    let (total, resources) = state
        .store
        .scim_list(rt, &ws, filter.as_ref(), start_index - 1, count)
        .await
        .map_err(store_error)?;
    let projection = Projection::parse(
        params.get("attributes").map(String::as_str),
        params.get("excludedAttributes").map(String::as_str),
    );
    let items = resources
        .iter()
        .map(|r| projection.apply(rt, render::resource(rt, &ws, r)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &render::list(total, start_index, items),
        None,
    ))
}

/// `POST /.search` at the root: every resource type, users first, paged together.
pub async fn search_all(
    State(state): State<Arc<ScimState>>,
    Path(ws): Path<String>,
    body: Body,
) -> Result<Response> {
    let params = search_params(body_json(body).await?)?;
    let int = |name: &str, default: i64| {
        params
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let start_index = int("startIndex", 1).max(1);
    let count = int("count", 100).clamp(0, MAX_PAGE);
    let raw = params
        .get("filter")
        .map(|f| f.trim())
        .filter(|f| !f.is_empty());
    let projection = Projection::parse(
        params.get("attributes").map(String::as_str),
        params.get("excludedAttributes").map(String::as_str),
    );
    let mut total = 0;
    let mut items = Vec::new();
    let mut last_error = None;
    let mut skip = start_index - 1;
    for rt in [ResourceType::User, ResourceType::Group] {
        let filter = match raw.map(|f| super::filter::to_sql(f, rt, "r", state.store.dialect(), 2))
        {
            Some(Err(e)) => {
                // An attribute of the other type only: this type matches nothing.
                last_error = Some(e);
                continue;
            }
            Some(Ok(f)) => Some(f),
            None => None,
        };
        let want = count - items.len() as i64;
        let (n, resources) = state
            .store
            .scim_list(rt, &ws, filter.as_ref(), skip, want.max(0))
            .await
            .map_err(store_error)?;
        total += n;
        skip = (skip - n).max(0);
        items.extend(
            resources
                .iter()
                .map(|r| projection.apply(rt, render::resource(rt, &ws, r))),
        );
    }
    if let (Some(e), 0) = (last_error, total) {
        return Err(e.into());
    }
    Ok(json_response(
        StatusCode::OK,
        &render::list(total, start_index, items),
        None,
    ))
}

fn search_params(body: Value) -> Result<HashMap<String, String>> {
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| {
        s.iter()
            .any(|u| u == "urn:ietf:params:scim:api:messages:2.0:SearchRequest")
    }) {
        return Err(ScimError::invalid_syntax("a search body must list urn:ietf:params:scim:api:messages:2.0:SearchRequest in schemas").into());
    }
    let mut params = HashMap::new();
    for key in [
        "filter",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
    ] {
        match body.get(key) {
            Some(Value::String(s)) => {
                params.insert(key.to_owned(), s.clone());
            }
            Some(Value::Number(n)) => {
                params.insert(key.to_owned(), n.to_string());
            }
            Some(Value::Array(items)) => {
                let joined: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                params.insert(key.to_owned(), joined.join(","));
            }
            Some(Value::Null) | None => {}
            Some(other) => {
                return Err(ScimError::invalid_value(format!("{key} cannot be {other}")).into());
            }
        }
    }
    Ok(params)
}

/// `POST /Users/.search` (RFC 7644 §3.4.3): the query parameters in a body.
async fn search(
    state: Arc<ScimState>,
    rt: ResourceType,
    ws: String,
    body: Body,
) -> Result<Response> {
    let params = search_params(body_json(body).await?)?;
    list(state, rt, ws, params).await
}

async fn get_one(
    state: Arc<ScimState>,
    rt: ResourceType,
    ws: String,
    id: String,
    params: HashMap<String, String>,
    headers: HeaderMap,
) -> Result<Response> {
    let stored = fetch(&state, rt, &ws, &id).await?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag)
        == Some(stored.version)
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let projection = Projection::parse(
        params.get("attributes").map(String::as_str),
        params.get("excludedAttributes").map(String::as_str),
    );
    let body = projection.apply(rt, render::resource(rt, &ws, &stored));
    Ok(json_response(StatusCode::OK, &body, Some(stored.version)))
}

/// Applies one write through the engine and answers with the resource as written: the
/// document, version and times the store now holds, without reading the row back.
/// `expected_version` None is a create (201), Some an update of that version (200).
async fn write(
    state: &ScimState,
    rt: ResourceType,
    ws: &str,
    written: StoredResource,
    expected_version: Option<i64>,
) -> Result<Response> {
    let operation = pushed(rt, &written, expected_version);
    let outcome = apply(
        &state.target,
        &state.store,
        None,
        ws,
        vec![operation],
        &|_, _| {},
    )
    .await
    .map_err(store_error)?;
    if let Some((_, error)) = outcome.failed.first() {
        return Err(target_error(rt, error).into());
    }
    let body = render::resource(rt, ws, &written);
    let status = match expected_version {
        None => StatusCode::CREATED,
        Some(_) => StatusCode::OK,
    };
    let mut response = json_response(status, &body, Some(written.version));
    if status == StatusCode::CREATED
        && let Some(location) = body
            .pointer("/meta/location")
            .and_then(Value::as_str)
            .and_then(|l| HeaderValue::from_str(l).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A failed write as the SCIM error its kind calls for.
fn target_error(rt: ResourceType, error: &TargetError) -> ScimError {
    let message = error.message.clone();
    match error.kind {
        TargetErrorKind::Conflict if rt == ResourceType::User => {
            ScimError::uniqueness("a user with this userName already exists")
        }
        TargetErrorKind::Conflict => ScimError::uniqueness(message),
        TargetErrorKind::NotFound => ScimError::not_found(message),
        TargetErrorKind::VersionMismatch => {
            ScimError::new(412, None, format!("precondition failed: {message}"))
        }
        TargetErrorKind::Invalid => ScimError::invalid_value(message),
        TargetErrorKind::Transient => {
            tracing::warn!(error = %message, "SCIM write failed in the store");
            ScimError::new(503, None, "the store is busy; retry")
        }
    }
}

fn pushed(rt: ResourceType, written: &StoredResource, expected_version: Option<i64>) -> Operation {
    let doc = &written.doc;
    let object = PushedObject {
        workspace_id: written.id.clone(),
        external_id: match rt {
            ResourceType::User => user_columns(doc).2,
            ResourceType::Group => doc
                .get("externalId")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        document: doc.to_string(),
        create: expected_version.is_none(),
        expected_version,
        received_at: written.updated_at,
    };
    match rt {
        ResourceType::User => Operation::PushUser(object),
        ResourceType::Group => Operation::PushGroup(object),
    }
}

async fn create(
    state: Arc<ScimState>,
    rt: ResourceType,
    ws: String,
    body: Body,
) -> Result<Response> {
    let doc = normalize(rt, &body_json(body).await?)?;
    let received_at = now_millis();
    let written = StoredResource {
        id: crate::store::new_object_id(),
        doc,
        version: 1,
        created_at: received_at,
        updated_at: received_at,
    };
    write(&state, rt, &ws, written, None).await
}

/// PUT (`patch` false: the body is the whole resource, read-only attributes kept) or PATCH
/// (the body's operations applied to the stored document); both answer 200 with the
/// resource, which Okta expects rather than 204.
async fn update(
    state: Arc<ScimState>,
    rt: ResourceType,
    ws: String,
    id: String,
    headers: HeaderMap,
    body: Body,
    patch: bool,
) -> Result<Response> {
    let input = body_json(body).await?;
    let current = fetch(&state, rt, &ws, &id).await?;
    let doc = if patch {
        normalize(rt, &super::patch::apply_patch(rt, &current.doc, &input)?)?
    } else {
        if let Some(given) = input.get("id").and_then(Value::as_str)
            && given != id
        {
            return Err(ScimError::mutability(format!("id is {id}, not {given}")).into());
        }
        normalize(rt, &input)?
    };
    let expected = if_match(&headers).unwrap_or(current.version);
    let written = StoredResource {
        id,
        doc,
        version: expected + 1,
        created_at: current.created_at,
        updated_at: now_millis(),
    };
    write(&state, rt, &ws, written, Some(expected)).await
}

async fn delete(
    state: Arc<ScimState>,
    rt: ResourceType,
    ws: String,
    id: String,
    headers: HeaderMap,
) -> Result<Response> {
    let current = fetch(&state, rt, &ws, &id).await?;
    if let Some(expected) = if_match(&headers)
        && expected != current.version
    {
        return Err(ScimError::new(
            412,
            None,
            format!("{id} is at version {}, not {expected}", current.version),
        )
        .into());
    }
    let operation = match rt {
        ResourceType::User => Operation::DeleteUser { workspace_id: id },
        ResourceType::Group => Operation::DeleteGroup { workspace_id: id },
    };
    let outcome = apply(
        &state.target,
        &state.store,
        None,
        &ws,
        vec![operation],
        &|_, _| {},
    )
    .await
    .map_err(store_error)?;
    if let Some((_, error)) = outcome.failed.first() {
        return Err(target_error(rt, error).into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

macro_rules! handlers {
    ($rt:expr, $list:ident, $search:ident, $get:ident, $create:ident, $replace:ident, $patch:ident, $delete:ident) => {
        pub async fn $list(
            State(s): State<Arc<ScimState>>,
            Path(ws): Path<String>,
            Query(p): Params,
        ) -> Result<Response> {
            list(s, $rt, ws, p).await
        }
        pub async fn $search(
            State(s): State<Arc<ScimState>>,
            Path(ws): Path<String>,
            body: Body,
        ) -> Result<Response> {
            search(s, $rt, ws, body).await
        }
        pub async fn $get(
            State(s): State<Arc<ScimState>>,
            Path((ws, id)): Path<(String, String)>,
            Query(p): Params,
            h: HeaderMap,
        ) -> Result<Response> {
            get_one(s, $rt, ws, id, p, h).await
        }
        pub async fn $create(
            State(s): State<Arc<ScimState>>,
            Path(ws): Path<String>,
            body: Body,
        ) -> Result<Response> {
            create(s, $rt, ws, body).await
        }
        pub async fn $replace(
            State(s): State<Arc<ScimState>>,
            Path((ws, id)): Path<(String, String)>,
            h: HeaderMap,
            body: Body,
        ) -> Result<Response> {
            update(s, $rt, ws, id, h, body, false).await
        }
        pub async fn $patch(
            State(s): State<Arc<ScimState>>,
            Path((ws, id)): Path<(String, String)>,
            h: HeaderMap,
            body: Body,
        ) -> Result<Response> {
            update(s, $rt, ws, id, h, body, true).await
        }
        pub async fn $delete(
            State(s): State<Arc<ScimState>>,
            Path((ws, id)): Path<(String, String)>,
            h: HeaderMap,
        ) -> Result<Response> {
            delete(s, $rt, ws, id, h).await
        }
    };
}

handlers!(
    ResourceType::User,
    list_users,
    search_users,
    get_user,
    create_user,
    replace_user,
    patch_user,
    delete_user
);
handlers!(
    ResourceType::Group,
    list_groups,
    search_groups,
    get_group,
    create_group,
    replace_group,
    patch_group,
    delete_group
);
