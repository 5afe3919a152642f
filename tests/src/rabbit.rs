//! The RabbitMQ on 127.0.0.1:5672 (docs/architecture.md §9), shared by every test: each test gets its
//! own vhost, so units of one test never take another test's messages.

use std::process::{Command, Stdio};
use std::time::Duration;

/// `rabbitmqctl` with `args`: its standard output; panics with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    try_rabbitmqctl(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `rabbitmqctl` with `args`: its standard output, or what it said when it failed (say
/// while another test has the broker stopped).
pub fn try_rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("rabbitmqctl runs (RabbitMQ must be installed on this machine)");
    if !output.status.success() {
        return Err(format!(
            "rabbitmqctl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `rabbitmqctl` for a guard's drop: a failure is printed, never a panic (which would abort
/// a test already unwinding).
fn rabbitmqctl_quietly(args: &[&str]) {
    let done = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output();
    if !done.is_ok_and(|o| o.status.success()) {
        eprintln!("rabbitmqctl {args:?} failed: run it by hand");
    }
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
        rabbitmqctl_quietly(&["delete_vhost", &self.name]);
    }
}

/// Stops the RabbitMQ application (`rabbitmqctl stop_app`) and starts it again on drop, so a
/// failing test never leaves the broker down for the tests after it.
pub struct Outage {
    running: bool,
}

impl Outage {
    pub fn begin() -> Outage {
        // Not running from here on: even a failed stop_app gets a start_app on drop.
        let outage = Outage { running: false };
        rabbitmqctl(&["stop_app"]);
        outage
    }

    pub fn end(mut self) {
        self.running = true;
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
        // Listeners come up right after the app reports started.
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.running {
            rabbitmqctl_quietly(&["start_app"]);
        }
    }
}
