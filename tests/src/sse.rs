//! A Server-Sent Events client for the tests: `curl -N` reading `GET /api/v1/events`, its
//! lines parsed into events on a thread, as a user's `curl -N` would show them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a stream may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// One event as the stream sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    /// The `event:` field (`message` when absent).
    pub event: String,
    pub data: String,
    /// When the client read its last line.
    pub received: std::time::SystemTime,
}

impl SseEvent {
    /// The data as JSON (Null when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

enum Line {
    Status(u16),
    Comment(String),
    Event(SseEvent),
    /// A body that is not an event stream (an error answer).
    Body(String),
    End,
}

/// An open event stream; the curl process is killed when it is dropped.
pub struct EventStream {
    child: Child,
    lines: Receiver<Line>,
    comments: Vec<String>,
    ended: bool,
}

impl EventStream {
    /// Open `url` (`-u auth`, extra `headers`): the stream once its first comment arrived
    /// (the orchestra is subscribed then), or the refusal's status and JSON body.
    pub fn open(
        url: &str,
        auth: Option<&str>,
        headers: &[String],
    ) -> Result<EventStream, (u16, Value)> {
        let mut command = Command::new("curl");
        command.args(["-i", "-N", "-sS"]);
        if let Some(auth) = auth {
            command.args(["-u", auth]);
        }
        for header in headers {
            command.args(["-H", header]);
        }
        command.arg(url);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl runs");
        let stdout = child.stdout.take().expect("curl's stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || read_lines(BufReader::new(stdout), tx));
        let mut stream = EventStream {
            child,
            lines,
            comments: Vec::new(),
            ended: false,
        };
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let status = match stream.recv(deadline) {
            Some(Line::Status(status)) => status,
            _ => panic!("no HTTP answer from {url}"),
        };
        if status != 200 {
            let mut body = String::new();
            while let Some(line) = stream.recv(deadline) {
                if let Line::Body(text) = line {
                    body.push_str(&text);
                }
            }
            return Err((status, serde_json::from_str(&body).unwrap_or(Value::Null)));
        }
        match stream.recv(deadline) {
            Some(Line::Comment(text)) => stream.comments.push(text),
            _ => panic!("the stream of {url} did not open with its comment"),
        }
        Ok(stream)
    }

    fn recv(&mut self, deadline: Instant) -> Option<Line> {
        if self.ended {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(Line::End) | Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                None
            }
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }

    /// The next event within `timeout` (comments are kept aside), or None.
    pub fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline)? {
                Line::Event(event) => return Some(event),
                Line::Comment(text) => self.comments.push(text),
                Line::Status(_) | Line::Body(_) | Line::End => {}
            }
        }
    }

    /// Every event until one satisfies `last` (included), within `timeout`; panics with
    /// what came otherwise.
    pub fn until(&mut self, timeout: Duration, last: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(event) => {
                    let done = last(&event);
                    seen.push(event);
                    if done {
                        return seen;
                    }
                }
                None => panic!(
                    "the awaited event did not come within {timeout:?} (ended: {}); got: {seen:#?}",
                    self.ended
                ),
            }
        }
    }

    /// Every event that comes within `window` (the stream stays open).
    pub fn drain(&mut self, window: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        while let Some(event) = self.next(deadline.saturating_duration_since(Instant::now())) {
            seen.push(event);
        }
        seen
    }

    /// The comment lines seen so far (the opening one, keep-alives).
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// Whether the server ended the stream (waiting up to `timeout` for it).
    pub fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.ended && Instant::now() < deadline {
            let _ = self.next(deadline.saturating_duration_since(Instant::now()));
        }
        self.ended
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parse curl's `-i` output: the status line and headers, then SSE fields until each blank
/// line, or a plain body.
fn read_lines(reader: impl BufRead, tx: std::sync::mpsc::Sender<Line>) {
    let mut lines = reader.lines();
    let mut status = None;
    // Headers (curl may print a 100 Continue block first: skip to the last status).
    let mut sse = false;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        let line = line.trim_end_matches('\r').to_owned();
        if line.starts_with("HTTP/") {
            status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            continue;
        }
        if line.is_empty() {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("content-type: text/event-stream")
        {
            sse = true;
        }
    }
    if tx.send(Line::Status(status.unwrap_or(0))).is_err() {
        return;
    }
    let (mut id, mut event, mut data) = (None, None::<String>, Vec::<String>::new());
    for line in lines {
        let Ok(line) = line else { break };
        let line = line.trim_end_matches('\r').to_owned();
        let sent = if !sse {
            tx.send(Line::Body(line))
        } else if line.is_empty() {
            if data.is_empty() && event.is_none() && id.is_none() {
                continue;
            }
            let done = SseEvent {
                id: id.take(),
                event: event.take().unwrap_or_else(|| "message".to_owned()),
                data: std::mem::take(&mut data).join("\n"),
                received: std::time::SystemTime::now(),
            };
            tx.send(Line::Event(done))
        } else if let Some(comment) = line.strip_prefix(':') {
            tx.send(Line::Comment(comment.trim().to_owned()))
        } else {
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => id = Some(value),
                "event" => event = Some(value),
                "data" => data.push(value),
                _ => {}
            }
            Ok(())
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = tx.send(Line::End);
}
