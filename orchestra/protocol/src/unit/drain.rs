//! A unit's stop (SIGTERM, SIGINT, or the orchestra stopping its in-process units): take no new
//! job, let the running attempts finish for up to `OSCIED_DRAIN_SECS`, then stop what still
//! runs and hand it back to the orchestra, which queues it again at once (attempt + 1)
//! instead of waiting for its lease to lapse.
//!
//! Taking no new job needs nothing from the broker: a slot consumes only while it waits for a
//! message (see [`crate::broker`]), so a slot that stops waiting holds none, and a message
//! whose claim was under way goes back to its queue ([`super::claim`]).

use std::time::Duration;

use tokio::task::JoinSet;
use uuid::Uuid;

use super::{Running, UnitLink, UnitStop};
use crate::client::NodeError;
use crate::node::ReleaseRequest;

/// How long a stopping unit keeps trying to hand an attempt back while the orchestra is
/// unavailable; after that the task waits for its lease, as if the unit had been killed.
const HAND_BACK_BUDGET: Duration = Duration::from_secs(5);

/// Stop a unit whose slots run in `slots`: drain for up to `drain_secs` (0: not at all),
/// then stop the attempts still running, and wait until every slot has ended (each one
/// handed its attempt back and removed its files).
pub(crate) async fn wind_down(
    stop: &UnitStop,
    running: &Running,
    slots: &mut JoinSet<()>,
    drain_secs: u64,
) {
    stop.drain();
    let busy = running.len();
    if drain_secs > 0 && busy > 0 {
        tracing::info!(
            running = busy,
            drain_secs,
            "draining: no new job; running tasks may finish for up to {drain_secs} s \
             (OSCIED_DRAIN_SECS)"
        );
        let all_ended = async {
            while let Some(ended) = slots.join_next().await {
                if let Err(e) = ended {
                    tracing::error!("a job slot failed while draining: {e}");
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(drain_secs), all_ended)
            .await
            .is_err()
        {
            tracing::info!(
                running = running.len(),
                "drain time over (OSCIED_DRAIN_SECS={drain_secs}): handing back what still runs"
            );
        }
    } else if busy > 0 {
        tracing::info!(running = busy, "handing back the running tasks");
    }
    stop.stop();
    while let Some(ended) = slots.join_next().await {
        if let Err(e) = ended {
            tracing::error!("a job slot failed while stopping: {e}");
        }
    }
}

/// Hand an attempt this stopping unit no longer runs back to the orchestra, which queues it
/// again at once. Returns whether the orchestra took it; otherwise (unreachable for
/// [`HAND_BACK_BUDGET`], or the attempt was not current any more) it is logged, and a still
/// current attempt is taken back when its lease lapses.
pub(crate) async fn hand_back(link: &UnitLink, task: Uuid, attempt: u32) -> bool {
    let request = ReleaseRequest {
        unit_id: link.unit_id.clone(),
        attempt,
        reason: Some("shutdown".into()),
    };
    let kind = link.kind.as_str();
    let deadline = tokio::time::Instant::now() + HAND_BACK_BUDGET;
    let mut pause = Duration::from_millis(250);
    loop {
        match link.client.release(kind, task, &request).await {
            Ok(answer) => {
                tracing::info!(
                    %task, attempt, status = %answer.status, next_attempt = answer.attempt,
                    "task handed back to the orchestra"
                );
                return true;
            }
            Err(NodeError::Stale(message)) => {
                tracing::info!(%task, attempt, "nothing to hand back: {message}");
                return false;
            }
            Err(NodeError::Refused(code, message)) => {
                tracing::error!(
                    %task, attempt,
                    "the orchestra refused the hand-back ({code}): {message}; \
                     the task is retried when its lease lapses"
                );
                return false;
            }
            Err(NodeError::Unavailable(e)) => {
                if tokio::time::Instant::now() + pause > deadline {
                    tracing::warn!(
                        %task, attempt,
                        "could not hand the task back ({e}); it is retried when its lease lapses"
                    );
                    return false;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}
