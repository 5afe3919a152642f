//! RabbitMQ going away and coming back (docs/architecture.md §5): the AMQP broker reconnects by itself.
//!
//! This stops the RabbitMQ application (`rabbitmqctl stop_app`), which disturbs everything
//! else using it: it is the only test of this binary (cargo runs test binaries one after
//! another), and a guard restarts RabbitMQ even when the test fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oscied_e2e::rabbit::{Outage, Vhost};
use oscied_protocol::broker::{AmqpBroker, Broadcast, Broker};

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

    // A broadcast subscriber, live before the outage.
    let mut subscriber = broker.subscribe("events");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        broker
            .broadcast("events", b"before")
            .await
            .expect("broadcast");
        let got = tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await;
        if got.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber never went live");
    }
    let subscribed = tokio::spawn(async move {
        // Drain what came before the outage; the first thing after it must be the gap.
        loop {
            match subscriber.next().await {
                Broadcast::Message(m) if m == b"before" => continue,
                other => return (other, subscriber),
            }
        }
    });

    // Declared after the vhost, so dropped (RabbitMQ restarted) before the vhost is deleted.
    let outage = Outage::begin();
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
    // The subscriber was told of the gap, and is live again.
    let (gap, mut subscriber) = tokio::time::timeout(Duration::from_secs(30), subscribed)
        .await
        .expect("the subscriber noticed the outage")
        .expect("the subscriber task");
    assert_eq!(gap, Broadcast::Gap);
    broker
        .broadcast("events", b"after")
        .await
        .expect("broadcast after the reconnect");
    let got = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
        .await
        .expect("a broadcast after the reconnect");
    assert_eq!(got, Broadcast::Message(b"after".to_vec()));
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
