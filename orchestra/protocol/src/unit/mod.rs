//! The plumbing every unit kind shares (DESIGN.md §5): the link to the orchestra, the set of
//! attempts a unit runs, the decoding of a delivery (a job the unit cannot run ends FAILURE,
//! see [`decode`]), the claim-then-ack of a delivery, the unit heartbeat, the lease
//! reporter and the completion with retries, plus the binaries' common flags, logging and
//! signals. The transform and publisher units differ only in what they do between the claim
//! and the completion.

mod claim;
pub mod cli;
mod decode;
mod heartbeat;
pub mod log;
mod report;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;
use uuid::Uuid;

use crate::client::NodeClient;
use crate::node::UnitKind;

pub use claim::{ack, claim, pause_then_requeue};
pub use decode::decode;
pub use heartbeat::{UnitInfo, heartbeat};
pub use report::{Completion, LeaseEvent, Reporter, complete};

/// What a unit's slots, heartbeat and reporters share to talk to the orchestra: its client,
/// who it is, and whether it is stopping. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UnitLink {
    pub client: NodeClient,
    /// How the unit calls itself on the node API (`PUT /node/units/{unit_id}`).
    pub unit_id: String,
    /// The node API's kind segment for the unit's task routes.
    pub kind: UnitKind,
    /// Turns true once, when the unit stops.
    pub shutdown: watch::Receiver<bool>,
}

impl UnitLink {
    /// A link and the switch that stops it (send `true`).
    pub fn new(
        client: NodeClient,
        unit_id: String,
        kind: UnitKind,
    ) -> (UnitLink, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let link = UnitLink {
            client,
            unit_id,
            kind,
            shutdown,
        };
        (link, stop)
    }

    /// Resolves once the unit is stopping.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, i.e. the unit is gone: stop too.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
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
        assert!(!link.is_stopping());
        stop.send_replace(true);
        assert!(link.is_stopping());
        link.stopped().await;
    }
}
