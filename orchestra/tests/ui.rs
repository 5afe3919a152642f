//! The web UI's files at `/` (docs/architecture.md §4): served from the binary, with their
//! types, ETag revalidation and the security headers; unknown paths keep the JSON 404.

mod common;

use std::path::{Path, PathBuf};

use common::App;
use reqwest::header::{HeaderMap, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src 'self' blob: http: https:; \
    connect-src 'self' http: https:; worker-src 'self' blob:; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// Every file under orchestra/ui/ (hidden ones aside), as URL paths.
fn ui_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            ui_files(&path, out);
        } else {
            let relative = path.strip_prefix(ui_dir()).unwrap();
            out.push(format!("/{}", relative.to_str().unwrap()));
        }
    }
}

async fn fetch(app: &App, method: Method, path: &str, headers: HeaderMap) -> reqwest::Response {
    let url = format!("http://{}{path}", app.running.addr);
    app.client
        .request(method, url)
        .headers(headers)
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on {}", response.url()))
        .to_str()
        .unwrap()
}

fn assert_security_headers(response: &reqwest::Response) {
    assert_eq!(header(response, "content-security-policy"), CSP);
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(header(response, "referrer-policy"), "no-referrer");
    assert_eq!(header(response, "x-frame-options"), "DENY");
    assert_eq!(header(response, "cache-control"), "no-cache");
}

#[tokio::test]
async fn root_serves_index_html_with_the_security_headers() {
    let app = App::start().await;
    let response = fetch(&app, Method::GET, "/", HeaderMap::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response);
    assert_eq!(
        header(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    let etag = header(&response, "etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "{etag}"
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body, std::fs::read(ui_dir().join("index.html")).unwrap());
    // The same file by its own name, with the same tag.
    let named = fetch(&app, Method::GET, "/index.html", HeaderMap::new()).await;
    assert_eq!(named.status(), StatusCode::OK);
    assert_eq!(header(&named, "etag"), etag);
}

/// Each file of the folder is served, byte for byte, with a type a browser accepts under
/// nosniff: a file added to orchestra/ui/ is in the binary without other changes.
#[tokio::test]
async fn every_ui_file_is_served_as_is() {
    let app = App::start().await;
    let mut files = vec![];
    ui_files(&ui_dir(), &mut files);
    assert!(files.iter().any(|f| f == "/js/app.js"), "{files:?}");
    for file in files {
        let response = fetch(&app, Method::GET, &file, HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_security_headers(&response);
        let expected = match file.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("html") => "text/html; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("json" | "map") => "application/json",
            Some("woff2") => "font/woff2",
            _ => "",
        };
        let content_type = header(&response, "content-type").to_owned();
        if expected.is_empty() {
            assert_ne!(content_type, "application/octet-stream", "{file}");
        } else {
            assert_eq!(content_type, expected, "{file}");
        }
        let body = response.bytes().await.unwrap();
        let on_disk = std::fs::read(ui_dir().join(&file[1..])).unwrap();
        assert!(
            body == on_disk,
            "{file}: the served bytes differ from the file"
        );
    }
}

#[tokio::test]
async fn a_matching_if_none_match_is_a_304_with_the_headers() {
    let app = App::start().await;
    let first = fetch(&app, Method::GET, "/js/app.js", HeaderMap::new()).await;
    let etag = header(&first, "etag").to_owned();
    let with = |value: String| {
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, value.parse().unwrap());
        headers
    };
    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let response = fetch(&app, Method::GET, "/js/app.js", with(value.clone())).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{value}");
        assert_security_headers(&response);
        assert_eq!(header(&response, "etag"), etag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    // Another file's tag, or a stale one, gets the file.
    let index = fetch(&app, Method::GET, "/", HeaderMap::new()).await;
    let other = header(&index, "etag").to_owned();
    assert_ne!(other, etag);
    for value in [other, "\"stale\"".to_owned()] {
        let response = fetch(&app, Method::GET, "/js/app.js", with(value.clone())).await;
        assert_eq!(response.status(), StatusCode::OK, "{value}");
    }
}

#[tokio::test]
async fn head_answers_the_headers_without_the_body() {
    let app = App::start().await;
    let get = fetch(&app, Method::GET, "/", HeaderMap::new()).await;
    let length = get.bytes().await.unwrap().len();
    let head = fetch(&app, Method::HEAD, "/", HeaderMap::new()).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_security_headers(&head);
    assert_eq!(header(&head, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&head, "content-length"), length.to_string());
    assert!(head.bytes().await.unwrap().is_empty());
}

async fn json_error(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let content_type = header(&response, "content-type").to_owned();
    let body: Value = response.json().await.unwrap();
    (status, content_type, body)
}

#[tokio::test]
async fn unknown_paths_and_methods_keep_the_json_errors() {
    let app = App::start().await;
    for path in [
        "/missing.js",
        "/js/missing.js",
        "/vendor",
        "/vendor/",
        "/js/",
        "/%2e%2e/Cargo.toml",
        "/js/..%2fapp.js",
        "/api/v1/nope",
    ] {
        let response = fetch(&app, Method::GET, path, HeaderMap::new()).await;
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let (status, content_type, body) = json_error(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(content_type, "application/json", "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let response = fetch(&app, Method::POST, "/", HeaderMap::new()).await;
    let (status, _, body) = json_error(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn api_answers_say_nosniff() {
    let app = App::start().await;
    let response = fetch(&app, Method::GET, "/api/v1/health", HeaderMap::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let response = fetch(&app, Method::GET, "/api/v1/users/me", HeaderMap::new()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
}

/// The vendored players are the files VERSIONS.md records (byte for byte the npm tarballs'):
/// an edit, or an update that forgot the record, fails here.
#[test]
fn vendored_files_match_versions_md() {
    let vendor = ui_dir().join("vendor");
    let record = std::fs::read_to_string(vendor.join("VERSIONS.md")).unwrap();
    let sums: String = record
        .lines()
        .filter(|line| {
            line.len() > 66
                && line.as_bytes()[64] == b' '
                && line[..64].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let mut files = vec![];
    ui_files(&vendor, &mut files);
    let recorded = sums.lines().count();
    // Every file but the record itself is listed.
    assert_eq!(
        recorded,
        files.len() - 1,
        "VERSIONS.md lists {recorded} of {files:?}"
    );
    let mut child = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", "-"])
        .current_dir(&vendor)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), sums.as_bytes()).unwrap();
    let check = child.wait_with_output().unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
