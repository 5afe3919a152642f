//! Talking to the node API while an attempt runs: progress (which is also the lease
//! heartbeat) and the completion, retried until the orchestra answers.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::UnitLink;
use crate::client::NodeError;
use crate::node::{CompleteAnswer, CompleteRequest, ProgressRequest, UnitKind};
use crate::task::ProgressReport;

/// What the orchestra told the reporter about the running attempt.
#[derive(Debug)]
pub(crate) enum LeaseEvent {
    /// The task was revoked: stop, clean up, complete REVOKED.
    Cancel,
    /// The attempt is not current any more: stop, clean up, do not complete.
    Stale(String),
}

/// Sends progress while an attempt runs; dropped (aborted) when the attempt is over.
#[derive(Debug)]
pub(crate) struct Reporter {
    task: JoinHandle<()>,
    /// At most one event, then the reporter ends.
    pub(crate) events: mpsc::Receiver<LeaseEvent>,
}

impl Reporter {
    /// Report at most once a second when there is news, and a bare heartbeat at least every
    /// `lease_secs / 3` seconds even when there is none.
    pub(crate) fn spawn(
        link: UnitLink,
        task: Uuid,
        attempt: u32,
        lease_secs: u64,
        progress: watch::Receiver<Option<ProgressReport>>,
    ) -> Reporter {
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(report_loop(link, task, attempt, lease_secs, progress, tx));
        Reporter { task, events }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn report_loop(
    link: UnitLink,
    task: Uuid,
    attempt: u32,
    lease_secs: u64,
    mut progress: watch::Receiver<Option<ProgressReport>>,
    events: mpsc::Sender<LeaseEvent>,
) {
    let kind = link.kind.as_str();
    let beat_every = Duration::from_secs((lease_secs / 3).max(1));
    // The claim just renewed the lease.
    let mut last_ok = Instant::now();
    // News not yet accepted by the orchestra (kept across failed calls).
    let mut pending: Option<ProgressReport> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // An error means the work ended and dropped its sender: nothing new will come.
        if progress.has_changed().unwrap_or(false)
            && let Some(report) = progress.borrow_and_update().clone()
        {
            pending = Some(report);
        }
        if pending.is_none() && last_ok.elapsed() < beat_every {
            continue;
        }
        let request = ProgressRequest {
            unit_id: link.unit_id.clone(),
            attempt,
            progress: pending.clone(),
        };
        let answer = link.client.progress(kind, task, &request).await;
        link.note_answer("progress report", &answer);
        match answer {
            Ok(answer) => {
                if failing {
                    tracing::info!(%task, attempt, "progress reports go through again");
                    failing = false;
                }
                last_ok = Instant::now();
                pending = None;
                if answer.cancel {
                    let _ = events.send(LeaseEvent::Cancel).await;
                    return;
                }
            }
            Err(NodeError::Stale(message)) => {
                let _ = events.send(LeaseEvent::Stale(message)).await;
                return;
            }
            Err(e) => {
                // Keep working; the next tick tries again.
                if !failing {
                    tracing::warn!(%task, attempt, "progress report failed: {e}");
                    failing = true;
                }
            }
        }
    }
}

/// How a completion ended.
#[derive(Debug)]
pub enum Completion {
    Answered(CompleteAnswer),
    /// The attempt is not current (or the task is gone): the caller cleans up.
    Stale(String),
    /// Refused for good (bad secret or payload); logged here. The task is retried when its
    /// lease lapses.
    Refused(u16, String),
    /// The unit stopped before an answer.
    Stopped,
}

/// Complete the attempt, retrying with backoff while the orchestra is unavailable (an
/// orchestra restart must lose nothing). Only the unit stopping ends the retries early.
pub async fn complete(link: &UnitLink, task: Uuid, request: &CompleteRequest) -> Completion {
    complete_as(link, link.kind, task, request).await
}

/// [`complete`] on the node routes of a task kind that may not be the unit's own.
pub(crate) async fn complete_as(
    link: &UnitLink,
    kind: UnitKind,
    task: Uuid,
    request: &CompleteRequest,
) -> Completion {
    let kind = kind.as_str();
    let mut backoff = Duration::from_secs(1);
    loop {
        let answer = link.client.complete(kind, task, request).await;
        link.note_answer("completion", &answer);
        match answer {
            Ok(answer) => return Completion::Answered(answer),
            Err(NodeError::Stale(message)) => return Completion::Stale(message),
            Err(NodeError::Refused(code, message)) => {
                tracing::error!(
                    %task,
                    attempt = request.attempt,
                    "the orchestra refused the completion ({code}): {message}; \
                     the task will be retried when its lease lapses"
                );
                return Completion::Refused(code, message);
            }
            Err(NodeError::Unavailable(e)) => {
                tracing::warn!(
                    %task,
                    attempt = request.attempt,
                    "completion failed, retrying in {}s: {e}",
                    backoff.as_secs()
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = link.stopped() => return Completion::Stopped,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
