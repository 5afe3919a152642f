//! A job slot: one broker consumer, one encoder at a time. Take a message, claim its task
//! over the node API, ack, run it (DESIGN.md §5: at-least-once delivery, the claim fences
//! duplicates).
//!
//! The slot takes its next message as soon as the encoder has exited: probing the output and
//! completing the task go on beside the next job, as a shell loop would start the next
//! ffmpeg at once.

use std::sync::Arc;
use std::time::Duration;

use oscied_protocol::client::NodeError;
use oscied_protocol::node::{ClaimAnswer, ClaimRequest};
use oscied_protocol::{Delivery, TransformJob};
use tokio::sync::oneshot;

use crate::{Ctx, KIND, job};

/// How long a slot holds a message the orchestra refused to hand out before requeueing it,
/// so a configuration error does not spin.
const REFUSED_PAUSE: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(ctx: Arc<Ctx>, slot: u32) {
    let mut consumer = ctx.broker.consumer(&ctx.config.queues);
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        let delivery = tokio::select! {
            biased;
            () = ctx.stopped() => break,
            delivery = consumer.next() => delivery,
        };
        let (encoder_free, encoder_freed) = oneshot::channel();
        let job_ctx = ctx.clone();
        jobs.spawn(async move { handle(&job_ctx, slot, delivery, encoder_free).await });
        // Resolves when the encoder exits, or when the job ends or is dropped (the sender is
        // dropped with it).
        let _ = encoder_freed.await;
        while jobs.try_join_next().is_some() {}
        if ctx.is_stopping() {
            break;
        }
    }
    // Jobs still completing (or stopping on shutdown) finish their cleanup first.
    while jobs.join_next().await.is_some() {}
}

async fn handle(ctx: &Arc<Ctx>, slot: u32, delivery: Delivery, encoder_free: oneshot::Sender<()>) {
    let job: TransformJob = match serde_json::from_slice(&delivery.payload) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(queue = %delivery.queue, "undecodable transform job dropped: {e}");
            ack(delivery).await;
            return;
        }
    };
    let (task, attempt) = (job.task_id, job.attempt);
    let Some(_running) = ctx.running.register(task, attempt) else {
        tracing::info!(%task, attempt, "redelivery of a job this unit runs: acked and skipped");
        ack(delivery).await;
        return;
    };
    let Some(claim) = claim(ctx, &job, delivery).await else {
        return;
    };
    tracing::debug!(%task, attempt, slot, lease_secs = claim.lease_secs, "task claimed");
    job::run(ctx, &job, claim.lease_secs, encoder_free).await;
}

/// Claim the job's task with its attempt; on success the delivery is acked. None when the
/// job is not this unit's to run (stale, refused, or the unit is stopping); the delivery was
/// settled accordingly.
async fn claim(ctx: &Ctx, job: &TransformJob, delivery: Delivery) -> Option<ClaimAnswer> {
    let (task, attempt) = (job.task_id, job.attempt);
    let request = ClaimRequest {
        unit_id: ctx.config.unit_id.clone(),
        attempt,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = tokio::select! {
            result = ctx.client.claim(KIND, task, &request) => result,
            () = ctx.stopped() => {
                delivery.requeue();
                return None;
            }
        };
        match result {
            Ok(answer) => {
                // The claim owns the task now; a lost ack only means a redelivery that the
                // next claim fences.
                ack(delivery).await;
                return Some(answer);
            }
            Err(NodeError::Stale(message)) => {
                tracing::info!(%task, attempt, "stale job dropped: {message}");
                ack(delivery).await;
                return None;
            }
            Err(NodeError::Refused(code, message)) => {
                tracing::error!(
                    %task, attempt,
                    "the orchestra refused the claim ({code}): {message}; requeued"
                );
                tokio::select! {
                    () = tokio::time::sleep(REFUSED_PAUSE) => {}
                    () = ctx.stopped() => {}
                }
                delivery.requeue();
                return None;
            }
            Err(NodeError::Unavailable(e)) => {
                // Hold the delivery: nobody else could claim it now either.
                tracing::warn!(
                    %task, attempt,
                    "claim failed, retrying in {}s: {e}", backoff.as_secs()
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = ctx.stopped() => {
                        delivery.requeue();
                        return None;
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn ack(delivery: Delivery) {
    let queue = delivery.queue.clone();
    if let Err(e) = delivery.ack().await {
        tracing::warn!(%queue, "ack failed (the redelivery will be fenced): {e}");
    }
}
