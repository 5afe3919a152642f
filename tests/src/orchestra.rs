//! The real `orchestra` binary, started on a free port in its own working directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::api::Api;
use crate::free_port;

/// How long an orchestra may take to answer `/health` after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `OSCIED_*` variables the orchestra reads; the tests set them explicitly, so any in the
/// caller's environment are removed.
const OSCIED_VARS: &[&str] = &[
    "OSCIED_LISTEN",
    "OSCIED_DATA_DIR",
    "OSCIED_STORAGE_ROOT",
    "OSCIED_MONGODB_URI",
    "OSCIED_AMQP_URI",
    "OSCIED_ROOT_SECRET",
    "OSCIED_ROTATE_ROOT_SECRET",
    "OSCIED_NODE_SECRET",
    "OSCIED_MAX_UPLOAD_BYTES",
    "OSCIED_TOKEN_TTL",
    "OSCIED_LOG_FORMAT",
    "OSCIED_API_URL",
    "OSCIED_QUEUES",
    "OSCIED_CONCURRENCY",
    "OSCIED_UNIT_ID",
    "OSCIED_HEARTBEAT_SECS",
    "OSCIED_TASK_LEASE_SECS",
    "OSCIED_TASK_MAX_ATTEMPTS",
    "OSCIED_WWW_ROOT",
    "OSCIED_PUBLIC_URL",
    "OSCIED_PUBLISHER_LISTEN",
    "OSCIED_ARGON2_CONCURRENCY",
    "OSCIED_LOGIN_ACCOUNT_BURST",
    "OSCIED_LOGIN_ACCOUNT_REFILL_SECS",
    "OSCIED_LOGIN_ADDRESS_BURST",
    "OSCIED_LOGIN_ADDRESS_REFILL_SECS",
    "OSCIED_DRAIN_SECS",
    "OSCIED_EVENTS_MAX_STREAMS",
    "OSCIED_EVENTS_KEEPALIVE_SECS",
    "OSCIED_WEBHOOK_ALLOWED_NETS",
    "OSCIED_WEBHOOK_MAX_FAILURES",
    "OSCIED_WEBHOOK_RETRY_SECS",
    "OSCIED_WEBHOOK_TIMEOUT_SECS",
    "OSCIED_METRICS_TOKEN",
    "OSCIED_METRICS_LISTEN",
];

/// A running orchestra process, killed on drop. Its working directory holds `oscied-data/`
/// (the default data dir), `orchestra.log` (stderr, where it logs) and `stdout.log`.
pub struct Orchestra {
    child: Child,
    port: u16,
    dir: TempDir,
    env: Vec<(String, String)>,
}

impl Orchestra {
    /// Start with the defaults plus `env`, and wait until `/health` answers 200.
    pub fn start(env: &[(&str, &str)]) -> Orchestra {
        let mut orchestra = Orchestra::spawn(env);
        orchestra.wait_healthy();
        orchestra
    }

    /// Start with the defaults plus `env`, and wait until `/health` answers at all (200 or
    /// 503): for an orchestra that is meant to be degraded.
    pub fn start_answering(env: &[(&str, &str)]) -> Orchestra {
        let mut orchestra = Orchestra::spawn(env);
        orchestra.wait_health(START_TIMEOUT, |status| status == 200 || status == 503);
        orchestra
    }

    /// Spawn it in a fresh working directory on a free port with the defaults plus `env`,
    /// without waiting: [`Orchestra::wait_healthy`] waits (several orchestras start at once).
    pub fn spawn(env: &[(&str, &str)]) -> Orchestra {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn_child(dir.path(), port, &env);
        Orchestra {
            child,
            port,
            dir,
            env,
        }
    }

    /// Wait (30 s at most) until `/health` answers 200; panics with the log if it exits or
    /// does not.
    pub fn wait_healthy(&mut self) {
        self.wait_health(START_TIMEOUT, |status| status == 200);
    }

    fn wait_health(&mut self, timeout: Duration, answered: impl Fn(u16) -> bool) {
        // Short calls: one that hangs must not eat the whole wait.
        let client = self.client().max_secs(2);
        let start = Instant::now();
        while start.elapsed() < timeout {
            let (status, _) = client.health();
            if answered(status) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the orchestra exited ({status}):\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the orchestra did not become healthy in {timeout:?}:\n{}",
            self.log_tail()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:<port>/api/v1`
    pub fn api(&self) -> String {
        format!("{}/api/v1", self.url())
    }

    /// `http://127.0.0.1:<port>`: what units are given as `OSCIED_API_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An anonymous client of this orchestra's API ([`Api::as_user`] for a caller).
    pub fn client(&self) -> Api {
        Api::new(self.api())
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything it wrote to stderr (its log), over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orchestra.log")).unwrap_or_default()
    }

    /// Everything it wrote to stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(8000);
        log[log.floor_char_boundary(start)..].to_owned()
    }
}

impl Orchestra {
    /// [`Orchestra::restart`] with some variables changed (or added).
    pub fn restart_with(&mut self, changed: &[(&str, &str)]) {
        for (key, value) in changed {
            self.env.retain(|(k, _)| k != key);
            self.env.push((key.to_string(), value.to_string()));
        }
        self.restart();
    }

    /// Kill the process (SIGKILL, mid-whatever) and start it again on the same port,
    /// directory and variables. The log is appended to.
    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// `kill -9`: it dies mid-whatever, without a word; [`Orchestra::start_again`] brings it
    /// back.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Is the process still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -TERM`: the orchestra stops its in-process units (`OSCIED_DRAIN_SECS`), then
    /// its server.
    pub fn sigterm(&self) {
        crate::sigterm(self.child.id());
    }

    /// Wait up to `timeout` for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        crate::wait_exit(&mut self.child, timeout)
    }

    /// Start it again (after it exited, or killing it first) on the same port, directory and
    /// variables, and wait until it is healthy. The log is appended to.
    pub fn start_again(&mut self) {
        self.kill9();
        self.child = spawn_child(self.dir.path(), self.port, &self.env);
        self.wait_healthy();
    }
}

impl Drop for Orchestra {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An orchestra that is expected to refuse to start: run in a fresh directory on `port` with
/// `env` until it exits (at most 30 s). Its exit status, stderr and stdout.
pub fn run_to_exit(port: u16, env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut child = spawn_child(dir.path(), port, &env);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the orchestra") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the orchestra did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    (status, read("orchestra.log"), read("stdout.log"))
}

fn spawn_child(dir: &Path, port: u16, env: &[(String, String)]) -> Child {
    let open = |name| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .expect("log file")
    };
    let log = open("orchestra.log");
    let stdout = open("stdout.log");
    let mut command = Command::new(binary());
    for var in OSCIED_VARS {
        command.env_remove(var);
    }
    command
        .current_dir(dir)
        .env("OSCIED_LISTEN", format!("127.0.0.1:{port}"))
        // Standalone's in-process publisher: any free port, so tests side by side do not
        // fight for the default 5080 (`env` may name one).
        .env("OSCIED_PUBLISHER_LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log);
    command.spawn().expect("the orchestra binary starts")
}

/// The `orchestra` binary beside this test's executable, brought up to date once per test
/// process (`cargo test -p oscied-e2e` alone would otherwise run a stale one).
/// `OSCIED_ORCHESTRA_BIN` overrides.
pub fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built_once(
        &BUILT,
        "OSCIED_ORCHESTRA_BIN",
        "orchestra",
        &["orchestra", "worker-transform", "worker-publisher"],
    )
}

/// The `worker-transform` binary, as [`binary`] does for the orchestra.
/// `OSCIED_WORKER_TRANSFORM_BIN` overrides.
pub fn worker_transform_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built_once(
        &BUILT,
        "OSCIED_WORKER_TRANSFORM_BIN",
        "worker-transform",
        &["orchestra/protocol", "worker-transform"],
    )
}

/// The `worker-publisher` binary, as [`binary`] does for the orchestra.
/// `OSCIED_WORKER_PUBLISHER_BIN` overrides.
pub fn worker_publisher_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built_once(
        &BUILT,
        "OSCIED_WORKER_PUBLISHER_BIN",
        "worker-publisher",
        &["orchestra/protocol", "worker-publisher"],
    )
}

/// `$override_var` when set, else [`build`] once per test process (kept in `cell`).
fn built_once(
    cell: &OnceLock<PathBuf>,
    override_var: &str,
    package: &str,
    sources: &[&str],
) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return PathBuf::from(path);
    }
    cell.get_or_init(|| build(package, sources)).clone()
}

/// Build `package`'s binary of the same name unless it is newer than its `sources` (dirs
/// relative to the workspace) and Cargo.lock.
fn build(package: &str, sources: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> (a test) or target/<profile>/<bin> (the benchmark)
    // → target/<profile>/<binary>
    let mut profile_dir = exe.parent().expect("executable inside target/<profile>");
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir.parent().expect("target/<profile>/deps");
    }
    let binary = profile_dir.join(package);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // `cargo test --workspace` has just built it; a nested build would re-resolve features
    // without the dev-dependencies and rebuild for nothing. Build only when it is stale.
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let newest = sources
        .iter()
        .filter_map(|dir| newest_source(&workspace.join(dir)))
        .chain(newest_source(&workspace.join("Cargo.lock")))
        .max();
    if built.is_some_and(|b| newest.is_some_and(|s| b >= s)) {
        return binary;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--quiet", "-p", package, "--bin", package]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building {package} failed");
    binary
}

/// The newest modification time of a file, or of the files below a directory.
fn newest_source(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|entry| newest_source(&entry.path()))
        .max()
}
