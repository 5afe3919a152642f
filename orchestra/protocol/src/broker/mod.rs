//! The broker between the orchestra and its units: one [`Broker`] trait, RabbitMQ through
//! lapin for clusters ([`amqp::AmqpBroker`]) and in-process queues for standalone mode
//! ([`memory::MemoryBroker`]). Both pass the suite in `orchestra/protocol/tests/broker.rs`.
//!
//! Delivery is at least once: a message is removed only when acked; a [`Delivery`] dropped
//! without an ack goes back to its queue. Queues are durable and messages persistent on
//! RabbitMQ; `publish` returns only once the broker confirmed the message.
//!
//! Prefetch = concurrency, per free slot: a unit with concurrency N runs N [`Consumer`]s, and
//! a consumer holds at most one message and only while its `next` call waits. A busy unit
//! therefore holds no message another, idle unit could start (units ack right after the
//! claim, so a classic prefetch-N consumer would keep receiving while all its slots run).
//!
//! Besides the work queues, a broker fans transient messages out ([`Broker::broadcast`],
//! [`Broker::subscribe`]): every live subscriber of a topic gets each one, on any connection.
//! The orchestra's replicas share their live events this way (no persistence, no redelivery:
//! a subscriber that lost its connection is told of the [`Broadcast::Gap`]).

pub mod amqp;
pub mod memory;

use async_trait::async_trait;

pub use amqp::AmqpBroker;
pub use memory::MemoryBroker;

/// The highest message priority; tasks' `priority` is 0 (default) to this, higher first.
pub const MAX_PRIORITY: u8 = 9;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// Not connected, or the broker refused or did not confirm in time. Retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting (not delivered to a consumer).
    pub messages: u64,
    /// Consumers waiting for a message (idle unit slots).
    pub consumers: u64,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `amqp` or `memory`.
    fn kind(&self) -> &'static str;
    /// Whether queued messages outlive this process. When they don't, the orchestra
    /// re-dispatches its queued tasks on start.
    fn durable(&self) -> bool;
    /// Connected and answering.
    async fn ping(&self) -> Result<(), BrokerError>;
    /// Connections made again after a loss since this broker was created (0 in-process).
    fn reconnects(&self) -> u64 {
        0
    }
    /// Queue one persistent message (declaring the durable queue) and wait for the broker's
    /// confirm. `priority` is clamped to [`MAX_PRIORITY`].
    async fn publish(&self, queue: &str, payload: &[u8], priority: u8) -> Result<(), BrokerError>;
    /// A consumer of these queues. It connects (and reconnects, with backoff) inside
    /// [`Consumer::next`], so creating one never fails.
    fn consumer(&self, queues: &[String]) -> Box<dyn Consumer>;
    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BrokerError>;
    /// Send one transient message to every current subscriber of `topic` (none: it is
    /// dropped), waiting for the broker to take it.
    async fn broadcast(&self, topic: &str, payload: &[u8]) -> Result<(), BrokerError>;
    /// A subscriber of `topic`: it sees what is broadcast once it is live (inside its first
    /// [`Subscriber::next`]), and reconnects on its own.
    fn subscribe(&self, topic: &str) -> Box<dyn Subscriber>;
}

/// What a [`Subscriber`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    Message(Vec<u8>),
    /// Messages may have been missed since the last one (a reconnect, or this subscriber
    /// fell behind); the subscription is live again.
    Gap,
}

#[async_trait]
pub trait Subscriber: Send {
    /// The next broadcast, waiting (and reconnecting with backoff) as long as it takes.
    async fn next(&mut self) -> Broadcast;
}

#[async_trait]
pub trait Consumer: Send {
    /// Wait for the next message on any of the queues, surviving broker outages (it waits
    /// and reconnects with backoff, logging each failure). Holds at most one message.
    async fn next(&mut self) -> Delivery;
}

/// Settles a delivery on the broker it came from.
#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Put the message back on its queue (at once, without waiting).
    fn requeue(self: Box<Self>);
}

/// One message taken from a queue. Ack it once it is safely owned (claimed); dropping it
/// unacked puts it back.
pub struct Delivery {
    pub queue: String,
    pub payload: Vec<u8>,
    /// The broker delivered it before (a consumer died or requeued it).
    pub redelivered: bool,
    acker: Option<Box<dyn Acker>>,
}

impl Delivery {
    pub fn new(
        queue: String,
        payload: Vec<u8>,
        redelivered: bool,
        acker: Box<dyn Acker>,
    ) -> Delivery {
        Delivery {
            queue,
            payload,
            redelivered,
            acker: Some(acker),
        }
    }

    /// Remove the message for good. An error means the broker connection was lost first:
    /// the message will be redelivered (the claim fences the duplicate).
    pub async fn ack(mut self) -> Result<(), BrokerError> {
        match self.acker.take() {
            Some(a) => a.ack().await,
            None => Ok(()),
        }
    }

    /// Put the message back on its queue.
    pub fn requeue(mut self) {
        if let Some(a) = self.acker.take() {
            a.requeue();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(a) = self.acker.take() {
            a.requeue();
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("bytes", &self.payload.len())
            .field("redelivered", &self.redelivered)
            .finish()
    }
}
