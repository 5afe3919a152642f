//! The transform unit's [`JobHandler`]: one attempt at one transform task, after the claim.
//! Prepare the work dir, run the encoder while its progress is reported and it is held to the
//! task limits, then probe the output for a SUCCESS; the runtime completes and cleans up
//! ([`oscied_protocol::unit::runtime`]).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oscied_protocol::encoder::{EncoderName, OutputKind, ffmpeg_args, validate_encoder_string};
use oscied_protocol::filename::check_output_filename;
use oscied_protocol::job::tmp_dir;
use oscied_protocol::node::{TransformOutput, UnitKind};
use oscied_protocol::sandbox::{Jail, SandboxMode};
use oscied_protocol::unit::metrics::UnitMetrics;
use oscied_protocol::unit::{
    Attempt, Interrupted, JobHandler, Output, Ran, Services, Unit, UnitError, hide_root,
};
use oscied_protocol::{ProgressReport, TransformJob, probe};
use tokio::sync::watch;

use crate::TaskLimits;
use crate::copy::{CopyWork, dir_size};
use crate::ffmpeg::{self, FFMPEG, Ffmpeg};

/// The transform unit's handler: what it needs besides the runtime.
pub(crate) struct Transform {
    /// Absolute (ffmpeg runs in the task dir).
    pub storage_root: PathBuf,
    /// Whether ffmpeg and ffprobe run in [`oscied_protocol::sandbox`].
    pub sandbox: SandboxMode,
    pub limits: TaskLimits,
}

impl Transform {
    fn work_dir(&self, job: &TransformJob) -> PathBuf {
        self.storage_root.join(tmp_dir(job.task_id, job.attempt))
    }
}

impl JobHandler for Transform {
    type Job = TransformJob;
    const KIND: UnitKind = UnitKind::Transform;

    async fn start(self: Arc<Self>, unit: Arc<Unit>) -> Result<Services, UnitError> {
        tracing::info!(
            unit_id = %unit.spec.unit_id,
            queues = %oscied_protocol::unit::log::List(&unit.spec.queues),
            concurrency = unit.spec.concurrency,
            storage_root = %self.storage_root.display(),
            broker = unit.broker.kind(),
            sandbox = %self.sandbox,
            max_output_bytes = self.limits.max_output_bytes,
            "transform unit started"
        );
        Ok(Services::default())
    }

    async fn ffmpeg_version(&self) -> Option<String> {
        let version = ffmpeg::version().await;
        if version.is_none() {
            tracing::warn!("`ffmpeg -version` failed: is ffmpeg installed and on PATH?");
        }
        version
    }

    async fn run(&self, job: &TransformJob, attempt: &mut Attempt) -> Ran {
        match self.transform(job, attempt).await {
            // Messages name files relative to the storage root, as the API does.
            Ran::Failure(message) => Ran::Failure(hide_root(&message, &self.storage_root)),
            ran => ran,
        }
    }

    /// The work dir: only an accepted SUCCESS moves it into the media; anything else leaves
    /// it to the unit.
    async fn discard(&self, _unit: &Unit, job: &TransformJob) {
        remove_dir(&self.work_dir(job)).await;
    }
}

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

    /// The signal that ended ffmpeg, once it ended (SIGXFSZ: a file outgrew its rlimit).
    fn signal(&self) -> Option<i32> {
        match self {
            Work::Ffmpeg(f) => f.signal(),
            Work::Copy(_) => None,
        }
    }

    /// The CPU time ffmpeg took, once it ended, into the CPU-seconds histogram.
    fn count_cpu(&self, metrics: &UnitMetrics) {
        if let Work::Ffmpeg(f) = self
            && let Some(seconds) = f.cpu_seconds()
        {
            metrics.task_cpu(seconds);
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
    Done,
    /// The encoder failed, or a task limit was exceeded (the message names it).
    Failed(String),
    Stopped(Interrupted),
}

impl Transform {
    /// Run one claimed attempt until its output is probed. Never panics on bad input:
    /// anything wrong with the job becomes a FAILURE with a message. The slot is freed once no
    /// encoder runs for this job any more, so it takes its next job while this one is probed
    /// and completed.
    async fn transform(&self, job: &TransformJob, attempt: &mut Attempt) -> Ran {
        let (task, attempt_no) = (job.task_id, job.attempt);
        let work_dir = self.work_dir(job);
        tracing::info!(
            %task, attempt = attempt_no, profile = %job.profile_title, encoder = %job.encoder_name,
            input = %job.media_in_uri, filename = %job.filename, "job started"
        );
        let (mut work, bounds) = match self.prepare(job, &work_dir).await {
            Ok(started) => started,
            Err(message) => return Ran::Failure(message),
        };
        attempt.follow(work.progress());
        let metrics = attempt.unit().metrics.clone();
        let counted = matches!(work, Work::Ffmpeg(_)).then(|| metrics.ffmpeg_running());
        let outcome = tokio::select! {
            result = work.finished() => match result {
                Ok(()) => Outcome::Done,
                Err(message) => Outcome::Failed(message),
            },
            message = watch(&work_dir, &bounds) => Outcome::Failed(message),
            stopped = attempt.interrupted() => Outcome::Stopped(stopped),
        };
        match outcome {
            Outcome::Done => {
                work.count_cpu(&metrics);
                drop((work, counted));
                attempt.free_slot();
                tracing::debug!(%task, attempt = attempt_no, "encoder finished");
                let ran = self.succeed(job, &work_dir, &bounds).await;
                if let Ran::Success(Output {
                    output: Some(output),
                    ..
                }) = &ran
                {
                    metrics.bytes_written(output.size);
                }
                ran
            }
            Outcome::Failed(message) => {
                // Past RLIMIT_FSIZE (a file larger than the whole output may be) or RLIMIT_CPU.
                let message = match work.signal() {
                    Some(libc::SIGXFSZ) => bounds.size_message(None),
                    Some(libc::SIGXCPU) => bounds.cpu_message(),
                    _ => message,
                };
                // The whole process group; the files go with the attempt's discard.
                work.stop().await;
                work.count_cpu(&metrics);
                drop((work, counted));
                attempt.free_slot();
                Ran::Failure(message)
            }
            Outcome::Stopped(stopped) => {
                work.stop().await;
                drop(counted);
                Ran::Stopped(stopped)
            }
        }
    }
}

/// What this task may take: the configured limits, the wall clock derived from the input's
/// duration when `OSCIED_TASK_MAX_SECS` is unset.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_secs: u64,
    /// The input duration the wall clock was derived from (None: configured).
    derived_from: Option<f64>,
    max_bytes: u64,
    cores: u64,
}

/// The wall clock with `OSCIED_TASK_MAX_SECS` unset: max(10 min, 20 × the input's duration).
const MIN_DERIVED_SECS: u64 = 600;
const DURATION_FACTOR: f64 = 20.0;

impl Bounds {
    fn new(limits: &TaskLimits, duration: Option<f64>) -> Bounds {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let (max_secs, derived_from) = match limits.max_secs {
            Some(secs) => (secs, None),
            None => {
                let d = duration
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .unwrap_or(0.0);
                let secs = ((d * DURATION_FACTOR).ceil() as u64).max(MIN_DERIVED_SECS);
                (secs, Some(d))
            }
        };
        Bounds {
            max_secs,
            derived_from,
            max_bytes: limits.max_output_bytes,
            cores,
        }
    }

    /// The CPU-time backstop: every core busy for the whole wall clock.
    fn cpu_secs(&self) -> u64 {
        self.max_secs.saturating_mul(self.cores)
    }

    fn secs_setting(&self) -> String {
        match self.derived_from {
            None => format!("OSCIED_TASK_MAX_SECS={}", self.max_secs),
            Some(d) => format!(
                "OSCIED_TASK_MAX_SECS unset: {} s = max({MIN_DERIVED_SECS} s, 20 × the input's {d:.1} s)",
                self.max_secs
            ),
        }
    }

    fn time_message(&self) -> String {
        format!(
            "the task exceeded its wall-clock limit of {} s ({}) and was stopped",
            self.max_secs,
            self.secs_setting()
        )
    }

    fn cpu_message(&self) -> String {
        format!(
            "ffmpeg exceeded its CPU-time limit of {} s ({} × {} cores; {})",
            self.cpu_secs(),
            self.max_secs,
            self.cores,
            self.secs_setting()
        )
    }

    fn size_message(&self, size: Option<u64>) -> String {
        let held = size.map_or_else(String::new, |s| format!("; it held {s} bytes"));
        format!(
            "the task's output exceeded its size limit of {} bytes (OSCIED_MAX_OUTPUT_BYTES={}){held} and was stopped",
            self.max_bytes, self.max_bytes
        )
    }
}

/// Resolves with the message of the first limit the running task exceeds: the wall clock,
/// or the size of its whole work dir (HLS and DASH write many files), checked every second.
async fn watch(work_dir: &Path, bounds: &Bounds) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(bounds.max_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return bounds.time_message(),
            _ = tick.tick() => {
                let dir = work_dir.to_path_buf();
                // A file removed while the dir is walked (HLS deletes segments) errs: skip
                // this tick, the next one sees the dir again.
                if let Ok(Ok(size)) = tokio::task::spawn_blocking(move || dir_size(&dir)).await
                    && size > bounds.max_bytes
                {
                    return bounds.size_message(Some(size));
                }
            }
        }
    }
}

impl Transform {
    /// Check the job, make a fresh work dir and start the encoder.
    async fn prepare(&self, job: &TransformJob, work_dir: &Path) -> Result<(Work, Bounds), String> {
        let input_rel = relative_path(&job.media_in_uri)
            .ok_or_else(|| format!("bad input path {:?}", job.media_in_uri))?;
        // The orchestra checked it at creation; a message may come from elsewhere.
        check_output_filename(&job.filename, job.encoder_name)?;
        // The root is absolute (made so at start): ffmpeg runs in the task dir.
        let input = self.storage_root.join(input_rel);
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
                    _ => probe::probe_media(&input, self.sandbox)
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
                let bounds = Bounds::new(&self.limits, duration);
                let jail = Jail::new(FFMPEG)
                    .and_then(|j| j.read(readable))
                    .and_then(|j| j.work_dir(work_dir))
                    .map_err(|e| format!("ffmpeg could not be run: {e}"))?
                    .cpu_secs(bounds.cpu_secs())
                    .max_file_bytes(bounds.max_bytes);
                let args = ffmpeg_args(&input, &tokens, &output)
                    .map_err(|e| format!("cannot make the input and output paths absolute: {e}"))?;
                let ffmpeg = Ffmpeg::spawn(&jail, self.sandbox, &args, duration)
                    .await
                    .map_err(|e| format!("ffmpeg could not be run: {e} (is ffmpeg installed?)"))?;
                tracing::debug!(task = %job.task_id, pgid = ffmpeg.pgid(), "ffmpeg started");
                Ok((Work::Ffmpeg(Box::new(ffmpeg)), bounds))
            }
            None => {
                let bounds = Bounds::new(&self.limits, job.media_in_duration);
                // A media larger than the limit fails at once rather than after a partial copy.
                if let Some(source) = input.parent().map(Path::to_path_buf) {
                    let size = tokio::task::spawn_blocking(move || dir_size(&source)).await;
                    if let Ok(Ok(size)) = size
                        && size > bounds.max_bytes
                    {
                        return Err(bounds.size_message(Some(size)));
                    }
                }
                let copy = CopyWork::start(input, work_dir.to_path_buf(), job.filename.clone());
                Ok((Work::Copy(copy), bounds))
            }
        }
    }

    /// The encoder succeeded: probe the output for a SUCCESS. (A revoke that arrived
    /// meanwhile is settled by the completion: the orchestra answers REVOKED and keeps
    /// nothing; it also sets the progress to 100 %.)
    async fn succeed(&self, job: &TransformJob, work_dir: &Path, bounds: &Bounds) -> Ran {
        let main = work_dir.join(&job.filename);
        let probe = match probe::probe_output(&main, self.sandbox).await {
            Ok(probe) => probe,
            Err(e) => return Ran::Failure(format!("the output is unreadable: {e}")),
        };
        let root = work_dir.to_path_buf();
        let size = match tokio::task::spawn_blocking(move || dir_size(&root)).await {
            Ok(Ok(size)) => size,
            Ok(Err(e)) => return Ran::Failure(format!("the output could not be measured: {e}")),
            Err(e) => return Ran::Failure(format!("the output could not be measured: {e}")),
        };
        // Grown past the limit between the last check and the end.
        if size > bounds.max_bytes {
            return Ran::Failure(bounds.size_message(Some(size)));
        }
        Ran::Success(Output {
            output: Some(TransformOutput { size, probe }),
            publish_uri: None,
        })
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
    }
}
