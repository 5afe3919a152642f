//! The one HTTP client of the tests: curl, run once per request, so a test calls the API as
//! a user with curl would, and a wedged server costs a `--max-time`, never a hung test.
//!
//! An [`Api`] holds one or several base URLs (the replicas of a cluster) and spreads its
//! calls over them round-robin; a replica that refuses the connection (it is down) is passed
//! over for the next one, as a load balancer would. Nothing else is retried: a request that
//! reached a server and got no answer is reported as status 0, since it may have been applied.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// `--max-time` of an API call: a wedged orchestra fails the test instead of hanging it
/// (which, during a broker outage, would keep RabbitMQ down for everyone).
pub const CALL_MAX_SECS: u64 = 20;
/// `--max-time` of uploads, downloads and fetches of published files.
pub const TRANSFER_MAX_SECS: u64 = 120;

/// curl's exit code when it could not connect: the request never left, so another replica
/// may take it.
const COULD_NOT_CONNECT: i32 = 7;

/// What curl got for one request.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status; 0 when no answer came.
    pub status: u16,
    /// The body (empty when curl wrote it to a file).
    pub body: Vec<u8>,
    /// The last response's headers.
    pub headers: Vec<(String, String)>,
    /// curl's exit code (0, or why the transfer failed).
    pub exit: i32,
    /// From curl's start to its connection (`%{time_connect}`): when the request began.
    pub connect: std::time::Duration,
    /// From curl's start to the end of the answer (`%{time_total}`, curl's own start-up
    /// excluded): how long the request took.
    pub total: std::time::Duration,
    /// The URL it went to.
    pub url: String,
}

impl Reply {
    /// The body as JSON; Null when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value (the name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Calls to an orchestra's `/api/v1` (or to several, round-robin), as one caller.
pub struct Api {
    /// `http://host:port/api/v1` of each replica.
    bases: Vec<String>,
    /// The next replica to call.
    next: AtomicUsize,
    /// `user:secret` for Basic auth, or none.
    auth: Option<String>,
    max_secs: u64,
}

impl Clone for Api {
    fn clone(&self) -> Api {
        Api {
            bases: self.bases.clone(),
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
            auth: self.auth.clone(),
            max_secs: self.max_secs,
        }
    }
}

impl Api {
    /// Anonymous calls to one base URL (`http://127.0.0.1:<port>/api/v1`).
    pub fn new(base: impl Into<String>) -> Api {
        Api::over(vec![base.into()])
    }

    /// Anonymous calls spread over `bases`, round-robin.
    pub fn over(bases: Vec<String>) -> Api {
        assert!(!bases.is_empty(), "an API client needs a base URL");
        Api {
            bases,
            next: AtomicUsize::new(0),
            auth: None,
            max_secs: CALL_MAX_SECS,
        }
    }

    /// The same bases, calling as `user` (Basic auth).
    pub fn as_user(&self, user: &str, secret: &str) -> Api {
        Api {
            auth: Some(format!("{user}:{secret}")),
            ..self.clone()
        }
    }

    /// The same caller, on replica `index` only.
    pub fn on(&self, index: usize) -> Api {
        let base = self.bases.get(index).unwrap_or_else(|| {
            panic!("no replica {index} among {:?}", self.bases);
        });
        Api {
            bases: vec![base.clone()],
            ..self.clone()
        }
    }

    /// The same caller, calling replica `index` first (then the next ones, should it be
    /// down): "create on one, poll on another".
    pub fn preferring(&self, index: usize) -> Api {
        Api {
            next: AtomicUsize::new(index % self.bases.len()),
            ..self.clone()
        }
    }

    /// The same caller with another `--max-time`.
    pub fn max_secs(&self, secs: u64) -> Api {
        Api {
            max_secs: secs,
            ..self.clone()
        }
    }

    /// The base URL calls go to first (the only one, for a single orchestra).
    pub fn base(&self) -> &str {
        &self.bases[0]
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// `user:secret` of this caller, if it has one.
    pub fn auth(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// `GET /events` (`query` with its `?`, or empty) on the first base, resuming after
    /// `last_id` when given: the open stream, or the status and JSON of its refusal.
    pub fn events(
        &self,
        query: &str,
        last_id: Option<&str>,
    ) -> Result<crate::sse::EventStream, (u16, Value)> {
        let url = format!("{}/events{query}", self.base());
        let mut headers = Vec::new();
        if let Some(id) = last_id {
            headers.push(format!("Last-Event-ID: {id}"));
        }
        crate::sse::EventStream::open(&url, self.auth.as_deref(), &headers)
    }

    /// A call with an optional JSON body: the status and the JSON answer (Null when not JSON).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text;
        let mut args = vec!["-X", method];
        if let Some(body) = body {
            text = body.to_string();
            args.extend(["-H", "Content-Type: application/json", "-d", &text]);
        }
        let reply = self.send(path, &args);
        (reply.status, reply.json())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// `GET /health` (it needs no credentials).
    pub fn health(&self) -> (u16, Value) {
        self.get("/health")
    }

    /// `POST /medias` as a multipart upload of `file` with `fields` (title=...).
    pub fn upload(&self, file: &Path, fields: &[(&str, &str)]) -> (u16, Value) {
        let mut forms = vec![format!("file=@{}", file.display())];
        forms.extend(fields.iter().map(|(k, v)| format!("{k}={v}")));
        let mut args = vec![];
        for form in &forms {
            args.extend(["-F", form.as_str()]);
        }
        let reply = self
            .max_secs(self.max_secs.max(TRANSFER_MAX_SECS))
            .send("/medias", &args);
        (reply.status, reply.json())
    }

    /// GET `path` into the file `to`, failing (exit 22) on an HTTP error.
    pub fn download(&self, path: &str, to: &Path) -> Reply {
        let to = to.to_str().expect("utf-8 path");
        self.max_secs(self.max_secs.max(TRANSFER_MAX_SECS))
            .send(path, &["-f", "-o", to])
    }

    /// A request to `path` with any other curl arguments (method, headers, data...), on the
    /// next replica that accepts the connection.
    pub fn send(&self, path: &str, args: &[&str]) -> Reply {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut reply = None;
        for n in 0..self.bases.len() {
            let base = &self.bases[(first + n) % self.bases.len()];
            let url = format!("{base}{path}");
            let got = self.curl(&url, args);
            if got.exit != COULD_NOT_CONNECT {
                return got;
            }
            reply = Some(got);
        }
        reply.expect("at least one base URL")
    }

    fn curl(&self, url: &str, args: &[&str]) -> Reply {
        let max = self.max_secs.to_string();
        let mut all = vec!["-m", &max];
        if let Some(auth) = &self.auth {
            all.extend(["-u", auth.as_str()]);
        }
        all.extend_from_slice(args);
        run(url, &all)
    }

    /// `method path` `count` times at once, each as its own caller of `auths` (`user:secret`),
    /// from one curl process (`--parallel`): the statuses, in no particular order.
    pub fn parallel(&self, method: &str, path: &str, auths: &[String]) -> Vec<u16> {
        let url = format!("{}{path}", self.base());
        let max = self.max_secs.to_string();
        let parallel = auths.len().clamp(1, 300).to_string();
        let mut command = Command::new("curl");
        command.args(["-s", "--parallel", "--parallel-max", &parallel]);
        for (n, auth) in auths.iter().enumerate() {
            if n > 0 {
                command.arg("--next");
            }
            command.args(["-m", &max, "-o", "/dev/null", "-w", "%{http_code}\n"]);
            command.args(["-X", method, "-u", auth, &url]);
        }
        statuses(command)
    }

    /// POST each of `bodies` (JSON) to `path`, as this caller, `parallel` at a time from one
    /// curl process, spread round-robin over the replicas: the statuses, in no particular
    /// order. The requests go in a curl config file (`-K`): thousands of them do not fit a
    /// command line.
    pub fn post_many(&self, path: &str, bodies: &[Value], parallel: usize) -> Vec<u16> {
        let mut config = String::new();
        for (n, body) in bodies.iter().enumerate() {
            if n > 0 {
                config.push_str("next\n");
            }
            let url = format!("{}{path}", self.bases[n % self.bases.len()]);
            config.push_str(&format!("url = {}\n", config_quote(&url)));
            if let Some(auth) = &self.auth {
                config.push_str(&format!("user = {}\n", config_quote(auth)));
            }
            config.push_str(&format!("max-time = {}\n", self.max_secs));
            config.push_str("header = \"Content-Type: application/json\"\n");
            config.push_str(&format!("data = {}\n", config_quote(&body.to_string())));
            config.push_str("output = /dev/null\nwrite-out = \"%{http_code}\\n\"\n");
        }
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, config.as_bytes()).expect("curl config written");
        let mut command = Command::new("curl");
        command
            .args(["-s", "--parallel", "--parallel-max"])
            .arg(parallel.clamp(1, 300).to_string())
            .arg("-K")
            .arg(file.path());
        statuses(command)
    }
}

/// Run a curl whose every transfer writes its status on a line: the statuses (0: none).
fn statuses(mut command: Command) -> Vec<u16> {
    let output = command.stdin(Stdio::null()).output().expect("curl runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().parse().unwrap_or(0))
        .collect()
}

/// A value of a curl config file: in double quotes, `\\` and `"` escaped.
fn config_quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Run `curl -s <args> <url>`: what it got. The status and times come from `-w`,
/// after the body; the headers from `-D`.
pub fn run(url: &str, args: &[&str]) -> Reply {
    let headers = tempfile::NamedTempFile::new().expect("temp file");
    let output = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code} %{time_connect} %{time_total}",
            "-D",
        ])
        .arg(headers.path())
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let out = output.stdout;
    let split = out.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let tail = String::from_utf8_lossy(&out[(split + 1).min(out.len())..]).into_owned();
    let mut tail = tail.split_whitespace();
    let status = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let connect = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let total = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let text = std::fs::read_to_string(headers.path()).unwrap_or_default();
    // The last response's block (curl writes one per response: 100 Continue, redirects).
    let block = text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or_default();
    let headers = block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        body: out[..split].to_vec(),
        headers,
        exit: output.status.code().unwrap_or(-1),
        connect: std::time::Duration::from_secs_f64(connect),
        total: std::time::Duration::from_secs_f64(total),
        url: url.to_owned(),
    }
}

/// An HTTP answer fetched without credentials, its body kept in a temp file (big medias).
pub struct Fetched {
    pub url: String,
    /// The status (0 when nothing answered).
    pub status: u16,
    reply: Reply,
    body: tempfile::NamedTempFile,
}

impl Fetched {
    /// A header's value (the name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.reply.header(name)
    }

    /// The media type of `Content-Type`, without parameters.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
            .map(|v| v.split(';').next().unwrap_or(v).trim())
    }

    pub fn body(&self) -> Vec<u8> {
        std::fs::read(self.body.path()).expect("the fetched body")
    }

    pub fn body_path(&self) -> &Path {
        self.body.path()
    }

    /// Status, headers and the start of the body, for assertion messages.
    pub fn describe(&self) -> String {
        let body = self.body();
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        format!(
            "GET {} → {} {:?} ({} bytes) {shown}",
            self.url,
            self.status,
            self.reply.headers,
            body.len()
        )
    }
}

/// GET any `url` (a published file, say), with `extra` curl arguments (`-r 100-199`, `-I`...).
pub fn fetch(url: &str, extra: &[&str]) -> Fetched {
    let body = tempfile::NamedTempFile::new().expect("temp file");
    let max = TRANSFER_MAX_SECS.to_string();
    let path = body.path().to_str().expect("utf-8 temp path");
    let mut args = vec!["-m", &max, "-o", path];
    args.extend_from_slice(extra);
    let reply = run(url, &args);
    Fetched {
        url: url.to_owned(),
        status: reply.status,
        reply,
        body,
    }
}
