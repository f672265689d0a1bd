//! Okta's cursor pagination: the next page is the `link` header with `rel="next"`, taken
//! verbatim. Okta sends one header line per relation; a comma-joined header is accepted too.

use reqwest::header::{HeaderMap, LINK};

/// The `rel="next"` target among all `link` headers, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_links)
        .find_map(|(url, rels)| {
            rels.split_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
                .then_some(url)
        })
}

/// Splits `<a>; rel="self", <b>; rel="next"` into (url, rel) pairs. Commas inside `<…>` are
/// part of the URL, so the split follows the angle brackets, not the commas.
fn split_links(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start + 1..].find('>') else {
            break;
        };
        let url = &rest[start + 1..start + 1 + len];
        let after = &rest[start + 2 + len..];
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let rel = params
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("rel="))
            .map(|r| {
                r.trim_matches(|c| c == '"' || c == ',' || c == ' ')
                    .to_owned()
            })
            .next()
            .unwrap_or_default();
        out.push((url.to_owned(), rel));
        rest = &after[params_end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                LINK,
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!("bad")),
            );
        }
        h
    }

    #[test]
    fn next_from_separate_header_lines() {
        let h = headers(&[
            "<https://x.okta.com/api/v1/users?limit=200>; rel=\"self\"",
            "<https://x.okta.com/api/v1/users?after=00ud4&limit=200>; rel=\"next\"",
        ]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.okta.com/api/v1/users?after=00ud4&limit=200")
        );
    }

    #[test]
    fn next_from_a_comma_joined_header_with_commas_in_urls() {
        let h = headers(&[
            "<https://x/api/v1/logs?filter=a,b>; rel=\"self\", <https://x/api/v1/logs?after=1_2&q=a,b>; rel=\"next\"",
        ]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x/api/v1/logs?after=1_2&q=a,b")
        );
    }

    #[test]
    fn no_next_on_the_last_page() {
        let h = headers(&["<https://x/api/v1/users?limit=200>; rel=\"self\""]);
        assert_eq!(next_link(&h), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
