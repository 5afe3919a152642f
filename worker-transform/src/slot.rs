//! A job slot: one broker consumer, one encoder at a time. Take a message, claim its task
//! over the node API, ack, run it (docs/architecture.md §5: at-least-once delivery, the claim fences
//! duplicates; [`oscied_protocol::unit::claim`]).
//!
//! The slot takes its next message as soon as the encoder has exited: probing the output and
//! completing the task go on beside the next job, as a shell loop would start the next
//! ffmpeg at once.

use std::sync::Arc;

use oscied_protocol::unit::{ack, claim, decode};
use oscied_protocol::{Delivery, TransformJob};
use tokio::sync::oneshot;

use crate::{Ctx, job};

pub(crate) async fn run(ctx: Arc<Ctx>, slot: u32) {
    let mut consumer = ctx.broker.consumer(&ctx.config.queues);
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        // None once draining; waits while the orchestra refuses the node secret.
        let Some(delivery) = ctx.link.next_delivery(consumer.as_mut()).await else {
            break;
        };
        let (encoder_free, encoder_freed) = oneshot::channel();
        let job_ctx = ctx.clone();
        jobs.spawn(async move { handle(&job_ctx, slot, delivery, encoder_free).await });
        // Resolves when the encoder exits, or when the job ends or is dropped (the sender is
        // dropped with it).
        let _ = encoder_freed.await;
        while jobs.try_join_next().is_some() {}
        if ctx.is_draining() {
            break;
        }
    }
    // Jobs still running (draining), completing or handing back finish first.
    while jobs.join_next().await.is_some() {}
}

async fn handle(ctx: &Arc<Ctx>, slot: u32, delivery: Delivery, encoder_free: oneshot::Sender<()>) {
    // A job this unit cannot decode (a publish job, a malformed one) ends its task FAILURE.
    let Some((job, delivery)) = decode::<TransformJob>(&ctx.link, delivery).await else {
        return;
    };
    let (task, attempt) = (job.task_id, job.attempt);
    let Some(_running) = ctx.running.register(task, attempt) else {
        tracing::info!(%task, attempt, "redelivery of a job this unit runs: acked and skipped");
        ack(delivery).await;
        return;
    };
    let Some(claim) = claim(&ctx.link, task, attempt, delivery).await else {
        return;
    };
    tracing::debug!(%task, attempt, slot, lease_secs = claim.lease_secs, "task claimed");
    job::run(ctx, &job, claim.lease_secs, encoder_free).await;
}
