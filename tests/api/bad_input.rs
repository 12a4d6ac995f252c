//! Every kind of bad input gets its 4xx in problem+json and changes nothing.

use reqwest::{Method, StatusCode};

use super::spawn_app;
use crate::helpers::assert_problem;

struct Case {
    why: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
    expected: StatusCode,
}

fn case(why: &'static str, method: Method, path: impl Into<String>, expected: StatusCode) -> Case {
    Case {
        why,
        method,
        path: path.into(),
        headers: vec![("x-visitor-id", "visitor-0001")],
        body: None,
        expected,
    }
}

impl Case {
    fn json(mut self, body: &str) -> Self {
        self.headers.push(("content-type", "application/json"));
        self.body = Some(body.as_bytes().to_vec());
        self
    }

    fn raw_body(mut self, content_type: Option<&'static str>, body: Vec<u8>) -> Self {
        if let Some(content_type) = content_type {
            self.headers.push(("content-type", content_type));
        }
        self.body = Some(body);
        self
    }

    fn visitor(mut self, value: Option<&'static str>) -> Self {
        self.headers.retain(|(name, _)| *name != "x-visitor-id");
        if let Some(value) = value {
            self.headers.push(("x-visitor-id", value));
        }
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

#[tokio::test]
async fn bad_input_gets_its_4xx_as_problem_json_and_changes_nothing() {
    let app = spawn_app().await;
    let put = "/v1/articles/a/reaction";
    let get = |id: &str| format!("/v1/articles/{id}/reactions");
    let long_id = "x".repeat(257);
    let big_body = format!(r#"{{"reaction":"love","padding":"{}"}}"#, "x".repeat(5000));
    use StatusCode as S;
    let cases = [
        case("JSON syntax error", Method::PUT, put, S::BAD_REQUEST).json("{"),
        case("empty JSON body", Method::PUT, put, S::BAD_REQUEST).json(""),
        case("reaction of the wrong type", Method::PUT, put, S::BAD_REQUEST).json(r#"{"reaction":5}"#),
        case("reaction missing", Method::PUT, put, S::BAD_REQUEST).json("{}"),
        case("reaction null", Method::PUT, put, S::BAD_REQUEST).json(r#"{"reaction":null}"#),
        case("body is an array", Method::PUT, put, S::BAD_REQUEST).json(r#"["love"]"#),
        case("unknown field", Method::PUT, put, S::BAD_REQUEST).json(r#"{"reaction":"love","x":1}"#),
        case("unknown reaction key", Method::PUT, put, S::UNPROCESSABLE_ENTITY).json(r#"{"reaction":"meh"}"#),
        case("reaction keys are lower case", Method::PUT, put, S::UNPROCESSABLE_ENTITY).json(r#"{"reaction":"Love"}"#),
        case("no content type", Method::PUT, put, S::UNSUPPORTED_MEDIA_TYPE)
            .raw_body(None, br#"{"reaction":"love"}"#.to_vec()),
        case("text/plain body", Method::PUT, put, S::UNSUPPORTED_MEDIA_TYPE)
            .raw_body(Some("text/plain"), br#"{"reaction":"love"}"#.to_vec()),
        case("form body", Method::PUT, put, S::UNSUPPORTED_MEDIA_TYPE)
            .raw_body(Some("application/x-www-form-urlencoded"), b"reaction=love".to_vec()),
        case("body over 4 KiB", Method::PUT, put, S::PAYLOAD_TOO_LARGE).json(&big_body),
        case("visitor id too short", Method::PUT, put, S::BAD_REQUEST).visitor(Some("short")).json(r#"{"reaction":"love"}"#),
        case("visitor id with a dot", Method::GET, get("a"), S::BAD_REQUEST).visitor(Some("visitor.0001")),
        case("visitor id too long", Method::GET, get("a"), S::BAD_REQUEST).visitor(Some(
            "x12345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678",
        )),
        case("visitor id sent twice", Method::PUT, put, S::BAD_REQUEST)
            .header("x-visitor-id", "visitor-0002")
            .json(r#"{"reaction":"love"}"#),
        case("article id of 257 bytes", Method::PUT, format!("/v1/articles/{long_id}/reaction"), S::BAD_REQUEST)
            .json(r#"{"reaction":"love"}"#),
        case("article id with a newline", Method::PUT, "/v1/articles/a%0Ab/reaction", S::BAD_REQUEST)
            .json(r#"{"reaction":"love"}"#),
        case("article id with NUL", Method::GET, get("a%00"), S::BAD_REQUEST),
        case("article id of invalid UTF-8", Method::PUT, "/v1/articles/%FF%FE/reaction", S::BAD_REQUEST)
            .json(r#"{"reaction":"love"}"#),
        case("empty article id", Method::GET, "/v1/articles//reactions", S::BAD_REQUEST),
        case("unencoded slash in the article id", Method::PUT, "/v1/articles/2025/11/a/reaction", S::BAD_REQUEST)
            .json(r#"{"reaction":"love"}"#),
        case("batch with an unknown parameter", Method::GET, "/v1/reactions?article_id=a&limit=3", S::BAD_REQUEST),
        case("batch with invalid UTF-8", Method::GET, "/v1/reactions?article_id=%C3%28", S::BAD_REQUEST),
        case("batch with an empty id", Method::GET, "/v1/reactions?article_id=", S::BAD_REQUEST),
        case("batch with a 257-byte id", Method::GET, format!("/v1/reactions?article_id={long_id}"), S::BAD_REQUEST),
        case("POST is not a method of the route", Method::POST, put, S::METHOD_NOT_ALLOWED).json(r#"{"reaction":"love"}"#),
        case("PATCH on the summary", Method::PATCH, get("a"), S::METHOD_NOT_ALLOWED),
        case("unknown route", Method::GET, "/v2/articles/a/reactions", S::NOT_FOUND),
    ];

    for case in cases {
        let mut request = app.client.request(case.method.clone(), app.url(&case.path));
        for (name, value) in &case.headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = case.body.clone() {
            request = request.body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{}: no answer: {e}", case.why));
        assert_problem(response, case.expected, case.why).await;
    }

    assert_eq!(app.stored_reactions().await, 0, "no bad request wrote a reaction");
    let summary = app.summary("a", Some("visitor-0001")).await;
    assert_eq!(summary["total"], 0);
    assert_eq!(app.summary("a", None).await["total"], 0);
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let app = spawn_app().await;

    let response = app.request(Method::POST, "/v1/articles/a/reaction", Some("visitor-0001"), None).await;

    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "Allow: {allow}");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "POST").await;
}
