//! Per-endpoint rules (which attributes and operators `filter`/`search` accept), the compiled
//! typed form of an expression, and its evaluation against records.
//!
//! The rules follow Okta's documentation: users `filter` takes `status`, `id`, `profile.login`,
//! `profile.email`, `profile.firstName`, `profile.lastName` with `eq` only and `lastUpdated`
//! with `eq/gt/ge/lt/le`, case-sensitive values; users `search` takes any profile attribute
//! plus `id`, `status`, `created`, `activated`, `statusChanged`, `lastUpdated`, `type.id`, with
//! `eq/sw/gt/ge/lt/le/pr` (`co` only on the four name/email/login attributes, never `ne`) and
//! case-insensitive values; groups `filter` takes `id`, `type`, `lastUpdated`,
//! `lastMembershipUpdated`; groups `search` adds profile attributes; the System Log `filter`
//! takes every operator on any attribute except `published`.

use std::cmp::Ordering;

use super::parse::{Expr, Literal, Op};
use crate::clock;

/// How a record's attribute is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Time,
}

#[derive(Debug)]
struct Rule {
    name: &'static str,
    kind: Kind,
    ops: &'static [Op],
    present: bool,
}

/// The set of attributes and operators one endpoint parameter accepts.
#[derive(Debug)]
pub struct Dialect {
    rules: &'static [Rule],
    /// Accepted ops for `profile.<other>` attributes (custom attributes), if any.
    profile_other: Option<(&'static [Op], bool)>,
    /// Whether attributes outside `rules` are accepted as strings (System Log).
    any_attr: bool,
    /// Attributes that are always refused.
    refused: &'static [&'static str],
    case_insensitive: bool,
}

use Op::*;

const EQ: &[Op] = &[Eq];
const TIME_OPS: &[Op] = &[Eq, Gt, Ge, Lt, Le];
const SEARCH_STR: &[Op] = &[Eq, Sw, Gt, Ge, Lt, Le];
const SEARCH_STR_CO: &[Op] = &[Eq, Sw, Co, Gt, Ge, Lt, Le];
const GROUP_STR: &[Op] = &[Eq, Sw];
const GROUP_STR_CO: &[Op] = &[Eq, Sw, Co];
const ALL_OPS: &[Op] = &[Eq, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le];

const fn rule(name: &'static str, kind: Kind, ops: &'static [Op], present: bool) -> Rule {
    Rule {
        name,
        kind,
        ops,
        present,
    }
}

/// `GET /api/v1/users?filter=`.
pub static USER_FILTER: Dialect = Dialect {
    rules: &[
        rule("status", Kind::Str, EQ, false),
        rule("id", Kind::Str, EQ, false),
        rule("profile.login", Kind::Str, EQ, false),
        rule("profile.email", Kind::Str, EQ, false),
        rule("profile.firstName", Kind::Str, EQ, false),
        rule("profile.lastName", Kind::Str, EQ, false),
        rule("lastUpdated", Kind::Time, TIME_OPS, false),
    ],
    profile_other: None,
    any_attr: false,
    refused: &[],
    case_insensitive: false,
};

/// `GET /api/v1/users?search=`.
pub static USER_SEARCH: Dialect = Dialect {
    rules: &[
        rule("id", Kind::Str, SEARCH_STR, true),
        rule("status", Kind::Str, SEARCH_STR, true),
        rule("type.id", Kind::Str, EQ, true),
        rule("created", Kind::Time, TIME_OPS, true),
        rule("activated", Kind::Time, TIME_OPS, true),
        rule("statusChanged", Kind::Time, TIME_OPS, true),
        rule("lastUpdated", Kind::Time, TIME_OPS, true),
        rule("profile.login", Kind::Str, SEARCH_STR_CO, true),
        rule("profile.email", Kind::Str, SEARCH_STR_CO, true),
        rule("profile.firstName", Kind::Str, SEARCH_STR_CO, true),
        rule("profile.lastName", Kind::Str, SEARCH_STR_CO, true),
    ],
    profile_other: Some((SEARCH_STR, true)),
    any_attr: false,
    refused: &[],
    case_insensitive: true,
};

/// `GET /api/v1/groups?filter=`.
pub static GROUP_FILTER: Dialect = Dialect {
    rules: &[
        rule("id", Kind::Str, EQ, false),
        rule("type", Kind::Str, EQ, false),
        rule("lastUpdated", Kind::Time, TIME_OPS, false),
        rule("lastMembershipUpdated", Kind::Time, TIME_OPS, false),
    ],
    profile_other: None,
    any_attr: false,
    refused: &[],
    case_insensitive: false,
};

/// `GET /api/v1/groups?search=`.
pub static GROUP_SEARCH: Dialect = Dialect {
    rules: &[
        rule("id", Kind::Str, GROUP_STR, true),
        rule("type", Kind::Str, EQ, true),
        rule("created", Kind::Time, TIME_OPS, true),
        rule("lastUpdated", Kind::Time, TIME_OPS, true),
        rule("lastMembershipUpdated", Kind::Time, TIME_OPS, true),
        rule("profile.name", Kind::Str, GROUP_STR_CO, true),
        rule("profile.description", Kind::Str, GROUP_STR_CO, true),
    ],
    profile_other: Some((GROUP_STR, true)),
    any_attr: false,
    refused: &[],
    case_insensitive: true,
};

/// `GET /api/v1/logs?filter=`.
pub static LOG_FILTER: Dialect = Dialect {
    rules: &[],
    profile_other: None,
    any_attr: true,
    refused: &["published"],
    case_insensitive: true,
};

impl Dialect {
    fn lookup(&self, attr: &str) -> Option<(Kind, &'static [Op], bool)> {
        if self.refused.contains(&attr) {
            return None;
        }
        if let Some(r) = self.rules.iter().find(|r| r.name == attr) {
            return Some((r.kind, r.ops, r.present));
        }
        if let Some((ops, present)) = self.profile_other
            && attr.starts_with("profile.")
        {
            return Some((Kind::Str, ops, present));
        }
        self.any_attr.then_some((Kind::Str, ALL_OPS, true))
    }
}

/// A value an attribute of a record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Str(&'a str),
    /// Epoch milliseconds.
    Time(i64),
    Null,
}

/// Anything an expression can be evaluated against.
pub trait Record {
    /// The value of `attr` (exact, case-sensitive attribute path); `Null` when absent.
    fn field(&self, attr: &str) -> Field<'_>;

    /// Whether any value of `attr` satisfies `pred`; multi-valued attributes override this.
    fn any_field(&self, attr: &str, pred: &mut dyn FnMut(Field<'_>) -> bool) -> bool {
        pred(self.field(attr))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Time(i64),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp { attr: String, op: Op, value: Value },
    Present(String),
}

/// A validated expression with typed literals, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    root: Node,
    case_insensitive: bool,
}

/// An expression the endpoint does not accept (Okta's "Invalid search criteria.").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

/// Checks `expr` against `dialect` and types its literals.
pub fn compile(expr: &Expr, dialect: &Dialect) -> Result<Compiled, Rejected> {
    Ok(Compiled {
        root: compile_node(expr, dialect)?,
        case_insensitive: dialect.case_insensitive,
    })
}

fn compile_node(expr: &Expr, d: &Dialect) -> Result<Node, Rejected> {
    Ok(match expr {
        Expr::And(a, b) => Node::And(Box::new(compile_node(a, d)?), Box::new(compile_node(b, d)?)),
        Expr::Or(a, b) => Node::Or(Box::new(compile_node(a, d)?), Box::new(compile_node(b, d)?)),
        Expr::Present(attr) => {
            let (_, _, present) = d.lookup(attr).ok_or(Rejected)?;
            if !present {
                return Err(Rejected);
            }
            Node::Present(attr.clone())
        }
        Expr::Cmp { attr, op, value } => {
            let (kind, ops, _) = d.lookup(attr).ok_or(Rejected)?;
            if !ops.contains(op) {
                return Err(Rejected);
            }
            let value = match (kind, value) {
                (_, Literal::Null) if matches!(op, Eq | Ne) => Value::Null,
                (Kind::Time, Literal::Str(s)) => Value::Time(clock::parse_ms(s).ok_or(Rejected)?),
                (Kind::Str, Literal::Str(s)) => Value::Str(s.clone()),
                (Kind::Str, Literal::Number(n)) => Value::Str(n.clone()),
                (Kind::Str, Literal::Bool(b)) => Value::Str(b.to_string()),
                _ => return Err(Rejected),
            };
            Node::Cmp {
                attr: attr.clone(),
                op: *op,
                value,
            }
        }
    })
}

impl Compiled {
    pub fn matches(&self, record: &dyn Record) -> bool {
        eval(&self.root, record, self.case_insensitive)
    }
}

fn eval(node: &Node, r: &dyn Record, ci: bool) -> bool {
    match node {
        Node::And(a, b) => eval(a, r, ci) && eval(b, r, ci),
        Node::Or(a, b) => eval(a, r, ci) || eval(b, r, ci),
        Node::Present(attr) => {
            r.any_field(attr, &mut |f| !matches!(f, Field::Null | Field::Str("")))
        }
        Node::Cmp { attr, op, value } => {
            if *op == Ne {
                // SCIM `ne`: true unless some value equals.
                return !r.any_field(attr, &mut |f| compare(f, Eq, value, ci));
            }
            r.any_field(attr, &mut |f| compare(f, *op, value, ci))
        }
    }
}

fn compare(field: Field<'_>, op: Op, value: &Value, ci: bool) -> bool {
    match (field, value) {
        (Field::Null, Value::Null) => op == Eq,
        (Field::Str(a), Value::Str(b)) => {
            let ord = || {
                if ci {
                    a.bytes()
                        .map(|c| c.to_ascii_lowercase())
                        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
                } else {
                    a.cmp(b)
                }
            };
            match op {
                Eq => {
                    if ci {
                        a.eq_ignore_ascii_case(b)
                    } else {
                        a == b
                    }
                }
                Ne => !compare(field, Eq, value, ci),
                Sw => prefix_eq(a.as_bytes(), b.as_bytes(), ci),
                Ew => {
                    a.len() >= b.len()
                        && bytes_eq(&a.as_bytes()[a.len() - b.len()..], b.as_bytes(), ci)
                }
                Co => {
                    b.is_empty()
                        || a.as_bytes()
                            .windows(b.len())
                            .any(|w| bytes_eq(w, b.as_bytes(), ci))
                }
                Gt => ord() == Ordering::Greater,
                Ge => ord() != Ordering::Less,
                Lt => ord() == Ordering::Less,
                Le => ord() != Ordering::Greater,
            }
        }
        (Field::Time(a), Value::Time(b)) => match op {
            Eq => a == *b,
            Gt => a > *b,
            Ge => a >= *b,
            Lt => a < *b,
            Le => a <= *b,
            _ => false,
        },
        _ => false,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], ci: bool) -> bool {
    a.len() >= b.len() && bytes_eq(&a[..b.len()], b, ci)
}

fn bytes_eq(a: &[u8], b: &[u8], ci: bool) -> bool {
    if ci {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile_str, parse};
    use super::*;

    struct U {
        status: &'static str,
        login: &'static str,
        first: Option<&'static str>,
        updated_ms: i64,
    }

    impl Record for U {
        fn field(&self, attr: &str) -> Field<'_> {
            match attr {
                "status" => Field::Str(self.status),
                "profile.login" => Field::Str(self.login),
                "profile.firstName" => self.first.map_or(Field::Null, Field::Str),
                "lastUpdated" => Field::Time(self.updated_ms),
                _ => Field::Null,
            }
        }
    }

    const T0: i64 = 1_370_044_800_000; // 2013-06-01T00:00:00Z

    fn users() -> Vec<U> {
        vec![
            U {
                status: "ACTIVE",
                login: "alice@example.com",
                first: Some("Alice"),
                updated_ms: T0 - 1000,
            },
            U {
                status: "LOCKED_OUT",
                login: "bob@example.com",
                first: Some("Bob"),
                updated_ms: T0,
            },
            U {
                status: "RECOVERY",
                login: "carol@example.com",
                first: None,
                updated_ms: T0 + 1000,
            },
            U {
                status: "DEPROVISIONED",
                login: "dave@example.com",
                first: Some("Dave"),
                updated_ms: T0 + 2000,
            },
        ]
    }

    fn select(expr: &str, d: &Dialect) -> Vec<&'static str> {
        let c = compile_str(expr, d).unwrap_or_else(|| panic!("rejected {expr}"));
        users()
            .into_iter()
            .filter(|u| c.matches(u))
            .map(|u| u.login)
            .collect()
    }

    #[test]
    fn user_filter_semantics() {
        assert_eq!(
            select(
                r#"lastUpdated ge "2013-06-01T00:00:00.000Z" and (status eq "LOCKED_OUT" or status eq "RECOVERY")"#,
                &USER_FILTER
            ),
            ["bob@example.com", "carol@example.com"]
        );
        assert_eq!(
            select(r#"lastUpdated gt "2013-06-01T00:00:00.000Z""#, &USER_FILTER).len(),
            2
        );
        assert_eq!(
            select(r#"lastUpdated lt "2013-06-01T00:00:00.000Z""#, &USER_FILTER),
            ["alice@example.com"]
        );
        assert_eq!(
            select(r#"lastUpdated le "2013-06-01T00:00:00.000Z""#, &USER_FILTER).len(),
            2
        );
        // filter values are case-sensitive, search values are not
        assert!(select(r#"status eq "active""#, &USER_FILTER).is_empty());
        assert_eq!(
            select(r#"status eq "active""#, &USER_SEARCH),
            ["alice@example.com"]
        );
        assert_eq!(
            select(r#"status eq "DEPROVISIONED""#, &USER_FILTER),
            ["dave@example.com"]
        );
    }

    #[test]
    fn user_search_semantics() {
        assert_eq!(select("status pr", &USER_SEARCH).len(), 4);
        assert_eq!(select("profile.firstName pr", &USER_SEARCH).len(), 3);
        assert_eq!(
            select(r#"profile.login sw "B""#, &USER_SEARCH),
            ["bob@example.com"]
        );
        assert_eq!(
            select(r#"profile.firstName co "LIC""#, &USER_SEARCH),
            ["alice@example.com"]
        );
        assert_eq!(
            select(
                r#"status lt "DEPROVISIONED" or status gt "DEPROVISIONED""#,
                &USER_SEARCH
            )
            .len(),
            3
        );
        // unknown custom profile attributes are allowed but absent
        assert!(select(r#"profile.department eq "Engineering""#, &USER_SEARCH).is_empty());
    }

    #[test]
    fn rejects() {
        for (expr, d) in [
            (r#"status ne "ACTIVE""#, &USER_FILTER),
            (r#"status ne "ACTIVE""#, &USER_SEARCH),
            (r#"status sw "ACT""#, &USER_FILTER),
            ("status pr", &USER_FILTER),
            (r#"profile.nickName eq "x""#, &USER_FILTER),
            (r#"created gt "2013-06-01T00:00:00.000Z""#, &USER_FILTER),
            (r#"lastUpdated gt "not a date""#, &USER_FILTER),
            (r#"lastUpdated sw "2013""#, &USER_SEARCH),
            (r#"profile.nickName co "x""#, &USER_SEARCH),
            (r#"profile.name eq "x""#, &GROUP_FILTER),
            (r#"type sw "OKTA""#, &GROUP_FILTER),
            (r#"lastMembershipUpdated gt 5"#, &GROUP_FILTER),
            (r#"published gt "2013-06-01T00:00:00.000Z""#, &LOG_FILTER),
        ] {
            let compiled = parse(expr).ok().and_then(|e| compile(&e, d).ok());
            assert!(compiled.is_none(), "accepted {expr}");
        }
    }

    #[test]
    fn group_dialects_accept_documented_examples() {
        for (expr, d) in [
            (
                r#"type eq "OKTA_GROUP" and lastUpdated gt "2016-11-11T00:00:00.000Z""#,
                &GROUP_FILTER,
            ),
            (
                r#"type eq "OKTA_GROUP" and (lastUpdated lt "2015-11-11T00:00:00.000Z" or lastMembershipUpdated lt "2015-11-11T00:00:00.000Z")"#,
                &GROUP_FILTER,
            ),
            (
                r#"lastMembershipUpdated gt "2024-01-01T00:00:00.000Z""#,
                &GROUP_SEARCH,
            ),
            (r#"profile.name sw "team-""#, &GROUP_SEARCH),
            (r#"eventType eq "user.lifecycle.create""#, &LOG_FILTER),
            (r#"target.id eq "00u1""#, &LOG_FILTER),
        ] {
            assert!(compile_str(expr, d).is_some(), "rejected {expr}");
        }
    }
}
