//! Tokeniser and recursive-descent parser for SCIM-style expressions such as
//! `lastUpdated gt "2013-06-01T00:00:00.000Z" and (status eq "LOCKED_OUT" or status eq "RECOVERY")`.
//!
//! Operators and `and`/`or` are case-insensitive; `and` binds tighter than `or`; `not` and
//! `[ ]` are not part of what Okta's user and group APIs accept, so they are rejected here.

use std::fmt;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }
}

/// A literal on the right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    Number(String),
}

/// An untyped expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp {
        attr: String,
        op: Op,
        value: Literal,
    },
    Present(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Okta says an overly long or complex query errors; these bounds also keep recursion safe.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    Word(String),
    Str(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::LParen);
            }
            ')' => {
                chars.next();
                out.push(Token::RParen);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(e) => s.push(e),
                            None => return Err(ParseError("dangling escape".into())),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => s.push(c),
                    }
                }
                if !closed {
                    return Err(ParseError("unterminated string".into()));
                }
                out.push(Token::Str(s));
            }
            c if c.is_ascii_alphanumeric() || "._:$-+".contains(c) => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || "._:$-+".contains(c) {
                        w.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(w));
            }
            c => return Err(ParseError(format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and_expr()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.primary()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.primary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Some(Token::LParen) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(ParseError("expression too deeply nested".into()));
                }
                let e = self.or_expr()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token::RParen) => Ok(e),
                    _ => Err(ParseError("expected ')'".into())),
                }
            }
            Some(Token::Word(attr)) => {
                if ["and", "or", "not"]
                    .iter()
                    .any(|k| attr.eq_ignore_ascii_case(k))
                {
                    return Err(ParseError(format!("unexpected keyword {attr}")));
                }
                if !is_attr_path(&attr) {
                    return Err(ParseError(format!("invalid attribute {attr}")));
                }
                let op_word = match self.next() {
                    Some(Token::Word(w)) => w,
                    _ => return Err(ParseError(format!("expected an operator after {attr}"))),
                };
                if op_word.eq_ignore_ascii_case("pr") {
                    return Ok(Expr::Present(attr));
                }
                let op = Op::from_word(&op_word)
                    .ok_or_else(|| ParseError(format!("unknown operator {op_word}")))?;
                let value = match self.next() {
                    Some(Token::Str(s)) => Literal::Str(s),
                    Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
                    Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
                    Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
                    Some(Token::Word(w)) if w.parse::<f64>().is_ok() => Literal::Number(w),
                    _ => return Err(ParseError(format!("expected a value after {op_word}"))),
                };
                Ok(Expr::Cmp { attr, op, value })
            }
            _ => Err(ParseError("expected an attribute or '('".into())),
        }
    }
}

fn is_attr_path(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.split('.').all(|seg| {
            !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Parses a whole expression; trailing tokens are an error.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    if input.len() > MAX_LEN {
        return Err(ParseError("expression too long".into()));
    }
    let mut p = Parser {
        tokens: tokenize(input)?,
        pos: 0,
        depth: 0,
    };
    let e = p.or_expr()?;
    if p.pos != p.tokens.len() {
        return Err(ParseError("unexpected trailing input".into()));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(attr: &str, op: Op, v: &str) -> Expr {
        Expr::Cmp {
            attr: attr.into(),
            op,
            value: Literal::Str(v.into()),
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse(r#"status eq "A" or status eq "B" and id eq "C""#).unwrap();
        assert_eq!(
            e,
            Expr::Or(
                Box::new(cmp("status", Op::Eq, "A")),
                Box::new(Expr::And(
                    Box::new(cmp("status", Op::Eq, "B")),
                    Box::new(cmp("id", Op::Eq, "C"))
                ))
            )
        );
    }

    #[test]
    fn parentheses_operators_case_and_escapes() {
        let e = parse(
            r#"lastUpdated GT "2013-06-01T00:00:00.000Z" AND (status eq "LOCKED_OUT" Or profile.nickName eq "a \"b\"")"#,
        )
        .unwrap();
        let Expr::And(l, r) = e else {
            panic!("not an and: {e:?}")
        };
        assert_eq!(*l, cmp("lastUpdated", Op::Gt, "2013-06-01T00:00:00.000Z"));
        assert_eq!(
            *r,
            Expr::Or(
                Box::new(cmp("status", Op::Eq, "LOCKED_OUT")),
                Box::new(cmp("profile.nickName", Op::Eq, "a \"b\""))
            )
        );
        assert_eq!(parse("status pr").unwrap(), Expr::Present("status".into()));
        assert!(matches!(
            parse("profile.age gt 30").unwrap(),
            Expr::Cmp {
                value: Literal::Number(_),
                ..
            }
        ));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "status",
            "status eq",
            r#"status eq "ACTIVE"#,
            r#"status eqq "ACTIVE""#,
            r#"status eq "A" and"#,
            r#"(status eq "A""#,
            r#"status eq "A")"#,
            r#"not status eq "A""#,
            r#"status eq "A" status eq "B""#,
            r#"emails[type eq "work"]"#,
            r#"status eq ACTIVE"#,
            r#""status" eq "A""#,
            r#".status eq "A""#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        let deep = format!("{}status pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).is_err());
        assert!(parse(&"x".repeat(5000)).is_err());
    }
}
