//! Thumbnails of READY medias with a video stream (docs/architecture.md §7): a JPEG
//! [`WIDTH`] pixels wide of the frame at 10 % of the duration (at 1 s when that is earlier, or
//! the middle of a clip under 2 s), kept in `thumbnails/<id>.jpg`.
//!
//! Made once when a media becomes READY (upload and register before they answer; a
//! transform's output just after its task's SUCCESS, in the background, so that no
//! completion waits for a picture), by ffmpeg under the sandbox ffprobe runs in: it may read
//! the media's directory and write a scratch directory under `tmp/` only; the result is
//! renamed into place. A failure there never fails the upload or the completion (a warning);
//! the first request for a missing thumbnail makes it then (a media from before thumbnails,
//! or an earlier failure).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oscied_protocol::probe::{file_url, last_error_line};
use oscied_protocol::sandbox::Jail;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::models::Media;
use crate::storage::{Scratch, Storage};
use oscied_protocol::sandbox::SandboxMode;

/// The thumbnail's width in pixels; its height keeps the display aspect ratio.
pub const WIDTH: u32 = 320;

/// How long one making may take, waiting for a slot included: an upload or a completion
/// waits for it (the unit's call has 30 s), a request for a missing one too.
const WALL: Duration = Duration::from_secs(15);

/// ffmpeg runs at once for thumbnails: a page of old medias asks for fifty at a time.
const RUNS: usize = 2;

/// After a failure, how long requests answer it again instead of running ffmpeg again.
const FAILED_FOR: Duration = Duration::from_secs(600);

/// The makers' shared state (in `AppState`).
pub struct Thumbnailer {
    storage: Storage,
    sandbox: SandboxMode,
    runs: tokio::sync::Semaphore,
    /// One making per media at a time in this process: the second waits and finds the
    /// file. (Two replicas making one at once each write their own scratch file and rename
    /// it in: the last one stays, whole.)
    making: Vec<tokio::sync::Mutex<()>>,
    /// Medias whose making failed lately, with why.
    failed: Mutex<HashMap<Uuid, (Instant, String)>>,
}

impl Thumbnailer {
    pub fn new(storage: Storage, sandbox: SandboxMode) -> Thumbnailer {
        Thumbnailer {
            storage,
            sandbox,
            runs: tokio::sync::Semaphore::new(RUNS),
            making: (0..16).map(|_| tokio::sync::Mutex::new(())).collect(),
            failed: Mutex::new(HashMap::new()),
        }
    }

    async fn lock(&self, id: Uuid) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = usize::from(id.as_bytes()[15]) % self.making.len();
        self.making[stripe].lock().await
    }

    fn recent_failure(&self, id: Uuid) -> Option<String> {
        let mut failed = self.failed.lock().ok()?;
        failed.retain(|_, (at, _)| at.elapsed() < FAILED_FOR);
        failed.get(&id).map(|(_, why)| why.clone())
    }

    fn remember(&self, id: Uuid, outcome: &Result<(), String>) {
        if let Ok(mut failed) = self.failed.lock() {
            match outcome {
                Ok(()) => failed.remove(&id),
                Err(why) => failed.insert(id, (Instant::now(), why.clone())),
            };
        }
    }
}

/// Where in the clip the thumbnail is taken, in seconds.
pub fn frame_time(duration: Option<f64>) -> f64 {
    let duration = duration
        .filter(|d| d.is_finite() && *d > 0.0)
        .unwrap_or(0.0);
    let tenth = duration * 0.1;
    if tenth >= 1.0 {
        tenth
    } else if duration >= 2.0 {
        1.0
    } else {
        duration / 2.0
    }
}

fn has_video(media: &Media) -> bool {
    media.probe.as_ref().is_some_and(|p| p.video().is_some())
}

impl Thumbnailer {
    /// Make the thumbnail of a media that just became READY. Never fails: a media without
    /// video needs none, and a failure is logged (the first request tries again).
    pub async fn make_for_ready(&self, media: &Media) {
        if !has_video(media) {
            return;
        }
        if let Err(e) = self.ensure(media).await {
            tracing::warn!(media = %media.id, error = %e.message, "no thumbnail made");
        }
    }

    /// The thumbnail file of a READY media, made now when it is missing. 404 for a media
    /// without a video stream, or one ffmpeg could not make a picture of.
    pub async fn ensure(&self, media: &Media) -> ApiResult<PathBuf> {
        if !has_video(media) {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("media {} has no video stream, so no thumbnail", media.id),
            ));
        }
        let path = self.storage.thumbnail_path(media.id);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let thumbnailer = self;
        let made = tokio::time::timeout(WALL, async {
            let _guard = thumbnailer.lock(media.id).await;
            // Made meanwhile by the request that held the lock.
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Ok(());
            }
            if let Some(why) = thumbnailer.recent_failure(media.id) {
                return Err(why);
            }
            let _run = thumbnailer
                .runs
                .acquire()
                .await
                .map_err(|e| e.to_string())?;
            let outcome = self.make(media, &path).await;
            thumbnailer.remember(media.id, &outcome);
            outcome
        })
        .await
        .unwrap_or_else(|_| Err(format!("not made within {} s", WALL.as_secs())));
        match made {
            Ok(()) => Ok(path),
            Err(why) => Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("media {}: no thumbnail could be made: {why}", media.id),
            )),
        }
    }

    /// Run ffmpeg for the frame, into a scratch dir, then rename it to `target`.
    async fn make(&self, media: &Media, target: &Path) -> Result<(), String> {
        let input = self.storage.path_of(&media.uri);
        let dir = input.parent().unwrap_or(&input).to_path_buf();
        let scratch = Scratch::new(self.storage.scratch_dir("thumbnail"));
        tokio::fs::create_dir_all(scratch.path())
            .await
            .map_err(|e| format!("scratch dir: {e}"))?;
        let out = scratch.path().join("thumbnail.jpg");
        let at = frame_time(media.duration);
        self.run_ffmpeg(&input, &dir, scratch.path(), &out, at)
            .await?;
        // A duration longer than the stream (a damaged file) seeks past the last frame: ffmpeg
        // then writes nothing and says nothing; the first frame is better than none.
        if !tokio::fs::try_exists(&out).await.unwrap_or(false) && at > 0.0 {
            self.run_ffmpeg(&input, &dir, scratch.path(), &out, 0.0)
                .await?;
        }
        if !tokio::fs::try_exists(&out).await.unwrap_or(false) {
            return Err("ffmpeg decoded no video frame".into());
        }
        tokio::fs::rename(&out, target)
            .await
            .map_err(|e| format!("keeping it: {e}"))?;
        // Deleted meanwhile: its thumbnail goes too, rather than stay behind for nobody.
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            let _ = tokio::fs::remove_file(target).await;
            return Err("the media was deleted meanwhile".into());
        }
        tracing::info!(media = %media.id, at, "thumbnail made");
        Ok(())
    }

    async fn run_ffmpeg(
        &self,
        input: &Path,
        readable: &Path,
        work_dir: &Path,
        out: &Path,
        at: f64,
    ) -> Result<(), String> {
        let jail = Jail::new("ffmpeg")
            .and_then(|j| j.read(readable))
            .and_then(|j| j.work_dir(work_dir))
            .map_err(|e| e.to_string())?
            // A frame costs well under a second of CPU; a picture stays small.
            .cpu_secs(60)
            .max_file_bytes(16 * 1024 * 1024)
            // A picture can wait; encoders sharing the host should not (a tenth of a core
            // under full load still makes one in a couple of seconds).
            .niceness(10);
        let output = jail
            .command(self.sandbox)
            .map_err(|e| e.to_string())?
            .args(["-nostdin", "-v", "error", "-ss", &format!("{at:.3}"), "-i"])
            .arg(file_url(input))
            .args(["-map", "0:v:0", "-frames:v", "1", "-an", "-sn", "-dn"])
            .arg("-vf")
            .arg(format!("scale={WIDTH}:trunc(ow/dar/2)*2,setsar=1"))
            .args(["-q:v", "4", "-f", "image2", "-update", "1", "-y"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("ffmpeg could not be run: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        Err(last_error_line(&output.stderr, input, "ffmpeg failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::frame_time;

    #[test]
    fn the_frame_is_at_a_tenth_or_one_second_or_the_middle() {
        assert_eq!(frame_time(Some(60.0)), 6.0);
        assert_eq!(frame_time(Some(10.0)), 1.0);
        assert_eq!(frame_time(Some(5.0)), 1.0);
        assert_eq!(frame_time(Some(2.0)), 1.0);
        assert_eq!(frame_time(Some(1.5)), 0.75);
        assert_eq!(frame_time(None), 0.0);
        assert_eq!(frame_time(Some(f64::NAN)), 0.0);
    }
}
