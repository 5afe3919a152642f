//! The RabbitMQ on 127.0.0.1:5672 (DESIGN.md §9), shared by every test: each test gets its
//! own vhost, so units of one test never take another test's messages.

use std::process::{Command, Stdio};
use std::time::Duration;

/// `rabbitmqctl` with `args`; panics with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("rabbitmqctl runs (RabbitMQ must be installed on this machine)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh vhost `oscied-test-<random>` the guest user may use; deleted on drop.
pub struct Vhost {
    name: String,
}

impl Vhost {
    pub fn create() -> Vhost {
        let name = format!("oscied-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `amqp://guest:guest@127.0.0.1:5672/<vhost>`
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Stops the RabbitMQ application (`rabbitmqctl stop_app`) and starts it again on drop, so a
/// failing test never leaves the broker down for the tests after it.
pub struct Outage {
    running: bool,
}

impl Outage {
    pub fn begin() -> Outage {
        rabbitmqctl(&["stop_app"]);
        Outage { running: false }
    }

    pub fn end(mut self) {
        self.restart();
    }

    fn restart(&mut self) {
        if !self.running {
            self.running = true;
            rabbitmqctl(&["start_app"]);
            rabbitmqctl(&["await_startup"]);
            // Listeners come up right after the app reports started.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.restart();
    }
}
