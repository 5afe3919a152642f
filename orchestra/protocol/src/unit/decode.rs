//! Decode a delivery as the unit's job kind. A message that does not decode is not simply
//! dropped: its task would stay PENDING forever. When the message still names its task (a
//! `task_id` and an `attempt`), the unit claims that attempt and completes it FAILURE with
//! what was wrong (a job of the other kind, sent to a queue of this kind; or a malformed
//! one); a message that does not even name its task is acked and logged.
//!
//! The kind of a foreign job is told from its fields (a publish job has an `action`, a
//! transform job an `encoder_name` or `media_in_uri`), and the claim and completion go to
//! that kind's node routes (`/node/{kind}/tasks/{id}/...`): the orchestra accepts a claim of a
//! queued attempt from any unit, and the completion from the unit that claimed it.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::UnitLink;
use super::claim::{ack, claim_as};
use super::report::{Completion, complete_as};
use crate::broker::Delivery;
use crate::node::{CompleteRequest, UnitKind};
use crate::task::TaskStatus;

/// What any job message holds: enough to fail its task.
#[derive(Debug, Deserialize)]
struct Header {
    task_id: Uuid,
    attempt: u32,
    #[serde(default)]
    action: Option<serde_json::Value>,
    #[serde(default)]
    encoder_name: Option<serde_json::Value>,
    #[serde(default)]
    media_in_uri: Option<serde_json::Value>,
}

impl Header {
    /// The kind of job this looks like; `own` when it cannot be told.
    fn kind(&self, own: UnitKind) -> UnitKind {
        if self.action.is_some() {
            UnitKind::Publisher
        } else if self.encoder_name.is_some() || self.media_in_uri.is_some() {
            UnitKind::Transform
        } else {
            own
        }
    }

    fn is_unpublish(&self) -> bool {
        self.action.as_ref().and_then(|a| a.as_str()) == Some("unpublish")
    }
}

/// The delivery's job, or None once a message the unit cannot run was settled (its task
/// completed FAILURE, or the message acked and logged).
pub(crate) async fn decode<J: DeserializeOwned>(
    link: &UnitLink,
    delivery: Delivery,
) -> Option<(J, Delivery)> {
    match serde_json::from_slice::<J>(&delivery.payload) {
        Ok(job) => Some((job, delivery)),
        Err(e) => {
            reject(link, delivery, &e.to_string()).await;
            None
        }
    }
}

/// Fail the task a message names, with why the unit cannot run it.
async fn reject(link: &UnitLink, delivery: Delivery, error: &str) {
    let own = link.kind;
    let queue = delivery.queue.clone();
    let header = match serde_json::from_slice::<Header>(&delivery.payload) {
        Ok(header) => header,
        Err(e) => {
            tracing::error!(
                %queue, bytes = delivery.payload.len(),
                "a message that names no task was dropped: {error} ({e})"
            );
            ack(delivery).await;
            return;
        }
    };
    let (task, attempt, kind) = (header.task_id, header.attempt, header.kind(own));
    let message = if kind == own {
        format!("the job message could not be decoded: {error}")
    } else {
        let job = match kind {
            UnitKind::Transform => "a transform",
            UnitKind::Publisher => "a publish",
        };
        format!(
            "{job} job reached a {} unit (unit {}, queue {queue}): it cannot run there; send \
             {} tasks to {} queues",
            own.as_str(),
            link.unit_id,
            kind.as_str(),
            kind.as_str()
        )
    };
    if header.is_unpublish() {
        // Not claimable (its unit holds the task since it published): only that unit can
        // unpublish, and it consumes its own queue.
        tracing::error!(%task, attempt, %queue, "an unpublish job this unit cannot run was dropped: {message}");
        ack(delivery).await;
        return;
    }
    tracing::error!(%task, attempt, %queue, "{message}; completing the task FAILURE");
    // A stale or refused claim settles the delivery itself (dropped or requeued).
    if claim_as(link, kind, task, attempt, delivery)
        .await
        .is_none()
    {
        return;
    }
    let request = CompleteRequest {
        unit_id: link.unit_id.clone(),
        attempt,
        status: TaskStatus::Failure,
        error: Some(message),
        output: None,
        publish_uri: None,
    };
    match complete_as(link, kind, task, &request).await {
        Completion::Answered(answer) => {
            tracing::info!(%task, attempt, status = %answer.status, "undecodable job completed");
        }
        Completion::Stale(message) => {
            tracing::warn!(%task, attempt, "completion refused as stale: {message}");
        }
        // Logged by `complete_as`; the lease lapses and the task is retried, then fails.
        Completion::Refused(..) | Completion::Stopped => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: serde_json::Value) -> Header {
        serde_json::from_value(json).expect("header")
    }

    #[test]
    fn a_foreign_jobs_kind_is_told_from_its_fields() {
        let id = Uuid::nil();
        let publish = header(serde_json::json!({"task_id": id, "attempt": 1,
            "action": "publish", "media_id": id, "media_uri": "medias/x/a.mp4"}));
        assert_eq!(publish.kind(UnitKind::Transform), UnitKind::Publisher);
        assert!(!publish.is_unpublish());
        let transform = header(serde_json::json!({"task_id": id, "attempt": 2,
            "media_in_uri": "medias/x/a.mp4", "encoder_name": "ffmpeg"}));
        assert_eq!(transform.kind(UnitKind::Publisher), UnitKind::Transform);
        let bare = header(serde_json::json!({"task_id": id, "attempt": 1}));
        assert_eq!(bare.kind(UnitKind::Publisher), UnitKind::Publisher);
        assert_eq!(bare.kind(UnitKind::Transform), UnitKind::Transform);
        let unpublish = header(serde_json::json!({"task_id": id, "attempt": 1,
            "action": "unpublish"}));
        assert!(unpublish.is_unpublish());
        assert!(serde_json::from_str::<Header>(r#"{"attempt": 1}"#).is_err());
        assert!(serde_json::from_str::<Header>("not json").is_err());
    }
}
