//! The unit heartbeat ([`oscied_protocol::unit::heartbeat`]) with what is particular to a
//! transform unit: the ffmpeg version.

use std::sync::Arc;

use oscied_protocol::unit::{self, UnitInfo};

use crate::{Ctx, ffmpeg};

pub(crate) async fn run(ctx: Arc<Ctx>) {
    // Read once: the version does not change under a running unit.
    let ffmpeg_version = ffmpeg::version().await;
    if ffmpeg_version.is_none() {
        tracing::warn!("`ffmpeg -version` failed: is ffmpeg installed and on PATH?");
    }
    let info = UnitInfo {
        queues: ctx.config.queues.clone(),
        concurrency: ctx.config.concurrency,
        heartbeat_secs: ctx.config.heartbeat_secs,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ffmpeg_version,
    };
    unit::heartbeat(&ctx.link, info, &ctx.running).await;
}
