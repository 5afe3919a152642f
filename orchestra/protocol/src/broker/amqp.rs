//! RabbitMQ through lapin, for clusters.
//!
//! One connection per [`AmqpBroker`], kept up by a background task that reconnects with
//! exponential backoff (lapin's own auto-recovery stays off: we re-open channels and
//! consumers ourselves, which also covers a broker that was down at start). Everything else
//! waits for that connection through a `watch` channel:
//!
//! - `publish` uses one shared confirm-mode channel and waits for the broker's confirm, all
//!   bounded by [`PUBLISH_TIMEOUT`] so a caller never hangs while RabbitMQ is away.
//! - each [`Consumer`] owns a channel with prefetch 1 and consumes only inside `next`: it
//!   starts one `basic.consume` per queue, takes the first delivery, cancels them all and
//!   puts back anything that raced in. A busy unit slot therefore holds no message.
//!
//! Queues are durable classic queues with `x-max-priority` = [`MAX_PRIORITY`]; every
//! declaration uses the same arguments (RabbitMQ refuses a redeclaration with others).
//!
//! Broadcasts go through one fanout exchange per topic (`oscied.broadcast.<topic>`), as
//! transient messages confirmed like the others. Each [`Subscriber`] binds its own exclusive,
//! auto-deleted, server-named queue to it and consumes without acks; after a lost connection
//! it binds a new one and reports the [`Broadcast::Gap`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Event, ExchangeKind,
};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::{
    Acker, Broadcast, Broker, BrokerError, Consumer, Delivery, MAX_PRIORITY, QueueStats, Subscriber,
};

/// First delay between connection (or consume) attempts, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The whole of `publish` (and `queue_stats`): waiting for a connection, declaring, confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP connect to a black-holed host would otherwise wait for the OS timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the connection task checks the connection state (lapin does not report every
/// kind of loss as an event, e.g. a `connection.close` from the server).
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on cancelling a consumer's `basic.consume`s and putting back what raced in.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// AMQP persistent delivery mode.
const PERSISTENT: u8 = 2;

/// The cluster broker. Clones share one connection; dropping the last clone (and every
/// consumer) stops the connection task and closes the connection.
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The current connection, `None` while (re)connecting.
    link: watch::Receiver<Option<Arc<Link>>>,
    task: tokio::task::JoinHandle<()>,
    /// Why the last connection attempt failed or the last connection was lost; cleared on
    /// connect. `ping` (hence the orchestra's `/health`) says it.
    last_error: Arc<Mutex<Option<String>>>,
    /// Connections made so far (the first one and every reconnect).
    connections: Arc<AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One established connection and what was set up on it (lost with it).
struct Link {
    conn: Connection,
    /// Distinguishes connections, so consumers re-open their channel after a reconnect.
    generation: u64,
    /// Queues declared on this connection.
    declared: Mutex<HashSet<String>>,
    /// The confirm-mode channel of `publish` and `queue_stats`, opened on first use.
    publisher: tokio::sync::Mutex<Option<Channel>>,
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-priority".into(),
        AMQPValue::LongInt(i32::from(MAX_PRIORITY)),
    );
    args
}

impl Link {
    fn connected(&self) -> bool {
        self.conn.status().connected()
    }

    fn declared(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set stays valid whatever panicked while holding it.
        self.declared.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn publisher(&self) -> lapin::Result<Channel> {
        let mut slot = self.publisher.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        // The first use, or the server closed the channel (e.g. a refused declaration).
        let channel = self.conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Declares the queue once per connection.
    async fn declare(&self, channel: &Channel, queue: &str) -> lapin::Result<()> {
        if self.declared().contains(queue) {
            return Ok(());
        }
        self.declare_now(channel, queue).await.map(|_| ())
    }

    /// Declares the queue, returning its counts.
    async fn declare_now(&self, channel: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                queue_arguments(),
            )
            .await?;
        self.declared().insert(queue.to_string());
        Ok(declared)
    }

    /// Declares a topic's fanout exchange once per connection.
    async fn declare_exchange(&self, channel: &Channel, exchange: &str) -> lapin::Result<()> {
        let key = format!("exchange:{exchange}");
        if self.declared().contains(&key) {
            return Ok(());
        }
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        self.declared().insert(key);
        Ok(())
    }

    fn forget(&self, queues: &[String]) {
        let mut declared = self.declared();
        for q in queues {
            declared.remove(q);
        }
    }
}

impl Inner {
    fn not_connected(&self) -> BrokerError {
        let last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_deref() {
            Some(cause) => unavailable(format!("not connected to RabbitMQ: {cause}")),
            None => unavailable("not connected to RabbitMQ (connecting)"),
        }
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.link
            .borrow()
            .as_ref()
            .filter(|l| l.connected())
            .cloned()
    }

    /// Waits for a live connection; errs only if the connection task is gone.
    async fn connected(&self) -> Result<Arc<Link>, BrokerError> {
        let mut rx = self.link.clone();
        let link = rx
            .wait_for(|l| l.as_ref().is_some_and(|l| l.connected()))
            .await
            .map_err(|_| unavailable("the RabbitMQ connection task stopped"))?;
        link.as_ref()
            .cloned()
            .ok_or_else(|| unavailable("not connected to RabbitMQ"))
    }
}

impl AmqpBroker {
    /// Starts connecting to `uri` in the background and returns at once: it never fails, an
    /// unreachable RabbitMQ only makes `ping` and `publish` fail until it is back. Must be
    /// called within a Tokio runtime.
    pub fn connect(uri: &str) -> AmqpBroker {
        let (tx, rx) = watch::channel(None);
        let last_error = Arc::new(Mutex::new(None));
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(keep_connected(
            uri.to_string(),
            tx,
            last_error.clone(),
            connections.clone(),
        ));
        AmqpBroker {
            inner: Arc::new(Inner {
                link: rx,
                task,
                last_error,
                connections,
            }),
        }
    }

    async fn publish_connected(
        &self,
        queue: &str,
        payload: &[u8],
        priority: u8,
    ) -> Result<(), BrokerError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_priority(priority);
        // A second attempt only when the queue vanished after we declared it (the mandatory
        // publish came back unroutable): it redeclares.
        for _ in 0..2 {
            let link = self.inner.connected().await?;
            let channel = link.publisher().await.map_err(unavailable)?;
            link.declare(&channel, queue).await.map_err(unavailable)?;
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    payload,
                    properties.clone(),
                )
                .await
                .map_err(unavailable)?
                .await
                .map_err(unavailable)?;
            match confirm {
                Confirmation::Ack(None) => return Ok(()),
                Confirmation::Ack(Some(_)) => link.forget(&[queue.to_string()]),
                Confirmation::Nack(_) => return Err(unavailable("RabbitMQ refused the message")),
                Confirmation::NotRequested => {
                    return Err(unavailable("the publishing channel is not in confirm mode"));
                }
            }
        }
        Err(unavailable(format!(
            "queue {queue} vanished while publishing"
        )))
    }

    async fn broadcast_connected(&self, topic: &str, payload: &[u8]) -> Result<(), BrokerError> {
        let exchange = exchange_of(topic);
        let link = self.inner.connected().await?;
        let channel = link.publisher().await.map_err(unavailable)?;
        link.declare_exchange(&channel, &exchange)
            .await
            .map_err(unavailable)?;
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default(),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        match confirm {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) => Err(unavailable("RabbitMQ refused the broadcast")),
            Confirmation::NotRequested => {
                Err(unavailable("the publishing channel is not in confirm mode"))
            }
        }
    }

    fn timed_out(&self, what: &str) -> BrokerError {
        if self.inner.current().is_some() {
            unavailable(format!(
                "RabbitMQ did not answer {what} within {PUBLISH_TIMEOUT:?}"
            ))
        } else {
            unavailable("not connected to RabbitMQ")
        }
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn durable(&self) -> bool {
        true
    }

    fn reconnects(&self) -> u64 {
        self.inner
            .connections
            .load(Ordering::Relaxed)
            .saturating_sub(1)
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.inner
            .current()
            .map(|_| ())
            .ok_or_else(|| self.inner.not_connected())
    }

    async fn publish(&self, queue: &str, payload: &[u8], priority: u8) -> Result<(), BrokerError> {
        let priority = priority.min(MAX_PRIORITY);
        tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.publish_connected(queue, payload, priority),
        )
        .await
        .unwrap_or_else(|_| Err(self.timed_out("the publish")))
    }

    fn consumer(&self, queues: &[String]) -> Box<dyn Consumer> {
        Box::new(AmqpConsumer {
            broker: self.inner.clone(),
            queues: queues.to_vec(),
            channel: None,
        })
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        let stats = async {
            let link = self.inner.connected().await?;
            let channel = link.publisher().await.map_err(unavailable)?;
            let declared = link
                .declare_now(&channel, queue)
                .await
                .map_err(unavailable)?;
            Ok(QueueStats {
                messages: u64::from(declared.message_count()),
                consumers: u64::from(declared.consumer_count()),
            })
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, stats)
            .await
            .unwrap_or_else(|_| Err(self.timed_out("the queue declaration")))
    }

    async fn broadcast(&self, topic: &str, payload: &[u8]) -> Result<(), BrokerError> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.broadcast_connected(topic, payload))
            .await
            .unwrap_or_else(|_| Err(self.timed_out("the broadcast")))
    }

    fn subscribe(&self, topic: &str) -> Box<dyn Subscriber> {
        Box::new(AmqpSubscriber {
            broker: self.inner.clone(),
            exchange: exchange_of(topic),
            live: None,
            started: false,
        })
    }
}

/// The fanout exchange of a broadcast topic.
fn exchange_of(topic: &str) -> String {
    format!("oscied.broadcast.{topic}")
}

/// A topic's subscriber: its own queue bound to the topic's exchange, on its own channel.
struct AmqpSubscriber {
    broker: Arc<Inner>,
    exchange: String,
    live: Option<(Channel, lapin::Consumer)>,
    /// Whether it was live before: a new binding after that is a gap.
    started: bool,
}

impl AmqpSubscriber {
    async fn bind(&self) -> Result<(Channel, lapin::Consumer), String> {
        let link = self.broker.connected().await.map_err(|e| e.to_string())?;
        Self::bind_on(&link, &self.exchange)
            .await
            .map_err(|e| e.to_string())
    }

    async fn bind_on(link: &Link, exchange: &str) -> lapin::Result<(Channel, lapin::Consumer)> {
        let channel = link.conn.create_channel().await?;
        link.declare_exchange(&channel, exchange).await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                format!("oscied-{}", uuid::Uuid::new_v4()).into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

#[async_trait]
impl Subscriber for AmqpSubscriber {
    async fn next(&mut self) -> Broadcast {
        let mut backoff = BACKOFF_MIN;
        loop {
            if let Some((channel, consumer)) = &mut self.live {
                let mut watch = tokio::time::interval(WATCH_INTERVAL);
                let lost = loop {
                    tokio::select! {
                        delivery = consumer.next() => match delivery {
                            Some(Ok(delivery)) => return Broadcast::Message(delivery.data),
                            Some(Err(e)) => break e.to_string(),
                            None => break "the consumer was cancelled".to_string(),
                        },
                        _ = watch.tick() => {
                            if !channel.status().connected() {
                                break "the channel closed".to_string();
                            }
                        }
                    }
                };
                warn!(exchange = %self.exchange, reason = %lost, "broadcast subscription lost, binding again");
                self.live = None;
                continue;
            }
            match self.bind().await {
                Ok(live) => {
                    self.live = Some(live);
                    if std::mem::replace(&mut self.started, true) {
                        return Broadcast::Gap;
                    }
                }
                Err(e) => {
                    warn!(exchange = %self.exchange, error = %e, retry_in = ?backoff, "subscribing to RabbitMQ failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The URI without its password, for logs.
fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "<not an AMQP URI>".to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://{userinfo}@{host}{path}"),
        },
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// Why RabbitMQ refused a connection when no retry will fix it by itself (the URI's
/// credentials or vhost), with what to do; None for other errors (down, unreachable...).
fn permanent_cause(error: &lapin::Error, uri: &str) -> Option<String> {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return None;
    };
    let said = amqp.get_message().as_str();
    let vhost = vhost_of(uri);
    match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(format!(
            "RabbitMQ refused the login ({said}): check the user and password in OSCIED_AMQP_URI"
        )),
        AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Some(format!(
            "RabbitMQ refused vhost {vhost:?} ({said}): create it and let the user use it \
             (rabbitmqctl add_vhost {vhost}; rabbitmqctl set_permissions -p {vhost} <user> \
             '.*' '.*' '.*'), or fix OSCIED_AMQP_URI"
        )),
        _ => None,
    }
}

/// The vhost an AMQP URI names (`/` when none), percent-decoded.
fn vhost_of(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = rest
        .find('/')
        .map_or("", |i| &rest[i + 1..])
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    if path.is_empty() {
        return "/".to_owned();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The wall-clock time `after` from now, for "retrying at" in a log line.
fn retry_at(after: Duration) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + after)
}

/// The connection task: connect, publish the link, wait for its loss, repeat with backoff.
async fn keep_connected(
    uri: String,
    tx: watch::Sender<Option<Arc<Link>>>,
    last_error: Arc<Mutex<Option<String>>>,
    connections: Arc<AtomicU64>,
) {
    let set_error = |cause: Option<String>| {
        *last_error.lock().unwrap_or_else(|e| e.into_inner()) = cause;
    };
    let target = redact(&uri);
    let properties = ConnectionProperties::default().with_connection_name("oscied".into());
    let mut backoff = BACKOFF_MIN;
    let mut generation = 0;
    loop {
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(&uri, properties.clone()),
        )
        .await;
        match attempt {
            Ok(Ok(conn)) => {
                generation += 1;
                connections.fetch_add(1, Ordering::Relaxed);
                set_error(None);
                info!(broker = %target, "connected to RabbitMQ");
                let events = conn.events_listener();
                let link = Arc::new(Link {
                    conn,
                    generation,
                    declared: Mutex::new(HashSet::new()),
                    publisher: tokio::sync::Mutex::new(None),
                });
                tx.send_replace(Some(link.clone()));
                let reason = wait_for_loss(&link, events).await;
                tx.send_replace(None);
                set_error(Some(format!("lost the connection: {reason}")));
                warn!(broker = %target, %reason, "lost the RabbitMQ connection, reconnecting");
                // Back off from the start: a broker that drops us right away is not hammered.
                backoff = BACKOFF_MIN;
            }
            Ok(Err(e)) => match permanent_cause(&e, &uri) {
                Some(cause) => {
                    // No retry fixes it until someone does: straight to the longest pause, one
                    // line per retry rather than a burst (still quick once it is fixed).
                    backoff = BACKOFF_MAX;
                    error!(
                        broker = %target,
                        retry_in_secs = backoff.as_secs(),
                        retry_at = %retry_at(backoff),
                        "{cause}; retrying in {} s", backoff.as_secs()
                    );
                    set_error(Some(cause));
                }
                None => {
                    warn!(broker = %target, error = %e, retry_in = ?backoff, "cannot connect to RabbitMQ");
                    set_error(Some(format!("cannot connect: {e}")));
                }
            },
            Err(_) => {
                warn!(broker = %target, retry_in = ?backoff, "connecting to RabbitMQ timed out");
                set_error(Some(format!(
                    "connecting timed out after {CONNECT_TIMEOUT:?}"
                )));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Returns once the connection is no longer usable, with why.
async fn wait_for_loss(
    link: &Link,
    events: impl futures_util::Stream<Item = Event> + Send + 'static,
) -> String {
    let mut events = Box::pin(events);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            event = events.next() => match event {
                // Channel-level errors are reported here too: only a dead connection counts.
                Some(Event::Error(e)) if !link.connected() => return e.to_string(),
                Some(Event::Error(e)) => debug!(error = %e, "RabbitMQ channel error"),
                Some(_) => {}
                None => return "the connection's event stream ended".to_string(),
            },
            _ = tick.tick() => {
                if !link.connected() {
                    return "the connection closed".to_string();
                }
            }
        }
    }
}

struct AmqpConsumer {
    broker: Arc<Inner>,
    queues: Vec<String>,
    /// This consumer's channel and the connection generation it belongs to.
    channel: Option<(u64, Channel)>,
}

/// The deliveries of one `next` call's consumers, tagged with their queue.
type Deliveries = SelectAll<BoxStream<'static, (String, lapin::Result<lapin::message::Delivery>)>>;

impl AmqpConsumer {
    async fn channel(&mut self, link: &Link) -> lapin::Result<Channel> {
        let reusable = self
            .channel
            .as_ref()
            .filter(|(generation, c)| *generation == link.generation && c.status().connected());
        if let Some((_, channel)) = reusable {
            return Ok(channel.clone());
        }
        let channel = link.conn.create_channel().await?;
        // Per consumer (not global): each basic.consume of `next` gets at most one message.
        channel.basic_qos(1, BasicQosOptions::default()).await?;
        self.channel = Some((link.generation, channel.clone()));
        Ok(channel)
    }

    async fn try_next(&mut self) -> Result<Delivery, String> {
        let link = self.broker.connected().await.map_err(|e| e.to_string())?;
        let channel = self.channel(&link).await.map_err(|e| e.to_string())?;
        let mut session = Session {
            channel: channel.clone(),
            tags: Vec::new(),
            deliveries: SelectAll::new(),
            settled: false,
        };
        for queue in &self.queues {
            let consumed = async {
                link.declare(&channel, queue).await?;
                let tag = format!("oscied-{}", uuid::Uuid::new_v4());
                let consumer = channel
                    .basic_consume(
                        queue.as_str().into(),
                        tag.as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                Ok::<_, lapin::Error>((tag, consumer))
            };
            match consumed.await {
                Ok((tag, consumer)) => {
                    session.tags.push(tag);
                    let queue = queue.clone();
                    session
                        .deliveries
                        .push(consumer.map(move |d| (queue.clone(), d)).boxed());
                }
                Err(e) => {
                    // The queue may have been deleted since we declared it.
                    link.forget(&self.queues);
                    return Err(format!("consuming {queue}: {e}"));
                }
            }
        }
        match session.deliveries.next().await {
            Some((queue, Ok(delivery))) => {
                let lapin::message::Delivery {
                    data,
                    redelivered,
                    acker,
                    ..
                } = delivery;
                // Wrapped first: if this `next` is dropped while settling, it goes back.
                let delivery = Delivery::new(
                    queue,
                    data,
                    redelivered,
                    Box::new(AmqpAcker { channel, acker }),
                );
                session.settle().await;
                Ok(delivery)
            }
            Some((queue, Err(e))) => Err(format!("consuming {queue}: {e}")),
            None => {
                link.forget(&self.queues);
                Err("RabbitMQ cancelled the consumers".to_string())
            }
        }
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Delivery {
        if self.queues.is_empty() {
            // Nothing can ever arrive (and RabbitMQ has nothing to consume).
            return std::future::pending().await;
        }
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.try_next().await {
                Ok(delivery) => return delivery,
                Err(error) => {
                    warn!(queues = %crate::unit::log::List(&self.queues), %error, retry_in = ?backoff, "consuming from RabbitMQ failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The `basic.consume`s of one `next` call. Settling cancels them and puts back whatever
/// raced in; a session dropped unsettled (the `next` future was dropped, or consuming failed)
/// settles in a spawned task, so no message stays held by an idle consumer.
struct Session {
    channel: Channel,
    tags: Vec<String>,
    deliveries: Deliveries,
    settled: bool,
}

impl Session {
    async fn settle(&mut self) {
        self.settled = true;
        let tags = std::mem::take(&mut self.tags);
        let deliveries = std::mem::take(&mut self.deliveries);
        // In a task, so that dropping this `next` midway still puts back what raced in.
        let settling = tokio::spawn(settle(self.channel.clone(), tags, deliveries));
        if let Err(e) = settling.await {
            warn!(error = %e, "settling RabbitMQ consumers failed");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.settled || !self.channel.status().connected() {
            return;
        }
        let channel = self.channel.clone();
        let tags = std::mem::take(&mut self.tags);
        let deliveries = std::mem::take(&mut self.deliveries);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(settle(channel, tags, deliveries));
        }
    }
}

async fn settle(channel: Channel, tags: Vec<String>, mut deliveries: Deliveries) {
    let settled = async {
        for tag in tags {
            if let Err(e) = channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await
            {
                debug!(error = %e, "cancelling a RabbitMQ consumer");
            }
        }
        // After its cancel-ok, each consumer's stream ends; what came before raced in.
        while let Some((queue, delivery)) = deliveries.next().await {
            if let Ok(delivery) = delivery {
                debug!(%queue, "putting back a delivery that raced in");
                let requeue = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                if let Err(e) = delivery.acker.nack(requeue).await {
                    debug!(error = %e, "putting back a RabbitMQ delivery");
                }
            }
        }
    };
    if tokio::time::timeout(SETTLE_TIMEOUT, settled).await.is_err() {
        // Whatever is still held goes back when the channel closes (reconnect or drop).
        warn!("cancelling RabbitMQ consumers timed out");
    }
}

struct AmqpAcker {
    /// Keeps the channel open while the delivery is outstanding: closing it would requeue.
    channel: Channel,
    acker: lapin::Acker,
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            // lapin poisons the ackers of a closed channel: RabbitMQ requeued the message.
            Ok(false) => Err(unavailable(
                "the channel closed before the ack; the message will be redelivered",
            )),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn requeue(self: Box<Self>) {
        let AmqpAcker { channel, acker } = *self;
        // Without a runtime, dropping the channel closes it, which requeues too.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let requeue = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                if let Err(e) = acker.nack(requeue).await {
                    debug!(error = %e, "requeueing a RabbitMQ delivery");
                }
                drop(channel);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, vhost_of};

    #[test]
    fn the_vhost_of_a_uri() {
        assert_eq!(vhost_of("amqp://u:p@h:5672/oscied"), "oscied");
        assert_eq!(vhost_of("amqp://u:p@h:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://h/my%20vh?heartbeat=10"), "my vh");
        assert_eq!(vhost_of("amqp://h"), "/");
        assert_eq!(vhost_of("amqp://h/"), "/");
    }

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("amqp://guest:s3cret@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact("amqp://user@rabbit/vh?heartbeat=10"),
            "amqp://user@rabbit/vh?heartbeat=10"
        );
        assert_eq!(redact("amqp://rabbit"), "amqp://rabbit");
        assert_eq!(redact("amqp://a:b@c@host/"), "amqp://a:***@host/");
        assert_eq!(redact("rabbit:5672"), "<not an AMQP URI>");
    }
}
