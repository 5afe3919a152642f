//! The encoders against real ffmpeg, on clips made with lavfi.

use std::path::Path;
use std::time::{Duration, Instant};

use oscied_e2e::media::clip;
use oscied_protocol::encoder::{ffmpeg_args, validate_encoder_string};
use oscied_protocol::sandbox::{Jail, SandboxMode};
use worker_transform::copy::CopyWork;
use worker_transform::ffmpeg::{self, Ffmpeg};

async fn start(input: &Path, encoder_string: &str, output: &Path, duration: f64) -> Ffmpeg {
    let tokens = validate_encoder_string(encoder_string).expect("valid encoder string");
    // As the unit runs it: reading its input, writing in the output's dir only.
    let jail = Jail::new(ffmpeg::FFMPEG)
        .and_then(|j| j.read(input))
        .and_then(|j| j.work_dir(output.parent().unwrap()))
        .expect("jail");
    let args = ffmpeg_args(input, &tokens, output).expect("absolute paths");
    Ffmpeg::spawn(&jail, SandboxMode::On, &args, Some(duration))
        .await
        .expect("spawn ffmpeg")
}

/// True while any process of the group exists.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[tokio::test]
async fn progress_increases_and_reaches_100() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3, 320, 240);
    let output = dir.path().join("out.mp4");
    // `realtime` paces the encode at 1x, so ffmpeg prints several progress blocks.
    let mut ff = start(
        &input,
        "-vf realtime -c:v libx264 -preset ultrafast -c:a aac -stats_period 0.2",
        &output,
        3.0,
    )
    .await;
    let mut rx = ff.progress();
    let mut seen = Vec::new();
    let result = loop {
        tokio::select! {
            result = ff.finished() => break result,
            changed = rx.changed() => {
                if changed.is_ok() && let Some(report) = rx.borrow_and_update().clone() {
                    seen.push(report);
                }
            }
        }
    };
    assert_eq!(result, Ok(()));
    if let Some(last) = rx.borrow().clone()
        && seen.last() != Some(&last)
    {
        seen.push(last);
    }
    let percents: Vec<f64> = seen.iter().map(|r| r.percent).collect();
    assert!(percents.len() >= 3, "{percents:?}");
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "not increasing: {percents:?}"
    );
    assert!(
        percents.iter().any(|p| *p > 10.0 && *p < 90.0),
        "no midway report: {percents:?}"
    );
    assert_eq!(percents.last(), Some(&100.0));
    let mid = seen
        .iter()
        .find(|r| r.percent > 10.0 && r.percent < 90.0)
        .unwrap();
    assert!(mid.frame.unwrap_or(0) > 0, "{mid:?}");
    assert!(mid.out_time.unwrap_or(0.0) > 0.0, "{mid:?}");
    assert!(mid.eta.is_some(), "{mid:?}");
    assert!(mid.elapsed > 0.0, "{mid:?}");
    assert!(output.is_file());
}

#[tokio::test]
async fn an_impossible_encoding_fails_with_ffmpeg_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 1, 160, 120);
    let output = dir.path().join("out.mp4");
    // Valid for the allow-list (an unknown codec no longer is), impossible for libx264.
    let mut ff = start(
        &input,
        "-c:v libx264 -profile:v baseline -pix_fmt yuv444p",
        &output,
        1.0,
    )
    .await;
    let error = ff.finished().await.expect_err("must fail");
    assert!(
        error.contains("baseline profile doesn't support 4:4:4"),
        "{error}"
    );
    assert!(error.contains("exited with status"), "{error}");
    assert!(!error.contains("configuration:"), "{error}");
    assert!(error.len() <= 4200, "{}", error.len());
}

#[tokio::test]
async fn cancel_kills_the_process_group_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 20, 160, 120);
    let output = dir.path().join("out.mp4");
    let mut ff = start(
        &input,
        "-vf realtime -c:v libx264 -preset ultrafast",
        &output,
        20.0,
    )
    .await;
    let pgid = ff.pgid();
    // SAFETY: plain syscall.
    assert_eq!(
        unsafe { libc::getpgid(pgid) },
        pgid,
        "ffmpeg leads its own group"
    );
    // Wait until it really works.
    let mut rx = ff.progress();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a progress block")
        .unwrap();
    assert!(group_alive(pgid));
    let started = Instant::now();
    ff.kill().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!group_alive(pgid), "the process group survived");
    // After a kill, finished() reports the signal rather than hanging.
    let error = ff.finished().await.expect_err("killed");
    assert!(error.contains("signal 9"), "{error}");
}

#[tokio::test]
async fn version_reads_the_first_line() {
    let version = ffmpeg::version().await.expect("ffmpeg installed");
    assert!(version.starts_with("ffmpeg version"), "{version}");
}

#[tokio::test]
async fn copy_copies_the_media_dir_and_renames_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("medias/m1");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    std::fs::write(media.join("index.m3u8"), b"#EXTM3U\nseg0.ts\n").unwrap();
    std::fs::write(media.join("seg0.ts"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(media.join("sub/extra.txt"), b"x").unwrap();
    let work = dir.path().join("tmp/t/1");
    std::fs::create_dir_all(&work).unwrap();
    let mut copy = CopyWork::start(media.join("index.m3u8"), work.clone(), "out.m3u8".into());
    let rx = copy.progress();
    copy.finished().await.expect("copied");
    assert_eq!(
        std::fs::read(work.join("out.m3u8")).unwrap(),
        b"#EXTM3U\nseg0.ts\n"
    );
    assert!(!work.join("index.m3u8").exists());
    assert_eq!(
        std::fs::metadata(work.join("seg0.ts")).unwrap().len(),
        3 << 20
    );
    assert_eq!(std::fs::read(work.join("sub/extra.txt")).unwrap(), b"x");
    assert_eq!(rx.borrow().as_ref().map(|r| r.percent), Some(100.0));
    // The source is untouched.
    assert!(media.join("index.m3u8").is_file());
}

#[tokio::test]
async fn copy_of_a_missing_input_fails() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut copy = CopyWork::start(dir.path().join("nope/in.mp4"), work, "out.mp4".into());
    let error = copy.finished().await.expect_err("missing input");
    assert!(error.contains("copy failed"), "{error}");
}

/// Dead: gone, or a zombie waiting for its new parent to reap it.
fn process_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the `(comm)` field.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

const HELPER_INPUT: &str = "OSCIED_TEST_FFMPEG_HELPER_INPUT";

/// Not a test: the process `sigkill_of_the_unit_takes_ffmpeg_along` kills.
#[tokio::test]
#[ignore = "helper process for sigkill_of_the_unit_takes_ffmpeg_along"]
async fn helper_spawns_ffmpeg_and_waits() {
    let Some(input) = std::env::var_os(HELPER_INPUT) else {
        return;
    };
    let input = std::path::PathBuf::from(input);
    let output = input.with_file_name("out.mp4");
    // Rare progress writes: a dead reader's SIGPIPE must not be what kills ffmpeg here.
    let ff = start(
        &input,
        "-vf realtime -c:v libx264 -preset ultrafast -stats_period 20",
        &output,
        30.0,
    )
    .await;
    println!("PGID={}", ff.pgid());
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(ff);
}

#[test]
fn sigkill_of_the_unit_takes_ffmpeg_along() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 30, 160, 120);
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_spawns_ffmpeg_and_waits",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_INPUT, &input)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let pgid: i32 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("PGID=").and_then(|n| n.parse().ok()))
        .expect("the helper started ffmpeg");
    // Past its start-up output: from now on ffmpeg writes nothing for a while, so only the
    // parent-death signal can end it within the second below.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!process_dead(pgid), "ffmpeg runs");
    helper.kill().unwrap();
    helper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while !process_dead(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(process_dead(pgid), "ffmpeg outlived the SIGKILLed unit");
}
