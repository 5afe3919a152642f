//! RabbitMQ going away and coming back (DESIGN.md §5): the AMQP broker reconnects by itself.
//!
//! This stops the RabbitMQ application (`rabbitmqctl stop_app`), which disturbs everything
//! else using it: it is the only test of this binary (cargo runs test binaries one after
//! another), and a guard restarts RabbitMQ even when the test fails.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oscied_protocol::broker::{AmqpBroker, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_consumer_and_publish_survive_a_rabbitmq_outage() {
    // The broker's reconnect logs, shown when the test fails (or with --nocapture).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("oscied_protocol=debug")
        .with_test_writer()
        .try_init();
    let vhost = Vhost::create();
    let broker: Arc<dyn Broker> = Arc::new(AmqpBroker::connect(&vhost.uri()));
    broker
        .publish("transform", b"before the outage", 5)
        .await
        .expect("publish while RabbitMQ is up");

    // Declared after the vhost, so dropped (RabbitMQ restarted) before the vhost is deleted.
    let mut outage = Outage::start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.ping().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the broker did not notice the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // While RabbitMQ is down, publish fails within its bound instead of hanging.
    let started = Instant::now();
    let published = broker.publish("transform", b"during the outage", 0).await;
    assert!(published.is_err(), "{published:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // A consumer started during the outage waits for the reconnect instead of failing.
    let mut consumer = broker.consumer(&["transform".to_string()]);
    let waiting = tokio::spawn(async move { consumer.next().await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiting.is_finished());
    outage.end();

    let delivery = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the consumer got the message after the reconnect")
        .expect("the consumer task");
    assert_eq!(delivery.payload, b"before the outage");
    delivery.ack().await.expect("ack after the reconnect");

    broker.ping().await.expect("connected again");
    broker
        .publish("transform", b"after the outage", 0)
        .await
        .expect("publish after the reconnect");
    let mut consumer = broker.consumer(&["transform".to_string()]);
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("the message published after the reconnect");
    assert_eq!(delivery.payload, b"after the outage");
    delivery.ack().await.expect("ack");
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("run rabbitmqctl (is RabbitMQ installed?)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The RabbitMQ application stopped until `end` or drop (also on panic).
struct Outage {
    running: bool,
}

impl Outage {
    fn start() -> Outage {
        // Not running from here on: even a failed stop_app gets a start_app on drop.
        let outage = Outage { running: false };
        rabbitmqctl(&["stop_app"]);
        outage
    }

    fn end(&mut self) {
        rabbitmqctl(&["start_app"]);
        self.running = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.running {
            // Not rabbitmqctl(): no panic while unwinding.
            let started = Command::new("rabbitmqctl").arg("start_app").output();
            if !started.is_ok_and(|o| o.status.success()) {
                eprintln!("could not restart RabbitMQ: run `rabbitmqctl start_app`");
            }
        }
    }
}

/// A fresh RabbitMQ vhost for the test, deleted (with its queues) on drop.
struct Vhost {
    name: String,
}

impl Vhost {
    fn create() -> Vhost {
        let name = format!("oscied-test-{}", uuid::Uuid::new_v4());
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Vhost { name };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
        vhost
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let deleted = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
        if !deleted.is_ok_and(|o| o.status.success()) {
            eprintln!("could not delete the RabbitMQ vhost {}", self.name);
        }
    }
}
