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
    binary: PathBuf,
    /// Given as `OSCIED_UNIT_ID`; false: the unit takes the id of its state dir.
    named: bool,
    env: Vec<(String, String)>,
}

impl UnitProcess {
    /// Run `binary` in `dir` with `OSCIED_UNIT_ID=id` (unless `id` is None: then the unit's
    /// id is `<state dir>/unit_id`, read once it is written) and `env`, and none of the
    /// caller's own `OSCIED_*` variables. `state_dir` is where the unit keeps its id.
    fn spawn(
        binary: &Path,
        id: Option<&str>,
        dir: TempDir,
        env: &[(&str, &str)],
        state_dir: &Path,
    ) -> UnitProcess {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut child = Self::run(binary, dir.path(), id, &env);
        let named = id.is_some();
        let id = match id {
            Some(id) => id.to_owned(),
            None => read_unit_id(&mut child, state_dir, dir.path()),
        };
        UnitProcess {
            child,
            id,
            dir,
            binary: binary.to_path_buf(),
            named,
            env,
        }
    }

    fn run(binary: &Path, dir: &Path, id: Option<&str>, env: &[(String, String)]) -> Child {
        // Appended: a restarted unit's log follows the first run's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("unit.log"))
            .expect("log file");
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("OSCIED_") {
                command.env_remove(key);
            }
        }
        command.current_dir(dir).env("RUST_LOG", "info");
        if let Some(id) = id {
            command.env("OSCIED_UNIT_ID", id);
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        command
            .spawn()
            .unwrap_or_else(|e| panic!("the {} binary starts: {e}", binary.display()))
    }

    /// Stop the process (SIGTERM, then SIGKILL after 20 s) and start it again with the same
    /// variables, working dir and log: the same id if it was given, else whatever its state
    /// dir says.
    pub fn restart(&mut self) {
        self.terminate();
        let id = self.named.then(|| self.id.clone());
        self.child = Self::run(&self.binary, self.dir.path(), id.as_deref(), &self.env);
    }

    /// SIGTERM, and wait (SIGKILL after 20 s).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    /// Start the process again after it exited (say after [`UnitProcess::kill9`]), with the
    /// same variables, working dir and log.
    pub fn respawn(&mut self) {
        assert!(self.exited(), "unit {} still runs", self.id);
        let id = self.named.then(|| self.id.clone());
        self.child = Self::run(&self.binary, self.dir.path(), id.as_deref(), &self.env);
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

    /// `kill -TERM`: the unit drains and stops (`OSCIED_DRAIN_SECS`).
    pub fn sigterm(&self) {
        crate::sigterm(self.child.id());
    }

    /// Wait up to `timeout` for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        crate::wait_exit(&mut self.child, timeout)
    }

    /// Has the process exited (killed, or failed)?
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
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

/// The id a unit started without `OSCIED_UNIT_ID` keeps in `<state dir>/unit_id`, once it
/// is there (30 s at most).
fn read_unit_id(child: &mut Child, state_dir: &Path, workdir: &Path) -> String {
    let path = state_dir.join("unit_id");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = std::fs::read_to_string(&path)
            && !text.trim().is_empty()
        {
            return text.trim().to_owned();
        }
        if !matches!(child.try_wait(), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(workdir.join("unit.log")).unwrap_or_default();
    panic!("no unit id in {} after start:\n{log}", path.display());
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
    /// Its id and lock go to its own `<temp dir>/state` (`OSCIED_STATE_DIR`) unless `env`
    /// names one, so units started side by side never share one.
    pub fn start(id: &str, env: &[(&str, &str)]) -> TransformUnit {
        let dir = tempfile::tempdir().expect("temp dir");
        let given = env.iter().find(|(k, _)| *k == "OSCIED_STATE_DIR");
        let state = given
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| dir.path().join("state"));
        let state_var = state.to_str().expect("utf-8 temp path").to_owned();
        let mut all: Vec<(&str, &str)> = vec![("OSCIED_STATE_DIR", &state_var)];
        all.extend_from_slice(env);
        TransformUnit(UnitProcess::spawn(
            &worker_transform_binary(),
            Some(id),
            dir,
            &all,
            &state,
        ))
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
    addr: SocketAddr,
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
    /// Its id and lock go to its default state dir, `<www root>/.oscied`, unless `env` names
    /// `OSCIED_STATE_DIR`.
    pub fn start(id: &str, env: &[(&str, &str)]) -> PublisherUnit {
        Self::start_as(Some(id), env)
    }

    /// [`PublisherUnit::start`] without `OSCIED_UNIT_ID`: the unit's id is the one in its
    /// state dir (a fresh one the first time).
    pub fn start_anonymous(env: &[(&str, &str)]) -> PublisherUnit {
        Self::start_as(None, env)
    }

    fn start_as(id: Option<&str>, env: &[(&str, &str)]) -> PublisherUnit {
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
        let state = given("OSCIED_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| www_root.join(".oscied"));
        let mut unit = PublisherUnit {
            process: UnitProcess::spawn(&worker_publisher_binary(), id, dir, &all, &state),
            addr,
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

    /// [`UnitProcess::restart`], returning once it listens again.
    pub fn restart(&mut self) {
        self.process.restart();
        self.wait_listening(self.addr, Duration::from_secs(30));
    }

    /// [`PublisherUnit::respawn`] with `overrides` replacing (or adding to) its variables.
    pub fn respawn_with(&mut self, overrides: &[(&str, &str)]) {
        for (key, value) in overrides {
            self.process.env.retain(|(k, _)| k != key);
            self.process
                .env
                .push(((*key).to_owned(), (*value).to_owned()));
        }
        self.respawn();
    }

    /// [`UnitProcess::respawn`] (after a kill), returning once it listens again.
    pub fn respawn(&mut self) {
        self.process.respawn();
        self.wait_listening(self.addr, Duration::from_secs(30));
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
