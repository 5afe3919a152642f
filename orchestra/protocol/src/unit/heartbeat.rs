//! The unit heartbeat: registers the unit and tells the orchestra what it runs, every
//! `heartbeat_secs`. Failures are logged, never fatal.

use std::time::Duration;

use super::{Running, UnitLink};
use crate::node::UnitHeartbeat;

/// What a unit says about itself in every beat, besides its kind (from the link) and its
/// running tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
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
pub async fn heartbeat(link: &UnitLink, info: UnitInfo, running: &Running) {
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut tick = tokio::time::interval(Duration::from_secs(info.heartbeat_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
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
        match link.client.heartbeat(&link.unit_id, &beat).await {
            Ok(_) if failing => {
                tracing::info!("unit heartbeat goes through again");
                failing = false;
            }
            Ok(_) => {}
            // Warn once per outage, not every beat.
            Err(e) if !failing => {
                tracing::warn!("unit heartbeat failed: {e}");
                failing = true;
            }
            Err(e) => tracing::debug!("unit heartbeat failed: {e}"),
        }
    }
}
