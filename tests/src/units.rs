//! The real `worker-transform` and `worker-publisher` binaries, as units of a test cluster.

use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::orchestra::{worker_publisher_binary, worker_transform_binary};

/// A running unit process, killed on drop; its log is `unit.log` in its own temp dir (its
/// working directory). [`TransformUnit`] and [`PublisherUnit`] deref to it.
pub struct UnitProcess {
    child: Child,
    id: String,
    dir: TempDir,
}

impl UnitProcess {
    /// Run `binary` in `dir` with `OSCIED_UNIT_ID=id` and `env`, and none of the caller's own
    /// `OSCIED_*` variables.
    fn spawn(binary: &Path, id: &str, dir: TempDir, env: &[(&str, &str)]) -> UnitProcess {
        let log = std::fs::File::create(dir.path().join("unit.log")).expect("log file");
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("OSCIED_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(dir.path())
            .env("OSCIED_UNIT_ID", id)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("the {} binary starts: {e}", binary.display()));
        UnitProcess {
            child,
            id: id.to_owned(),
            dir,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the unit dies without a word.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Has the process exited (killed, or failed)?
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait up to `timeout` for the process to exit: its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("unit.log")).unwrap_or_default();
        let start = log.len().saturating_sub(6000);
        log[log.floor_char_boundary(start)..].to_owned()
    }
}

impl Drop for UnitProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `worker-transform` process, killed on drop.
pub struct TransformUnit(UnitProcess);

impl TransformUnit {
    /// Start a unit with `OSCIED_*` variables `env` (API URL, node secret, storage root, AMQP
    /// URI, queues...) and `OSCIED_UNIT_ID=id`.
    pub fn start(id: &str, env: &[(&str, &str)]) -> TransformUnit {
        let dir = tempfile::tempdir().expect("temp dir");
        TransformUnit(UnitProcess::spawn(&worker_transform_binary(), id, dir, env))
    }
}

impl Deref for TransformUnit {
    type Target = UnitProcess;

    fn deref(&self) -> &UnitProcess {
        &self.0
    }
}

impl DerefMut for TransformUnit {
    fn deref_mut(&mut self) -> &mut UnitProcess {
        &mut self.0
    }
}

/// A running `worker-publisher` process, killed on drop, serving on its own free port from
/// its own www root.
pub struct PublisherUnit {
    process: UnitProcess,
    port: u16,
    www_root: PathBuf,
    public_url: String,
}

impl PublisherUnit {
    /// Start a unit with `OSCIED_*` variables `env` (API URL, node secret, storage root, AMQP
    /// URI, queues...) and `OSCIED_UNIT_ID=id`. Unless `env` names them, it listens on a free
    /// port (`OSCIED_LISTEN`), serves `<its temp dir>/www` (`OSCIED_WWW_ROOT`) and calls itself
    /// `http://127.0.0.1:<port>` (`OSCIED_PUBLIC_URL`). Returns once the port accepts
    /// connections; panics with the log if the unit exits or does not listen within 30 s.
    pub fn start(id: &str, env: &[(&str, &str)]) -> PublisherUnit {
        let dir = tempfile::tempdir().expect("temp dir");
        let given = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let listen = given("OSCIED_LISTEN")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let addr: SocketAddr = listen
            .parse()
            .unwrap_or_else(|e| panic!("OSCIED_LISTEN={listen}: {e}"));
        let www_root = given("OSCIED_WWW_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().join("www"));
        std::fs::create_dir_all(&www_root).expect("www root");
        let public_url = given("OSCIED_PUBLIC_URL")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http://{addr}"));
        let www = www_root.to_str().expect("utf-8 temp path").to_owned();
        let mut all: Vec<(&str, &str)> = vec![
            ("OSCIED_LISTEN", &listen),
            ("OSCIED_WWW_ROOT", &www),
            ("OSCIED_PUBLIC_URL", &public_url),
        ];
        all.extend_from_slice(env);
        let mut unit = PublisherUnit {
            process: UnitProcess::spawn(&worker_publisher_binary(), id, dir, &all),
            port: addr.port(),
            www_root,
            public_url,
        };
        unit.wait_listening(addr, Duration::from_secs(30));
        unit
    }

    fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if self.process.exited() {
                panic!(
                    "publisher {} exited before listening on {addr}:\n{}",
                    self.id(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "publisher {} not listening on {addr} after {timeout:?}:\n{}",
            self.id(),
            self.log_tail()
        );
    }

    /// The port its HTTP server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its `OSCIED_PUBLIC_URL` (`http://127.0.0.1:<port>` unless given): what its publish
    /// URIs start with.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Its web root; publications live in `medias/<media id>/` below it.
    pub fn www_root(&self) -> &Path {
        &self.www_root
    }
}

impl Deref for PublisherUnit {
    type Target = UnitProcess;

    fn deref(&self) -> &UnitProcess {
        &self.process
    }
}

impl DerefMut for PublisherUnit {
    fn deref_mut(&mut self) -> &mut UnitProcess {
        &mut self.process
    }
}
