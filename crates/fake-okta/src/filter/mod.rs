//! Okta's `filter` / `search` expression language: parsing, per-endpoint validation, evaluation.
//!
//! [`parse`] turns text into an untyped [`Expr`]; a [`Dialect`] says which attributes and
//! operators one endpoint's parameter accepts (Okta documents them per endpoint: `filter` on
//! users takes only `eq`, except `gt/ge/lt/le` on `lastUpdated`, and so on) and [`compile`]
//! checks the expression against it and types the literals once, so evaluating a page of
//! records is cheap. Anything the dialect refuses is Okta's 400 "Invalid search criteria.".

mod dialect;
mod parse;

pub use dialect::{
    Compiled, Dialect, Field, GROUP_FILTER, GROUP_SEARCH, LOG_FILTER, Record, Rejected,
    USER_FILTER, USER_SEARCH, compile,
};
pub use parse::{Expr, Literal, Op, parse};

/// Parses and compiles in one step; `None` means the expression is rejected.
pub fn compile_str(input: &str, dialect: &Dialect) -> Option<Compiled> {
    let expr = parse(input).ok()?;
    compile(&expr, dialect).ok()
}
