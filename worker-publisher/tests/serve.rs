//! The publisher's HTTP server over a real TCP listener, serving real files (docs/architecture.md §7).

use std::fs;
use std::path::{Path, PathBuf};

use oscied_e2e::media::clip;
use oscied_protocol::http::{ServeLimits, serve};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;
use worker_publisher::publish::STAGING_DIR;
use worker_publisher::serve::router;

const UNIT_ID: &str = "publisher-test-1";

/// A web root with one published media, secrets around it, and a server on it.
struct Site {
    /// Holds `parent-secret.txt` and `www/`.
    _root: TempDir,
    www: PathBuf,
    id: Uuid,
    addr: std::net::SocketAddr,
    client: reqwest::Client,
}

impl Site {
    async fn start() -> Site {
        Site::start_with(ServeLimits::default()).await
    }

    /// Served by the publisher's own serve loop, with these timeouts.
    async fn start_with(limits: ServeLimits) -> Site {
        let root = TempDir::new().unwrap();
        let www = root.path().join("www");
        let id = Uuid::new_v4();
        let media = www.join("medias").join(id.to_string());
        fs::create_dir_all(media.join("sub")).unwrap();
        clip(&media, "clip.mp4", 2, 320, 240);
        fs::write(media.join("sub/seg0.ts"), vec![0x47u8; 188 * 4]).unwrap();
        // Secrets that must never leak: next to medias/, above the web root, in staging.
        fs::write(root.path().join("parent-secret.txt"), "PARENT-SECRET").unwrap();
        fs::write(www.join("www-secret.txt"), "WWW-SECRET").unwrap();
        fs::create_dir_all(www.join(STAGING_DIR).join("task-1")).unwrap();
        fs::write(
            www.join(STAGING_DIR).join("task-1/clip.mp4"),
            "STAGING-SECRET",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            root.path().join("parent-secret.txt"),
            media.join("link.txt"),
        )
        .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(www.clone(), UNIT_ID.to_string());
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        Site {
            _root: root,
            www,
            id,
            addr,
            client: reqwest::Client::new(),
        }
    }

    fn media_dir(&self) -> PathBuf {
        self.www.join("medias").join(self.id.to_string())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn file_url(&self, name: &str) -> String {
        self.url(&format!("/medias/{}/{name}", self.id))
    }

    async fn get(&self, name: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(self.file_url(name));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.unwrap()
    }

    /// A request written as-is on the socket: HTTP clients normalise `..` and `%2e%2e`
    /// before sending, an attacker does not.
    async fn raw(&self, method: &str, target: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request =
            format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        (status, answer)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

#[tokio::test]
async fn full_get_returns_the_stored_bytes() {
    let site = Site::start().await;
    let stored = read(&site.media_dir().join("clip.mp4"));
    let response = site.get("clip.mp4", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-type"), "video/mp4");
    assert_eq!(header(&headers, "content-length"), stored.len().to_string());
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(header(&headers, "access-control-allow-origin"), "*");
    assert!(!header(&headers, "etag").is_empty());
    assert!(!header(&headers, "last-modified").is_empty());
    assert_eq!(response.bytes().await.unwrap().as_ref(), stored.as_slice());

    // A file in a subdirectory of the media dir (package segments).
    let response = site.get("sub/seg0.ts", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "content-type"), "video/mp2t");
    assert_eq!(response.bytes().await.unwrap().len(), 188 * 4);
}

#[tokio::test]
async fn ranges() {
    let site = Site::start().await;
    let stored = read(&site.media_dir().join("clip.mp4"));
    let size = stored.len();
    assert!(size > 1000);

    let response = site.get("clip.mp4", &[("range", "bytes=100-199")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let headers = response.headers().clone();
    assert_eq!(
        header(&headers, "content-range"),
        format!("bytes 100-199/{size}")
    );
    assert_eq!(header(&headers, "content-length"), "100");
    assert_eq!(header(&headers, "content-type"), "video/mp4");
    assert_eq!(header(&headers, "access-control-allow-origin"), "*");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &stored[100..200]);

    // Suffix: the last 100 bytes.
    let response = site.get("clip.mp4", &[("range", "bytes=-100")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(response.headers(), "content-range"),
        format!("bytes {}-{}/{size}", size - 100, size - 1)
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &stored[size - 100..]
    );

    // Open-ended.
    let response = site
        .get("clip.mp4", &[("range", &format!("bytes={}-", size - 10))])
        .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &stored[size - 10..]
    );

    // Unsatisfiable.
    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
    ] {
        let response = site.get("clip.mp4", &[("range", &range)]).await;
        assert_eq!(
            response.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}"
        );
        assert_eq!(
            header(response.headers(), "content-range"),
            format!("bytes */{size}")
        );
        json_error(&response.bytes().await.unwrap(), "range_not_satisfiable");
    }
}

#[tokio::test]
async fn head_and_conditional_requests() {
    let site = Site::start().await;
    let size = read(&site.media_dir().join("clip.mp4")).len();

    let response = site
        .client
        .head(site.file_url("clip.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-type"), "video/mp4");
    assert_eq!(header(&headers, "content-length"), size.to_string());
    assert!(response.bytes().await.unwrap().is_empty());

    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    let response = site.get("clip.mp4", &[("if-modified-since", future)]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(response.bytes().await.unwrap().is_empty());
    let response = site.get("clip.mp4", &[("if-modified-since", past)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = site.get("clip.mp4", &[("if-unmodified-since", past)]).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let response = site
        .get("clip.mp4", &[("if-unmodified-since", future)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let etag = header(&headers, "etag").to_string();
    let response = site.get("clip.mp4", &[("if-none-match", &etag)]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn content_types_by_extension() {
    let site = Site::start().await;
    let cases = [
        ("a.mp4", "video/mp4"),
        ("a.m4v", "video/mp4"),
        ("a.m4a", "audio/mp4"),
        ("a.webm", "video/webm"),
        ("a.mkv", "video/x-matroska"),
        ("a.mov", "video/quicktime"),
        ("index.m3u8", "application/vnd.apple.mpegurl"),
        ("manifest.mpd", "application/dash+xml"),
        ("chunk-1.m4s", "video/iso.segment"),
        ("seg1.ts", "video/mp2t"),
        ("a.aac", "audio/aac"),
        ("a.mp3", "audio/mpeg"),
        ("subs.vtt", "text/vtt"),
        ("SHOUT.MP4", "video/mp4"),
        // Not a media type: ServeFile's guess.
        ("notes.txt", "text/plain"),
    ];
    for (name, _) in cases {
        fs::write(site.media_dir().join(name), name).unwrap();
    }
    for (name, mime) in cases {
        let response = site.get(name, &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let content_type = header(response.headers(), "content-type").to_string();
        assert!(
            content_type == mime || content_type.starts_with(&format!("{mime};")),
            "{name}: {content_type}"
        );
        assert_eq!(response.text().await.unwrap(), name);
    }
    // Also on a 206.
    let response = site.get("seg1.ts", &[("range", "bytes=0-1")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(response.headers(), "content-type"), "video/mp2t");
}

#[tokio::test]
async fn nothing_outside_medias_is_served() {
    let site = Site::start().await;
    let id = site.id;
    let targets = [
        "/www-secret.txt".to_string(),
        "/parent-secret.txt".to_string(),
        "/medias/../www-secret.txt".to_string(),
        "/medias/../../parent-secret.txt".to_string(),
        format!("/medias/{id}/../../www-secret.txt"),
        format!("/medias/{id}/../../../parent-secret.txt"),
        format!("/medias/{id}/./../../www-secret.txt"),
        "/medias/%2e%2e/www-secret.txt".to_string(),
        "/medias/%2E%2E/%2e%2e/parent-secret.txt".to_string(),
        format!("/medias/{id}/%2e%2e/%2e%2e/www-secret.txt"),
        format!("/medias/{id}/..%2f..%2fwww-secret.txt"),
        format!("/medias/{id}/%2e%2e%2F%2e%2e%2Fwww-secret.txt"),
        format!("/medias/{id}/%2F..%2F..%2Fwww-secret.txt"),
        "/medias/..%2fwww-secret.txt".to_string(),
        format!("/medias/{id}/..%5c..%5cwww-secret.txt"),
        "/.staging/task-1/clip.mp4".to_string(),
        "/%2estaging/task-1/clip.mp4".to_string(),
        "/medias/../.staging/task-1/clip.mp4".to_string(),
        "/medias/%2e%2e/.staging/task-1/clip.mp4".to_string(),
        format!("/medias/{id}/../../.staging/task-1/clip.mp4"),
        format!("/medias/{id}/link.txt"),
        "//www-secret.txt".to_string(),
        format!("/medias/{id}//www-secret.txt"),
        format!("/medias/{id}/%00"),
        format!("/medias/{id}/clip.mp4%00.txt"),
        "/medias/%2Fetc%2Fpasswd".to_string(),
        format!("/medias/{id}/%2Fetc%2Fpasswd"),
        format!("/medias/{id}//etc/passwd"),
        // Directories: no listings.
        "/".to_string(),
        "/medias".to_string(),
        "/medias/".to_string(),
        format!("/medias/{id}"),
        format!("/medias/{id}/"),
        format!("/medias/{id}/sub"),
        format!("/medias/{id}/sub/"),
        format!("/medias/{}/clip.mp4", Uuid::new_v4()),
        format!("/medias/{}/clip.mp4", id.simple()),
        "/medias/not-an-id/clip.mp4".to_string(),
        format!("/medias/{id}/missing.mp4"),
        format!("/medias/{id}/clip.mp4/"),
        format!("/medias/{id}/clip.mp4/x"),
    ];
    for target in &targets {
        for method in ["GET", "HEAD"] {
            let (status, answer) = site.raw(method, target).await;
            assert_eq!(status, 404, "{method} {target}: {answer}");
            assert!(
                !answer.contains("SECRET"),
                "{method} {target} leaked: {answer}"
            );
        }
    }
    // Our 404s are JSON.
    let response = site
        .client
        .get(site.url(&format!("/medias/{id}/missing.mp4")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // Absolute-form request targets do not get around the checks either.
    let (status, answer) = site
        .raw(
            "GET",
            &format!("http://{}/medias/../www-secret.txt", site.addr),
        )
        .await;
    assert_ne!(status, 200, "{answer}");
    assert!(!answer.contains("SECRET"), "{answer}");

    // Still serving after all that.
    let (status, _) = site.raw("GET", &format!("/medias/{id}/clip.mp4")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn other_methods_are_refused() {
    let site = Site::start().await;
    let url = site.file_url("clip.mp4");
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = site
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
    }
    let response = site
        .client
        .delete(site.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The file is still there.
    assert!(site.media_dir().join("clip.mp4").is_file());
}

#[tokio::test]
async fn health() {
    let site = Site::start().await;
    let response = site.client.get(site.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(response.headers(), header::CONTENT_TYPE.as_str()).starts_with("application/json")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "unit_id": UNIT_ID})
    );
}

impl Site {
    /// A raw GET of a media file with extra header lines; the status, the head and the body.
    async fn raw_get(&self, name: &str, extra: &str) -> (u16, String, Vec<u8>) {
        let target = format!("/medias/{}/{name}", self.id);
        self.raw_request(&format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
        ))
        .await
    }

    async fn raw_request(&self, request: &str) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, answer[split + 4..].to_vec())
    }
}

fn json_error(body: &[u8], code: &str) {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(body)));
    assert_eq!(value["error"]["code"], code, "{value}");
    assert!(value["error"]["message"].is_string(), "{value}");
}

#[tokio::test]
async fn ranges_follow_rfc_9110() {
    let site = Site::start().await;
    let stored = read(&site.media_dir().join("clip.mp4"));
    let len = stored.len();
    let whole = site.get("clip.mp4", &[]).await;
    let etag = header(whole.headers(), "etag").to_string();
    let modified = header(whole.headers(), "last-modified").to_string();

    // A suffix longer than the file: the whole file as 206.
    let (status, head, body) = site
        .raw_get("clip.mp4", "Range: bytes=-999999999\r\n")
        .await;
    assert_eq!(status, 206);
    assert!(
        head.contains(&format!("content-range: bytes 0-{}/{len}", len - 1)),
        "{head}"
    );
    assert_eq!(body, stored);

    // Another unit, several ranges, malformed: ignored, 200 with the whole file.
    for range in ["items=0-1", "bytes=0-1, 10-20", "bytes=9-3", "bytes=x-"] {
        let (status, head, body) = site
            .raw_get("clip.mp4", &format!("Range: {range}\r\n"))
            .await;
        assert_eq!(status, 200, "{range}");
        assert!(!head.contains("\r\ncontent-range:"), "{range}: {head}");
        assert_eq!(body, stored, "{range}");
    }

    // If-Range: a matching ETag or date keeps the range, anything else gets the whole file.
    for validator in [&etag, &modified] {
        let (status, _, body) = site
            .raw_get(
                "clip.mp4",
                &format!("Range: bytes=5-9\r\nIf-Range: {validator}\r\n"),
            )
            .await;
        assert_eq!(status, 206, "{validator}");
        assert_eq!(body, &stored[5..10]);
    }
    for validator in [
        "\"stale\"".to_string(),
        format!("W/{etag}"),
        "Mon, 01 Jan 2001 00:00:00 GMT".to_string(),
    ] {
        let (status, _, body) = site
            .raw_get(
                "clip.mp4",
                &format!("Range: bytes=5-9\r\nIf-Range: {validator}\r\n"),
            )
            .await;
        assert_eq!(status, 200, "{validator}");
        assert_eq!(body, stored, "{validator}");
    }

    // Unsatisfiable: 416 with Content-Range: bytes */LEN and the JSON body.
    let (status, head, body) = site
        .raw_get("clip.mp4", &format!("Range: bytes={len}-\r\n"))
        .await;
    assert_eq!(status, 416);
    assert!(
        head.contains(&format!("content-range: bytes */{len}")),
        "{head}"
    );
    json_error(&body, "range_not_satisfiable");
    // If-Match that fails: 412 with the JSON body.
    let (status, _, body) = site.raw_get("clip.mp4", "If-Match: \"stale\"\r\n").await;
    assert_eq!(status, 412);
    json_error(&body, "precondition_failed");
}

#[tokio::test]
async fn oversized_requests_get_the_json_error_body() {
    let site = Site::start().await;
    let long = "a".repeat(9000);
    let (status, _, body) = site.raw_get(&format!("clip.mp4?{long}"), "").await;
    assert_eq!(status, 414);
    json_error(&body, "uri_too_long");
    let many: String = (0..150).map(|i| format!("X-F{i}: x\r\n")).collect();
    let (status, _, body) = site.raw_get("clip.mp4", &many).await;
    assert_eq!(status, 431);
    json_error(&body, "headers_too_large");
    let big = format!("X-Big: {}\r\n", "b".repeat(40 * 1024));
    let (status, _, body) = site.raw_get("clip.mp4", &big).await;
    assert_eq!(status, 431);
    json_error(&body, "headers_too_large");
    let (status, _, body) = site.raw_get("missing.mp4", "").await;
    assert_eq!(status, 404);
    json_error(&body, "not_found");
    let (status, _, body) = site
        .raw_request(&format!(
            "DELETE /medias/{}/clip.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            site.id
        ))
        .await;
    assert_eq!(status, 405);
    json_error(&body, "method_not_allowed");
}

#[tokio::test]
async fn slow_headers_are_cut() {
    let site = Site::start_with(ServeLimits {
        header_timeout: std::time::Duration::from_secs(1),
        ..ServeLimits::default()
    })
    .await;
    let mut stream = TcpStream::connect(site.addr).await.unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(format!("GET /medias/{}/clip.mp4 HTTP/1.1\r\nHost: x\r\n", site.id).as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the connection is closed after the header timeout")
    .ok();
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    assert_eq!(site.get("clip.mp4", &[]).await.status(), StatusCode::OK);
}
