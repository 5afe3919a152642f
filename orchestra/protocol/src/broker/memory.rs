//! In-process queues for standalone mode: nothing outlives the process (`durable` is false,
//! the orchestra re-dispatches its queued tasks on start).
//!
//! Each queue keeps one FIFO band per priority. Consumers wait on one shared [`Notify`] that
//! every publish or requeue wakes; a woken consumer re-checks its queues under the lock, so a
//! wake-up meant for another queue costs a lock, never a lost message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    Acker, Broadcast, Broker, BrokerError, Consumer, Delivery, MAX_PRIORITY, QueueStats, Subscriber,
};

/// How many broadcasts a subscriber may fall behind before it is told of a gap.
const BROADCAST_BACKLOG: usize = 4096;

const BANDS: usize = MAX_PRIORITY as usize + 1;

/// The standalone broker. Clones share the same queues.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<String, Queue>>,
    /// Woken (all waiters) whenever a message becomes available on any queue.
    available: Notify,
    /// Publish counter, to order messages of equal priority across queues.
    seq: AtomicU64,
    /// One fan-out channel per broadcast topic.
    topics: Mutex<HashMap<String, tokio::sync::broadcast::Sender<Arc<Vec<u8>>>>>,
}

#[derive(Default)]
struct Queue {
    /// Index = priority.
    bands: [VecDeque<Message>; BANDS],
    /// Consumers currently inside `next` on this queue.
    waiting: u64,
}

struct Message {
    payload: Vec<u8>,
    redelivered: bool,
    /// Publish order across queues, so a multi-queue consumer takes the oldest of equals.
    seq: u64,
}

impl Queue {
    fn len(&self) -> u64 {
        self.bands.iter().map(|b| b.len() as u64).sum()
    }

    /// The (priority, seq) of the message `pop` would return.
    fn head(&self) -> Option<(usize, u64)> {
        (0..BANDS)
            .rev()
            .find_map(|p| self.bands[p].front().map(|m| (p, m.seq)))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        // A panic while holding the lock leaves the maps consistent (no multi-step updates).
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the best message of these queues: highest priority, then oldest.
    fn take(&self, queues: &[String]) -> Option<(String, usize, Message)> {
        let mut map = self.lock();
        let mut best: Option<(&String, usize, u64)> = None;
        for name in queues {
            if let Some((p, seq)) = map.get(name).and_then(Queue::head) {
                let better = match best {
                    None => true,
                    Some((_, bp, bseq)) => p > bp || (p == bp && seq < bseq),
                };
                if better {
                    best = Some((name, p, seq));
                }
            }
        }
        let (name, p, _) = best?;
        let message = map.get_mut(name)?.bands[p].pop_front()?;
        Some((name.clone(), p, message))
    }

    fn put_back(&self, queue: &str, priority: usize, mut message: Message) {
        message.redelivered = true;
        self.lock().entry(queue.to_string()).or_default().bands[priority].push_front(message);
        self.available.notify_waiters();
    }
}

impl MemoryBroker {
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    fn topic(&self, topic: &str) -> tokio::sync::broadcast::Sender<Arc<Vec<u8>>> {
        let mut topics = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_string())
            .or_insert_with(|| tokio::sync::broadcast::channel(BROADCAST_BACKLOG).0)
            .clone()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn durable(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(&self, queue: &str, payload: &[u8], priority: u8) -> Result<(), BrokerError> {
        let priority = usize::from(priority.min(MAX_PRIORITY));
        {
            let mut map = self.inner.lock();
            // Taken under the lock, so the sequence follows the queues' order.
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            map.entry(queue.to_string()).or_default().bands[priority].push_back(Message {
                payload: payload.to_vec(),
                redelivered: false,
                seq,
            });
        }
        self.inner.available.notify_waiters();
        Ok(())
    }

    fn consumer(&self, queues: &[String]) -> Box<dyn Consumer> {
        Box::new(MemoryConsumer {
            inner: self.inner.clone(),
            queues: queues.to_vec(),
        })
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        let map = self.inner.lock();
        Ok(map
            .get(queue)
            .map(|q| QueueStats {
                messages: q.len(),
                consumers: q.waiting,
            })
            .unwrap_or_default())
    }

    async fn broadcast(&self, topic: &str, payload: &[u8]) -> Result<(), BrokerError> {
        // No subscriber is not an error: the message is simply nobody's.
        let _ = self.topic(topic).send(Arc::new(payload.to_vec()));
        Ok(())
    }

    fn subscribe(&self, topic: &str) -> Box<dyn Subscriber> {
        Box::new(MemorySubscriber(self.topic(topic).subscribe()))
    }
}

struct MemorySubscriber(tokio::sync::broadcast::Receiver<Arc<Vec<u8>>>);

#[async_trait]
impl Subscriber for MemorySubscriber {
    async fn next(&mut self) -> Broadcast {
        use tokio::sync::broadcast::error::RecvError;
        match self.0.recv().await {
            Ok(payload) => Broadcast::Message(payload.as_ref().clone()),
            Err(RecvError::Lagged(_)) => Broadcast::Gap,
            // The broker holds a sender as long as this receiver can be reached.
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

struct MemoryConsumer {
    inner: Arc<Inner>,
    queues: Vec<String>,
}

/// Counts a consumer as waiting on its queues while alive, so a cancelled `next` (its future
/// dropped) stops counting too.
struct Waiting<'a> {
    inner: &'a Inner,
    queues: &'a [String],
}

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner, queues: &'a [String]) -> Waiting<'a> {
        let mut map = inner.lock();
        for q in queues {
            map.entry(q.clone()).or_default().waiting += 1;
        }
        Waiting { inner, queues }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self.inner.lock();
        for q in self.queues {
            if let Some(queue) = map.get_mut(q) {
                queue.waiting = queue.waiting.saturating_sub(1);
            }
        }
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Delivery {
        let _waiting = Waiting::new(&self.inner, &self.queues);
        loop {
            // Register for wake-ups before checking, so a publish between the check and the
            // wait is not missed.
            let notified = self.inner.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((queue, priority, message)) = self.inner.take(&self.queues) {
                let payload = message.payload.clone();
                let redelivered = message.redelivered;
                return Delivery::new(
                    queue.clone(),
                    payload,
                    redelivered,
                    Box::new(MemoryAcker {
                        inner: self.inner.clone(),
                        queue,
                        priority,
                        message,
                    }),
                );
            }
            notified.await;
        }
    }
}

struct MemoryAcker {
    inner: Arc<Inner>,
    queue: String,
    priority: usize,
    message: Message,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        // The message left its queue when it was taken; acking just forgets it.
        Ok(())
    }

    fn requeue(self: Box<Self>) {
        let MemoryAcker {
            inner,
            queue,
            priority,
            message,
        } = *self;
        inner.put_back(&queue, priority, message);
    }
}
