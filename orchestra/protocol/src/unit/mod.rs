//! The unit runtime and the plumbing every unit kind shares (docs/architecture.md §5). A unit
//! kind is a [`JobHandler`] (what it does with one claimed attempt, how to remove what an
//! attempt left) run by [`run_unit`], which owns the rest ([`mod@runtime`]): the slots, the
//! decoding of a delivery (a job the unit cannot run ends FAILURE, see [`decode`]), the
//! claim-then-ack, the unit heartbeat, the lease reporter and the completion with retries,
//! the drain and hand-back on stop ([`drain`]), a refused node secret ([`secret`]: no jobs, a
//! loud error, a failing exit). Besides: the binaries' common flags, logging and signals
//! ([`cli`], [`mod@log`]), the state dir ([`state`]) and a fake node API for the units'
//! tests (`testing`, feature `testing`).

mod claim;
pub mod cli;
mod decode;
mod drain;
mod heartbeat;
pub mod log;
pub mod metrics;
mod report;
pub mod runtime;
pub mod secret;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::{Consumer, Delivery};
use crate::client::{NodeClient, NodeError};
use crate::node::UnitKind;

pub use claim::{ack, pause_then_requeue};
pub use report::{Completion, complete};
pub use runtime::{
    Attempt, HandBack, Interrupt, Interrupted, JobHandler, JobMessage, Output, Ran, Services, Unit,
    UnitSpec, run_unit,
};
pub use secret::{DEFAULT_REFUSED_EXIT_SECS, UnitError};

/// Where a unit is in its life. On SIGTERM it drains (takes no new job; running attempts
/// go on), then stops (running attempts stop and are handed back, see [`drain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Running,
    Draining,
    Stopping,
}

/// What a unit's slots, heartbeat, reporters and handler share to talk to the orchestra: its
/// client, who it is, and whether it is draining or stopping. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UnitLink {
    pub client: NodeClient,
    /// How the unit calls itself on the node API (`PUT /node/units/{unit_id}`).
    pub unit_id: String,
    /// The node API's kind segment for the unit's task routes.
    pub kind: UnitKind,
    /// Only moves forward: Running → Draining → Stopping.
    phase: watch::Receiver<Phase>,
    /// Whether the orchestra accepts the node secret (shared by every clone).
    secret: Arc<secret::SecretState>,
}

/// The switch of a unit's [`Phase`]; dropping it counts as stopping.
#[derive(Debug)]
pub(crate) struct UnitStop(watch::Sender<Phase>);

impl UnitStop {
    /// Take no new job; running attempts go on.
    pub(crate) fn drain(&self) {
        self.0.send_if_modified(|phase| {
            let moved = *phase < Phase::Draining;
            if moved {
                *phase = Phase::Draining;
            }
            moved
        });
    }

    /// Stop running attempts too (they are handed back).
    pub(crate) fn stop(&self) {
        self.0.send_replace(Phase::Stopping);
    }
}

impl UnitLink {
    /// A link and the switch that drains and stops it.
    pub(crate) fn new(client: NodeClient, unit_id: String, kind: UnitKind) -> (UnitLink, UnitStop) {
        let (stop, phase) = watch::channel(Phase::Running);
        let link = UnitLink {
            client,
            unit_id,
            kind,
            phase,
            secret: Arc::new(secret::SecretState::new(Duration::from_secs(
                DEFAULT_REFUSED_EXIT_SECS,
            ))),
        };
        (link, UnitStop(stop))
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.clone();
        // An error means the switch is gone, i.e. the unit is gone: stop too.
        let _ = rx.wait_for(|now| *now >= phase).await;
    }

    /// How long a refused node secret is retried before the unit ends with
    /// [`UnitError::SecretRefused`] (`OSCIED_REFUSED_EXIT_SECS`). Set it before cloning.
    pub(crate) fn set_refused_exit(&mut self, after: Duration) {
        self.secret = Arc::new(secret::SecretState::new(after));
    }

    /// Resolves once the unit stops running its attempts (they are handed back).
    pub async fn stopped(&self) {
        self.reached(Phase::Stopping).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.phase.borrow() >= Phase::Stopping
    }

    /// Resolves once the unit takes no new job (draining or stopping).
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await;
    }

    pub fn is_draining(&self) -> bool {
        *self.phase.borrow() >= Phase::Draining
    }

    /// Note how the orchestra answered a node call: a 401 means the node secret is refused,
    /// any answer but that means it is accepted; `what` names the call for the log.
    pub fn note_answer<T>(&self, what: &str, result: &Result<T, NodeError>) {
        match result {
            Err(NodeError::Refused(401, message)) => {
                self.secret.refused(self.client.base(), what, message)
            }
            Ok(_) | Err(NodeError::Stale(_) | NodeError::Refused(..)) => self.secret.accepted(),
            Err(NodeError::Unavailable(_)) => {}
        }
    }

    /// Whether the orchestra refuses the node secret now.
    pub fn secret_refused(&self) -> bool {
        self.secret.is_refused()
    }

    /// Resolves once the node secret has been refused for `OSCIED_REFUSED_EXIT_SECS` without
    /// a break: the unit then stops and ends with this failure.
    pub(crate) async fn refused_for_good(&self) -> UnitError {
        self.secret.refused_for_good().await
    }

    /// The next delivery of `consumer`, taken only while the node secret is not refused (a
    /// unit that cannot claim must hold no job); None once the unit drains.
    pub(crate) async fn next_delivery(&self, consumer: &mut dyn Consumer) -> Option<Delivery> {
        loop {
            tokio::select! {
                biased;
                () = self.draining() => return None,
                () = self.secret.until_not_refused() => {}
            }
            // Dropping a waiting `next` leaves nothing held (see the broker's docs).
            tokio::select! {
                biased;
                () = self.draining() => return None,
                () = self.secret.until_refused() => {}
                delivery = consumer.next() => return Some(delivery),
            }
        }
    }
}

/// The attempts this unit runs now: for the heartbeat, and to skip a redelivery of a job
/// already running here (its ack was lost).
#[derive(Debug, Default)]
pub struct Running {
    attempts: Mutex<HashSet<(Uuid, u32)>>,
}

impl Running {
    /// Register an attempt, unless this unit already runs this task at this attempt or a
    /// later one. The guard unregisters it.
    pub fn register(&self, task: Uuid, attempt: u32) -> Option<RunningGuard<'_>> {
        let mut set = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if set.iter().any(|&(t, a)| t == task && a >= attempt) {
            return None;
        }
        set.insert((task, attempt));
        Some(RunningGuard {
            running: self,
            key: (task, attempt),
        })
    }

    /// Whether this unit runs a later attempt of the task than `attempt` (so the files of a
    /// stale attempt may be its successor's, not leftovers to remove).
    pub fn has_later(&self, task: Uuid, attempt: u32) -> bool {
        let set = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        set.iter().any(|&(t, a)| t == task && a > attempt)
    }

    /// Attempts running now.
    pub fn len(&self) -> usize {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (task, attempt) pairs running now.
    pub fn attempts(&self) -> HashSet<(Uuid, u32)> {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Task ids, each once, sorted.
    pub fn tasks(&self) -> Vec<Uuid> {
        let set = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tasks: Vec<Uuid> = set.iter().map(|&(t, _)| t).collect();
        tasks.sort();
        tasks.dedup();
        tasks
    }
}

/// Messages name files relative to the storage (or www) root, as the API does: the mount
/// point of this host is nobody's business.
pub fn hide_root(message: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return message.to_owned();
    }
    message.replace(&format!("{root}/"), "")
}

/// One registered attempt; unregisters it on drop.
#[derive(Debug)]
pub struct RunningGuard<'a> {
    running: &'a Running,
    key: (Uuid, u32),
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.running
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_skips_redeliveries_but_not_later_attempts() {
        let running = Running::default();
        let task = Uuid::new_v4();
        let first = running.register(task, 1).expect("first");
        assert!(running.register(task, 1).is_none(), "same attempt again");
        assert!(running.register(task, 0).is_none(), "an older attempt");
        let second = running
            .register(task, 2)
            .expect("a later attempt is claimed");
        assert_eq!(running.tasks(), vec![task]);
        assert!(running.has_later(task, 1));
        assert!(!running.has_later(task, 2));
        drop(first);
        drop(second);
        assert!(running.tasks().is_empty());
        assert!(running.register(task, 1).is_some());
    }

    #[test]
    fn messages_hide_the_storage_root() {
        let msg = "/srv/store/medias/a/in.mp4: Invalid data\n/srv/store/tmp/t/1/out.mp4";
        assert_eq!(
            hide_root(msg, Path::new("/srv/store/")),
            "medias/a/in.mp4: Invalid data\ntmp/t/1/out.mp4"
        );
    }

    #[tokio::test]
    async fn the_link_reports_stopping() {
        let client = NodeClient::new("http://127.0.0.1:1", "s").expect("client");
        let (link, stop) = UnitLink::new(client, "u".into(), UnitKind::Publisher);
        assert!(!link.is_draining() && !link.is_stopping());
        stop.drain();
        assert!(link.is_draining() && !link.is_stopping());
        link.draining().await;
        stop.stop();
        stop.drain();
        assert!(
            link.is_stopping(),
            "a stopping unit never goes back to draining"
        );
        link.stopped().await;
        drop(stop);
        link.stopped().await;
    }
}
