//! SCIM responses: a stored resource with `id` and `meta`, projected by `attributes` /
//! `excludedAttributes`, list responses, and the `application/scim+json` content type.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::scim_wire::{LIST_URN, ResourceType, find_attr};
use crate::store::scim::StoredResource;

pub const SCIM_JSON: &str = "application/scim+json";

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Parses `W/"7"` or `"7"` into a version.
pub fn parse_etag(value: &str) -> Option<i64> {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// The full resource as a client sees it.
pub fn resource(rt: ResourceType, workspace_id: &str, r: &StoredResource) -> Value {
    let mut obj = r.doc.as_object().cloned().unwrap_or_default();
    obj.insert("id".into(), json!(r.id));
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": rt.name(),
            "created": iso(r.created_at),
            "lastModified": iso(r.updated_at),
            "version": etag(r.version),
            "location": format!("/hook/scim/workspaces/{workspace_id}/{}/{}", rt.endpoint(), r.id),
        }),
    );
    if !obj.contains_key("schemas") {
        obj.insert("schemas".into(), json!([rt.core_urn()]));
    }
    Value::Object(obj)
}

/// Which attributes to return (RFC 7644 §3.4.2.5).
#[derive(Debug, Default, Clone)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        let split = |s: Option<&str>| {
            s.map(|s| {
                s.split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        Self {
            attributes: split(attributes),
            excluded: split(excluded),
        }
    }

    /// Keeps what was asked for; `id`, `schemas` and `meta` (returned "always"/by default for
    /// the server's own) stay unless excluded explicitly where the RFC allows.
    pub fn apply(&self, rt: ResourceType, resource: Value) -> Value {
        let Value::Object(obj) = resource else {
            return resource;
        };
        let always = |k: &str| k == "id" || k == "schemas" || is_always(rt, k);
        let mut out = Map::new();
        for (k, v) in obj {
            if !self.attributes.is_empty() {
                if always(&k) {
                    out.insert(k, v);
                    continue;
                }
                let wanted: Vec<&str> = self
                    .attributes
                    .iter()
                    .filter_map(|a| matches_attr(a, &k))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                if wanted.contains(&"") {
                    out.insert(k, v);
                } else if let Value::Object(sub) = v {
                    let kept: Map<String, Value> = sub
                        .into_iter()
                        .filter(|(sk, _)| wanted.iter().any(|w| w.eq_ignore_ascii_case(sk)))
                        .collect();
                    if !kept.is_empty() {
                        out.insert(k, Value::Object(kept));
                    }
                } else if let Value::Array(items) = v {
                    let kept: Vec<Value> = items
                        .into_iter()
                        .map(|item| match item {
                            Value::Object(o) => Value::Object(
                                o.into_iter()
                                    .filter(|(sk, _)| {
                                        wanted.iter().any(|w| w.eq_ignore_ascii_case(sk))
                                    })
                                    .collect(),
                            ),
                            other => other,
                        })
                        .collect();
                    out.insert(k, Value::Array(kept));
                }
                continue;
            }
            if !always(&k) {
                let excluded: Vec<&str> = self
                    .excluded
                    .iter()
                    .filter_map(|a| matches_attr(a, &k))
                    .collect();
                if excluded.contains(&"") {
                    continue;
                }
                if let (false, Value::Object(sub)) = (excluded.is_empty(), &v) {
                    let kept: Map<String, Value> = sub
                        .iter()
                        .filter(|(sk, _)| !excluded.iter().any(|w| w.eq_ignore_ascii_case(sk)))
                        .map(|(a, b)| (a.clone(), b.clone()))
                        .collect();
                    out.insert(k, Value::Object(kept));
                    continue;
                }
            }
            out.insert(k, v);
        }
        Value::Object(out)
    }
}

/// Whether a requested attribute name designates `key`: Some("") for the whole attribute,
/// Some(sub) for one of its sub-attributes.
fn matches_attr<'a>(requested: &'a str, key: &str) -> Option<&'a str> {
    let requested = requested
        .strip_prefix("urn:ietf:params:scim:schemas:core:2.0:User:")
        .or_else(|| requested.strip_prefix("urn:ietf:params:scim:schemas:core:2.0:Group:"))
        .unwrap_or(requested);
    if requested.eq_ignore_ascii_case(key) {
        return Some("");
    }
    if key.starts_with("urn:") {
        // `urn:…:enterprise:2.0:User:department` selects that extension attribute.
        let prefix = format!("{key}:");
        if requested.len() > prefix.len() && requested[..prefix.len()].eq_ignore_ascii_case(&prefix)
        {
            return Some(&requested[prefix.len()..]);
        }
        return None;
    }
    let (head, sub) = requested.split_once('.')?;
    head.eq_ignore_ascii_case(key).then_some(sub)
}

fn is_always(rt: ResourceType, key: &str) -> bool {
    find_attr(rt.core_urn(), key)
        .ok()
        .flatten()
        .is_some_and(|d| d.returned() == "always")
}

pub fn json_response(status: StatusCode, body: &Value, version: Option<i64>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, body.to_string()).into_response()
}

pub fn list(total: i64, start_index: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}
