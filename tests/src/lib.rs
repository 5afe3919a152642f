//! Helpers shared by the end-to-end and integration tests: real servers on loopback
//! (docs/architecture.md §9), each owned by a guard that stops it on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The workspace's root directory (this crate's parent).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A free TCP port on 127.0.0.1, as the OS hands it out. Nothing holds it after the call,
/// so a server started on it may still lose a race; [`nx::NxServer::start`] retries.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// NX-27017, the MongoDB wire-protocol server the tests use in place of MongoDB.
pub mod nx {
    use std::fs::{self, File};
    use std::io::{Read, Seek, SeekFrom};
    use std::net::{SocketAddr, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use tempfile::TempDir;

    use crate::workspace_root;

    /// The environment variable naming the `nx-27017` executable to run.
    pub const ENV_EXECUTABLE: &str = "OSCIED_NX27017";

    const START_TIMEOUT: Duration = Duration::from_secs(20);
    const START_ATTEMPTS: usize = 3;

    /// One running `nx-27017` on a free loopback port, with its own data dir, log and pid
    /// files in a temp dir. Killed (and its files removed) on drop.
    pub struct NxServer {
        child: Child,
        port: u16,
        dir: TempDir,
        database: String,
    }

    impl NxServer {
        /// Start a server and wait until it accepts connections.
        ///
        /// Panics when the executable is missing (with install instructions) or when the
        /// server does not come up within 20 s (with the tail of its log).
        pub fn start() -> NxServer {
            let exe = executable();
            let mut last_error = String::new();
            for _ in 0..START_ATTEMPTS {
                match try_start(&exe) {
                    Ok(server) => return server,
                    // Most likely the port was taken between free_port() and the bind.
                    Err(e) => last_error = e,
                }
            }
            panic!("nx-27017 ({}) did not start: {last_error}", exe.display());
        }

        /// A MongoDB URI whose default database is this server's own fresh test database
        /// (`oscied_test_<random>`).
        pub fn uri(&self) -> String {
            self.uri_with_db(&self.database)
        }

        /// A MongoDB URI with `database` as its default database.
        pub fn uri_with_db(&self, database: &str) -> String {
            format!("mongodb://127.0.0.1:{}/{database}", self.port)
        }

        pub fn port(&self) -> u16 {
            self.port
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// The server's log file.
        pub fn log_path(&self) -> PathBuf {
            self.dir.path().join("nx-27017.log")
        }

        /// The last few kilobytes of the server's log and console output.
        pub fn log_tail(&self) -> String {
            log_tail(self.dir.path())
        }
    }

    impl Drop for NxServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A fresh database name, `oscied_test_<random>`.
    pub fn fresh_database() -> String {
        format!("oscied_test_{}", uuid::Uuid::new_v4().simple())
    }

    /// The executable: `$OSCIED_NX27017`, else `<workspace>/.venv/bin/nx-27017`, else
    /// `nx-27017` on the PATH.
    pub fn executable() -> PathBuf {
        if let Some(path) = std::env::var_os(ENV_EXECUTABLE) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{ENV_EXECUTABLE}={} is not a file",
                path.display()
            );
            return path;
        }
        let venv = workspace_root().join(".venv/bin/nx-27017");
        if venv.is_file() {
            return venv;
        }
        if let Some(path) = on_path("nx-27017") {
            return path;
        }
        panic!(
            "nx-27017 not found: set {ENV_EXECUTABLE} to its path, or install it in the \
             workspace with `python3 -m venv .venv && .venv/bin/pip install nx-27017==0.8.1` \
             (run in {})",
            workspace_root().display()
        );
    }

    fn on_path(name: &str) -> Option<PathBuf> {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    fn try_start(exe: &Path) -> Result<NxServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("oscied-nx-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        let console = File::create(dir.path().join("console.log"))
            .map_err(|e| format!("cannot create the console log: {e}"))?;
        let console_err = console
            .try_clone()
            .map_err(|e| format!("cannot clone the console log: {e}"))?;
        let port = super::free_port();
        let child = Command::new(exe)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--log-file")
            .arg(dir.path().join("nx-27017.log"))
            .arg("--pid-file")
            .arg(dir.path().join("nx-27017.pid"))
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let mut server = NxServer {
            child,
            port,
            dir,
            database: fresh_database(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "it exited with {status}; log tail:\n{}",
                    server.log_tail()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                // Drop kills it.
                return Err(format!(
                    "port {port} not accepting connections after {START_TIMEOUT:?}; log tail:\n{}",
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(dir: &Path) -> String {
        const TAIL: u64 = 4096;
        let mut out = String::new();
        for name in ["nx-27017.log", "console.log"] {
            let path = dir.join(name);
            let mut text = String::new();
            if let Ok(mut file) = File::open(&path) {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
                let mut bytes = Vec::new();
                let _ = file.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            out.push_str(&format!("--- {} ---\n{text}\n", path.display()));
        }
        out
    }
}

/// Send SIGTERM to a process, as systemd does to stop it.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
}

/// Wait up to `timeout` for `child` to exit; its status, or None if it still runs.
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub mod api;
pub mod bench;
pub mod orchestra;
pub mod prometheus;
pub mod rabbit;
pub mod receiver;
pub mod sse;
pub mod units;

/// Python tools the tests run (installed by `.ci/run` into `<workspace>/.venv`, pinned).
pub mod tools {
    use std::path::PathBuf;

    use crate::workspace_root;

    /// `openapi-spec-validator`: checks the OpenAPI document.
    pub const SPEC_VALIDATOR: Tool = Tool {
        env: "OSCIED_OPENAPI_SPEC_VALIDATOR",
        executable: "openapi-spec-validator",
        package: "openapi-spec-validator==0.9.0",
    };

    /// `schemathesis`: fuzzes the API from its OpenAPI document.
    pub const SCHEMATHESIS: Tool = Tool {
        env: "OSCIED_SCHEMATHESIS",
        executable: "schemathesis",
        package: "schemathesis==4.32.5",
    };

    /// A Python with `prometheus-client`: its OpenMetrics parser reads the `/metrics`
    /// expositions (`crate::prometheus`).
    pub const PROMETHEUS_PYTHON: Tool = Tool {
        env: "OSCIED_PROMETHEUS_PYTHON",
        executable: "python",
        package: "prometheus-client==0.26.0",
    };

    pub struct Tool {
        /// The environment variable naming the executable.
        pub env: &'static str,
        /// Its name in `<workspace>/.venv/bin`.
        pub executable: &'static str,
        /// The pinned PyPI requirement.
        pub package: &'static str,
    }

    impl Tool {
        /// `$<env>`, else `<workspace>/.venv/bin/<executable>`. Panics (a test that needs the
        /// tool fails, never skips) with how to install it.
        pub fn path(&self) -> PathBuf {
            if let Some(path) = std::env::var_os(self.env) {
                let path = PathBuf::from(path);
                assert!(
                    path.is_file(),
                    "{}={} is not a file",
                    self.env,
                    path.display()
                );
                return path;
            }
            let root = workspace_root();
            let venv = root.join(".venv/bin").join(self.executable);
            assert!(
                venv.is_file(),
                "{} not found: set {} to its path, or install it in the workspace with \
                 `python3 -m venv .venv && .venv/bin/pip install '{}'` (run in {}; .ci/run does)",
                self.executable,
                self.env,
                self.package,
                root.display()
            );
            venv
        }
    }
}

/// Test media, generated with ffmpeg's lavfi sources (never downloaded).
pub mod media {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// `dir/name`: `seconds` of testsrc at `width`x`height`, 25 fps, H.264, with a 48 kHz
    /// stereo AAC sine tone.
    pub fn clip(dir: &Path, name: &str, seconds: u32, width: u32, height: u32) -> PathBuf {
        let path = dir.join(name);
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc=size={width}x{height}:rate=25:duration={seconds}"
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=48000:duration={seconds}"
            ))
            .args(["-ac", "2", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
            .arg(&path)
            .status()
            .expect("ffmpeg must be installed");
        assert!(status.success(), "ffmpeg could not generate {name}");
        path
    }
}
