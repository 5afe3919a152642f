//! Talking to the node API while an attempt runs: progress (which is also the lease
//! heartbeat) and the completion, retried until the orchestra answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oscied_protocol::ProgressReport;
use oscied_protocol::client::NodeError;
use oscied_protocol::node::{CompleteAnswer, CompleteRequest, ProgressRequest};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{Ctx, KIND};

/// What the orchestra told the reporter about the running attempt.
#[derive(Debug)]
pub(crate) enum LeaseEvent {
    /// The task was revoked: kill, clean up, complete REVOKED.
    Cancel,
    /// The attempt is not current any more: kill, clean up, do not complete.
    Stale(String),
}

/// Sends progress while an attempt runs; dropped (aborted) when the attempt is over.
pub(crate) struct Reporter {
    task: JoinHandle<()>,
    pub events: mpsc::Receiver<LeaseEvent>,
}

impl Reporter {
    /// Report at most once a second when there is news, and a bare heartbeat at least every
    /// `lease_secs / 3` seconds even when there is none.
    pub fn spawn(
        ctx: Arc<Ctx>,
        task: Uuid,
        attempt: u32,
        lease_secs: u64,
        progress: watch::Receiver<Option<ProgressReport>>,
    ) -> Reporter {
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(report_loop(ctx, task, attempt, lease_secs, progress, tx));
        Reporter { task, events }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn report_loop(
    ctx: Arc<Ctx>,
    task: Uuid,
    attempt: u32,
    lease_secs: u64,
    mut progress: watch::Receiver<Option<ProgressReport>>,
    events: mpsc::Sender<LeaseEvent>,
) {
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
            unit_id: ctx.config.unit_id.clone(),
            attempt,
            progress: pending.clone(),
        };
        match ctx.client.progress(KIND, task, &request).await {
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
pub(crate) enum Completion {
    Answered(CompleteAnswer),
    /// The attempt is not current: the caller cleans up.
    Stale(String),
    /// Refused for good (bad secret or payload), or the unit stopped before an answer.
    GaveUp,
}

/// Complete the attempt, retrying with backoff while the orchestra is unavailable (an
/// orchestra restart must lose nothing). Only the unit stopping ends the retries early.
pub(crate) async fn complete(ctx: &Ctx, task: Uuid, request: &CompleteRequest) -> Completion {
    let mut backoff = Duration::from_secs(1);
    loop {
        match ctx.client.complete(KIND, task, request).await {
            Ok(answer) => return Completion::Answered(answer),
            Err(NodeError::Stale(message)) => return Completion::Stale(message),
            Err(NodeError::Refused(code, message)) => {
                tracing::error!(
                    %task,
                    attempt = request.attempt,
                    "the orchestra refused the completion ({code}): {message}; \
                     the task will be retried when its lease lapses"
                );
                return Completion::GaveUp;
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
            () = ctx.stopped() => return Completion::GaveUp,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
