//! A webhook receiver for the tests: a plain HTTP/1.1 server on 127.0.0.1 that keeps every
//! request it is sent and answers each with the status its script says, as an integrator's
//! endpoint would (a handler that fails a few times, one that redirects, one that is gone).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hmac::{KeyInit, Mac};
use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status it was answered.
    pub answered: u16,
    pub at: SystemTime,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn delivery(&self) -> &str {
        self.header("x-oscied-delivery")
    }

    /// Whether `X-OSCIED-Signature` is `sha256=` + HMAC-SHA256(secret, timestamp "." body),
    /// as README tells integrators to check it.
    pub fn signed_with(&self, secret: &str) -> bool {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(self.header("x-oscied-timestamp").as_bytes());
        mac.update(b".");
        mac.update(self.body.as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.header("x-oscied-signature") == format!("sha256={hex}")
    }
}

/// What the receiver answers: the status for the n-th request (from 0), and extra headers.
pub type Script = Box<dyn Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync>;

struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<Script>,
    stop: AtomicBool,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Answer every request 200.
    pub fn start() -> Receiver {
        Receiver::scripted(Box::new(|_, _| (200, vec![])))
    }

    /// Answer as `script` says.
    pub fn scripted(script: Script) -> Receiver {
        Receiver::on(0, script)
    }

    /// On `port` (0: any free one).
    pub fn on(port: u16, script: Script) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        let port = listener.local_addr().expect("its address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            script: Mutex::new(script),
            stop: AtomicBool::new(false),
        });
        let serving = shared.clone();
        std::thread::spawn(move || {
            while !serving.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let serving = serving.clone();
                        std::thread::spawn(move || serve(stream, &serving));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer from now on as `script` says (the count goes on).
    pub fn answer(&self, script: Script) {
        *self.shared.script.lock().expect("script") = script;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received").clone()
    }

    /// Wait until `done` holds for what was received; what was received then.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver on {} waited {timeout:?} in vain; it got:\n{}",
                self.port,
                got.iter()
                    .map(|r| format!("{} {} {}", r.answered, r.delivery(), r.body))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut received = Received {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: 0,
        at: SystemTime::now(),
    };
    let (status, extra) = {
        let mut all = shared.received.lock().expect("received");
        let (status, extra) = (shared.script.lock().expect("script"))(all.len(), &received);
        received.answered = status;
        all.push(received);
        (status, extra)
    };
    let mut answer =
        format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (name, value) in extra {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(answer.as_bytes());
}
