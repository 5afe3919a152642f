//! The unit heartbeat: registers the unit and tells the orchestra what it runs, every
//! `heartbeat_secs`. Failures are logged, never fatal.

use std::sync::Arc;
use std::time::Duration;

use oscied_protocol::node::{UnitHeartbeat, UnitKind};

use crate::{Ctx, ffmpeg};

pub(crate) async fn run(ctx: Arc<Ctx>) {
    // Read once: the version does not change under a running unit.
    let ffmpeg_version = ffmpeg::version().await;
    if ffmpeg_version.is_none() {
        tracing::warn!("`ffmpeg -version` failed: is ffmpeg installed and on PATH?");
    }
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut tick = tokio::time::interval(Duration::from_secs(ctx.config.heartbeat_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.stopped() => return,
        }
        let beat = UnitHeartbeat {
            kind: UnitKind::Transform,
            queues: ctx.config.queues.clone(),
            hostname: hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ffmpeg_version: ffmpeg_version.clone(),
            concurrency: ctx.config.concurrency,
            running_tasks: ctx.running.tasks(),
            heartbeat_secs: ctx.config.heartbeat_secs,
        };
        match ctx.client.heartbeat(&ctx.config.unit_id, &beat).await {
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
