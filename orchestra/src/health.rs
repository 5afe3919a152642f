//! Is the orchestra and what it depends on up (`GET /health`). `degraded` (503) when something
//! this process needs is missing: the store, the broker, a writable storage tree, ffprobe
//! (every upload and registration probes), and ffmpeg when the in-process units of
//! standalone mode run (no `OSCIED_AMQP_URI`). In cluster mode ffmpeg is the units' business
//! (they report its version in `GET /units`); it is listed, not required.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long a check of ffmpeg and ffprobe is trusted: a probe spawns both, which no health
/// poller should cause on every request.
const TOOLS_TTL: Duration = Duration::from_secs(30);
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when something the orchestra needs is missing (then the status
    /// code is 503).
    pub status: &'static str,
    pub version: &'static str,
    /// `ok` or `down`.
    pub store: &'static str,
    /// `ok` or `down`; standalone mode's in-process queues are always `ok`.
    pub broker: &'static str,
    /// Why the broker is down (its last connection error, e.g. a refused login or a missing
    /// vhost); null when it is up.
    pub broker_error: Option<String>,
    /// `ok`, or `down` when a file cannot be written and removed under the storage root's
    /// `tmp/`.
    pub storage: &'static str,
    /// Why the storage is down; null when it is writable.
    pub storage_error: Option<String>,
    /// ffprobe on the orchestra's `PATH` (always required: uploads are probed).
    pub ffprobe: ToolHealth,
    /// ffmpeg on the orchestra's `PATH` (required in standalone mode only).
    pub ffmpeg: ToolHealth,
    /// `standalone` or `cluster`.
    pub mode: &'static str,
    /// `sqlite` or `mongodb`.
    pub store_kind: &'static str,
}

/// A program the orchestra runs, as last checked (at most [`TOOLS_TTL`] ago).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolHealth {
    /// Found on the `PATH` and answering `-version`.
    pub found: bool,
    /// The first line of its `-version`; null when not found.
    pub version: Option<String>,
    /// Whether this orchestra needs it; a required tool not found makes it `degraded`.
    pub required: bool,
}

/// Check the store, the broker, the storage tree and the tools, each within a few seconds.
pub async fn check(state: &AppState) -> Health {
    let store_ok = tokio::time::timeout(CHECK_TIMEOUT, state.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let broker_error = match tokio::time::timeout(CHECK_TIMEOUT, state.broker.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let storage_error =
        match tokio::time::timeout(CHECK_TIMEOUT, state.storage.check_writable()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("cannot write under tmp/: {e}")),
            Err(_) => Some(format!("writing under tmp/ took over {CHECK_TIMEOUT:?}")),
        };
    let (ffprobe, ffmpeg) = tools().await;
    // The in-process units of standalone mode run ffmpeg; cluster units have their own.
    let in_process_units = state.config.amqp_uri.is_none();
    let ffprobe = ToolHealth {
        found: ffprobe.is_some(),
        version: ffprobe,
        required: true,
    };
    let ffmpeg = ToolHealth {
        found: ffmpeg.is_some(),
        version: ffmpeg,
        required: in_process_units,
    };
    let tools_ok = [&ffprobe, &ffmpeg]
        .iter()
        .all(|tool| tool.found || !tool.required);
    let all_ok = store_ok && broker_error.is_none() && storage_error.is_none() && tools_ok;
    Health {
        status: if all_ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        store: if store_ok { "ok" } else { "down" },
        broker: if broker_error.is_none() { "ok" } else { "down" },
        broker_error,
        storage: if storage_error.is_none() {
            "ok"
        } else {
            "down"
        },
        storage_error,
        ffprobe,
        ffmpeg,
        mode: if state.config.mongodb_uri.is_some() || state.config.amqp_uri.is_some() {
            "cluster"
        } else {
            "standalone"
        },
        store_kind: state.store.kind(),
    }
}

type Versions = (Option<String>, Option<String>);

/// The versions of ffprobe and ffmpeg, checked at most every [`TOOLS_TTL`]. Per process (the
/// `PATH` is the process's); concurrent requests wait for one check.
async fn tools() -> Versions {
    static CHECKED: LazyLock<tokio::sync::Mutex<Option<(Instant, Versions)>>> =
        LazyLock::new(|| tokio::sync::Mutex::new(None));
    let mut checked = CHECKED.lock().await;
    if let Some((at, versions)) = checked.as_ref()
        && at.elapsed() < TOOLS_TTL
    {
        return versions.clone();
    }
    let versions = tokio::join!(
        oscied_protocol::probe::tool_version("ffprobe"),
        oscied_protocol::probe::tool_version("ffmpeg")
    );
    *checked = Some((Instant::now(), versions.clone()));
    versions
}
