//! The task state machine (DESIGN.md §3). Every status change of a task goes through
//! [`check`] (transform tasks through [`move_to`]); an illegal change is a 409.
//!
//! ```text
//! PENDING ──claim──▶ STARTED ──report──▶ PROGRESS* ──▶ SUCCESS | FAILURE
//!    │                  │ └──── lease lost ──▶ RETRY ──claim──▶ STARTED (attempt + 1)
//!    └──revoke──▶ REVOKED ◀── unit confirms ── REVOKING ◀──revoke── STARTED | PROGRESS
//! ```
//! A queued task whose profile or input vanished goes to FAILURE.
//! A lost lease past the last attempt goes to FAILURE; a lost lease while REVOKING to REVOKED
//! (nothing runs any more).

use std::hash::{Hash, Hasher};

use oscied_protocol::TaskStatus;
use oscied_protocol::TaskStatus::*;

use crate::error::{ApiError, ApiResult};
use crate::models::{TransformTask, now};

/// Is `from → to` a legal change?
pub fn allowed(from: TaskStatus, to: TaskStatus) -> bool {
    match from {
        // FAILURE: the task cannot run at all (its profile or input vanished).
        Pending | Retry => matches!(to, Started | Revoked | Failure),
        Started | Progress => matches!(to, Progress | Success | Failure | Revoking | Retry),
        Revoking => matches!(to, Revoked),
        Success | Failure | Revoked => false,
    }
}

pub fn check(from: TaskStatus, to: TaskStatus) -> ApiResult<()> {
    if allowed(from, to) {
        Ok(())
    } else if from.is_final() {
        Err(ApiError::illegal_state(format!(
            "the task is already {from}: a finished task does not change"
        )))
    } else {
        Err(ApiError::illegal_state(format!(
            "a {from} task cannot become {to}"
        )))
    }
}

/// Change a transform task's status, stamping `started_at` and `finished_at`.
pub fn move_to(task: &mut TransformTask, to: TaskStatus) -> ApiResult<()> {
    check(task.status, to)?;
    let at = now();
    if to == Started {
        task.started_at = Some(at);
    }
    if to.is_final() {
        task.finished_at = Some(at);
        task.lease_expires_at = None;
    }
    task.status = to;
    Ok(())
}

/// Serialises the read-check-write of one task's status: the orchestra is the only writer of
/// tasks, so a lock per task (striped) makes each change atomic on both stores.
pub struct TaskLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for TaskLocks {
    fn default() -> Self {
        TaskLocks {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl TaskLocks {
    pub async fn lock(&self, id: uuid::Uuid) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        let stripe = (hasher.finish() % self.stripes.len() as u64) as usize;
        self.stripes[stripe].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_never_change() {
        for from in [Success, Failure, Revoked] {
            for to in TaskStatus::ALL {
                assert!(!allowed(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn the_documented_paths_are_legal() {
        for (from, to) in [
            (Pending, Started),
            (Pending, Revoked),
            (Started, Progress),
            (Progress, Progress),
            (Progress, Success),
            (Started, Failure),
            (Progress, Revoking),
            (Revoking, Revoked),
            (Progress, Retry),
            (Retry, Started),
            (Retry, Revoked),
        ] {
            assert!(allowed(from, to), "{from} -> {to}");
        }
    }

    #[test]
    fn shortcuts_are_refused() {
        for (from, to) in [
            (Pending, Success),
            (Pending, Revoking),
            (Revoking, Success),
            (Started, Revoked),
            (Retry, Success),
            (Started, Pending),
        ] {
            assert!(!allowed(from, to), "{from} -> {to}");
            assert_eq!(check(from, to).unwrap_err().status.as_u16(), 409);
        }
    }
}
