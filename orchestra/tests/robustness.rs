//! Every documented route, fed garbage by every kind of caller: never a 5xx, never a panic,
//! always the JSON error body.

mod common;

use common::{App, As};
use reqwest::{Method, StatusCode, header};

const BODIES: &[(&str, &str)] = &[
    ("application/json", ""),
    ("application/json", "null"),
    ("application/json", "[]"),
    ("application/json", "{"),
    ("application/json", "{\"unknown\": 1}"),
    (
        "application/json",
        "{\"title\": null, \"metadata\": 5, \"uri\": []}",
    ),
    ("application/json", "\"\u{0}\""),
    (
        "application/json",
        "{\"metadata\": {\"title\": \"x\"}, \"uri\": \"uploads/\u{0}\"}",
    ),
    ("text/plain", "hello"),
    ("multipart/form-data", "garbage"),
    (
        "multipart/form-data; boundary=b",
        "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
    ),
    ("application/x-www-form-urlencoded", "a=b"),
];

const IDS: &[&str] = &[
    "x",
    "9b2f7c1e-5d4a-4c3b-8a1f-2e3d4c5b6a79",
    "%2e%2e%2fetc%2fpasswd%00",
];

fn assert_client_error(status: StatusCode, body: &str, what: &str) {
    assert!(
        !status.is_server_error(),
        "{what} answered {status}: {body}"
    );
    if status.is_client_error() && status != StatusCode::RANGE_NOT_SATISFIABLE {
        let value: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{what} answered {status} without JSON: {body:?}"));
        assert!(value["error"]["code"].is_string(), "{what}: {body}");
        assert!(value["error"]["message"].is_string(), "{what}: {body}");
    }
}

#[tokio::test]
async fn no_route_answers_a_server_error_to_bad_input() {
    let app = App::start().await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    let (_, doc) = app.get("/openapi.json", As::Nobody).await;
    let paths = doc["paths"].as_object().unwrap().clone();
    // Bad credentials are refused before any input is read: one request each per route.
    let strangers = [
        As::Nobody,
        As::User("ada@example.com", "wrong"),
        As::Bearer("garbage"),
    ];
    let callers = [As::Root, As::User("ada@example.com", "analytical-engine")];
    let mut requests = 0;
    for (path, methods) in &paths {
        let path = path.strip_prefix("/api/v1").unwrap();
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let ids = if path.contains("{id}") {
                IDS
            } else {
                &IDS[..1]
            };
            for id in ids {
                let concrete = path.replace("{id}", id);
                for who in strangers {
                    let answer = app
                        .req(method.clone(), &concrete, who)
                        .send()
                        .await
                        .unwrap();
                    let status = answer.status();
                    assert_client_error(
                        status,
                        &answer.text().await.unwrap(),
                        &format!("{method} {concrete}"),
                    );
                    requests += 1;
                }
                for who in callers {
                    for (content_type, body) in BODIES {
                        let what = format!("{method} {concrete} ({content_type} {body:?})");
                        let answer = app
                            .req(method.clone(), &concrete, who)
                            .header(header::CONTENT_TYPE, *content_type)
                            .body(*body)
                            .send()
                            .await
                            .unwrap();
                        let status = answer.status();
                        let text = answer.text().await.unwrap();
                        assert_client_error(status, &text, &what);
                        requests += 1;
                    }
                    // Queries with unknown, mistyped and extreme parameters.
                    for query in [
                        "?limit=-1",
                        "?skip=abc",
                        "?sort=",
                        "?sort=-",
                        "?q=%00",
                        "?limit=99999999999999999999",
                        "?status=",
                        "?zzz=1",
                    ] {
                        let what = format!("{method} {concrete}{query}");
                        let answer = app
                            .req(method.clone(), &format!("{concrete}{query}"), who)
                            .send()
                            .await
                            .unwrap();
                        let status = answer.status();
                        assert_client_error(status, &answer.text().await.unwrap(), &what);
                        requests += 1;
                    }
                }
            }
        }
    }
    assert!(requests > 500, "{requests} requests sent");
    // The server is still fine afterwards.
    assert_eq!(app.get("/health", As::Nobody).await.0, StatusCode::OK);
}
