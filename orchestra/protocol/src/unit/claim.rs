//! Claim a delivered job's task over the node API, then ack the delivery (docs/architecture.md §5:
//! at-least-once delivery, the claim fences duplicates).

use std::time::Duration;

use uuid::Uuid;

use super::UnitLink;
use crate::broker::Delivery;
use crate::client::NodeError;
use crate::node::{ClaimAnswer, ClaimRequest, UnitKind};

/// How long a unit holds a message the orchestra refused to hand out before requeueing it,
/// so a configuration error does not spin.
const REFUSED_PAUSE: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Claim the task with the job's attempt; on success the delivery is acked. None when the
/// job is not this unit's to run (stale, refused, or the unit is draining); the delivery was
/// settled accordingly.
pub(crate) async fn claim(
    link: &UnitLink,
    task: Uuid,
    attempt: u32,
    delivery: Delivery,
) -> Option<ClaimAnswer> {
    claim_as(link, link.kind, task, attempt, delivery).await
}

/// [`claim`] on the node routes of a task kind that may not be the unit's own (a job that
/// reached the wrong kind of unit is claimed only to fail it).
pub(crate) async fn claim_as(
    link: &UnitLink,
    kind: UnitKind,
    task: Uuid,
    attempt: u32,
    delivery: Delivery,
) -> Option<ClaimAnswer> {
    let request = ClaimRequest {
        unit_id: link.unit_id.clone(),
        attempt,
    };
    let kind = kind.as_str();
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = tokio::select! {
            result = link.client.claim(kind, task, &request) => result,
            () = link.draining() => {
                delivery.requeue();
                return None;
            }
        };
        link.note_answer("claim", &result);
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
            Err(NodeError::Refused(401, _)) => {
                // Logged (rate-limited) by `note_answer`. Back at once, not acked: a unit
                // whose secret is accepted may run it; this one takes nothing more for now.
                tracing::debug!(%task, attempt, "claim refused: node secret; requeued");
                delivery.requeue();
                return None;
            }
            Err(NodeError::Refused(code, message)) => {
                tracing::error!(
                    %task, attempt,
                    "the orchestra refused the claim ({code}): {message}; requeued"
                );
                pause_then_requeue(link, delivery).await;
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
                    () = link.draining() => {
                        delivery.requeue();
                        return None;
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Hold a message the orchestra refused for a while, then put it back: a configuration error
/// (bad node secret) must neither lose it nor spin on it.
pub async fn pause_then_requeue(link: &UnitLink, delivery: Delivery) {
    tokio::select! {
        () = tokio::time::sleep(REFUSED_PAUSE) => {}
        () = link.draining() => {}
    }
    delivery.requeue();
}

/// Ack a delivery; a failure is only logged.
pub async fn ack(delivery: Delivery) {
    let queue = delivery.queue.clone();
    if let Err(e) = delivery.ack().await {
        tracing::warn!(%queue, "ack failed (the redelivery will be fenced): {e}");
    }
}
