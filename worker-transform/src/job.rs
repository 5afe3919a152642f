//! One attempt at one transform task, after the claim: prepare the work dir, run the encoder
//! while reporting progress, then complete SUCCESS, FAILURE or REVOKED.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use oscied_protocol::encoder::{EncoderName, OutputKind, ffmpeg_args, validate_encoder_string};
use oscied_protocol::job::tmp_dir;
use oscied_protocol::node::{CompleteRequest, TransformOutput};
use oscied_protocol::sandbox::Jail;
use oscied_protocol::unit::{self, Completion, LeaseEvent, Reporter, hide_root};
use oscied_protocol::{ProgressReport, TaskStatus, TransformJob, probe};
use tokio::sync::{oneshot, watch};

use crate::Ctx;
use crate::copy::{CopyWork, dir_size};
use crate::ffmpeg::{FFMPEG, Ffmpeg};

/// The encoder at work (one per attempt, so the box costs nothing).
enum Work {
    Ffmpeg(Box<Ffmpeg>),
    Copy(CopyWork),
}

impl Work {
    fn progress(&self) -> watch::Receiver<Option<ProgressReport>> {
        match self {
            Work::Ffmpeg(f) => f.progress(),
            Work::Copy(c) => c.progress(),
        }
    }

    /// Cancel-safe.
    async fn finished(&mut self) -> Result<(), String> {
        match self {
            Work::Ffmpeg(f) => f.finished().await,
            Work::Copy(c) => c.finished().await,
        }
    }

    /// Kill ffmpeg's process group (or stop the copy) and wait until it let go of the files.
    async fn stop(&mut self) {
        match self {
            Work::Ffmpeg(f) => f.kill().await,
            Work::Copy(c) => c.stop().await,
        }
    }
}

/// How the encoder run ended.
enum Outcome {
    Done(Result<(), String>),
    Cancel,
    Stale(String),
    Shutdown,
}

/// Run one claimed attempt to its completion. Never panics on bad input: anything wrong with
/// the job becomes a FAILURE with a message.
/// `encoder_free` is signalled once no encoder runs for this job any more, so the slot can
/// take its next message while this one is probed and completed.
pub(crate) async fn run(
    ctx: &Arc<Ctx>,
    job: &TransformJob,
    lease_secs: u64,
    encoder_free: oneshot::Sender<()>,
) {
    let task = job.task_id;
    let attempt = job.attempt;
    let work_dir = ctx.config.storage_root.join(tmp_dir(task, attempt));
    tracing::info!(
        %task, attempt, profile = %job.profile_title, encoder = %job.encoder_name,
        input = %job.media_in_uri, filename = %job.filename, "job started"
    );
    let mut work = match start(ctx, job, &work_dir).await {
        Ok(work) => work,
        Err(message) => {
            remove_dir(&work_dir).await;
            finish(
                ctx,
                job,
                &work_dir,
                TaskStatus::Failure,
                Some(message),
                None,
            )
            .await;
            return;
        }
    };
    // The reporter lives until the completion is answered, so the lease holds while the
    // output is probed and while a completion waits for an orchestra restart.
    let mut reporter =
        Reporter::spawn(ctx.link.clone(), task, attempt, lease_secs, work.progress());
    let outcome = tokio::select! {
        result = work.finished() => Outcome::Done(result),
        event = reporter.events.recv() => match event {
            Some(LeaseEvent::Cancel) => Outcome::Cancel,
            Some(LeaseEvent::Stale(message)) => Outcome::Stale(message),
            // The reporter never ends without an event; treat it as a lost lease.
            None => Outcome::Stale("the progress reporter ended".into()),
        },
        () = ctx.stopped() => Outcome::Shutdown,
    };
    match outcome {
        Outcome::Done(Ok(())) => {
            drop(work);
            let _ = encoder_free.send(());
            tracing::debug!(%task, attempt, "encoder finished");
            succeed(ctx, job, &work_dir).await;
        }
        Outcome::Done(Err(message)) => {
            drop(work);
            let _ = encoder_free.send(());
            tracing::warn!(%task, attempt, "job failed: {message}");
            remove_dir(&work_dir).await;
            finish(
                ctx,
                job,
                &work_dir,
                TaskStatus::Failure,
                Some(message),
                None,
            )
            .await;
        }
        Outcome::Cancel => {
            work.stop().await;
            remove_dir(&work_dir).await;
            tracing::info!(%task, attempt, "job revoked");
            finish(ctx, job, &work_dir, TaskStatus::Revoked, None, None).await;
        }
        Outcome::Stale(message) => {
            work.stop().await;
            remove_dir(&work_dir).await;
            tracing::warn!(%task, attempt, "attempt is stale, work dropped: {message}");
        }
        Outcome::Shutdown => {
            work.stop().await;
            remove_dir(&work_dir).await;
            tracing::info!(%task, attempt, "job stopped by shutdown; the orchestra re-queues it");
        }
    }
    drop(reporter);
}

/// Check the job, make a fresh work dir and start the encoder.
async fn start(ctx: &Ctx, job: &TransformJob, work_dir: &Path) -> Result<Work, String> {
    let input_rel = relative_path(&job.media_in_uri)
        .ok_or_else(|| format!("bad input path {:?}", job.media_in_uri))?;
    if !plain_file_name(&job.filename) {
        return Err(format!("bad output filename {:?}", job.filename));
    }
    // The root is absolute (made so at start): ffmpeg runs in the task dir.
    let input = ctx.config.storage_root.join(input_rel);
    // Validate before touching the disk: a bad profile fails with the validation message.
    let tokens = match job.encoder_name {
        EncoderName::Ffmpeg => {
            Some(validate_encoder_string(&job.encoder_string).map_err(|e| e.to_string())?)
        }
        EncoderName::Copy => None,
    };
    // A previous run of this very attempt (a unit killed mid-way) may have left files.
    remove_dir(work_dir).await;
    tokio::fs::create_dir_all(work_dir)
        .await
        .map_err(|e| format!("cannot create the work directory: {e}"))?;
    let output = work_dir.join(&job.filename);
    match tokens {
        Some(tokens) => {
            if !tokio::fs::try_exists(&input).await.unwrap_or(false) {
                return Err(format!("the input {} does not exist", job.media_in_uri));
            }
            let duration = match job.media_in_duration {
                Some(d) if d > 0.0 => Some(d),
                // An input registered without a duration: ask ffprobe, else 0 % until the end.
                _ => probe::probe_media(&input, ctx.config.sandbox)
                    .await
                    .ok()
                    .and_then(|p| p.duration()),
            };
            // ffmpeg reads its input (a package: the media dir with its segments) and
            // writes its task dir, nothing else.
            let readable = match OutputKind::of(&job.media_in_uri) {
                OutputKind::File => input.as_path(),
                OutputKind::Hls | OutputKind::Dash => input.parent().unwrap_or(&input),
            };
            let jail = Jail::new(FFMPEG)
                .and_then(|j| j.read(readable))
                .and_then(|j| j.work_dir(work_dir))
                .map_err(|e| format!("ffmpeg could not be run: {e}"))?;
            let args = ffmpeg_args(&input, &tokens, &output);
            let ffmpeg = Ffmpeg::spawn(&jail, ctx.config.sandbox, &args, duration)
                .await
                .map_err(|e| format!("ffmpeg could not be run: {e} (is ffmpeg installed?)"))?;
            tracing::debug!(task = %job.task_id, pgid = ffmpeg.pgid(), "ffmpeg started");
            Ok(Work::Ffmpeg(Box::new(ffmpeg)))
        }
        None => Ok(Work::Copy(CopyWork::start(
            input,
            work_dir.to_path_buf(),
            job.filename.clone(),
        ))),
    }
}

/// The encoder succeeded: probe the output, complete SUCCESS. (A revoke that arrived
/// meanwhile is settled by the completion: the orchestra answers REVOKED and keeps nothing;
/// it also sets the progress to 100 %.)
async fn succeed(ctx: &Ctx, job: &TransformJob, work_dir: &Path) {
    let main = work_dir.join(&job.filename);
    let probe = match probe::probe_output(&main, ctx.config.sandbox).await {
        Ok(probe) => probe,
        Err(e) => {
            remove_dir(work_dir).await;
            let message = format!("the output is unreadable: {e}");
            finish(ctx, job, work_dir, TaskStatus::Failure, Some(message), None).await;
            return;
        }
    };
    let root = work_dir.to_path_buf();
    let size = match tokio::task::spawn_blocking(move || dir_size(&root)).await {
        Ok(Ok(size)) => size,
        Ok(Err(e)) => {
            remove_dir(work_dir).await;
            let message = format!("the output could not be measured: {e}");
            finish(ctx, job, work_dir, TaskStatus::Failure, Some(message), None).await;
            return;
        }
        Err(e) => {
            remove_dir(work_dir).await;
            let message = format!("the output could not be measured: {e}");
            finish(ctx, job, work_dir, TaskStatus::Failure, Some(message), None).await;
            return;
        }
    };
    let output = TransformOutput { size, probe };
    finish(ctx, job, work_dir, TaskStatus::Success, None, Some(output)).await;
}

/// Complete the attempt and clean up whatever the orchestra did not take.
async fn finish(
    ctx: &Ctx,
    job: &TransformJob,
    work_dir: &Path,
    status: TaskStatus,
    error: Option<String>,
    output: Option<TransformOutput>,
) {
    let (task, attempt) = (job.task_id, job.attempt);
    let request = CompleteRequest {
        unit_id: ctx.config.unit_id.clone(),
        attempt,
        status,
        error: error.map(|e| hide_root(&e, &ctx.config.storage_root)),
        output,
        publish_uri: None,
    };
    match unit::complete(&ctx.link, task, &request).await {
        Completion::Answered(answer) => {
            tracing::info!(%task, attempt, asked = %status, status = %answer.status, "job completed");
            // Only an accepted SUCCESS moves the work dir into the media; anything else
            // leaves it to us.
            if !(status == TaskStatus::Success && answer.status == TaskStatus::Success) {
                remove_dir(work_dir).await;
            }
        }
        Completion::Stale(message) => {
            tracing::warn!(%task, attempt, "completion refused as stale: {message}");
            remove_dir(work_dir).await;
        }
        Completion::Refused(..) | Completion::Stopped => {
            remove_dir(work_dir).await;
        }
    }
}

async fn remove_dir(dir: &Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), "could not remove the work dir: {e}"),
    }
}

/// A storage-relative path that stays inside the root, or None.
fn relative_path(uri: &str) -> Option<PathBuf> {
    let path = Path::new(uri);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// One file name: no directory part, not `.` or `..`, no NUL.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        assert_eq!(
            relative_path("medias/a/b.mp4"),
            Some(PathBuf::from("medias/a/b.mp4"))
        );
        assert_eq!(
            relative_path("./uploads/x"),
            Some(PathBuf::from("uploads/x"))
        );
        assert_eq!(relative_path("/etc/passwd"), None);
        assert_eq!(relative_path("medias/../../etc"), None);
        assert_eq!(relative_path(""), None);
        assert!(plain_file_name("out.mp4"));
        assert!(plain_file_name("index.m3u8"));
        assert!(!plain_file_name("../x"));
        assert!(!plain_file_name("a/b"));
        assert!(!plain_file_name(".."));
        assert!(!plain_file_name(""));
    }
}
