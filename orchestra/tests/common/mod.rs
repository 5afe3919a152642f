//! An orchestra served on a free loopback port, with a reqwest client and helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use orchestra::config::Config;
use orchestra::startup::{Running, spawn};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

pub const ROOT_SECRET: &str = "root-secret-for-tests";

pub struct App {
    pub base: String,
    pub running: Running,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// Who a request is sent as.
#[derive(Clone, Copy)]
pub enum As<'a> {
    Nobody,
    Root,
    User(&'a str, &'a str),
    Bearer(&'a str),
}

impl App {
    pub async fn start() -> App {
        App::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.root_secret = Some(ROOT_SECRET.into());
        config.mongodb_uri = None;
        config.storage_root = None;
        tweak(&mut config);
        let running = spawn(config).await.expect("orchestra starts");
        App {
            base: format!("http://{}/api/v1", running.addr),
            running,
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn storage(&self) -> &Path {
        self.running.state.storage.root()
    }

    pub fn req(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{}", self.base, path));
        match who {
            As::Nobody => builder,
            As::Root => builder.basic_auth("root", Some(ROOT_SECRET)),
            As::User(mail, secret) => builder.basic_auth(mail, Some(secret)),
            As::Bearer(token) => builder.bearer_auth(token),
        }
    }

    pub async fn get(&self, path: &str, who: As<'_>) -> (StatusCode, Value) {
        read(self.req(Method::GET, path, who).send().await.unwrap()).await
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Value,
    ) -> (StatusCode, Value) {
        read(
            self.req(method, path, who)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, who: As<'_>, body: Value) -> (StatusCode, Value) {
        self.send_json(Method::POST, path, who, body).await
    }

    pub async fn patch(&self, path: &str, who: As<'_>, body: Value) -> (StatusCode, Value) {
        self.send_json(Method::PATCH, path, who, body).await
    }

    pub async fn delete(&self, path: &str, who: As<'_>) -> (StatusCode, Value) {
        read(self.req(Method::DELETE, path, who).send().await.unwrap()).await
    }

    /// GET `path` with `Range: <range>`: the status, the Content-Range and the body.
    pub async fn ranged(
        &self,
        path: &str,
        who: As<'_>,
        range: &str,
    ) -> (StatusCode, Option<String>, Vec<u8>) {
        let answer = self
            .req(Method::GET, path, who)
            .header("range", range)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let content_range = answer
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            status,
            content_range,
            answer.bytes().await.unwrap().to_vec(),
        )
    }

    /// HEAD `path`: the status and the Content-Length, the body checked empty.
    pub async fn head(&self, path: &str, who: As<'_>) -> (StatusCode, Option<String>) {
        let answer = self.req(Method::HEAD, path, who).send().await.unwrap();
        let status = answer.status();
        let length = answer
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(answer.bytes().await.unwrap().is_empty(), "a HEAD's body");
        (status, length)
    }

    /// A bearer token minted with `who`'s Basic credentials.
    pub async fn token(&self, who: As<'_>) -> String {
        let (status, body) = self.post("/auth/token", who, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Create a user as root; returns its id.
    pub async fn user(&self, mail: &str, secret: &str, admin: bool) -> String {
        let (status, body) = self
            .post(
                "/users",
                As::Root,
                json!({"first_name": "Test", "last_name": mail, "mail": mail, "secret": secret, "admin_platform": admin}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// POST /medias with a multipart form.
    pub async fn post_form(
        &self,
        who: As<'_>,
        form: reqwest::multipart::Form,
    ) -> (StatusCode, Value) {
        read(
            self.req(Method::POST, "/medias", who)
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn upload(
        &self,
        who: As<'_>,
        path: &Path,
        filename: &str,
        title: &str,
    ) -> (StatusCode, Value) {
        let bytes = std::fs::read(path).unwrap();
        let form = reqwest::multipart::Form::new()
            .text("title", title.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()),
            );
        self.post_form(who, form).await
    }

    /// Files left anywhere under the storage root's tmp/ and medias/.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let mut files = vec![];
        for area in ["tmp", "medias"] {
            walk(&self.storage().join(area), &mut files);
        }
        files
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
}

pub async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, value)
}

/// Assert an error answer: status, code, and words the message must contain.
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, words: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&words.to_lowercase()),
        "message {message:?} should mention {words:?}"
    );
}

#[allow(unused_imports)] // not every test binary generates clips
pub use oscied_e2e::media::clip;

/// An answer read off the socket as-is.
pub struct RawAnswer {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the answer when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{} without a JSON body: {:?} {:?}",
                self.status,
                self.headers,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Parse an HTTP/1.1 answer (Content-Length framed or up to the close).
pub fn parse_raw(bytes: &[u8]) -> RawAnswer {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        body.truncate(len.parse().unwrap());
    }
    RawAnswer {
        status,
        headers,
        body,
    }
}

/// Write `request` as-is on a new connection and read the answer until the server closes.
pub async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    parse_raw(&answer)
}

/// `Authorization: Basic ...` for a raw request.
pub fn basic(mail: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{mail}:{secret}"))
    )
}
