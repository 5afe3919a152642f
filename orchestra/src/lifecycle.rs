//! The task state machine (docs/architecture.md §3). Every status change of a task goes through
//! [`check`] (transform tasks through [`move_to`]); an illegal change is a 409.
//!
//! ```text
//! PENDING ──claim──▶ STARTED ──report──▶ PROGRESS* ──▶ SUCCESS | FAILURE
//!    │                  │ └─ lease lost, hand-back ─▶ RETRY ──claim──▶ STARTED (attempt + 1)
//!    └──revoke──▶ REVOKED ◀── unit confirms ── REVOKING ◀──revoke── STARTED | PROGRESS
//! ```
//! A unit that stops hands back what it runs ([`release`]): RETRY with attempt + 1 at once,
//! without waiting for the lease, and without using up one of `OSCIED_TASK_MAX_ATTEMPTS`
//! (a rolling restart must not fail a task); a REVOKING task handed back is REVOKED.
//! A queued task whose profile or input vanished goes to FAILURE.
//! A publication is undone by unpublishing: SUCCESS → REVOKING → REVOKED (publisher tasks
//! only; a transform's SUCCESS is final).
//! A lost lease past the last attempt goes to FAILURE; a lost lease while REVOKING to REVOKED
//! (nothing runs any more).

use oscied_protocol::TaskStatus;
use oscied_protocol::TaskStatus::*;

use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use oscied_protocol::node::{ClaimRequest, ReleaseRequest, STALE_ATTEMPT};

use crate::models::{TaskHeader, now};

impl TaskHeader {
    /// Set the status and the timestamps that go with it.
    fn set_status(&mut self, to: TaskStatus, at: DateTime<Utc>) {
        if to == Started {
            self.started_at = Some(at);
        }
        if to.is_final() {
            self.finished_at = Some(at);
            self.lease_expires_at = None;
        }
        self.status = to;
    }

    /// A unit holds the task until the lease ends, unless it reports before.
    fn hold(&mut self, unit_id: String, lease_until: DateTime<Utc>) {
        self.unit_id = Some(unit_id);
        self.lease_expires_at = Some(lease_until);
    }

    /// Queue the next attempt (the status is already RETRY): no lease, not dispatched yet,
    /// `error` says why; `handed_back` when its unit gave it back.
    pub fn next_attempt(&mut self, error: String, handed_back: bool) {
        self.error = Some(error);
        self.attempt += 1;
        if handed_back {
            self.handed_back += 1;
        }
        self.lease_expires_at = None;
        self.dispatched_at = None;
    }

    /// Whether the holder's lease has lapsed by `at` (a running task's only).
    pub fn lease_lapsed(&self, at: DateTime<Utc>) -> bool {
        self.lease_expires_at.is_some_and(|until| until <= at)
    }

    /// Fence a lapsed lease before taking the attempt back: from this write on, the holder's
    /// late reports and hand-back are stale, so the take-back that follows (which may discard
    /// the output first) can only lose its write to a change that also ends the task.
    pub fn seal_lease(&mut self) {
        self.lease_expires_at = Some(TAKEN_BACK);
    }

    /// Whether a reaper has fenced the lease ([`TaskHeader::seal_lease`]).
    pub fn lease_sealed(&self) -> bool {
        self.lease_expires_at == Some(TAKEN_BACK)
    }
}

/// The lease of an attempt being taken back: a time every clock has passed, so that every
/// replica sees it lapsed, and one no renewal writes.
const TAKEN_BACK: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// A holder's late word (a report, a hand-back, a completion) is stale once a reaper has
/// fenced its lease ([`TaskHeader::seal_lease`]).
pub fn check_unsealed(task: &TaskHeader) -> ApiResult<()> {
    if task.lease_sealed() {
        return Err(stale(format!(
            "the lease of task {} attempt {} lapsed and it is being taken back: stop",
            task.id, task.attempt
        )));
    }
    Ok(())
}

/// A holder's report renews its lease, unless a reaper has fenced it meanwhile.
pub fn renew(task: &mut TaskHeader, lease_until: DateTime<Utc>) -> ApiResult<()> {
    check_unsealed(task)?;
    task.lease_expires_at = Some(lease_until);
    Ok(())
}

/// A legal change of status and what makes it (the label of its arrow in the diagrams).
pub struct Transition {
    pub from: TaskStatus,
    pub to: TaskStatus,
    pub by: &'static str,
}

const fn rule(from: TaskStatus, to: TaskStatus, by: &'static str) -> Transition {
    Transition { from, to, by }
}

/// The rule table: every legal change of every task kind. [`allowed`] reads it, and
/// `orchestra diagram` draws it (schematics/), so the pictures cannot drift from the rules.
pub const TRANSITIONS: &[Transition] = &[
    rule(Pending, Started, "a unit claims it"),
    rule(Retry, Started, "a unit claims the next attempt"),
    rule(Pending, Revoked, "revoke"),
    rule(Retry, Revoked, "revoke"),
    rule(Pending, Failure, "its profile or media vanished"),
    rule(Retry, Failure, "its profile or media vanished"),
    rule(Started, Progress, "report"),
    rule(Progress, Progress, "report"),
    rule(Started, Success, "completion accepted"),
    rule(Progress, Success, "completion accepted"),
    rule(
        Started,
        Failure,
        "the job failed, or the last attempt's lease lapsed",
    ),
    rule(
        Progress,
        Failure,
        "the job failed, or the last attempt's lease lapsed",
    ),
    rule(Started, Retry, "lease lapsed, or its unit handed it back"),
    rule(Progress, Retry, "lease lapsed, or its unit handed it back"),
    rule(Started, Revoking, "revoke"),
    rule(Progress, Revoking, "revoke"),
    rule(Revoking, Revoked, "its unit confirms, or its lease lapsed"),
];

/// The change only a kind whose SUCCESS can be undone has (`TaskKind::REVOCABLE_SUCCESS`:
/// a publication is unpublished); [`move_to`] allows it for those kinds.
pub const UNDO_SUCCESS: Transition = rule(Success, Revoking, "unpublish");

/// Is `from → to` a legal change?
pub fn allowed(from: TaskStatus, to: TaskStatus) -> bool {
    TRANSITIONS.iter().any(|t| t.from == from && t.to == to)
}

/// Every legal change of a kind: the table, and undoing SUCCESS when `revocable_success`.
pub fn transitions(revocable_success: bool) -> impl Iterator<Item = &'static Transition> {
    TRANSITIONS
        .iter()
        .chain(revocable_success.then_some(&UNDO_SUCCESS))
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

/// Change a task's status, stamping `started_at` and `finished_at`. `revocable_success`:
/// the kind's SUCCESS can be undone (a publication is unpublished: SUCCESS → REVOKING).
pub fn move_to(task: &mut TaskHeader, to: TaskStatus, revocable_success: bool) -> ApiResult<()> {
    let unpublish = revocable_success && task.status == UNDO_SUCCESS.from && to == UNDO_SUCCESS.to;
    if !unpublish {
        check(task.status, to)?;
    }
    task.set_status(to, now());
    Ok(())
}

/// The answer to a unit whose attempt is not the current one: drop the message, stop, do
/// not complete.
pub fn stale(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, STALE_ATTEMPT, message.into())
}

/// A unit claims an attempt it received. Only the current attempt of a queued task can be
/// claimed (→ STARTED, held by the unit with a lease); the same unit claiming again (a
/// redelivery) is answered the same. Returns whether the task changed (to be saved).
pub fn claim(
    task: &mut TaskHeader,
    req: &ClaimRequest,
    lease: chrono::Duration,
) -> ApiResult<bool> {
    let id = task.id;
    if req.attempt != task.attempt {
        return Err(stale(format!(
            "attempt {} of task {id} is stale: the current attempt is {}",
            req.attempt, task.attempt
        )));
    }
    if task.status.is_queued() {
        move_to(task, Started, false)?;
        task.hold(req.unit_id.clone(), now() + lease);
        return Ok(true);
    }
    if task.status.is_running() && task.unit_id.as_deref() == Some(req.unit_id.as_str()) {
        return Ok(false);
    }
    Err(stale(format!(
        "task {id} is {} and not claimable by unit {}",
        task.status, req.unit_id
    )))
}

/// Is this unit's call about the task's current attempt, which it holds?
pub fn check_holder(task: &TaskHeader, unit_id: &str, attempt: u32) -> ApiResult<()> {
    if attempt != task.attempt || task.unit_id.as_deref() != Some(unit_id) {
        return Err(stale(format!(
            "unit {unit_id} attempt {attempt} does not hold task {} (attempt {}, unit {})",
            task.id,
            task.attempt,
            task.unit_id.as_deref().unwrap_or("none")
        )));
    }
    Ok(())
}

/// Whether a task whose lease lapsed has used up its attempts: those handed back by stopping
/// units do not count.
pub fn out_of_attempts(task: &TaskHeader, max_attempts: u32) -> bool {
    task.attempt.saturating_sub(task.handed_back) >= max_attempts
}

/// A stopping unit hands back the current attempt it holds: a running task goes RETRY with
/// attempt + 1 (queued again at once by the caller), a REVOKING one REVOKED (its unit was
/// told to stop anyway). Anything else is stale: the attempt is not this unit's to give, or
/// the task is queued or finished already.
pub fn release(task: &mut TaskHeader, req: &ReleaseRequest) -> ApiResult<TaskStatus> {
    check_holder(task, &req.unit_id, req.attempt)?;
    if !task.status.is_running() {
        return Err(stale(format!(
            "task {} is {}: there is nothing to hand back",
            task.id, task.status
        )));
    }
    check_unsealed(task)?;
    if task.status == Revoking {
        move_to(task, Revoked, false)?;
        return Ok(Revoked);
    }
    move_to(task, Retry, false)?;
    let reason = req
        .reason
        .as_deref()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .unwrap_or("shutdown");
    // Bounded: the reason is the unit's text, kept in the task record.
    let reason: String = reason.chars().take(200).collect();
    task.next_attempt(
        format!(
            "handed back by unit {} at {reason} on attempt {}; retrying",
            req.unit_id, req.attempt
        ),
        true,
    );
    Ok(Retry)
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
    fn only_a_publication_success_can_be_revoked() {
        let mut publication = running_task(Success);
        publication.unit_id = None;
        move_to(&mut publication, Revoking, true).expect("unpublish");
        move_to(&mut publication, Revoked, true).expect("unpublished");
        assert!(move_to(&mut publication, Revoking, true).is_err());
        let mut transform = running_task(Success);
        assert!(
            move_to(&mut transform, Revoking, false).is_err(),
            "a transform's SUCCESS is final"
        );
        assert!(!allowed(Success, Revoking));
    }

    fn running_task(status: TaskStatus) -> TaskHeader {
        let at = now();
        TaskHeader {
            status,
            attempt: 2,
            unit_id: Some("u1".into()),
            started_at: Some(at),
            dispatched_at: Some(at),
            lease_expires_at: Some(at),
            ..TaskHeader::new(uuid::Uuid::new_v4(), "publisher".into())
        }
    }

    fn release_by(unit: &str, attempt: u32) -> ReleaseRequest {
        ReleaseRequest {
            unit_id: unit.into(),
            attempt,
            reason: None,
        }
    }

    #[test]
    fn a_hand_back_requeues_without_using_an_attempt() {
        let mut task = running_task(Progress);
        assert_eq!(release(&mut task, &release_by("u1", 2)).unwrap(), Retry);
        assert_eq!(task.status, Retry);
        assert_eq!((task.attempt, task.handed_back), (3, 1));
        assert_eq!(task.lease_expires_at, None);
        assert_eq!(task.dispatched_at, None);
        let error = task.error.clone().unwrap_or_default();
        assert!(
            error.contains("handed back by unit u1 at shutdown"),
            "{error}"
        );
        // Attempt 3 with one handed back has used 2 of 3.
        assert!(!out_of_attempts(&task, 3));
        assert!(out_of_attempts(&task, 2));
        // The old attempt, another unit, a queued or finished task: stale (409).
        for (mut task, unit, attempt) in [
            (running_task(Started), "u1", 1),
            (running_task(Started), "u2", 2),
            (running_task(Retry), "u1", 2),
            (running_task(Success), "u1", 2),
            (running_task(Failure), "u1", 2),
        ] {
            let before = task.clone();
            let err = release(&mut task, &release_by(unit, attempt)).unwrap_err();
            assert_eq!(err.status.as_u16(), 409);
            assert_eq!(task, before, "unchanged");
        }
        let mut revoking = running_task(Revoking);
        assert_eq!(
            release(&mut revoking, &release_by("u1", 2)).unwrap(),
            Revoked
        );
        assert_eq!((revoking.attempt, revoking.handed_back), (2, 0));
        assert!(revoking.finished_at.is_some());
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
