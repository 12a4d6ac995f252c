//! Conditional requests: the one `If-None-Match` check for every answer that carries an `ETag`
//! (anonymous reads, the widget and the demo page).

use axum::http::{HeaderMap, header};

/// Whether the request's `If-None-Match` names `etag` (a quoted tag, as sent in `ETag`), so the
/// answer is a 304. The weak comparison (RFC 9110, 13.1.2): `W/` prefixes are ignored; `*`
/// matches any tag; lists and repeated fields are read whole.
pub(super) fn if_none_match(request: &HeaderMap, etag: &[u8]) -> bool {
    request.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .map(|tag| tag.trim_ascii())
            .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_if_none_match(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn if_none_match_uses_the_weak_comparison_and_lists() {
        let etag = "\"0123abcd\"";
        for (values, expected, why) in [
            (vec![etag.to_owned()], true, "the same tag"),
            (vec![format!("W/{etag}")], true, "a weak copy of the same tag"),
            (vec![format!("\"other\", {etag}")], true, "the tag in a list"),
            (vec!["\"other\"".to_owned(), format!(" {etag} ")], true, "the tag in a second field"),
            (vec!["*".to_owned()], true, "any tag"),
            (vec!["\"other\"".to_owned()], false, "another tag"),
            (vec![etag.trim_matches('"').to_owned()], false, "an unquoted tag is not the tag"),
            (vec![format!("{etag}x")], false, "a longer tag"),
            (vec![], false, "no header"),
        ] {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            assert_eq!(
                if_none_match(&with_if_none_match(&values), etag.as_bytes()),
                expected,
                "{why}: {values:?}"
            );
        }
    }
}
