//! The way out to the broker (docs/architecture.md §5): one message with the broker's
//! confirm, bounded in time, and the bookkeeping that keeps one process from publishing a
//! task twice at once (each failure counted in [`crate::metrics`]). A leaf: it knows the
//! broker and nothing of tasks; the engine
//! (`crate::tasks`) decides what to send and records `dispatched_at` with a fenced write.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oscied_protocol::Broker;
use uuid::Uuid;

use crate::metrics::Metrics;

/// A publication that takes longer is left to the dispatch loop.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// One message for one task: where it goes, at which priority, the JSON body.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub queue: String,
    pub priority: u8,
    pub payload: Vec<u8>,
}

impl Outgoing {
    pub fn new<M: serde::Serialize>(queue: String, priority: u8, message: &M) -> Outgoing {
        Outgoing {
            queue,
            priority,
            // Job messages are plain structs of strings and numbers: serializing cannot fail.
            payload: serde_json::to_vec(message).unwrap_or_default(),
        }
    }
}

/// The broker and what this process is publishing right now. A task being published by a
/// request is not published again by the dispatch loop of the same process; across replicas
/// the loops run on one of them only (`crate::loops`), and a duplicate message is harmless
/// anyway (a claim is fenced by attempt).
pub struct Outbox {
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    in_flight: Mutex<HashSet<Uuid>>,
    /// Whether a publication failed since the dispatch loop's last pass (so an idle
    /// orchestra does not query the store every second for nothing).
    failed: AtomicBool,
}

/// Held while one task's message is being published.
pub struct InFlight<'a>(&'a Outbox, Uuid);

impl Outbox {
    pub fn new(broker: Arc<dyn Broker>, metrics: Arc<Metrics>) -> Outbox {
        Outbox {
            broker,
            metrics,
            in_flight: Mutex::default(),
            // The first pass looks: the last run may have left undispatched tasks.
            failed: AtomicBool::new(true),
        }
    }

    /// Start publishing task `id`, unless this process is at it already.
    pub fn enter(&self, id: Uuid) -> Option<InFlight<'_>> {
        let inserted = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        // The lock is released before a guard exists: its drop takes the lock again.
        inserted.then(|| InFlight(self, id))
    }

    /// Publish one message with the broker's confirm; false (logged, and the dispatch loop
    /// woken) when it did not go out. A disconnected broker fails at once rather than after
    /// a timeout per task.
    pub async fn send(&self, id: Uuid, out: &Outgoing) -> bool {
        let sent = if self.broker.ping().await.is_err() {
            tracing::debug!(task = %id, "broker unreachable; the dispatch loop will retry");
            false
        } else {
            let published = tokio::time::timeout(
                PUBLISH_TIMEOUT,
                self.broker.publish(&out.queue, &out.payload, out.priority),
            )
            .await;
            match published {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(task = %id, error = %e, "publish failed; the dispatch loop will retry");
                    false
                }
                Err(_) => {
                    tracing::warn!(task = %id, "publish timed out; the dispatch loop will retry");
                    false
                }
            }
        };
        if !sent {
            self.metrics.publish_failed();
            self.failed.store(true, Ordering::Relaxed);
        }
        sent
    }

    /// Note that something could not be published now (the store was unreachable).
    pub fn retry_later(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether the dispatch loop has work, clearing the flag (its pass is about to look).
    pub fn take_failed(&self) -> bool {
        self.failed.swap(false, Ordering::Relaxed)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = crate::locks::locked(&self.0.in_flight);
        set.remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_published_by_one_caller_at_a_time() {
        let outbox = Outbox::new(
            Arc::new(oscied_protocol::broker::MemoryBroker::new()),
            Arc::new(Metrics::new(None)),
        );
        let id = Uuid::new_v4();
        let first = outbox.enter(id);
        assert!(first.is_some());
        // A second caller is turned away (and must not deadlock doing so).
        assert!(outbox.enter(id).is_none());
        assert!(outbox.enter(Uuid::new_v4()).is_some());
        drop(first);
        assert!(outbox.enter(id).is_some());
    }
}
