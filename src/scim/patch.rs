//! PATCH (RFC 7644 §3.5.2) applied to a canonical resource document: add, replace and
//! remove, with or without a path, including value-path filters such as
//! `members[value eq "id"]` and extension URNs. Every form Okta and Entra ID send is
//! accepted. The result is validated again by the caller (`scim_wire::normalize`).

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use crate::scim_wire::{AttrDef, ResourceType, ScimError, check_value, find_attr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a `PatchOp` request body to `doc`.
pub fn apply_patch(rt: ResourceType, doc: &Value, body: &Value) -> Result<Value, ScimError> {
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|u| u == crate::scim_wire::PATCH_URN)) {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body must list {} in schemas",
            crate::scim_wire::PATCH_URN
        )));
    }
    let ops = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body needs an Operations array"))?;
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("Operations is empty"));
    }
    let mut doc = doc.as_object().cloned().unwrap_or_default();
    for (i, operation) in ops.iter().enumerate() {
        apply_one(rt, &mut doc, operation).map_err(|mut e| {
            e.detail = format!("Operations[{i}]: {}", e.detail);
            e
        })?;
    }
    Ok(Value::Object(doc))
}

fn apply_one(
    rt: ResourceType,
    doc: &mut Map<String, Value>,
    operation: &Value,
) -> Result<(), ScimError> {
    let op = match operation
        .get("op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => Op::Add,
        Some("replace") => Op::Replace,
        Some("remove") => Op::Remove,
        other => {
            return Err(ScimError::invalid_syntax(format!(
                "op must be add, replace or remove, got {other:?}"
            )));
        }
    };
    let value = operation.get("value");
    let path = operation
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty());
    match path {
        None => {
            if op == Op::Remove {
                return Err(ScimError::new(400, Some("noTarget"), "remove needs a path"));
            }
            let Some(Value::Object(values)) = value else {
                return Err(ScimError::invalid_value(
                    "an operation without path needs an object value",
                ));
            };
            for (key, v) in values {
                // Okta's group rename repeats the resource's id; the id cannot change.
                if ["id", "schemas", "meta"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(key))
                {
                    continue;
                }
                if let Some(ext) = extension(rt, key) {
                    let Value::Object(inner) = v else {
                        return Err(ScimError::invalid_value(format!("{ext} must be an object")));
                    };
                    for (k, vv) in inner
                        .iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
                    {
                        let target = ext_container(doc, ext)?;
                        set_attr(op, ext, target, k, None, Some(vv))?;
                    }
                } else {
                    let (name, sub) = match key.split_once('.') {
                        Some((n, s)) if !key.starts_with("urn:") => (n, Some(s)),
                        _ => (key.as_str(), None),
                    };
                    set_attr(op, rt.core_urn(), doc, name, sub, Some(v))?;
                }
            }
            Ok(())
        }
        Some(path) => {
            if let Some(ext) = extension(rt, path) {
                // The whole extension object.
                match op {
                    Op::Remove => {
                        doc.remove(ext);
                    }
                    _ => {
                        let Some(Value::Object(inner)) = value else {
                            return Err(ScimError::invalid_value(format!(
                                "{ext} must be an object"
                            )));
                        };
                        if op == Op::Replace {
                            doc.remove(ext);
                        }
                        for (k, v) in inner
                            .iter()
                            .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
                        {
                            let target = ext_container(doc, ext)?;
                            set_attr(Op::Replace, ext, target, k, None, Some(v))?;
                        }
                    }
                }
                return Ok(());
            }
            let parsed: PatchPath = path.parse().map_err(|e| {
                ScimError::invalid_path(format!("path {path:?} is not a SCIM path: {e}"))
            })?;
            let attr = match &parsed {
                PatchPath::Attr(a) => a,
                PatchPath::Value(v) => &v.attr,
            };
            let schema = schema_of(rt, attr)?;
            let container = if schema == rt.core_urn() {
                &mut *doc
            } else {
                ext_container(doc, schema)?
            };
            match parsed {
                PatchPath::Attr(a) => {
                    set_attr(op, schema, container, &a.name, a.sub_attr.as_deref(), value)
                }
                PatchPath::Value(vp) => value_path(
                    op,
                    schema,
                    container,
                    &vp.attr.name,
                    &vp.filter,
                    vp.sub_attr.as_deref(),
                    value,
                ),
            }?;
            if schema != rt.core_urn()
                && doc
                    .get(schema)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty)
            {
                doc.remove(schema);
            }
            Ok(())
        }
    }
}

fn extension(rt: ResourceType, key: &str) -> Option<&'static str> {
    rt.extension_urns()
        .iter()
        .copied()
        .find(|u| u.eq_ignore_ascii_case(key))
}

fn schema_of(rt: ResourceType, attr: &AttrPath) -> Result<&'static str, ScimError> {
    match &attr.uri {
        None => Ok(rt.core_urn()),
        Some(uri) if uri.eq_ignore_ascii_case(rt.core_urn()) => Ok(rt.core_urn()),
        Some(uri) => extension(rt, uri)
            .ok_or_else(|| ScimError::invalid_path(format!("unknown schema {uri}"))),
    }
}

fn ext_container<'a>(
    doc: &'a mut Map<String, Value>,
    ext: &str,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    let entry = doc
        .entry(ext.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry
        .as_object_mut()
        .ok_or_else(|| ScimError::new(500, None, format!("{ext} is not an object")))
}

fn lookup(schema: &str, name: &str) -> Result<AttrDef<'static>, ScimError> {
    if name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case("meta") {
        return Err(ScimError::mutability(format!("{name} is read-only")));
    }
    find_attr(schema, name)?
        .ok_or_else(|| ScimError::invalid_path(format!("unknown attribute '{name}'")))
}

/// add/replace/remove of `name` or `name.sub` in `container`.
fn set_attr(
    op: Op,
    schema: &str,
    container: &mut Map<String, Value>,
    name: &str,
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let def = lookup(schema, name)?;
    if def.mutability() == "readOnly" {
        return Err(ScimError::mutability(format!(
            "{} is read-only",
            def.name()
        )));
    }
    let key = def.name().to_owned();
    if let Some(sub) = sub {
        let sub_def = def.sub(sub).ok_or_else(|| {
            ScimError::invalid_path(format!("unknown sub-attribute '{name}.{sub}'"))
        })?;
        if def.multi_valued() {
            return Err(ScimError::invalid_path(format!(
                "{name} is multi-valued: use a filter, like {name}[type eq \"work\"].{sub}"
            )));
        }
        let obj = container
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(obj) = obj else {
            return Err(ScimError::invalid_path(format!("{name} is not complex")));
        };
        match op {
            Op::Remove => {
                obj.retain(|k, _| !k.eq_ignore_ascii_case(sub));
            }
            Op::Add | Op::Replace => {
                let v = value.ok_or_else(|| ScimError::invalid_value("value is missing"))?;
                let checked = check_value(sub_def, v, &format!("{name}.{sub}"))?;
                obj.insert(sub_def.name().to_owned(), checked);
            }
        }
        if obj.is_empty() {
            container.remove(&key);
        }
        return Ok(());
    }
    match op {
        Op::Remove => {
            container.remove(&key);
        }
        Op::Add | Op::Replace => {
            let v = value.ok_or_else(|| ScimError::invalid_value("value is missing"))?;
            if v.is_null() {
                container.remove(&key);
                return Ok(());
            }
            if def.multi_valued() {
                let items = if v.is_array() {
                    v.clone()
                } else {
                    Value::Array(vec![v.clone()])
                };
                let Value::Array(items) = check_value(def, &items, name)? else {
                    return Err(ScimError::invalid_value(format!("{name} must be an array")));
                };
                let list = if op == Op::Add {
                    let mut existing = container
                        .get(&key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for item in items {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                    existing
                } else {
                    items
                };
                container.insert(key, Value::Array(list));
            } else if def.kind() == "complex" {
                let Value::Object(new) = check_value(def, v, name)? else {
                    return Err(ScimError::invalid_value(format!(
                        "{name} must be an object"
                    )));
                };
                // RFC 7644 §3.5.2.1/3: sub-attributes not given are left unchanged.
                let mut merged = container
                    .get(&key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                merged.extend(new);
                container.insert(key, Value::Object(merged));
            } else {
                container.insert(key, check_value(def, v, name)?);
            }
        }
    }
    Ok(())
}

/// Operations on the elements of a multi-valued attribute selected by a filter.
fn value_path(
    op: Op,
    schema: &str,
    container: &mut Map<String, Value>,
    name: &str,
    filter: &ValFilter,
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let def = lookup(schema, name)?;
    if !def.multi_valued() || def.kind() != "complex" {
        return Err(ScimError::invalid_path(format!(
            "{name} is not a multi-valued complex attribute"
        )));
    }
    let key = def.name().to_owned();
    let exact_values = def.name() == "members";
    let mut items = container
        .get(&key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| eval(filter, item, exact_values))
        .map(|(i, _)| i)
        .collect();
    match (op, sub) {
        (Op::Remove, None) => {
            // Removing a member that is not there is not an error: Okta retries removals.
            let mut i = 0;
            items.retain(|_| {
                let keep = !matched.contains(&i);
                i += 1;
                keep
            });
        }
        (Op::Remove, Some(sub)) => {
            for i in &matched {
                if let Some(Value::Object(obj)) = items.get_mut(*i) {
                    obj.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                }
            }
        }
        (Op::Add | Op::Replace, _) => {
            let v = value.ok_or_else(|| ScimError::invalid_value("value is missing"))?;
            if matched.is_empty() {
                if op == Op::Replace && sub.is_none() {
                    return Err(ScimError::new(
                        400,
                        Some("noTarget"),
                        format!("no {name} value matches the filter"),
                    ));
                }
                // Entra ID adds through a filter: create the element the filter describes.
                let mut seed = Map::new();
                if let ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(s))) =
                    filter
                {
                    seed.insert(p.name.clone(), Value::String(s.clone()));
                }
                items.push(Value::Object(seed));
                let last = items.len() - 1;
                return finish_value_path(def, container, key, items, vec![last], sub, v, name);
            }
            return finish_value_path(def, container, key, items, matched, sub, v, name);
        }
    }
    store_items(container, key, items);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn finish_value_path(
    def: AttrDef<'static>,
    container: &mut Map<String, Value>,
    key: String,
    mut items: Vec<Value>,
    targets: Vec<usize>,
    sub: Option<&str>,
    v: &Value,
    name: &str,
) -> Result<(), ScimError> {
    for i in targets {
        let Some(item) = items.get_mut(i) else {
            continue;
        };
        match sub {
            Some(sub) => {
                let sub_def = def.sub(sub).ok_or_else(|| {
                    ScimError::invalid_path(format!("unknown sub-attribute '{name}.{sub}'"))
                })?;
                let checked = check_value(sub_def, v, &format!("{name}.{sub}"))?;
                if let Value::Object(obj) = item {
                    obj.insert(sub_def.name().to_owned(), checked);
                }
            }
            None => {
                let checked = check_value(def, &Value::Array(vec![v.clone()]), name)?;
                let Some(Value::Object(new)) = checked.as_array().and_then(|a| a.first().cloned())
                else {
                    return Err(ScimError::invalid_value(format!(
                        "{name} values must be objects"
                    )));
                };
                *item = Value::Object(new);
            }
        }
    }
    store_items(container, key, items);
    Ok(())
}

fn store_items(container: &mut Map<String, Value>, key: String, items: Vec<Value>) {
    if items.is_empty() {
        container.remove(&key);
    } else {
        container.insert(key, Value::Array(items));
    }
}

/// Evaluates a value-path filter against one element of a multi-valued attribute.
pub fn eval(filter: &ValFilter, item: &Value, exact_values: bool) -> bool {
    match filter {
        ValFilter::Attr(exp) => eval_exp(exp, item, exact_values),
        ValFilter::Not(inner) => !eval(inner, item, exact_values),
        ValFilter::And(items) => items.iter().all(|f| eval(f, item, exact_values)),
        ValFilter::Or(items) => items.iter().any(|f| eval(f, item, exact_values)),
    }
}

fn field<'a>(item: &'a Value, name: &str) -> Option<&'a Value> {
    item.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn eval_exp(exp: &AttrExp, item: &Value, exact_values: bool) -> bool {
    match exp {
        AttrExp::Present(p) => field(item, &p.name).is_some_and(|v| !v.is_null()),
        AttrExp::Comparison(p, op, expected) => {
            let Some(actual) = field(item, &p.name) else {
                return matches!(op, CompareOp::Ne);
            };
            let exact = exact_values && p.name == "value";
            compare(actual, op, expected, exact)
        }
    }
}

/// Compares a JSON value with a filter literal; strings case-insensitively unless `exact`.
pub fn compare(actual: &Value, op: &CompareOp, expected: &CompValue, exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), CompValue::Str(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                CompareOp::Gt => a > e,
                CompareOp::Ge => a >= e,
                CompareOp::Lt => a < e,
                CompareOp::Le => a <= e,
            }
        }
        (Value::Bool(a), CompValue::True) => matches!(op, CompareOp::Eq) == *a,
        (Value::Bool(a), CompValue::False) => matches!(op, CompareOp::Eq) != *a,
        (Value::Number(a), CompValue::Number(e)) => {
            let (a, e) = (
                a.as_f64().unwrap_or(f64::NAN),
                e.as_f64().unwrap_or(f64::NAN),
            );
            match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                CompareOp::Gt => a > e,
                CompareOp::Ge => a >= e,
                CompareOp::Lt => a < e,
                CompareOp::Le => a <= e,
                _ => false,
            }
        }
        (_, CompValue::Null) => matches!(op, CompareOp::Ne),
        _ => matches!(op, CompareOp::Ne),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim_wire::{GROUP_URN, USER_URN};
    use serde_json::json;

    fn patch(rt: ResourceType, doc: Value, ops: Value) -> Result<Value, ScimError> {
        apply_patch(
            rt,
            &doc,
            &json!({"schemas": [crate::scim_wire::PATCH_URN], "Operations": ops}),
        )
    }

    fn user() -> Value {
        json!({"schemas":[USER_URN],"userName":"a","active":true,"name":{"givenName":"A","familyName":"B"},
               "emails":[{"value":"a@x","type":"work","primary":true}]})
    }

    #[test]
    fn okta_pathless_replace_of_active() {
        let out = patch(
            ResourceType::User,
            user(),
            json!([{"op":"replace","value":{"active":false}}]),
        );
        assert_eq!(out.map(|d| d["active"].clone()), Ok(json!(false)));
    }

    #[test]
    fn entra_forms() {
        let out = patch(
            ResourceType::User,
            user(),
            json!([{"op":"Replace","path":"active","value":"False"},
                   {"op":"Add","path":"emails[type eq \"home\"].value","value":"h@x"},
                   {"op":"replace","value":{"name.givenName":"Z"}}]),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out["active"], json!(false));
        assert_eq!(out["emails"][1], json!({"type":"home","value":"h@x"}));
        assert_eq!(out["name"], json!({"givenName":"Z","familyName":"B"}));
    }

    #[test]
    fn okta_group_membership_add_and_filtered_remove_and_rename() {
        let group = json!({"schemas":[GROUP_URN],"displayName":"G","members":[{"value":"u1"},{"value":"u2"}]});
        let out = patch(
            ResourceType::Group,
            group,
            json!([{"op":"remove","path":"members[value eq \"u1\"]"},
                   {"op":"add","path":"members","value":[{"value":"u3","display":"c"}]},
                   {"op":"replace","value":{"id":"ignored?","displayName":"Renamed"}}]),
        );
        // Okta repeats the id in a path-less rename: ignored, not an error.
        assert_eq!(
            out.map(|d| d["displayName"].clone()),
            Ok(serde_json::json!("Renamed"))
        );
        let group = json!({"schemas":[GROUP_URN],"displayName":"G","members":[{"value":"u1"},{"value":"u2"}]});
        let out = patch(
            ResourceType::Group,
            group,
            json!([{"op":"remove","path":"members[value eq \"u1\"]"},
                   {"op":"add","path":"members","value":[{"value":"u3","display":"c"}]},
                   {"op":"replace","value":{"displayName":"Renamed"}},
                   {"op":"remove","path":"members[value eq \"not-there\"]"}]),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            out["members"],
            json!([{"value":"u2"},{"value":"u3","display":"c"}])
        );
        assert_eq!(out["displayName"], "Renamed");
    }

    #[test]
    fn extension_paths() {
        let ext = crate::scim_wire::ENTERPRISE_URN;
        let out = patch(
            ResourceType::User,
            user(),
            json!([{"op":"add","path":format!("{ext}:department"),"value":"R&D"},
                   {"op":"add","path":format!("{ext}:manager.value"),"value":"m1"}]),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            out[ext],
            json!({"department":"R&D","manager":{"value":"m1"}})
        );
        let out = patch(ResourceType::User, out, json!([{"op":"remove","path":ext}]))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(out.get(ext).is_none());
    }

    fn json_values() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-zA-Z0-9 @.]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z.$]{1,10}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Any operation list, on any path, with any value: a result or a SCIM error,
        /// never a panic; and a result always validates or is refused by `normalize`.
        #[test]
        fn patch_never_panics(
            op in proptest::prop_oneof!["add", "replace", "remove", "Replace", "x"],
            path in proptest::option::of(proptest::prop_oneof![
                proptest::strategy::Just("members[value eq \"u1\"]".to_string()),
                proptest::strategy::Just("emails[type eq \"work\"].value".to_string()),
                proptest::strategy::Just("name.givenName".to_string()),
                proptest::strategy::Just(format!("{}:manager.value", crate::scim_wire::ENTERPRISE_URN)),
                "[a-zA-Z.\\[\\] \"=]{0,24}",
            ]),
            value in json_values(),
            group in proptest::bool::ANY,
        ) {
            let rt = if group { ResourceType::Group } else { ResourceType::User };
            let doc = if group {
                json!({"schemas":[GROUP_URN],"displayName":"G","members":[{"value":"u1"}]})
            } else {
                user()
            };
            let mut operation = json!({"op": op, "value": value});
            if let Some(p) = path {
                operation["path"] = json!(p);
            }
            if let Ok(out) = patch(rt, doc, json!([operation])) {
                let _ = crate::scim_wire::normalize(rt, &out);
            }
        }
    }

    #[test]
    fn bad_patches_are_scim_errors() {
        for ops in [
            json!([{"op":"remove"}]),
            json!([{"op":"move","path":"userName"}]),
            json!([{"op":"replace","path":"nope","value":1}]),
            json!([{"op":"replace","path":"userName["}]),
            json!([{"op":"replace","path":"id","value":"x"}]),
            json!([{"op":"replace","path":"active","value":"maybe"}]),
            json!([]),
        ] {
            assert!(
                patch(ResourceType::User, user(), ops.clone()).is_err(),
                "{ops}"
            );
        }
    }
}
