//! The whole unit (slots, claim, progress, completion, heartbeat) against a fake node API and
//! the in-process broker. The real orchestra's end-to-end tests live in `tests/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oscied_e2e::media::clip;
use oscied_protocol::broker::{Broker, MemoryBroker};
use oscied_protocol::encoder::EncoderName;
use oscied_protocol::job::tmp_dir;
use oscied_protocol::node::{CompleteRequest, UnitKind};
use oscied_protocol::unit::testing::{Call, Fake, FakeNode};
use oscied_protocol::{TaskStatus, TransformJob};
use tokio::sync::oneshot;
use uuid::Uuid;
use worker_transform::{TaskLimits, TransformUnit, UnitConfig};

struct Harness {
    node: FakeNode,
    broker: Arc<MemoryBroker>,
    root: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    unit: tokio::task::JoinHandle<Result<(), oscied_protocol::unit::UnitError>>,
}

impl Harness {
    async fn start(fake: Fake) -> Harness {
        Harness::start_with(fake, |_| {}).await
    }

    async fn start_with(fake: Fake, tweak: impl FnOnce(&mut UnitConfig)) -> Harness {
        let node = FakeNode::start(fake).await;
        let root = tempfile::tempdir().unwrap();
        let broker = Arc::new(MemoryBroker::new());
        let client = node.client();
        let mut config = UnitConfig::new(root.path().to_path_buf());
        config.unit_id = "unit-1".into();
        config.heartbeat_secs = 1;
        tweak(&mut config);
        let unit = TransformUnit::new(config, broker.clone(), client);
        let (stop, stopped) = oneshot::channel::<()>();
        let unit = tokio::spawn(unit.run(async {
            let _ = stopped.await;
        }));
        Harness {
            node,
            broker,
            root,
            stop: Some(stop),
            unit,
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// A clip at `medias/<id>/in.mp4` and a job on it.
    fn job(
        &self,
        encoder: EncoderName,
        encoder_string: &str,
        filename: &str,
        secs: u32,
    ) -> TransformJob {
        let media = Uuid::new_v4();
        let dir = self.root().join(format!("medias/{media}"));
        std::fs::create_dir_all(&dir).unwrap();
        clip(&dir, "in.mp4", secs, 160, 120);
        TransformJob {
            task_id: Uuid::new_v4(),
            attempt: 1,
            media_in_uri: format!("medias/{media}/in.mp4"),
            media_in_duration: Some(f64::from(secs)),
            media_out_id: Uuid::new_v4(),
            filename: filename.into(),
            profile_title: "test".into(),
            encoder_name: encoder,
            encoder_string: encoder_string.into(),
        }
    }

    async fn publish(&self, job: &TransformJob) {
        let payload = serde_json::to_vec(job).unwrap();
        self.broker.publish("transform", &payload, 0).await.unwrap();
    }

    fn work_dir(&self, job: &TransformJob) -> PathBuf {
        self.root().join(tmp_dir(job.task_id, job.attempt))
    }

    /// Wait (at most `secs`) until the fake saw what `done` looks for.
    async fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&Fake) -> bool) {
        self.node.wait_for(secs, what, done).await;
    }

    fn completes(&self) -> Vec<Call<CompleteRequest>> {
        self.node.completes()
    }

    async fn queued(&self) -> u64 {
        self.broker.queue_stats("transform").await.unwrap().messages
    }

    async fn stop(mut self) -> Self {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.unit)
            .await
            .expect("the unit stops")
            .unwrap()
            .expect("the unit ends without failure");
        self
    }
}

#[tokio::test]
async fn runs_an_ffmpeg_job_to_success() {
    let h = Harness::start(Fake::default()).await;
    let job = h.job(
        EncoderName::Ffmpeg,
        "-c:v libx264 -preset ultrafast -c:a aac",
        "out.mp4",
        2,
    );
    h.publish(&job).await;
    h.wait_for(30, "the completion", |f| !f.completes.is_empty())
        .await;
    let done = &h.completes()[0];
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.error);
    assert_eq!(done.unit_id, "unit-1");
    assert_eq!(done.attempt, 1);
    let output = done.output.as_ref().expect("output");
    assert_eq!(output.probe.video().and_then(|v| v.width), Some(160));
    assert!(output.probe.audio().is_some());
    let out_file = h.work_dir(&job).join("out.mp4");
    // Left in place: the orchestra moves it into the media.
    assert!(out_file.is_file());
    assert_eq!(output.size, std::fs::metadata(&out_file).unwrap().len());
    {
        let f = h.node.lock();
        assert_eq!(f.claims.len(), 1);
        assert_eq!(f.claims[0].task, job.task_id);
        // Reports stay within 0–100 % (the orchestra itself sets 100 % on SUCCESS).
        for report in f.progress.iter().filter_map(|p| p.progress.as_ref()) {
            assert!((0.0..=100.0).contains(&report.percent), "{report:?}");
        }
        let beat = f.heartbeats.first().expect("a heartbeat");
        assert_eq!(beat.kind, UnitKind::Transform);
        assert_eq!(beat.queues, vec!["transform"]);
        assert!(
            beat.ffmpeg_version
                .as_deref()
                .unwrap_or("")
                .starts_with("ffmpeg version")
        );
    }
    assert_eq!(h.queued().await, 0, "acked");
    h.stop().await;
}

#[tokio::test]
async fn runs_a_copy_job() {
    let h = Harness::start(Fake::default()).await;
    let job = h.job(EncoderName::Copy, "", "copy.mp4", 1);
    h.publish(&job).await;
    h.wait_for(30, "the completion", |f| !f.completes.is_empty())
        .await;
    let done = &h.completes()[0];
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.error);
    assert!(h.work_dir(&job).join("copy.mp4").is_file());
    assert!(!h.work_dir(&job).join("in.mp4").exists());
    h.stop().await;
}

#[tokio::test]
async fn ffmpeg_errors_and_invalid_profiles_fail_the_task() {
    let h = Harness::start(Fake::default()).await;
    // Valid for the allow-list, impossible for libx264: ffmpeg itself fails at run time.
    let bogus = h.job(
        EncoderName::Ffmpeg,
        "-c:v libx264 -profile:v baseline -pix_fmt yuv444p",
        "out.mp4",
        1,
    );
    let invalid = h.job(EncoderName::Ffmpeg, "-i /etc/passwd", "out.mp4", 1);
    h.publish(&bogus).await;
    h.publish(&invalid).await;
    h.wait_for(30, "two completions", |f| f.completes.len() == 2)
        .await;
    let completes = h.completes();
    for done in &completes {
        assert_eq!(done.status, TaskStatus::Failure);
    }
    let errors: Vec<&str> = completes
        .iter()
        .filter_map(|c| c.error.as_deref())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("baseline") && e.contains("exited with status")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("-i")), "{errors:?}");
    let root = h.root().to_string_lossy().into_owned();
    assert!(errors.iter().all(|e| !e.contains(&root)), "{errors:?}");
    assert!(!h.work_dir(&bogus).exists());
    assert!(!h.work_dir(&invalid).exists());
    h.stop().await;
}

/// The task filename of issue 9's attack: the tee muxer would send the output to a loopback
/// listener. The unit checks the filename rule itself (the message may not come from an
/// orchestra that did), fails the task and runs nothing.
#[tokio::test]
async fn a_filename_ffmpeg_would_read_as_a_protocol_fails_the_task() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = Harness::start(Fake::default()).await;
    let job = h.job(
        EncoderName::Ffmpeg,
        "-map 0:a -c:a pcm_s16le -f tee",
        &format!("a.wav|[f=s16le]tcp:127.0.0.1:{port}"),
        1,
    );
    h.publish(&job).await;
    h.wait_for(30, "the completion", |f| !f.completes.is_empty())
        .await;
    let done = &h.completes()[0];
    assert_eq!(done.status, TaskStatus::Failure);
    let error = done.error.as_deref().unwrap_or_default();
    assert!(error.contains("'|' is not allowed"), "{error}");
    assert!(
        listener.accept().is_err(),
        "nothing connected to the listener"
    );
    assert!(!h.work_dir(&job).exists());
    h.stop().await;
}

#[tokio::test]
async fn cancel_revokes_and_cleans_up() {
    let h = Harness::start(Fake {
        cancel_on_progress: true,
        ..Fake::default()
    })
    .await;
    let job = h.job(
        EncoderName::Ffmpeg,
        "-vf realtime -c:v libx264 -preset ultrafast",
        "out.mp4",
        20,
    );
    h.publish(&job).await;
    h.wait_for(15, "the completion", |f| !f.completes.is_empty())
        .await;
    let done = &h.completes()[0];
    assert_eq!(done.status, TaskStatus::Revoked);
    assert!(!h.work_dir(&job).exists());
    h.stop().await;
}

#[tokio::test]
async fn stale_claims_are_acked_and_dropped() {
    let h = Harness::start(Fake {
        claim_stale: true,
        ..Fake::default()
    })
    .await;
    let job = h.job(EncoderName::Copy, "", "x.mp4", 1);
    h.publish(&job).await;
    h.wait_for(10, "the claim", |f| !f.claims.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.queued().await, 0, "acked");
    assert!(h.completes().is_empty());
    assert!(!h.work_dir(&job).exists());
    // Undecodable messages are dropped too.
    h.broker.publish("transform", b"not json", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.queued().await, 0);
    h.stop().await;
}

#[tokio::test]
async fn claims_and_completions_survive_an_unavailable_orchestra() {
    let h = Harness::start(Fake {
        claim_unavailable: 2,
        complete_unavailable: 2,
        ..Fake::default()
    })
    .await;
    let job = h.job(EncoderName::Copy, "", "x.mp4", 1);
    h.publish(&job).await;
    h.wait_for(30, "the completion", |f| !f.completes.is_empty())
        .await;
    assert_eq!(h.completes()[0].status, TaskStatus::Success);
    assert_eq!(h.node.lock().claims.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_kills_the_job_without_completing() {
    let h = Harness::start(Fake::default()).await;
    let job = h.job(
        EncoderName::Ffmpeg,
        "-vf realtime -c:v libx264 -preset ultrafast",
        "out.mp4",
        20,
    );
    h.publish(&job).await;
    h.wait_for(15, "a progress report", |f| {
        f.progress.iter().any(|p| p.progress.is_some())
    })
    .await;
    let beats = h.node.lock().heartbeats.clone();
    assert!(
        beats.iter().any(|b| b.running_tasks == vec![job.task_id]),
        "running task in a heartbeat"
    );
    let work_dir = h.work_dir(&job);
    assert!(work_dir.exists());
    let started = Instant::now();
    let h = h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!work_dir.exists());
    assert!(h.completes().is_empty());
    // Handed back, so the orchestra queues it again at once.
    let releases = h.node.lock().releases.clone();
    assert_eq!(releases.len(), 1, "{releases:?}");
    let release = &releases[0];
    assert_eq!((release.task, release.attempt), (job.task_id, 1));
    assert_eq!(release.unit_id, "unit-1");
}

/// Processes whose command line names `needle` (the task's work dir: its ffmpeg).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(text);
        }
    }
    found
}

/// A task limit ended the task: FAILURE naming the limit, no ffmpeg left, no files left.
async fn assert_stopped_at(h: &Harness, job: &TransformJob, variable: &str, value: &str) {
    let done = &h.completes()[0];
    assert_eq!(done.status, TaskStatus::Failure);
    let error = done.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(variable) && error.contains(value),
        "names {variable}={value}: {error}"
    );
    let work_dir = h.work_dir(job);
    let needle = work_dir.to_string_lossy().into_owned();
    assert!(processes_naming(&needle).is_empty(), "ffmpeg still runs");
    assert!(!work_dir.exists(), "the task dir is left");
}

/// Run one job on a unit with these limits until it completes, check a limit stopped it (see
/// [`assert_stopped_at`]), and return how long that took.
async fn stopped_by_limit(
    limits: TaskLimits,
    encoder: EncoderName,
    encoder_string: &str,
    filename: &str,
    input_secs: u32,
    variable: &str,
    value: &str,
) -> Duration {
    let h = Harness::start_with(Fake::default(), |c| c.limits = limits).await;
    let job = h.job(encoder, encoder_string, filename, input_secs);
    let started = Instant::now();
    h.publish(&job).await;
    h.wait_for(20, "the completion", |f| !f.completes.is_empty())
        .await;
    let elapsed = started.elapsed();
    assert_stopped_at(&h, &job, variable, value).await;
    h.stop().await;
    elapsed
}

fn max_output_bytes(bytes: u64) -> TaskLimits {
    TaskLimits {
        max_output_bytes: bytes,
        ..TaskLimits::default()
    }
}

#[tokio::test]
async fn the_wall_clock_limit_stops_a_task() {
    let limits = TaskLimits {
        max_secs: Some(2),
        ..TaskLimits::default()
    };
    // `realtime` paces 20 s of input at 1x: far past the limit.
    let elapsed = stopped_by_limit(
        limits,
        EncoderName::Ffmpeg,
        "-vf realtime -c:v libx264 -preset ultrafast",
        "out.mp4",
        20,
        "OSCIED_TASK_MAX_SECS",
        "2",
    )
    .await;
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn the_output_size_limit_counts_every_file_of_a_package() {
    // HLS: many segments, each under the limit, together over it.
    stopped_by_limit(
        max_output_bytes(300_000),
        EncoderName::Ffmpeg,
        "-vf realtime -c:v mpeg2video -q:v 1 -c:a aac -hls_time 1",
        "index.m3u8",
        20,
        "OSCIED_MAX_OUTPUT_BYTES",
        "300000",
    )
    .await;
}

#[tokio::test]
async fn one_file_past_the_size_limit_stops_ffmpeg_at_once() {
    // Uncompressed, unpaced: RLIMIT_FSIZE stops ffmpeg before the next check.
    stopped_by_limit(
        max_output_bytes(300_000),
        EncoderName::Ffmpeg,
        "-c:v rawvideo -c:a pcm_s16le",
        "out.avi",
        10,
        "OSCIED_MAX_OUTPUT_BYTES",
        "300000",
    )
    .await;
}

#[tokio::test]
async fn a_copy_larger_than_the_limit_fails() {
    stopped_by_limit(
        max_output_bytes(1000),
        EncoderName::Copy,
        "",
        "copy.mp4",
        1,
        "OSCIED_MAX_OUTPUT_BYTES",
        "1000",
    )
    .await;
}
