//! The discovery endpoints: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::render::{json_response, list};
use super::{MAX_PAGE, ScimResponseError};
use crate::scim_wire::{ResourceType, ScimError, schema_documents};

pub async fn service_provider_config(Path(workspace): Path<String>) -> Response {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The workspace's SCIM token, sent as Authorization: Bearer <token>",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("/hook/scim/workspaces/{workspace}/ServiceProviderConfig"),
        },
    });
    json_response(StatusCode::OK, &body, None)
}

fn resource_type_doc(workspace: &str, rt: ResourceType) -> Value {
    let extensions: Vec<Value> = rt
        .extension_urns()
        .iter()
        .map(|urn| json!({"schema": urn, "required": false}))
        .collect();
    let mut doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": rt.name(),
        "name": rt.name(),
        "endpoint": format!("/{}", rt.endpoint()),
        "description": rt.name(),
        "schema": rt.core_urn(),
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("/hook/scim/workspaces/{workspace}/ResourceTypes/{}", rt.name()),
        },
    });
    if !extensions.is_empty()
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert("schemaExtensions".into(), Value::Array(extensions));
    }
    doc
}

pub async fn resource_types(Path(workspace): Path<String>) -> Response {
    let all: Vec<Value> = [ResourceType::User, ResourceType::Group]
        .into_iter()
        .map(|rt| resource_type_doc(&workspace, rt))
        .collect();
    json_response(StatusCode::OK, &list(all.len() as i64, 1, all), None)
}

pub async fn resource_type(
    Path((workspace, name)): Path<(String, String)>,
) -> Result<Response, ScimResponseError> {
    let rt = match name.as_str() {
        "User" => ResourceType::User,
        "Group" => ResourceType::Group,
        other => return Err(ScimError::not_found(format!("no resource type {other}")).into()),
    };
    Ok(json_response(
        StatusCode::OK,
        &resource_type_doc(&workspace, rt),
        None,
    ))
}

pub async fn schemas() -> Response {
    let all = schema_documents();
    json_response(StatusCode::OK, &list(all.len() as i64, 1, all), None)
}

pub async fn schema(
    Path((_workspace, urn)): Path<(String, String)>,
) -> Result<Response, ScimResponseError> {
    schema_documents()
        .into_iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(urn.as_str()))
        .map(|s| json_response(StatusCode::OK, &s, None))
        .ok_or_else(|| ScimError::not_found(format!("no schema {urn}")).into())
}
