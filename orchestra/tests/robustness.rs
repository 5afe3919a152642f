//! Every documented route, fed garbage by every kind of caller: never a 5xx, never a panic,
//! always the JSON error body.

mod common;

use std::time::Duration;

use common::{App, As, basic, clip, raw};
use reqwest::{Method, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// The body of an answer; an event stream (which never ends on its own) is not read: it
/// answers 200 `text/event-stream` and is dropped (tests/tests/events.rs reads streams).
async fn body_of(answer: reqwest::Response) -> String {
    let stream = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if stream {
        assert_eq!(answer.status(), StatusCode::OK, "an event stream");
        return String::new();
    }
    answer.text().await.unwrap()
}

fn assert_client_error(status: StatusCode, body: &str, what: &str) {
    assert!(
        !status.is_server_error(),
        "{what} answered {status}: {body}"
    );
    if status.is_client_error() {
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
                        &body_of(answer).await,
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
                        let text = body_of(answer).await;
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
                        assert_client_error(status, &body_of(answer).await, &what);
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

/// A raw GET with extra header lines, closing after the answer.
fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

fn assert_json_error(answer: &common::RawAnswer, status: u16, code: &str) {
    assert_eq!(
        answer.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn every_error_answer_has_the_json_body() {
    let app = App::start().await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    let addr = app.running.addr;
    let auth = format!(
        "Authorization: {}\r\n",
        basic("ada@example.com", "analytical-engine")
    );

    // 414: a target over 8 KiB (hyper alone would answer without a body).
    let long = format!("/api/v1/medias?q={}", "a".repeat(9000));
    let answer = raw(addr, &get(&long, &auth)).await;
    assert_json_error(&answer, 414, "uri_too_long");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("8192")
    );
    // Just under the limit is served.
    let under = format!("/api/v1/medias?q={}", "a".repeat(8000));
    assert_eq!(raw(addr, &get(&under, &auth)).await.status, 200);

    // 431: too many fields, or too many bytes in them.
    let many: String = (0..150).map(|i| format!("X-Filler-{i}: x\r\n")).collect();
    assert_json_error(
        &raw(addr, &get("/api/v1/health", &many)).await,
        431,
        "headers_too_large",
    );
    let big = format!("X-Big: {}\r\n", "b".repeat(40 * 1024));
    let answer = raw(addr, &get("/api/v1/health", &big)).await;
    assert_json_error(&answer, 431, "headers_too_large");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("32768")
    );

    // 404 and 405.
    assert_json_error(&raw(addr, &get("/nowhere", "")).await, 404, "not_found");
    let put =
        b"PUT /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_json_error(&raw(addr, put).await, 405, "method_not_allowed");

    // 400 (bad JSON) and 413 (a JSON body over axum's 2 MB limit).
    let post = |body: &str, auth: &str| {
        format!(
            "POST /api/v1/transform/profiles HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    assert_json_error(&raw(addr, &post("{", &auth)).await, 400, "malformed_json");
    let huge = format!("{{\"title\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
    assert_json_error(
        &raw(addr, &post(&huge, &auth)).await,
        413,
        "payload_too_large",
    );
    // 401 and 422 (a bad query).
    assert_json_error(&raw(addr, &post("{}", "")).await, 401, "unauthorized");
    assert_json_error(
        &raw(addr, &get("/api/v1/medias?limit=x", &auth)).await,
        422,
        "invalid_field",
    );

    // 416 from the download route, with Content-Range.
    let input = clip(app.dir.path(), "c.mp4", 1, 160, 120);
    let (_, media) = app
        .upload(
            As::User("ada@example.com", "analytical-engine"),
            &input,
            "c.mp4",
            "c",
        )
        .await;
    let len = std::fs::metadata(&input).unwrap().len();
    let download = format!("/api/v1/medias/{}/download", media["id"].as_str().unwrap());
    let answer = raw(
        addr,
        &get(&download, &format!("{auth}Range: bytes={len}-\r\n")),
    )
    .await;
    assert_json_error(&answer, 416, "range_not_satisfiable");
    assert_eq!(
        answer.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // The server is fine afterwards.
    assert_eq!(raw(addr, &get("/api/v1/health", "")).await.status, 200);
}

#[tokio::test]
async fn slow_headers_are_cut() {
    let app = App::start_with(|c| c.header_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(app.running.addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The rest never comes: the server closes the connection without serving the request.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after the header timeout")
        .ok();
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    // An idle kept-alive connection is closed too.
    let mut idle = tokio::net::TcpStream::connect(app.running.addr)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("an idle connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Prompt clients are served.
    assert_eq!(app.get("/health", As::Nobody).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_upload_is_cut_and_its_partial_file_removed() {
    let app = App::start_with(|c| c.body_idle_secs = 1).await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    let input = clip(app.dir.path(), "c.mp4", 2, 320, 240);
    let bytes = std::fs::read(&input).unwrap();
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.mp4\"\r\nContent-Type: video/mp4\r\n\r\n";
    let tail = "\r\n--XyZ--\r\n";
    let total = head.len() + bytes.len() + tail.len();
    let request = format!(
        "POST /api/v1/medias HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n{head}",
        basic("ada@example.com", "analytical-engine")
    );
    let mut stream = tokio::net::TcpStream::connect(app.running.addr)
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // Half the file, then silence.
    stream.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    stream.flush().await.unwrap();
    let tmp = app.storage().join("tmp");
    let partial = async {
        loop {
            let files: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
            if let Some(file) = files.first()
                && file.metadata().unwrap().len() > 0
            {
                return file.path();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let partial = tokio::time::timeout(Duration::from_secs(10), partial)
        .await
        .expect("the upload is being written to tmp/");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server gives up on the stalled body")
        .ok();
    let answer = common::parse_raw(&answer);
    assert_eq!(
        answer.status,
        408,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["error"]["code"], "request_timeout");
    assert!(!partial.exists(), "{} left behind", partial.display());
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
    let ada = As::User("ada@example.com", "analytical-engine");
    assert_eq!(app.get("/medias", ada).await.1["total"], 0);
    // The same upload sent promptly works.
    let (status, media) = app.upload(ada, &input, "c.mp4", "t").await;
    assert_eq!(status, StatusCode::CREATED, "{media}");

    // A stalled JSON body (register, and any other JSON route) is a 408 too.
    for path in ["/api/v1/medias", "/api/v1/transform/profiles"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"uri\"",
            basic("ada@example.com", "analytical-engine")
        );
        let answer = raw(app.running.addr, request.as_bytes()).await;
        assert_eq!(
            answer.status,
            408,
            "{path}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.json()["error"]["code"], "request_timeout", "{path}");
    }
}
