//! Query-string handling, page sizes and Okta's `link` headers.
//!
//! Okta sends one `link: <url>; rel="self"` header line and, when there is another page, a
//! separate `link: <url>; rel="next"` line (never comma-joined; the Go SDK only reads
//! separate lines). `self` echoes the effective `limit`; `next` repeats every original query
//! parameter with the effective `limit` and the new `after`, re-encoded the way Okta does
//! (`+` for spaces).

use std::ops::Bound;

use axum::http::header::{CONTENT_TYPE, LINK};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::OktaError;

/// Decoded query parameters in their original order (repeats kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    pub fn parse(raw: &str) -> QueryParams {
        QueryParams(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, treating an empty value as absent.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// Form-style decoding: `+` is a space, `%XX` a byte; invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Form-style encoding as in Okta's links: unreserved bytes kept, space as `+`.
pub fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// Page-size rules of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub default: usize,
    pub min: usize,
    pub max: usize,
}

impl Limit {
    /// The effective limit: default when absent, clamped into [min, max].
    pub fn resolve(&self, raw: Option<&str>) -> Result<usize, OktaError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(self.default);
        };
        let n: i64 = raw
            .trim()
            .parse()
            .map_err(|_| OktaError::validation("limit: The value must be a number"))?;
        let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
        Ok(n.clamp(self.min, self.max))
    }
}

pub const USERS: Limit = Limit {
    default: 200,
    min: 1,
    max: 200,
};
pub const USERS_Q: Limit = Limit {
    default: 10,
    min: 1,
    max: 200,
};
pub const GROUPS: Limit = Limit {
    default: 10_000,
    min: 1,
    max: 10_000,
};
pub const GROUPS_Q: Limit = Limit {
    default: 300,
    min: 1,
    max: 10_000,
};
pub const GROUP_USERS: Limit = Limit {
    default: 1000,
    min: 1,
    max: 10_000,
};
pub const APP_USERS: Limit = Limit {
    default: 50,
    min: 1,
    max: 500,
};
pub const APP_GROUPS: Limit = Limit {
    default: 20,
    min: 20,
    max: 200,
};
pub const PUSH_MAPPINGS: Limit = Limit {
    default: 100,
    min: 1,
    max: 1000,
};
pub const LOGS: Limit = Limit {
    default: 100,
    min: 0,
    max: 1000,
};

/// What a handler knows about the request it serves (set by the API middleware).
#[derive(Debug, Clone)]
pub struct ReqCtx {
    /// `http://host:port` as the client addressed the fake.
    pub base: String,
    pub path: String,
    pub query: QueryParams,
    /// Whether a fault targets a page of this path, so the handler must number its page.
    pub wants_page: bool,
}

impl ReqCtx {
    fn url(&self, limit: usize, after: Option<&str>) -> String {
        let mut url = format!("{}{}?", self.base, self.path);
        let mut first = true;
        let mut sep = |url: &mut String| {
            if !first {
                url.push('&');
            }
            first = false;
        };
        let mut wrote_limit = false;
        for (k, v) in &self.query.0 {
            if k == "after" && after.is_some() {
                continue;
            }
            if k == "limit" {
                if wrote_limit {
                    continue;
                }
                wrote_limit = true;
                sep(&mut url);
                url.push_str("limit=");
                url.push_str(&limit.to_string());
                continue;
            }
            sep(&mut url);
            encode_component(k, &mut url);
            url.push('=');
            encode_component(v, &mut url);
        }
        if !wrote_limit {
            sep(&mut url);
            url.push_str("limit=");
            url.push_str(&limit.to_string());
        }
        if let Some(a) = after {
            sep(&mut url);
            url.push_str("after=");
            encode_component(a, &mut url);
        }
        url
    }

    pub fn self_link(&self, limit: usize) -> String {
        self.url(limit, None)
    }

    pub fn next_link(&self, limit: usize, after: &str) -> String {
        self.url(limit, Some(after))
    }
}

/// The 1-based number of the page that starts after `position` items.
pub fn page_number(position: usize, limit: usize) -> usize {
    position / limit.max(1) + 1
}

/// Marks a response with the page number it served, for fault matching by page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageNumber(pub usize);

/// A 200 JSON response with Okta's link headers.
#[derive(Debug)]
pub struct JsonPage {
    pub body: Vec<u8>,
    pub self_link: String,
    pub next_link: Option<String>,
    pub page: Option<usize>,
}

impl JsonPage {
    pub fn new(
        ctx: &ReqCtx,
        body: Vec<u8>,
        limit: usize,
        next_after: Option<&str>,
        page: Option<usize>,
    ) -> Self {
        JsonPage {
            body,
            self_link: ctx.self_link(limit),
            next_link: next_after.map(|a| ctx.next_link(limit, a)),
            page,
        }
    }
}

fn link_value(url: &str, rel: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("<{url}>; rel=\"{rel}\"")).ok()
}

impl IntoResponse for JsonPage {
    fn into_response(self) -> Response {
        let mut resp = (StatusCode::OK, self.body).into_response();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(v) = link_value(&self.self_link, "self") {
            h.append(LINK, v);
        }
        if let Some(v) = self
            .next_link
            .as_deref()
            .and_then(|n| link_value(n, "next"))
        {
            h.append(LINK, v);
        }
        if let Some(p) = self.page {
            resp.extensions_mut().insert(PageNumber(p));
        }
        resp
    }
}

/// A 200 JSON response for a single object (no link headers, like Okta's GET by id).
#[derive(Debug)]
pub struct JsonBody(pub Vec<u8>);

impl IntoResponse for JsonBody {
    fn into_response(self) -> Response {
        let mut resp = (StatusCode::OK, self.0).into_response();
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

/// Serialises one object.
pub fn json_one<T: serde::Serialize>(item: &T) -> JsonBody {
    // Serialising our own plain structs cannot fail.
    JsonBody(serde_json::to_vec(item).unwrap_or_default())
}

/// Range bounds for the items after the cursor (ids are cursors: they sort in list order).
pub fn after(cursor: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    (
        cursor.map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Unbounded,
    )
}

/// Range bounds for the items up to and including the cursor (to number a page).
pub fn up_to(cursor: &str) -> (Bound<&str>, Bound<&str>) {
    (Bound::Unbounded, Bound::Included(cursor))
}

/// Serialises a sequence of items as a JSON array.
pub fn json_array<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serialising our own plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &item);
    }
    out.push(b']');
    out
}

/// Takes up to `limit` items that pass `keep`, and says whether another one follows.
pub fn take_page<T>(
    iter: impl Iterator<Item = T>,
    limit: usize,
    mut keep: impl FnMut(&T) -> bool,
) -> (Vec<T>, bool) {
    let mut page = Vec::with_capacity(limit.min(1024));
    for item in iter {
        if !keep(&item) {
            continue;
        }
        if page.len() == limit {
            return (page, true);
        }
        page.push(item);
    }
    (page, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(raw: &str) -> ReqCtx {
        ReqCtx {
            base: "http://127.0.0.1:1".into(),
            path: "/api/v1/users".into(),
            query: QueryParams::parse(raw),
            wants_page: false,
        }
    }

    #[test]
    fn decode_and_encode_round_trip() {
        let q = QueryParams::parse("search=profile.nickName+eq+%22a%20b%22&limit=5&x=%zz&flag");
        assert_eq!(q.get("search"), Some(r#"profile.nickName eq "a b""#));
        assert_eq!(q.get("limit"), Some("5"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("flag"), Some(""));
        let mut s = String::new();
        encode_component(r#"lastUpdated gt "2013-06-01T00:00:00.000Z""#, &mut s);
        assert_eq!(s, "lastUpdated+gt+%222013-06-01T00%3A00%3A00.000Z%22");
        assert_eq!(
            percent_decode(&s),
            r#"lastUpdated gt "2013-06-01T00:00:00.000Z""#
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
    }

    #[test]
    fn limits() {
        assert_eq!(USERS.resolve(None), Ok(200));
        assert_eq!(USERS.resolve(Some("")), Ok(200));
        assert_eq!(USERS.resolve(Some("500")), Ok(200));
        assert_eq!(USERS.resolve(Some("7")), Ok(7));
        assert_eq!(USERS.resolve(Some("0")), Ok(1));
        assert_eq!(APP_GROUPS.resolve(Some("5")), Ok(20));
        assert_eq!(APP_GROUPS.resolve(Some("999")), Ok(200));
        assert_eq!(APP_USERS.resolve(None), Ok(50));
        assert_eq!(APP_USERS.resolve(Some("501")), Ok(500));
        assert_eq!(GROUPS.resolve(Some("20000")), Ok(10_000));
        assert_eq!(LOGS.resolve(Some("0")), Ok(0));
        assert_eq!(
            USERS.resolve(Some("abc")).map_err(|e| e.code),
            Err("E0000001")
        );
    }

    #[test]
    fn links_echo_limit_and_carry_params() {
        let c = ctx("");
        assert_eq!(
            c.self_link(200),
            "http://127.0.0.1:1/api/v1/users?limit=200"
        );
        assert_eq!(
            c.next_link(200, "00uX"),
            "http://127.0.0.1:1/api/v1/users?limit=200&after=00uX"
        );
        let c = ctx("filter=status+eq+%22ACTIVE%22&limit=999&after=00uA");
        assert_eq!(
            c.self_link(200),
            "http://127.0.0.1:1/api/v1/users?filter=status+eq+%22ACTIVE%22&limit=200&after=00uA"
        );
        assert_eq!(
            c.next_link(200, "00uB"),
            "http://127.0.0.1:1/api/v1/users?filter=status+eq+%22ACTIVE%22&limit=200&after=00uB"
        );
    }

    #[test]
    fn page_taking() {
        let (p, more) = take_page(1..=10, 3, |x| x % 2 == 0);
        assert_eq!((p, more), (vec![2, 4, 6], true));
        let (p, more) = take_page(1..=6, 3, |x| x % 2 == 0);
        assert_eq!((p, more), (vec![2, 4, 6], false));
        assert_eq!(page_number(0, 200), 1);
        assert_eq!(page_number(400, 200), 3);
        assert_eq!(page_number(401, 200), 3);
    }
}
