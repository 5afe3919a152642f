//! The real `worker-transform` binary, as a unit of a test cluster.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::orchestra::worker_transform_binary;

/// A running `worker-transform` process, killed on drop; its log is `unit.log` in its own
/// temp dir.
pub struct TransformUnit {
    child: Child,
    id: String,
    dir: TempDir,
}

impl TransformUnit {
    /// Start a unit with `OSCIED_*` variables `env` (API URL, node secret, storage root, AMQP
    /// URI, queues...) and `OSCIED_UNIT_ID=id`.
    pub fn start(id: &str, env: &[(&str, &str)]) -> TransformUnit {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("unit.log")).expect("log file");
        let mut command = Command::new(worker_transform_binary());
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
        let child = command.spawn().expect("the worker-transform binary starts");
        TransformUnit {
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

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("unit.log")).unwrap_or_default();
        let start = log.len().saturating_sub(6000);
        log[log.floor_char_boundary(start)..].to_owned()
    }
}

impl Drop for TransformUnit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
