//! SCIM 2.0 wire knowledge shared by the inbound endpoint and the store: the RFC 7643
//! schemas (User with the Enterprise extension, Group), validation and normalisation of
//! resources against them, and the mapping between a User document and the engine's
//! attributes. It knows nothing of HTTP, SQL or Okta.

use std::collections::HashSet;
use std::sync::OnceLock;

use scim_v2::models::scim_schema::{Attributes, Schema, SubAttributes, get_schemas};
use serde_json::{Map, Value, json};

use crate::model::UserAttributes;

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM error (RFC 7644 §3.12): HTTP status, `scimType` and a detail naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidValue"), detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidSyntax"), detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidFilter"), detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidPath"), detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(400, Some("mutability"), detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".into(), json!(t));
        }
        body
    }
}

/// The two resource types served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    User,
    Group,
}

impl ResourceType {
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }
    pub fn core_urn(self) -> &'static str {
        match self {
            Self::User => USER_URN,
            Self::Group => GROUP_URN,
        }
    }
    pub fn extension_urns(self) -> &'static [&'static str] {
        match self {
            Self::User => &[ENTERPRISE_URN],
            Self::Group => &[],
        }
    }
}

struct Schemas {
    user: Schema,
    group: Schema,
    enterprise: Schema,
}

fn schemas() -> Option<&'static Schemas> {
    static SCHEMAS: OnceLock<Option<Schemas>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let mut all = get_schemas(vec!["user", "group", "enterprise_user"]).ok()?;
            let enterprise = all.pop()?;
            let group = all.pop()?;
            let user = all.pop()?;
            Some(Schemas {
                user,
                group,
                enterprise,
            })
        })
        .as_ref()
}

fn schema_for(urn: &str) -> Result<&'static Schema, ScimError> {
    let s = schemas().ok_or_else(|| ScimError::new(500, None, "SCIM schemas unavailable"))?;
    match urn {
        USER_URN => Ok(&s.user),
        GROUP_URN => Ok(&s.group),
        ENTERPRISE_URN => Ok(&s.enterprise),
        other => Err(ScimError::invalid_value(format!("unknown schema {other}"))),
    }
}

/// The schemas served at `/Schemas`, as JSON.
pub fn schema_documents() -> Vec<Value> {
    [USER_URN, GROUP_URN, ENTERPRISE_URN]
        .into_iter()
        .filter_map(|urn| schema_for(urn).ok())
        .filter_map(|s| serde_json::to_value(s).ok())
        .map(|mut v| {
            if let Some(obj) = v.as_object_mut() {
                let id = obj.get("id").cloned().unwrap_or(Value::Null);
                obj.insert(
                    "schemas".into(),
                    json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]),
                );
                obj.insert(
                    "meta".into(),
                    json!({"resourceType": "Schema", "location": format!("/Schemas/{}", id.as_str().unwrap_or_default())}),
                );
            }
            v
        })
        .collect()
}

/// An attribute definition, top-level or sub-attribute, or `externalId`, which RFC 7643
/// defines for every resource rather than in a schema.
#[derive(Clone, Copy)]
pub enum AttrDef<'a> {
    Top(&'a Attributes),
    Sub(&'a SubAttributes),
    ExternalId,
}

impl<'a> AttrDef<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            Self::Top(a) => &a.name,
            Self::Sub(a) => &a.name,
            Self::ExternalId => "externalId",
        }
    }
    pub fn kind(&self) -> &'a str {
        match self {
            Self::Top(a) => &a.r#type,
            Self::Sub(a) => &a.r#type,
            Self::ExternalId => "string",
        }
    }
    pub fn multi_valued(&self) -> bool {
        match self {
            Self::Top(a) => a.multi_valued,
            Self::Sub(a) => a.multi_valued,
            Self::ExternalId => false,
        }
    }
    pub fn mutability(&self) -> &'a str {
        match self {
            Self::Top(a) => a.mutability.as_deref().unwrap_or("readWrite"),
            Self::Sub(a) => a.mutability.as_deref().unwrap_or("readWrite"),
            Self::ExternalId => "readWrite",
        }
    }
    pub fn returned(&self) -> &'a str {
        match self {
            Self::Top(a) => a.returned.as_deref().unwrap_or("default"),
            Self::Sub(a) => a.returned.as_deref().unwrap_or("default"),
            Self::ExternalId => "default",
        }
    }
    pub fn sub(&self, name: &str) -> Option<AttrDef<'a>> {
        match self {
            Self::Top(a) => a
                .sub_attributes
                .as_option()
                .and_then(|subs| subs.iter().find(|s| s.name.eq_ignore_ascii_case(name)))
                .map(AttrDef::Sub),
            Self::Sub(_) | Self::ExternalId => None,
        }
    }
}

/// Finds an attribute of a schema by name, in any letter case (attribute names are
/// case-insensitive in SCIM).
pub fn find_attr(schema_urn: &str, name: &str) -> Result<Option<AttrDef<'static>>, ScimError> {
    let schema = schema_for(schema_urn)?;
    if name.eq_ignore_ascii_case("externalId")
        && (schema_urn == USER_URN || schema_urn == GROUP_URN)
    {
        return Ok(Some(AttrDef::ExternalId));
    }
    Ok(schema
        .attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(AttrDef::Top))
}

/// Server-managed attributes a client cannot set.
const SERVER_ATTRS: [&str; 3] = ["id", "meta", "schemas"];

/// Validates a resource from a client (POST, PUT, or the result of a PATCH) against its
/// schema and returns its canonical document: attribute names in canonical case,
/// read-only and write-only attributes dropped, `schemas` listing the extensions used.
pub fn normalize(rt: ResourceType, input: &Value) -> Result<Value, ScimError> {
    let Value::Object(obj) = input else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    if let Some(schemas) = obj.get("schemas") {
        let list = schemas
            .as_array()
            .ok_or_else(|| ScimError::invalid_syntax("schemas must be an array of URNs"))?;
        let urns: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        if !urns.contains(&rt.core_urn()) {
            return Err(ScimError::invalid_value(format!(
                "schemas must include {}",
                rt.core_urn()
            )));
        }
        if let Some(bad) = urns
            .iter()
            .find(|u| **u != rt.core_urn() && !rt.extension_urns().contains(u))
        {
            return Err(ScimError::invalid_value(format!("unknown schema {bad}")));
        }
    } else {
        return Err(ScimError::invalid_syntax(format!(
            "schemas is missing: it must include {}",
            rt.core_urn()
        )));
    }
    let mut doc = Map::new();
    let mut used_extensions = Vec::new();
    for (key, value) in obj {
        if SERVER_ATTRS.iter().any(|s| s.eq_ignore_ascii_case(key)) {
            continue;
        }
        if let Some(ext) = rt
            .extension_urns()
            .iter()
            .find(|u| u.eq_ignore_ascii_case(key))
        {
            if value.is_null() {
                continue;
            }
            let Value::Object(ext_obj) = value else {
                return Err(ScimError::invalid_value(format!("{ext} must be an object")));
            };
            let mut ext_doc = Map::new();
            for (k, v) in ext_obj
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
            {
                normalize_attr(ext, k, v, &mut ext_doc)?;
            }
            if !ext_doc.is_empty() {
                doc.insert((*ext).to_owned(), Value::Object(ext_doc));
                used_extensions.push(*ext);
            }
            continue;
        }
        normalize_attr(rt.core_urn(), key, value, &mut doc)?;
    }
    let mut schemas = vec![json!(rt.core_urn())];
    schemas.extend(used_extensions.into_iter().map(|u| json!(u)));
    doc.insert("schemas".into(), Value::Array(schemas));
    for attr in &schema_for(rt.core_urn())?.attributes {
        if attr.required.unwrap_or(false)
            && attr.mutability.as_deref() != Some("readOnly")
            && doc.get(&attr.name).is_none_or(|v| v.is_null() || v == "")
        {
            return Err(ScimError::invalid_value(format!(
                "{} is required",
                attr.name
            )));
        }
    }
    Ok(Value::Object(doc))
}

fn normalize_attr(
    schema_urn: &str,
    key: &str,
    value: &Value,
    out: &mut Map<String, Value>,
) -> Result<(), ScimError> {
    let Some(def) = find_attr(schema_urn, key)? else {
        return Err(ScimError::invalid_syntax(format!(
            "unknown attribute '{key}' for {schema_urn}"
        )));
    };
    if def.mutability() == "readOnly" || def.mutability() == "writeOnly" || value.is_null() {
        // Read-only ones are the server's; write-only ones (password) are never kept.
        return Ok(());
    }
    let v = check_value(def, value, key)?;
    if !is_empty(&v) {
        out.insert(def.name().to_owned(), v);
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Type-checks a value against its definition; returns it in canonical form.
pub fn check_value(def: AttrDef<'_>, value: &Value, path: &str) -> Result<Value, ScimError> {
    if def.multi_valued() {
        let Value::Array(items) = value else {
            return Err(ScimError::invalid_value(format!(
                "{path} is multi-valued: it must be an array"
            )));
        };
        let checked = items
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| check_single(def, v, path))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Value::Array(checked));
    }
    check_single(def, value, path)
}

fn check_single(def: AttrDef<'_>, value: &Value, path: &str) -> Result<Value, ScimError> {
    let wrong = |expected: &str| {
        ScimError::invalid_value(format!("{path} must be {expected}, got {value}"))
    };
    match def.kind() {
        "string" | "reference" | "binary" | "dateTime" => {
            if value.is_string() {
                Ok(value.clone())
            } else {
                Err(wrong("a string"))
            }
        }
        "boolean" => match value {
            Value::Bool(_) => Ok(value.clone()),
            // Entra ID sends "True"/"False".
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong("a boolean")),
        },
        "integer" => {
            if value.is_i64() || value.is_u64() {
                Ok(value.clone())
            } else {
                Err(wrong("an integer"))
            }
        }
        "decimal" => {
            if value.is_number() {
                Ok(value.clone())
            } else {
                Err(wrong("a number"))
            }
        }
        "complex" => {
            let Value::Object(obj) = value else {
                return Err(wrong("an object"));
            };
            let mut out = Map::new();
            for (k, v) in obj {
                let Some(sub) = def.sub(k) else {
                    // Okta and Entra ID send a member's `display`, which the RFC's Group
                    // schema does not list; it is kept as given.
                    if def.name() == "members" && k == "display" && v.is_string() {
                        out.insert(k.clone(), v.clone());
                        continue;
                    }
                    return Err(ScimError::invalid_syntax(format!(
                        "unknown sub-attribute '{k}' of {path}"
                    )));
                };
                if v.is_null() || sub.mutability() == "readOnly" && def.name() != "members" {
                    continue;
                }
                let checked = check_value(sub, v, &format!("{path}.{k}"))?;
                out.insert(sub.name().to_owned(), checked);
            }
            Ok(Value::Object(out))
        }
        other => Err(ScimError::new(
            500,
            None,
            format!("unsupported attribute type {other} for {path}"),
        )),
    }
}

/// The engine's view of a User document: the mapped attributes, `active` (absent means
/// active) and `externalId`.
pub fn user_columns(doc: &Value) -> (UserAttributes, bool, Option<String>) {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let name = doc.get("name");
    let emails = doc.get("emails").and_then(Value::as_array);
    let email = emails.and_then(|list| {
        list.iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| list.first())
            .and_then(|e| s(e.get("value")))
    });
    let attributes = UserAttributes {
        user_name: s(doc.get("userName")).unwrap_or_default(),
        given_name: s(name.and_then(|n| n.get("givenName"))),
        family_name: s(name.and_then(|n| n.get("familyName"))),
        display_name: s(doc.get("displayName")).unwrap_or_default(),
        email,
    };
    let active = doc.get("active").and_then(Value::as_bool).unwrap_or(true);
    (attributes, active, s(doc.get("externalId")))
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    match value {
        Some(v) => {
            obj.insert(key.into(), json!(v));
        }
        None => {
            obj.remove(key);
        }
    }
}

/// Writes the engine's attributes into a User document (Okta's default mapping), keeping
/// every attribute the mapping does not own.
pub fn merge_user(
    doc: Option<&Value>,
    attributes: &UserAttributes,
    active: bool,
    external_id: Option<&str>,
) -> Value {
    let mut obj = doc.and_then(Value::as_object).cloned().unwrap_or_else(|| {
        let mut m = Map::new();
        m.insert("schemas".into(), json!([USER_URN]));
        m
    });
    obj.insert("userName".into(), json!(attributes.user_name));
    set_or_remove(
        &mut obj,
        "displayName",
        Some(&attributes.display_name)
            .filter(|d| !d.is_empty())
            .map(String::as_str),
    );
    set_or_remove(&mut obj, "externalId", external_id);
    obj.insert("active".into(), json!(active));
    let mut name = obj
        .get("name")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    set_or_remove(&mut name, "givenName", attributes.given_name.as_deref());
    set_or_remove(&mut name, "familyName", attributes.family_name.as_deref());
    if name.is_empty() {
        obj.remove("name");
    } else {
        obj.insert("name".into(), Value::Object(name));
    }
    let mut emails: Vec<Value> = obj
        .get("emails")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let primary = emails
        .iter()
        .position(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or(if emails.is_empty() { None } else { Some(0) });
    match (&attributes.email, primary) {
        (Some(email), Some(i)) => {
            if let Some(e) = emails.get_mut(i).and_then(Value::as_object_mut) {
                e.insert("value".into(), json!(email));
            }
        }
        (Some(email), None) => {
            emails.push(json!({"value": email, "type": "work", "primary": true}));
        }
        (None, Some(i)) => {
            emails.remove(i);
        }
        (None, None) => {}
    }
    if emails.is_empty() {
        obj.remove("emails");
    } else {
        obj.insert("emails".into(), Value::Array(emails));
    }
    Value::Object(obj)
}

/// A Group document for a group the engine creates or renames.
pub fn merge_group(doc: Option<&Value>, display_name: &str) -> Value {
    let mut obj = doc.and_then(Value::as_object).cloned().unwrap_or_else(|| {
        let mut m = Map::new();
        m.insert("schemas".into(), json!([GROUP_URN]));
        m
    });
    obj.insert("displayName".into(), json!(display_name));
    Value::Object(obj)
}

/// The member ids of a Group document.
pub fn group_member_ids(doc: &Value) -> Vec<String> {
    doc.get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|e| e.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds and removes members in a Group document (engine membership changes). Linear in
/// the group's size: a first sync adds thousands of members to a group at once.
pub fn change_group_members(doc: &Value, add: &[String], remove: &[String]) -> Value {
    let mut obj = doc.as_object().cloned().unwrap_or_default();
    let mut members: Vec<Value> = match obj.get_mut("members") {
        Some(Value::Array(members)) => std::mem::take(members),
        _ => Vec::new(),
    };
    let member_id = |m: &Value| m.get("value").and_then(Value::as_str).map(str::to_owned);
    if !remove.is_empty() {
        let remove: HashSet<&str> = remove.iter().map(String::as_str).collect();
        members.retain(|m| {
            m.get("value")
                .and_then(Value::as_str)
                .is_none_or(|v| !remove.contains(v))
        });
    }
    let mut present: HashSet<String> = members.iter().filter_map(member_id).collect();
    for id in add {
        if present.insert(id.clone()) {
            members.push(json!({"value": id, "type": "User"}));
        }
    }
    if members.is_empty() {
        obj.remove("members");
    } else {
        obj.insert("members".into(), Value::Array(members));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_members_change_in_order_once_each() {
        let doc = json!({"schemas": [GROUP_URN], "displayName": "Ops",
            "members": [{"value": "a", "type": "User"}, {"value": "b", "type": "User"}]});
        let add = [
            "c".to_string(),
            "a".to_string(),
            "d".to_string(),
            "c".to_string(),
        ];
        let changed = change_group_members(&doc, &add, &["b".to_string()]);
        assert_eq!(group_member_ids(&changed), vec!["a", "c", "d"]);
        assert_eq!(changed["displayName"], "Ops");
        let emptied = change_group_members(&changed, &[], &["a".into(), "c".into(), "d".into()]);
        assert!(emptied.get("members").is_none(), "{emptied}");
    }

    #[test]
    fn normalizes_okta_create_body_and_drops_password() {
        let body = json!({"schemas":[USER_URN],"userName":"test.user@okta.local",
            "name":{"givenName":"Test","familyName":"User"},
            "emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],
            "displayName":"Test User","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7",
            "groups":[],"password":"1mz050nq","active":true});
        let doc = normalize(ResourceType::User, &body).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(doc.get("password").is_none());
        assert!(doc.get("groups").is_none(), "read-only");
        let (attrs, active, external) = user_columns(&doc);
        assert_eq!(attrs.user_name, "test.user@okta.local");
        assert_eq!(attrs.email.as_deref(), Some("test.user@okta.local"));
        assert!(active);
        assert_eq!(external.as_deref(), Some("00ujl29u0le5T6Aj10h7"));
    }

    #[test]
    fn rejects_unknown_attributes_wrong_types_and_schemas() {
        let base = json!({"schemas":[USER_URN],"userName":"a"});
        let mut bad = base.clone();
        bad["foo"] = json!(1);
        assert_eq!(
            normalize(ResourceType::User, &bad).map_err(|e| e.scim_type),
            Err(Some("invalidSyntax"))
        );
        let mut bad = base.clone();
        bad["active"] = json!("maybe");
        assert_eq!(
            normalize(ResourceType::User, &bad).map_err(|e| e.scim_type),
            Err(Some("invalidValue"))
        );
        let wrong_schema = json!({"schemas":[GROUP_URN],"userName":"a"});
        assert!(normalize(ResourceType::User, &wrong_schema).is_err());
        let no_user_name = json!({"schemas":[USER_URN]});
        assert!(normalize(ResourceType::User, &no_user_name).is_err());
        let mut entra = base;
        entra["active"] = json!("False");
        let doc = normalize(ResourceType::User, &entra).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(doc["active"], json!(false));
    }

    #[test]
    fn merging_engine_attributes_keeps_the_rest() {
        let doc = json!({"schemas":[USER_URN],"userName":"old","title":"Engineer",
            "emails":[{"value":"home@x","type":"home"},{"value":"old@x","type":"work","primary":true}]});
        let attrs = UserAttributes {
            user_name: "new".into(),
            given_name: Some("Ada".into()),
            family_name: None,
            display_name: "Ada".into(),
            email: Some("new@x".into()),
        };
        let merged = merge_user(Some(&doc), &attrs, false, Some("00u1"));
        assert_eq!(merged["title"], "Engineer");
        assert_eq!(merged["emails"][0]["value"], "home@x");
        assert_eq!(merged["emails"][1]["value"], "new@x");
        assert_eq!(merged["active"], false);
        let (back, active, ext) = user_columns(&merged);
        assert_eq!(back, attrs);
        assert!(!active);
        assert_eq!(ext.as_deref(), Some("00u1"));
    }
}
