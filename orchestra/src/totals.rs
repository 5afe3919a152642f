//! Totals of task lists as last counted, kept while no task has changed (docs/architecture.md
//! §15, "Totals"): a queue's page (`GET /transform/tasks?status=PENDING`) polled over a long backlog
//! then costs its page only, not a count over every queued task each time (on MongoDB a count
//! walks the index: 10,000 queued, 2–3 ms a page on NX-27017; SQLite keeps counters and
//! does not use this).
//!
//! A kept total is valid while the event hub's count of task changes ([`Hub::task_changes`])
//! is what it was before the count: every creation and status change anywhere in the
//! cluster is an event this replica takes in, and a gap in them counts as a change. What no
//! event tells (a replica dying between its write and its event) is bounded by [`FRESH`].
//! Only the list routes use it; the domain's own checks ("is this media in use?") count.
//!
//! A component of the `AppState`: it knows filters and numbers, not the store.
//!
//! [`Hub::task_changes`]: crate::events::Hub::task_changes

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::locks::locked;
use crate::models::TaskFilter;

/// A total is counted again after this long whatever the events say.
pub const FRESH: Duration = Duration::from_secs(5);
/// At most this many kept (one per kind and filter asked); past it, the lot is dropped.
const MAX_KEPT: usize = 1024;

/// Which list and which filter a total is of.
type Key = (&'static str, TaskFilter);

struct Kept {
    total: u64,
    changes: u64,
    at: Instant,
}

#[derive(Default)]
pub struct Totals {
    kept: Mutex<HashMap<Key, Kept>>,
}

impl Totals {
    /// The total of `kind`'s list through `filter` when it was counted with the task changes
    /// at `changes` (read now) and is fresh.
    pub fn get(&self, kind: &'static str, filter: &TaskFilter, changes: u64) -> Option<u64> {
        let kept = locked(&self.kept);
        let found = kept.get(&(kind, filter.clone()))?;
        (found.changes == changes && found.at.elapsed() < FRESH).then_some(found.total)
    }

    /// Keep `total`, counted after the task changes were read at `changes`: a change during
    /// the count leaves it kept under an old number, so never used.
    pub fn keep(&self, kind: &'static str, filter: &TaskFilter, changes: u64, total: u64) {
        let mut kept = locked(&self.kept);
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        let at = Instant::now();
        kept.insert((kind, filter.clone()), Kept { total, changes, at });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oscied_protocol::TaskStatus;

    fn pending() -> TaskFilter {
        TaskFilter {
            statuses: vec![TaskStatus::Pending],
            ..TaskFilter::default()
        }
    }

    #[test]
    fn a_total_is_kept_until_a_task_changes() {
        let totals = Totals::default();
        assert_eq!(totals.get("transform", &pending(), 7), None);
        totals.keep("transform", &pending(), 7, 10_000);
        assert_eq!(totals.get("transform", &pending(), 7), Some(10_000));
        // Another kind, another filter: not counted yet.
        assert_eq!(totals.get("publisher", &pending(), 7), None);
        assert_eq!(totals.get("transform", &TaskFilter::default(), 7), None);
        // A change since.
        assert_eq!(totals.get("transform", &pending(), 8), None);
    }

    #[test]
    fn a_total_counted_across_a_change_is_never_used() {
        let totals = Totals::default();
        // Read 3 changes, counted; a change landed meanwhile (now 4).
        totals.keep("transform", &pending(), 3, 41);
        assert_eq!(totals.get("transform", &pending(), 4), None);
    }

    #[test]
    fn the_kept_totals_are_bounded() {
        let totals = Totals::default();
        for n in 0..(MAX_KEPT as u64 + 10) {
            let filter = TaskFilter {
                queue: Some(format!("q{n}")),
                ..TaskFilter::default()
            };
            totals.keep("transform", &filter, 0, n);
        }
        assert!(locked(&totals.kept).len() <= MAX_KEPT);
    }
}
