//! The broker suite (docs/architecture.md §2, §5): one set of tests, written once over `Arc<dyn Broker>`,
//! run against the in-process broker and against RabbitMQ on loopback (§9). Each RabbitMQ test
//! gets its own vhost, deleted at the end, so tests run in parallel on fresh queues.
//!
//! The RabbitMQ outage test (stop_app / start_app) lives in `broker_outage.rs`: it disturbs
//! every RabbitMQ user, and cargo runs test binaries one after another.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oscied_e2e::rabbit::{Vhost, rabbitmqctl};
use oscied_protocol::broker::{
    AmqpBroker, Broadcast, Broker, Consumer, Delivery, QueueStats, Subscriber,
};

/// Generates, for each suite function, one test per broker.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let broker = oscied_protocol::broker::MemoryBroker::new();
                    super::$name(std::sync::Arc::new(broker)).await;
                }
            )*
        }

        mod amqp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let vhost = oscied_e2e::rabbit::Vhost::create();
                    let broker = oscied_protocol::broker::AmqpBroker::connect(&vhost.uri());
                    super::$name(std::sync::Arc::new(broker)).await;
                }
            )*
        }
    };
}

suite!(
    kind_and_ping,
    publish_then_consume_round_trips,
    ack_removes_the_message,
    unacked_delivery_is_redelivered,
    higher_priority_first,
    one_consumer_of_two_queues,
    consumers_share_messages,
    queue_stats_counts_waiting_messages_and_consumers,
    broadcasts_reach_every_subscriber_of_their_topic,
);

/// How long a consumer waits before we conclude no message is coming.
const NOTHING: Duration = Duration::from_millis(700);
/// How long a message that is there may take to arrive.
const SOON: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The suite.

async fn kind_and_ping(broker: Arc<dyn Broker>) {
    // Only RabbitMQ keeps messages past the process.
    assert_eq!(broker.durable(), broker.kind() == "amqp");
    assert!(["amqp", "memory"].contains(&broker.kind()));
    // Connecting happens in the background: ping turns Ok shortly.
    eventually("ping", || async { broker.ping().await.is_ok() }).await;
}

async fn publish_then_consume_round_trips(broker: Arc<dyn Broker>) {
    let payload: Vec<u8> = (0..=255u8).chain(*b"{\"task\":\"x\"}").collect();
    publish(&broker, "transform", &payload, 0).await;
    publish(&broker, "other", b"not for us", 0).await;

    let mut consumer = broker.consumer(&queues(&["transform"]));
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.queue, "transform");
    assert_eq!(delivery.payload, payload);
    assert!(!delivery.redelivered);
    delivery.ack().await.expect("ack");

    let mut other = broker.consumer(&queues(&["other"]));
    let delivery = next(&mut other).await;
    assert_eq!(
        (delivery.queue.as_str(), &delivery.payload[..]),
        ("other", &b"not for us"[..])
    );
    delivery.ack().await.expect("ack");
}

async fn ack_removes_the_message(broker: Arc<dyn Broker>) {
    publish(&broker, "q", b"once", 0).await;
    let mut first = broker.consumer(&queues(&["q"]));
    next(&mut first).await.ack().await.expect("ack");

    let mut second = broker.consumer(&queues(&["q"]));
    nothing(&mut second).await;
    assert_eq!(stats(&broker, "q").await.messages, 0);
}

async fn unacked_delivery_is_redelivered(broker: Arc<dyn Broker>) {
    publish(&broker, "q", b"again", 0).await;
    publish(&broker, "q", b"later", 0).await;
    let mut consumer = broker.consumer(&queues(&["q"]));

    // Dropped without an ack (a unit died): back at the front of the queue, flagged. Going
    // back does not wait for the broker, hence the wait before taking it again.
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.payload, b"again");
    assert!(!delivery.redelivered);
    drop(delivery);
    eventually("the dropped message back", || waiting(&broker, "q", 2)).await;
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.payload, b"again");
    assert!(delivery.redelivered);

    // Put back explicitly, taken by another consumer.
    delivery.requeue();
    eventually("the requeued message back", || waiting(&broker, "q", 2)).await;
    let mut other = broker.consumer(&queues(&["q"]));
    let delivery = next(&mut other).await;
    assert_eq!(delivery.payload, b"again");
    assert!(delivery.redelivered);
    delivery.ack().await.expect("ack");

    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.payload, b"later");
    assert!(!delivery.redelivered);
    delivery.ack().await.expect("ack");
    nothing(&mut consumer).await;
}

async fn higher_priority_first(broker: Arc<dyn Broker>) {
    for (payload, priority) in [
        ("low-1", 0),
        ("mid", 4),
        ("high", 9),
        ("low-2", 0),
        // Clamped to the maximum, after "high" in its band.
        ("over", 200),
    ] {
        publish(&broker, "q", payload.as_bytes(), priority).await;
    }
    let mut consumer = broker.consumer(&queues(&["q"]));
    let mut order = Vec::new();
    for _ in 0..5 {
        let delivery = next(&mut consumer).await;
        order.push(String::from_utf8_lossy(&delivery.payload).into_owned());
        delivery.ack().await.expect("ack");
    }
    assert_eq!(order, ["high", "over", "mid", "low-1", "low-2"]);
}

async fn one_consumer_of_two_queues(broker: Arc<dyn Broker>) {
    publish(&broker, "qa", b"a", 0).await;
    publish(&broker, "qb", b"b", 0).await;
    let mut consumer = broker.consumer(&queues(&["qa", "qb"]));
    let mut got = BTreeSet::new();
    for _ in 0..2 {
        let delivery = next(&mut consumer).await;
        got.insert((delivery.queue.clone(), delivery.payload.clone()));
        delivery.ack().await.expect("ack");
    }
    let expected = BTreeSet::from([
        ("qa".to_string(), b"a".to_vec()),
        ("qb".to_string(), b"b".to_vec()),
    ]);
    assert_eq!(got, expected);
    nothing(&mut consumer).await;
}

async fn consumers_share_messages(broker: Arc<dyn Broker>) {
    publish(&broker, "q", b"m1", 0).await;
    publish(&broker, "q", b"m2", 0).await;

    // A takes one and works on it (no further `next`): it holds only that one.
    let mut a = broker.consumer(&queues(&["q"]));
    let first = next(&mut a).await;
    assert_eq!(stats(&broker, "q").await.messages, 1);
    let mut b = broker.consumer(&queues(&["q"]));
    let second = next(&mut b).await;
    let got = BTreeSet::from([first.payload.clone(), second.payload.clone()]);
    assert_eq!(got, BTreeSet::from([b"m1".to_vec(), b"m2".to_vec()]));
    first.ack().await.expect("ack");
    second.ack().await.expect("ack");

    // Units ack right after the claim (§5): A, busy with its job, must not take the next one
    // in the slot the ack freed.
    publish(&broker, "q", b"m3", 0).await;
    publish(&broker, "q", b"m4", 0).await;
    let taken = next(&mut a).await;
    assert_eq!(taken.payload, b"m3");
    taken.ack().await.expect("ack");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats(&broker, "q").await.messages, 1);
    let taken = next(&mut b).await;
    assert_eq!(taken.payload, b"m4");
    taken.ack().await.expect("ack");

    let mut c = broker.consumer(&queues(&["q"]));
    nothing(&mut c).await;
}

async fn queue_stats_counts_waiting_messages_and_consumers(broker: Arc<dyn Broker>) {
    assert_eq!(stats(&broker, "q").await, QueueStats::default());
    publish(&broker, "q", b"1", 0).await;
    publish(&broker, "q", b"2", 0).await;
    assert_eq!(
        stats(&broker, "q").await,
        QueueStats {
            messages: 2,
            consumers: 0
        }
    );

    // An idle consumer counts while it waits, on each of its queues.
    let mut idle = broker.consumer(&queues(&["idle", "idle-too"]));
    let waiting = tokio::spawn(async move { idle.next().await });
    let idle_counted = QueueStats {
        messages: 0,
        consumers: 1,
    };
    eventually("the idle consumer counted", || async {
        stats(&broker, "idle").await == idle_counted
            && stats(&broker, "idle-too").await == idle_counted
    })
    .await;
    assert_eq!(stats(&broker, "q").await.consumers, 0);

    // Once it took a message it no longer waits.
    publish(&broker, "idle", b"work", 0).await;
    let delivery = tokio::time::timeout(SOON, waiting)
        .await
        .expect("the idle consumer got the message")
        .expect("the consumer task");
    assert_eq!(delivery.payload, b"work");
    eventually("the busy consumer not counted", || async {
        stats(&broker, "idle").await == QueueStats::default()
            && stats(&broker, "idle-too").await == QueueStats::default()
    })
    .await;
    delivery.ack().await.expect("ack");
    assert_eq!(stats(&broker, "idle").await, QueueStats::default());
}

async fn broadcasts_reach_every_subscriber_of_their_topic(broker: Arc<dyn Broker>) {
    let mut first = broker.subscribe("events");
    let mut second = broker.subscribe("events");
    let mut elsewhere = broker.subscribe("other");
    live(&broker, "events", &mut first).await;
    live(&broker, "events", &mut second).await;
    live(&broker, "other", &mut elsewhere).await;
    for subscriber in [&mut first, &mut second, &mut elsewhere] {
        drain_warm_ups(subscriber).await;
    }

    for i in 0..20u8 {
        broker.broadcast("events", &[i]).await.expect("broadcast");
    }
    // Each subscriber gets every message, in order, and nothing of another topic.
    for subscriber in [&mut first, &mut second] {
        let got: Vec<u8> = messages(subscriber, 20).await.concat();
        assert_eq!(got, (0..20u8).collect::<Vec<_>>());
    }
    broker.broadcast("other", b"o").await.expect("broadcast");
    assert_eq!(messages(&mut elsewhere, 1).await, vec![b"o".to_vec()]);
    // Broadcasts are not queued: none of them reached a work queue of the same name.
    assert_eq!(stats(&broker, "events").await.messages, 0);
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_messages_survive_a_dropped_broker() {
    let vhost = Vhost::create();
    let broker: Arc<dyn Broker> = Arc::new(AmqpBroker::connect(&vhost.uri()));
    publish(&broker, "transform", b"kept", 3).await;
    drop(broker);

    // Durable queue with priorities, persistent message: it would also survive a restart.
    let listed = rabbitmqctl(&[
        "list_queues",
        "-p",
        vhost.name(),
        "name",
        "durable",
        "arguments",
        "messages_persistent",
        "--no-table-headers",
        "-q",
    ]);
    let row: Vec<&str> = listed.trim().split('\t').collect();
    assert_eq!(row.len(), 4, "{listed}");
    assert_eq!(row[0], "transform");
    assert_eq!(row[1], "true");
    assert!(
        row[2].contains("x-max-priority") && row[2].contains('9'),
        "{listed}"
    );
    assert_eq!(row[3], "1");

    let broker: Arc<dyn Broker> = Arc::new(AmqpBroker::connect(&vhost.uri()));
    let mut consumer = broker.consumer(&queues(&["transform"]));
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.payload, b"kept");
    delivery.ack().await.expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_without_rabbitmq_fails_fast() {
    // Nothing listens on port 1: what a stopped RabbitMQ looks like.
    let broker: Arc<dyn Broker> =
        Arc::new(AmqpBroker::connect("amqp://guest:guest@127.0.0.1:1/%2f"));
    assert!(broker.ping().await.is_err());

    // Each bounded, run side by side to keep the test short.
    let started = Instant::now();
    let mut consumer = broker.consumer(&queues(&["transform"]));
    let (published, stats, ()) = tokio::join!(
        broker.publish("transform", b"lost?", 0),
        broker.queue_stats("transform"),
        // A consumer is created anyway and just waits for the broker.
        nothing(&mut consumer),
    );
    assert!(published.is_err(), "{published:?}");
    assert!(stats.is_err(), "{stats:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

async fn publish(broker: &Arc<dyn Broker>, queue: &str, payload: &[u8], priority: u8) {
    broker
        .publish(queue, payload, priority)
        .await
        .unwrap_or_else(|e| panic!("publish to {queue}: {e}"));
}

async fn stats(broker: &Arc<dyn Broker>, queue: &str) -> QueueStats {
    broker
        .queue_stats(queue)
        .await
        .unwrap_or_else(|e| panic!("stats of {queue}: {e}"))
}

async fn waiting(broker: &Arc<dyn Broker>, queue: &str, messages: u64) -> bool {
    stats(broker, queue).await.messages == messages
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(SOON, consumer.next())
        .await
        .expect("a message within 10 s")
}

/// Asserts the consumer gets nothing (the `next` call is dropped, which must let go of
/// anything it was about to take).
async fn nothing(consumer: &mut Box<dyn Consumer>) {
    if let Ok(delivery) = tokio::time::timeout(NOTHING, consumer.next()).await {
        panic!("unexpected message {delivery:?}");
    }
}

/// Waits until `subscriber` receives broadcasts on `topic` (it binds inside its first `next`);
/// the other subscribers of the topic get warm-up messages too ([`drain_warm_ups`]).
async fn live(broker: &Arc<dyn Broker>, topic: &str, subscriber: &mut Box<dyn Subscriber>) {
    let deadline = Instant::now() + SOON;
    loop {
        broker
            .broadcast(topic, b"warm-up")
            .await
            .expect("broadcast");
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await {
            assert_eq!(got, Broadcast::Message(b"warm-up".to_vec()));
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber never went live");
    }
}

async fn drain_warm_ups(subscriber: &mut Box<dyn Subscriber>) {
    while let Ok(got) = tokio::time::timeout(NOTHING, subscriber.next()).await {
        assert_eq!(got, Broadcast::Message(b"warm-up".to_vec()));
    }
}

/// The next `n` broadcasts (a gap fails the test).
async fn messages(subscriber: &mut Box<dyn Subscriber>, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(SOON, subscriber.next()).await {
            Ok(Broadcast::Message(m)) => got.push(m),
            Ok(Broadcast::Gap) => panic!("a gap after {got:?}"),
            Err(_) => panic!("only {} of {n} broadcasts arrived: {got:?}", got.len()),
        }
    }
    got
}

/// Polls `check` for up to 10 s.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + SOON;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
