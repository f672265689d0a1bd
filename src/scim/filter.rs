//! SCIM filters (RFC 7644 §3.4.2.2, parsed by `scim_v2`) translated into a parameterised
//! SQL condition that both SQLite and PostgreSQL accept. Only attributes the store keeps
//! in columns can be filtered; others are an `invalidFilter` naming the attribute. Case-
//! insensitive attributes (`userName`, `displayName`, emails) compare lower-cased.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};

use crate::scim_wire::{ResourceType, ScimError};
use crate::store::scim::{Dialect, Param, SqlFilter};

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LENGTH: usize = 2048;
/// Deepest nesting accepted (`not`, parentheses, value paths).
pub const MAX_FILTER_DEPTH: usize = 12;

#[derive(Clone, Copy)]
enum Column {
    /// Compared exactly (ids).
    Exact(&'static str),
    /// Compared lower-cased.
    Folded(&'static str),
    Bool(&'static str),
    Millis(&'static str),
    /// Group membership (`members.value`).
    Member,
}

fn column(rt: ResourceType, attr: &AttrPath) -> Result<Column, ScimError> {
    let name = attr.name.to_ascii_lowercase();
    let sub = attr.sub_attr.as_deref().map(str::to_ascii_lowercase);
    let c = match (rt, name.as_str(), sub.as_deref()) {
        (_, "id", None) => Column::Exact("id"),
        (_, "externalid", None) => Column::Exact("external_id"),
        (_, "meta", Some("created")) => Column::Millis("created_at"),
        (_, "meta", Some("lastmodified")) => Column::Millis("updated_at"),
        (ResourceType::User, "username", None) => Column::Folded("user_name_lower"),
        (ResourceType::User, "displayname", None) => Column::Folded("display_name"),
        (ResourceType::User, "name", Some("givenname")) => Column::Folded("given_name"),
        (ResourceType::User, "name", Some("familyname")) => Column::Folded("family_name"),
        (ResourceType::User, "emails", None | Some("value")) => Column::Folded("email"),
        (ResourceType::User, "active", None) => Column::Bool("active"),
        (ResourceType::Group, "displayname", None) => Column::Folded("display_name"),
        (ResourceType::Group, "members", None | Some("value")) => Column::Member,
        _ => {
            return Err(ScimError::invalid_filter(format!(
                "filtering on '{attr}' is not supported"
            )));
        }
    };
    Ok(c)
}

struct Builder {
    dialect: Dialect,
    rt: ResourceType,
    alias: &'static str,
    params: Vec<Param>,
    first: usize,
}

impl Builder {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.first + self.params.len() - 1)
    }

    fn filter(&mut self, f: &Filter, depth: usize) -> Result<String, ScimError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(ScimError::invalid_filter(format!(
                "the filter nests deeper than {MAX_FILTER_DEPTH} levels"
            )));
        }
        Ok(match f {
            Filter::Attr(exp) => self.exp(exp, None)?,
            Filter::Not(inner) => format!("NOT ({})", self.filter(inner, depth + 1)?),
            Filter::And(items) => self.join(items, depth, " AND ")?,
            Filter::Or(items) => self.join(items, depth, " OR ")?,
            Filter::ValuePath(vp) => self.val_filter(&vp.attr, &vp.filter, depth + 1)?,
        })
    }

    fn join(&mut self, items: &[Filter], depth: usize, sep: &str) -> Result<String, ScimError> {
        let mut parts = Vec::new();
        for f in items {
            parts.push(format!("({})", self.filter(f, depth + 1)?));
        }
        Ok(parts.join(sep))
    }

    /// `emails[type eq "work" and value co "x"]`: the store keeps one (primary, work)
    /// email per user, so only conditions on it can be answered.
    fn val_filter(
        &mut self,
        attr: &AttrPath,
        f: &ValFilter,
        depth: usize,
    ) -> Result<String, ScimError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(ScimError::invalid_filter("the filter nests too deep"));
        }
        Ok(match f {
            ValFilter::Attr(exp) => self.exp(exp, Some(attr))?,
            ValFilter::Not(inner) => format!("NOT ({})", self.val_filter(attr, inner, depth + 1)?),
            ValFilter::And(items) | ValFilter::Or(items) => {
                let sep = if matches!(f, ValFilter::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let mut parts = Vec::new();
                for i in items.iter() {
                    parts.push(format!("({})", self.val_filter(attr, i, depth + 1)?));
                }
                parts.join(sep)
            }
        })
    }

    fn exp(&mut self, exp: &AttrExp, parent: Option<&AttrPath>) -> Result<String, ScimError> {
        let path = match exp {
            AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
        };
        // Inside a value path, `type` and `primary` of the one stored email always hold
        // for "work" and true.
        let resolved = match parent {
            Some(parent) => {
                let sub = path.name.to_ascii_lowercase();
                if self.rt == ResourceType::User && parent.name.eq_ignore_ascii_case("emails") {
                    match (sub.as_str(), exp) {
                        ("type", AttrExp::Comparison(_, CompareOp::Eq, CompValue::Str(t)))
                            if t.eq_ignore_ascii_case("work") =>
                        {
                            return Ok(format!("{}.email IS NOT NULL", self.alias));
                        }
                        ("primary", AttrExp::Comparison(_, CompareOp::Eq, CompValue::True)) => {
                            return Ok(format!("{}.email IS NOT NULL", self.alias));
                        }
                        _ => {}
                    }
                }
                AttrPath {
                    uri: parent.uri.clone(),
                    name: parent.name.clone(),
                    sub_attr: Some(path.name.clone()),
                }
            }
            None => path.clone(),
        };
        let col = column(self.rt, &resolved)?;
        let a = self.alias;
        match exp {
            AttrExp::Present(_) => Ok(match col {
                Column::Exact(c) | Column::Folded(c) => {
                    format!("({a}.{c} IS NOT NULL AND {a}.{c} <> '')")
                }
                Column::Bool(c) | Column::Millis(c) => format!("{a}.{c} IS NOT NULL"),
                Column::Member => format!(
                    "EXISTS (SELECT 1 FROM workspace_group_members m WHERE m.workspace_id = {a}.workspace_id AND m.group_id = {a}.id)"
                ),
            }),
            AttrExp::Comparison(_, op, value) => self.comparison(col, op, value, &resolved),
        }
    }

    fn comparison(
        &mut self,
        col: Column,
        op: &CompareOp,
        value: &CompValue,
        path: &AttrPath,
    ) -> Result<String, ScimError> {
        let a = self.alias;
        let sql_op = match op {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => "",
        };
        match col {
            Column::Bool(c) => {
                let b = match value {
                    CompValue::True => true,
                    CompValue::False => false,
                    _ => {
                        return Err(ScimError::invalid_filter(format!(
                            "{path} compares with true or false"
                        )));
                    }
                };
                if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                    return Err(ScimError::invalid_filter(format!(
                        "{path} supports only eq and ne"
                    )));
                }
                let p = self.bind(Param::Bool(b));
                Ok(format!("{a}.{c} {sql_op} {p}"))
            }
            Column::Millis(c) => {
                let CompValue::Str(s) = value else {
                    return Err(ScimError::invalid_filter(format!(
                        "{path} compares with a date-time string"
                    )));
                };
                let t =
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| {
                            ScimError::invalid_filter(format!(
                                "{s:?} is not an RFC 3339 date-time: {e}"
                            ))
                        })?;
                let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                if sql_op.is_empty() {
                    return Err(ScimError::invalid_filter(format!(
                        "{path} does not support co, sw or ew"
                    )));
                }
                let p = self.bind(Param::Int(ms));
                Ok(format!("{a}.{c} {sql_op} {p}"))
            }
            Column::Member => {
                let CompValue::Str(s) = value else {
                    return Err(ScimError::invalid_filter(
                        "members.value compares with a string",
                    ));
                };
                if !matches!(op, CompareOp::Eq) {
                    return Err(ScimError::invalid_filter("members supports only eq"));
                }
                let p = self.bind(Param::Text(s.clone()));
                Ok(format!(
                    "EXISTS (SELECT 1 FROM workspace_group_members m WHERE m.workspace_id = {a}.workspace_id AND m.group_id = {a}.id AND m.user_id = {p})"
                ))
            }
            Column::Exact(c) | Column::Folded(c) => {
                let folded = matches!(col, Column::Folded(_));
                let s = match value {
                    CompValue::Str(s) => s.clone(),
                    CompValue::Null if matches!(op, CompareOp::Eq) => {
                        return Ok(format!("{a}.{c} IS NULL"));
                    }
                    CompValue::Null if matches!(op, CompareOp::Ne) => {
                        return Ok(format!("{a}.{c} IS NOT NULL"));
                    }
                    _ => {
                        return Err(ScimError::invalid_filter(format!(
                            "{path} compares with a string"
                        )));
                    }
                };
                let s = if folded { s.to_lowercase() } else { s };
                let lhs = if folded && c != "user_name_lower" {
                    format!("lower({a}.{c})")
                } else {
                    format!("{a}.{c}")
                };
                let p = self.bind(Param::Text(s));
                Ok(match op {
                    CompareOp::Co => match self.dialect {
                        Dialect::Sqlite => format!("instr({lhs}, {p}) > 0"),
                        Dialect::Postgres => format!("strpos({lhs}, {p}) > 0"),
                    },
                    CompareOp::Sw => format!("substr({lhs}, 1, length({p})) = {p}"),
                    CompareOp::Ew => format!(
                        "(length({lhs}) >= length({p}) AND substr({lhs}, length({lhs}) - length({p}) + 1) = {p})"
                    ),
                    // ne also matches a missing value (RFC 7644: absent is not equal).
                    CompareOp::Ne => format!("({lhs} IS NULL OR {lhs} <> {p})"),
                    _ => format!("{lhs} {sql_op} {p}"),
                })
            }
        }
    }
}

/// The filter Okta and most clients send, `attr op "value"` (`userName eq "..."`), read
/// without the grammar: `scim_v2`'s lexer builds its automaton afresh for every parse, a
/// seventh of a lookup's CPU. Anything else (a URI prefix, `-` or `_` in a name, escapes in
/// the string, other spacing, a keyword as the name) is None and goes to the full parser,
/// which a property test holds this to.
fn single_comparison(raw: &str) -> Option<Filter> {
    let raw = raw.trim();
    let (path, rest) = raw.split_once(' ')?;
    let (op, value) = rest.split_once(' ')?;
    let is_name = |n: &str| {
        n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars().all(|c| c.is_ascii_alphanumeric())
    };
    let (name, sub_attr) = match path.split_once('.') {
        Some((name, sub)) if is_name(sub) => (name, Some(sub.to_owned())),
        Some(_) => return None,
        None => (path, None),
    };
    let keyword = ["and", "or", "not", "pr", "true", "false", "null"]
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k));
    if !is_name(name) || keyword {
        return None;
    }
    let op = match op.to_ascii_lowercase().as_str() {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => return None,
    };
    let text = value.strip_prefix('"')?.strip_suffix('"')?;
    if text.contains(['"', '\\']) || text.chars().any(char::is_control) {
        return None;
    }
    let path = AttrPath {
        uri: None,
        name: name.to_owned(),
        sub_attr,
    };
    Some(Filter::Attr(AttrExp::Comparison(
        path,
        op,
        CompValue::Str(text.to_owned()),
    )))
}

/// Parses `raw` and translates it for resource type `rt` over table alias `alias`.
pub fn to_sql(
    raw: &str,
    rt: ResourceType,
    alias: &'static str,
    dialect: Dialect,
    first_param: usize,
) -> Result<SqlFilter, ScimError> {
    if raw.len() > MAX_FILTER_LENGTH {
        return Err(ScimError::invalid_filter(format!(
            "the filter is longer than {MAX_FILTER_LENGTH} bytes"
        )));
    }
    let filter = match single_comparison(raw) {
        Some(filter) => filter,
        None => raw.parse().map_err(|e| {
            ScimError::invalid_filter(format!("{raw:?} is not a valid SCIM filter: {e}"))
        })?,
    };
    let mut b = Builder {
        dialect,
        rt,
        alias,
        params: Vec::new(),
        first: first_param,
    };
    let condition = b.filter(&filter, 0)?;
    Ok(SqlFilter {
        condition,
        params: b.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sql(raw: &str) -> Result<SqlFilter, ScimError> {
        to_sql(raw, ResourceType::User, "u", Dialect::Sqlite, 2)
    }

    proptest! {
        /// The shortcut for `attr op "value"` reads exactly what the grammar reads, or
        /// leaves the filter to it.
        #[test]
        fn single_comparisons_read_as_the_grammar_reads_them(
            name in "(userName|name|emails|a1|and|not|pr|true|x_y|x-y|urn:x:User:userName)",
            sub in proptest::option::of("(familyName|value|b2|c_d)"),
            op in "(eq|EQ|Ne|co|sw|ew|gt|ge|lt|le|xx)",
            value in "[a-zA-Z0-9@. \\\\\"\u{1}-\u{3}é]{0,12}",
            pad in "( |  |)",
            quoted in any::<bool>(),
        ) {
            let path = match &sub {
                Some(sub) => format!("{name}.{sub}"),
                None => name.clone(),
            };
            let value = if quoted { format!("\"{value}\"") } else { value };
            let raw = format!("{pad}{path} {op}{pad} {value}{pad}");
            if let Some(fast) = single_comparison(&raw) {
                let full: Result<Filter, _> = raw.parse();
                prop_assert_eq!(Some(fast), full.ok(), "{}", raw);
            }
        }
    }

    #[test]
    fn okta_lookup_is_a_folded_equality() {
        assert!(single_comparison(r#"userName eq "Test.User@Okta.local""#).is_some());
        let f = sql(r#"userName eq "Test.User@Okta.local""#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.condition, "u.user_name_lower = $2");
        assert_eq!(f.params, vec![Param::Text("test.user@okta.local".into())]);
    }

    #[test]
    fn logic_value_paths_and_dates() {
        let f = sql(r#"(emails[type eq "work" and value co "@x"] or not (active eq false)) and meta.lastModified gt "2024-01-01T00:00:00Z""#)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            f.condition,
            "(((u.email IS NOT NULL) AND (instr(lower(u.email), $2) > 0)) OR (NOT (u.active = $3))) AND (u.updated_at > $4)"
        );
        assert_eq!(f.params[2], Param::Int(1_704_067_200_000));
    }

    #[test]
    fn rejects_bad_unsupported_long_and_deep_filters() {
        for bad in [
            "userName eq",
            "title eq \"x\"",
            "active co \"t\"",
            "meta.created gt \"yesterday\"",
        ] {
            assert_eq!(
                sql(bad).map_err(|e| e.scim_type),
                Err(Some("invalidFilter")),
                "{bad}"
            );
        }
        let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LENGTH));
        assert!(sql(&long).is_err());
        let deep = format!("{}userName eq \"a\"{}", "not (".repeat(20), ")".repeat(20));
        assert_eq!(
            sql(&deep).map_err(|e| e.scim_type),
            Err(Some("invalidFilter"))
        );
    }

    proptest! {
        /// Any input: an SQL condition or an invalidFilter, never a panic; user values only
        /// ever reach the SQL as parameters.
        #[test]
        fn never_panics_and_never_inlines_values(raw in "[a-zA-Z\\.\\[\\]\\(\\)\" ']{0,60}", value in "[a-z';-]{0,12}") {
            let _ = sql(&raw);
            let with_value = format!("userName eq \"{value}\" or displayName co \"{value}\"");
            if let Ok(f) = sql(&with_value) {
                prop_assert!(!value.contains('\'') || !f.condition.contains(&value));
            }
        }
    }
}
