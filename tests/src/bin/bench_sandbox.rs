//! What the sandbox costs each ffmpeg and ffprobe run (issue 9): the orchestra's own probe
//! (`probe::probe`) and an encode through a `Jail`, confined (`SandboxMode::On`: Landlock,
//! seccomp, capabilities dropped) and not (`Off`: the same clean environment, working
//! directory and rlimits), alternated so machine noise falls on both alike.
//!
//! `cargo run --release -p oscied-e2e --bin bench-sandbox` (`BENCH_ROUNDS`, default 30).

use std::path::Path;
use std::time::{Duration, Instant};

use oscied_protocol::probe;
use oscied_protocol::sandbox::{self, Jail, SandboxMode};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One measured run.
enum Run<'a> {
    /// The probe every upload gets.
    Probe(&'a Path),
    /// ffmpeg with these arguments in this jail.
    Encode(&'a Jail, &'a [&'a str]),
}

impl Run<'_> {
    async fn timed(&self, mode: SandboxMode) -> Duration {
        let started = Instant::now();
        match self {
            Run::Probe(path) => {
                probe::probe(path, mode).await.expect("the clip probes");
            }
            Run::Encode(jail, args) => {
                let output = jail
                    .command(mode)
                    .expect("sandboxed command")
                    .args(*args)
                    .output()
                    .await
                    .expect("ffmpeg runs");
                assert!(
                    output.status.success(),
                    "{args:?} failed ({mode}): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        started.elapsed()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    sandbox::check(SandboxMode::On).expect("the kernel has Landlock and seccomp");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = std::path::absolute(dir.path().join("clip.mp4")).expect("absolute path");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25:duration=2")
        .args(["-f", "lavfi", "-i", "sine=duration=2"])
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&input)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "making the clip failed");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let input_arg = format!("file:{}", input.display());
    let output_arg = format!("file:{}", Path::new(&work).join("out.mp4").display());

    let encode = Jail::new("ffmpeg")
        .and_then(|j| j.read(&input))
        .and_then(|j| j.work_dir(&work))
        .expect("ffmpeg jail");
    let encode_args = [
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-i",
        input_arg.as_str(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        output_arg.as_str(),
    ];

    for (name, run, n) in [
        ("ffprobe of a 2 s MP4", Run::Probe(&input), rounds),
        (
            "ffmpeg, 2 s 320x240 to x264 ultrafast",
            Run::Encode(&encode, &encode_args),
            rounds / 3 + 1,
        ),
    ] {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        // One warm-up each, then alternate.
        run.timed(SandboxMode::On).await;
        run.timed(SandboxMode::Off).await;
        for _ in 0..n {
            on.push(run.timed(SandboxMode::On).await);
            off.push(run.timed(SandboxMode::Off).await);
        }
        let (on, off) = (median(on), median(off));
        println!(
            "{name}: median of {n}: sandbox on {}, off {}, difference {}",
            ms(on),
            ms(off),
            ms(on.saturating_sub(off))
        );
    }
}
