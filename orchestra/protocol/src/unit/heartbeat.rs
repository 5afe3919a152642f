//! The unit heartbeat: registers the unit and tells the orchestra what it runs, every
//! `heartbeat_secs`. Failures are logged; a refused node secret is also the unit's way to
//! notice it is accepted again ([`super::secret`]).

use std::time::Duration;

use super::secret::REFUSED_CHECK_EVERY;
use super::{Running, UnitLink};
use crate::client::NodeError;
use crate::node::UnitHeartbeat;

/// What a unit says about itself in every beat, besides its kind (from the link) and its
/// running tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitInfo {
    pub queues: Vec<String>,
    pub concurrency: u32,
    /// Seconds between beats (≥ 1).
    pub heartbeat_secs: u64,
    /// The unit's OSCIED version.
    pub version: String,
    /// `ffmpeg -version`'s first line, for units that run ffmpeg.
    pub ffmpeg_version: Option<String>,
}

/// Beat every `info.heartbeat_secs` until the unit stops.
pub(crate) async fn heartbeat(link: &UnitLink, info: UnitInfo, running: &Running) {
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let every = Duration::from_secs(info.heartbeat_secs.max(1));
    let mut failing = false;
    let mut first = true;
    loop {
        // While the node secret is refused, check at least every REFUSED_CHECK_EVERY, so a
        // fixed orchestra is noticed soon whatever the interval.
        let pause = if first {
            Duration::ZERO
        } else if link.secret_refused() {
            every.min(REFUSED_CHECK_EVERY)
        } else {
            every
        };
        first = false;
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = link.stopped() => return,
        }
        let beat = UnitHeartbeat {
            kind: link.kind,
            queues: info.queues.clone(),
            hostname: hostname.clone(),
            version: info.version.clone(),
            ffmpeg_version: info.ffmpeg_version.clone(),
            concurrency: info.concurrency,
            running_tasks: running.tasks(),
            heartbeat_secs: info.heartbeat_secs,
        };
        let answer = link.client.heartbeat(&link.unit_id, &beat).await;
        link.note_answer("heartbeat", &answer);
        match answer {
            Ok(_) if failing => {
                tracing::info!("unit heartbeat goes through again");
                failing = false;
            }
            Ok(_) => {}
            // Logged, rate-limited, by `note_answer`.
            Err(NodeError::Refused(401, _)) => failing = true,
            // Warn once per outage, not every beat.
            Err(e) if !failing => {
                tracing::warn!("unit heartbeat failed: {e}");
                failing = true;
            }
            Err(e) => tracing::debug!("unit heartbeat failed: {e}"),
        }
    }
}
