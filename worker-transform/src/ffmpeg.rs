//! Running ffmpeg: spawn it without a shell in its own process group and in its sandbox
//! ([`oscied_protocol::sandbox`]), read `-progress pipe:1` from its stdout, keep the tail of
//! its stderr, and kill the whole group on cancel.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oscied_protocol::ProgressReport;
use oscied_protocol::sandbox::{Jail, SandboxMode};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The program run; found on `PATH`.
pub const FFMPEG: &str = "ffmpeg";

/// How many meaningful stderr lines a failure message keeps, and how many bytes at most.
const TAIL_LINES: usize = 15;
const TAIL_BYTES: usize = 4096;
/// A single stderr line longer than this is cut (ffmpeg never prints such lines on purpose).
const LINE_BYTES: usize = 512;

/// `ffmpeg -version`'s first line, or None when ffmpeg cannot be run.
pub async fn version() -> Option<String> {
    oscied_protocol::probe::tool_version(FFMPEG).await
}

/// A running ffmpeg. Dropping it kills ffmpeg (the process itself; [`Ffmpeg::kill`] kills
/// the whole group and reaps it).
pub struct Ffmpeg {
    child: Child,
    pgid: i32,
    /// Set once the child was reaped; its pid (= the group id) may be reused after that, so
    /// the group is never signalled again.
    status: Option<ExitStatus>,
    progress: watch::Receiver<Option<ProgressReport>>,
    stdout_task: Option<JoinHandle<()>>,
    stderr_task: Option<JoinHandle<String>>,
    /// ffmpeg's CPU seconds, read by [`watch_cpu`] once it exited and before it is reaped.
    cpu_reading: Option<oneshot::Receiver<Option<f64>>>,
    cpu: Option<f64>,
}

impl Ffmpeg {
    /// Start `ffmpeg <args>` (the argv after the program name, from
    /// `oscied_protocol::encoder::ffmpeg_args`) in `jail` (an ffmpeg [`Jail`]: what it may
    /// read and write, its rlimits). `duration` is the input's length in seconds, to turn
    /// out_time into a percent.
    pub async fn spawn(
        jail: &Jail,
        sandbox: SandboxMode,
        args: &[OsString],
        duration: Option<f64>,
    ) -> io::Result<Ffmpeg> {
        let mut command = jail.command(sandbox).map_err(io::Error::other)?;
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a cancel can kill ffmpeg and anything it started at once.
            .process_group(0)
            .kill_on_drop(true);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit). It runs after the sandbox's
        // own step (prctl is not filtered).
        unsafe {
            command.pre_exec(move || {
                // The unit killed with SIGKILL cannot kill ffmpeg itself: have the kernel do
                // it when the unit dies.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = spawner::spawn(command).await?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("ffmpeg exited before it could be watched"))?;
        let pgid = i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
        let cpu_reading = watch_cpu(pid);
        let started = Instant::now();
        let (tx, progress) = watch::channel(None);
        let stdout_task = child.stdout.take().map(|out| {
            tokio::spawn(async move {
                read_progress(out, duration, started, tx).await;
            })
        });
        let stderr_task = child
            .stderr
            .take()
            .map(|err| tokio::spawn(async move { read_tail(err).await }));
        Ok(Ffmpeg {
            child,
            pgid,
            status: None,
            progress,
            stdout_task,
            stderr_task,
            cpu_reading,
            cpu: None,
        })
    }

    /// The CPU seconds (user + system) ffmpeg used, once [`Ffmpeg::exited`] saw it end; None
    /// before, or when it could not be read (ffmpeg killed and reaped at once).
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.cpu
    }

    /// The signal that killed ffmpeg, once it was reaped.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.and_then(|s| s.signal())
    }

    /// The process group id (= ffmpeg's pid).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The latest progress; `changed()` wakes on every new `-progress` block.
    pub fn progress(&self) -> watch::Receiver<Option<ProgressReport>> {
        self.progress.clone()
    }

    /// Wait until ffmpeg exits. Cancel-safe (usable in `select!`).
    pub async fn exited(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        // Reaping removes ffmpeg's /proc entry: its CPU time is read first.
        if let Some(reading) = self.cpu_reading.as_mut() {
            self.cpu = reading.await.ok().flatten();
            self.cpu_reading = None;
        }
        let status = self.child.wait().await?;
        self.status = Some(status);
        Ok(status)
    }

    /// Wait for ffmpeg's end and turn it into a result: Ok on exit status 0, else ffmpeg's own
    /// error lines and the exit status. Cancel-safe.
    pub async fn finished(&mut self) -> Result<(), String> {
        let status = self
            .exited()
            .await
            .map_err(|e| format!("waiting for ffmpeg failed: {e}"))?;
        // The pipes close when ffmpeg exits; the readers then have everything.
        if let Some(task) = self.stdout_task.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            self.stdout_task = None;
        }
        let tail = match self.stderr_task.as_mut() {
            Some(task) => {
                let tail = tokio::time::timeout(Duration::from_secs(2), task).await;
                self.stderr_task = None;
                match tail {
                    Ok(Ok(tail)) => tail,
                    _ => String::new(),
                }
            }
            None => String::new(),
        };
        if status.success() {
            return Ok(());
        }
        Err(failure_message(&tail, status))
    }

    /// Kill ffmpeg's whole process group with SIGKILL and reap ffmpeg, within a second.
    pub async fn kill(&mut self) {
        if self.status.is_none() {
            // SAFETY: plain syscall; the group exists as long as ffmpeg is not reaped (a
            // zombie keeps its group id), so this cannot hit an unrelated group.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
            match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
                Ok(Ok(status)) => self.status = Some(status),
                Ok(Err(e)) => tracing::warn!(pgid = self.pgid, "reaping ffmpeg failed: {e}"),
                Err(_) => tracing::warn!(pgid = self.pgid, "ffmpeg not reaped within a second"),
            }
        }
        if let Some(task) = self.stdout_task.take() {
            task.abort();
        }
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}

/// A thread that waits for `pid` to exit without reaping it (`waitid` with `WNOWAIT`), then
/// reads its CPU time from the zombie's `/proc` entry: the exact total, which no sampling of
/// a running process gives. Tokio reaps ffmpeg only after this answered ([`Ffmpeg::exited`]).
/// A plain thread, not the blocking pool: it waits as long as the encode lasts.
fn watch_cpu(pid: u32) -> Option<oneshot::Receiver<Option<f64>>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("oscied-ffmpeg-cpu".into())
        .spawn(move || {
            let id = libc::id_t::from(pid);
            // SAFETY: waitid writes only into the zeroed siginfo it is given.
            let waited = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT)
            };
            let seconds = (waited == 0)
                .then(|| oscied_protocol::unit::metrics::cpu_seconds(pid))
                .flatten();
            let _ = tx.send(seconds);
        });
    spawned.ok().map(|_| rx)
}

/// Spawns children from one thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process:
/// spawned from a Tokio thread that later ends (a blocking-pool thread, a worker turned
/// blocking by `block_in_place`, a runtime shut down while the process goes on), a healthy
/// ffmpeg would be killed. A dedicated, never-ending thread ties the signal to the process.
mod spawner {
    use std::io;
    use std::sync::OnceLock;
    use std::sync::mpsc;

    use tokio::process::{Child, Command};
    use tokio::runtime::Handle;
    use tokio::sync::oneshot;

    struct Request {
        command: Command,
        /// The caller's runtime, whose process driver will reap the child.
        runtime: Handle,
        reply: oneshot::Sender<io::Result<Child>>,
    }

    static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();

    fn start() -> Option<mpsc::Sender<Request>> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("oscied-spawner".into())
            .spawn(move || {
                while let Ok(mut request) = rx.recv() {
                    let _runtime = request.runtime.enter();
                    let _ = request.reply.send(request.command.spawn());
                }
            });
        match thread {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("no spawner thread ({e}); spawning from the calling thread");
                None
            }
        }
    }

    pub async fn spawn(mut command: Command) -> io::Result<Child> {
        let Some(tx) = SPAWNER.get_or_init(start) else {
            return command.spawn();
        };
        let (reply, answer) = oneshot::channel();
        let request = Request {
            command,
            runtime: Handle::current(),
            reply,
        };
        if let Err(mpsc::SendError(mut request)) = tx.send(request) {
            return request.command.spawn();
        }
        answer
            .await
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }
}

/// The failure text: the stderr tail, then how ffmpeg ended.
fn failure_message(tail: &str, status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("ffmpeg exited with status {code}"),
        (None, Some(signal)) => format!("ffmpeg was killed by signal {signal}"),
        (None, None) => "ffmpeg failed".to_owned(),
    };
    if tail.is_empty() {
        how
    } else {
        format!("{tail}\n{how}")
    }
}

async fn read_progress<R: AsyncRead + Unpin>(
    out: R,
    duration: Option<f64>,
    started: Instant,
    tx: watch::Sender<Option<ProgressReport>>,
) {
    let mut reader = BufReader::new(out);
    let mut parser = ProgressParser::new(duration);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if let Some(report) = parser.feed(&text, started.elapsed().as_secs_f64()) {
                    tx.send_replace(Some(report));
                }
            }
        }
    }
}

async fn read_tail<R: AsyncRead + Unpin>(mut err: R) -> String {
    let mut tail = StderrTail::default();
    let mut buf = vec![0u8; 8192];
    loop {
        match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.push(&buf[..n]),
        }
    }
    tail.finish()
}

/// Parses ffmpeg's `-progress` output: `key=value` lines in blocks, each ended by
/// `progress=continue` or `progress=end`.
#[derive(Debug, Clone, Default)]
pub struct ProgressParser {
    duration: Option<f64>,
    frame: Option<u64>,
    fps: Option<f64>,
    speed: Option<f64>,
    out_time_us: Option<i64>,
}

impl ProgressParser {
    /// `duration`: the input's seconds, if known (a non-positive one counts as unknown).
    pub fn new(duration: Option<f64>) -> ProgressParser {
        ProgressParser {
            duration: duration.filter(|d| d.is_finite() && *d > 0.0),
            ..ProgressParser::default()
        }
    }

    /// Feed one line; at the end of a block, the report for it. `elapsed` is the seconds
    /// since ffmpeg started. Values ffmpeg leaves as `N/A` keep their last known value.
    pub fn feed(&mut self, line: &str, elapsed: f64) -> Option<ProgressReport> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key.trim() {
            "frame" => self.frame = value.parse().ok().or(self.frame),
            "fps" => self.fps = finite(value).or(self.fps),
            "speed" => {
                self.speed = value
                    .strip_suffix('x')
                    .and_then(|v| finite(v.trim()))
                    .or(self.speed)
            }
            // Both are microseconds (out_time_ms is misnamed in ffmpeg); prefer _us when both
            // come, they carry the same number.
            "out_time_us" | "out_time_ms" => {
                if let Ok(us) = value.parse::<i64>() {
                    self.out_time_us = Some(us.max(0));
                }
            }
            "progress" => return Some(self.report(value == "end", elapsed)),
            _ => {}
        }
        None
    }

    fn report(&self, end: bool, elapsed: f64) -> ProgressReport {
        let out_time = self.out_time_us.map(|us| us as f64 / 1_000_000.0);
        let percent = if end {
            100.0
        } else {
            match (out_time, self.duration) {
                (Some(t), Some(d)) => (t / d * 100.0).clamp(0.0, 100.0),
                _ => 0.0,
            }
        };
        let eta = if end {
            Some(0.0)
        } else {
            match (out_time, self.duration, self.speed) {
                (Some(t), Some(d), Some(s)) if s > 0.0 => Some(((d - t) / s).max(0.0)),
                _ => None,
            }
        };
        ProgressReport {
            percent,
            frame: self.frame,
            fps: self.fps,
            speed: self.speed,
            out_time,
            elapsed,
            eta,
        }
    }
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Keeps the last meaningful lines of ffmpeg's stderr, bounded in memory: no version banner,
/// no build configuration, no `frame=…` status lines.
#[derive(Debug, Default)]
pub struct StderrTail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl StderrTail {
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // ffmpeg rewrites its status line with `\r`; treat it as a line end.
            if b == b'\n' || b == b'\r' {
                self.end_line();
            } else if self.partial.len() < LINE_BYTES * 2 {
                self.partial.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.partial).trim_end().to_owned();
        self.partial.clear();
        if !meaningful(&line) {
            return;
        }
        self.lines.push_back(cut(&line, LINE_BYTES));
        while self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
    }

    /// The kept lines, newest last, at most [`TAIL_BYTES`] bytes.
    pub fn finish(mut self) -> String {
        self.end_line();
        let mut kept: Vec<&str> = Vec::new();
        let mut bytes = 0;
        for line in self.lines.iter().rev() {
            if bytes + line.len() + 1 > TAIL_BYTES {
                break;
            }
            bytes += line.len() + 1;
            kept.push(line);
        }
        kept.reverse();
        kept.join("\n")
    }
}

/// ffmpeg's own messages: not the banner, the status line, nor the indented description of
/// the inputs, outputs and stream mapping (a user wants `Unknown encoder 'x'`, not the
/// input's metadata).
fn meaningful(line: &str) -> bool {
    let t = line.trim();
    if t.is_empty() || line.starts_with(' ') || line.starts_with('\t') {
        return false;
    }
    let description =
        t.starts_with("Input #") || t.starts_with("Output #") || t.starts_with("Stream mapping:");
    if description {
        return false;
    }
    let banner = t.starts_with("ffmpeg version")
        || t.starts_with("built with")
        || t.starts_with("configuration:")
        || t.starts_with("Press [q]")
        || is_library_version(t);
    let status = t.starts_with("frame=") || t.starts_with("size=");
    !(banner || status)
}

/// `libavutil      57. 28.100 / 57. 28.100`
fn is_library_version(t: &str) -> bool {
    t.starts_with("lib")
        && t.split_whitespace()
            .next()
            .is_some_and(|w| w.chars().all(|c| c.is_ascii_alphanumeric()) && t.contains(" / "))
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from ffmpeg 5.1 (`-progress pipe:1`), 3 s of testsrc.
    const PROGRESS: &str = "frame=1\nfps=0.00\nstream_0_0_q=0.0\nbitrate=N/A\ntotal_size=48\n\
out_time_us=0\nout_time_ms=0\nout_time=00:00:00.000000\ndup_frames=0\ndrop_frames=0\n\
speed=   0x\nprogress=continue\nframe=38\nfps=37.5\nstream_0_0_q=28.0\nbitrate= 120.0kbits/s\n\
total_size=22000\nout_time_us=1500000\nout_time_ms=1500000\nout_time=00:00:01.500000\n\
dup_frames=0\ndrop_frames=0\nspeed=1.5x\nprogress=continue\nframe=75\nfps=0.00\n\
stream_0_0_q=-1.0\nbitrate= 168.2kbits/s\ntotal_size=62250\nout_time_us=2960078\n\
out_time_ms=2960078\nout_time=00:00:02.960078\ndup_frames=0\ndrop_frames=0\nspeed=19.4x\n\
progress=end\n";

    fn parse_all(text: &str, duration: Option<f64>) -> Vec<ProgressReport> {
        let mut parser = ProgressParser::new(duration);
        text.lines()
            .enumerate()
            .filter_map(|(i, l)| parser.feed(l, i as f64))
            .collect()
    }

    #[test]
    fn parses_progress_blocks() {
        let reports = parse_all(PROGRESS, Some(3.0));
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].percent, 0.0);
        assert_eq!(reports[0].frame, Some(1));
        assert_eq!(reports[0].speed, Some(0.0));
        assert_eq!(reports[0].eta, None, "no eta at speed 0");
        let mid = &reports[1];
        assert_eq!(mid.frame, Some(38));
        assert_eq!(mid.fps, Some(37.5));
        assert_eq!(mid.speed, Some(1.5));
        assert_eq!(mid.out_time, Some(1.5));
        assert!((mid.percent - 50.0).abs() < 1e-9);
        assert!((mid.eta.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(mid.elapsed, 23.0);
        let end = &reports[2];
        assert_eq!(end.percent, 100.0);
        assert_eq!(end.eta, Some(0.0));
        assert_eq!(end.speed, Some(19.4));
        assert!((end.out_time.unwrap() - 2.960078).abs() < 1e-9);
    }

    #[test]
    fn unknown_duration_gives_zero_until_the_end() {
        let reports = parse_all(PROGRESS, None);
        assert_eq!(reports[1].percent, 0.0);
        assert_eq!(reports[1].eta, None);
        assert_eq!(reports[2].percent, 100.0);
        let reports = parse_all(PROGRESS, Some(0.0));
        assert_eq!(reports[1].percent, 0.0);
    }

    #[test]
    fn handles_na_and_clamps() {
        let text = "frame=10\nfps=N/A\nout_time_us=N/A\nout_time_ms=N/A\nspeed=N/A\n\
progress=continue\nout_time_ms=9000000\nspeed=2x\nprogress=continue\n";
        let reports = parse_all(text, Some(3.0));
        assert_eq!(reports[0].out_time, None);
        assert_eq!(reports[0].speed, None);
        assert_eq!(reports[0].fps, None);
        assert_eq!(reports[0].percent, 0.0);
        assert_eq!(reports[1].out_time, Some(9.0));
        assert_eq!(reports[1].percent, 100.0, "clamped");
        assert_eq!(reports[1].eta, Some(0.0), "never negative");
        assert_eq!(reports[1].frame, Some(10), "kept from the block before");
        // A negative out_time (seen at the start of some inputs) counts as 0.
        let reports = parse_all("out_time_us=-23220\nprogress=continue\n", Some(3.0));
        assert_eq!(reports[0].out_time, Some(0.0));
    }

    /// Captured from ffmpeg 5.1 with `-c:v nosuchcodec`.
    const STDERR: &str = "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers\n  built with gcc 12 (Debian 12.2.0-14+deb12u1)\n  configuration: --prefix=/usr --extra-version=0+deb12u1 --toolchain=hardened --enable-gpl\n  libavutil      57. 28.100 / 57. 28.100\n  libavcodec     59. 37.100 / 59. 37.100\n  libpostproc    56.  6.100 / 56.  6.100\nInput #0, mov,mp4,m4a,3gp,3g2,mj2, from 'in.mp4':\n  Metadata:\n    major_brand     : isom\n  Duration: 00:00:03.00, start: 0.000000, bitrate: 166 kb/s\n  Stream #0:0[0x1](und): Video: h264, yuv444p(progressive), 320x240, 25 fps (default)\nframe=    1 fps=0.0 q=0.0 size=       0kB time=00:00:00.00 bitrate=N/A speed=   0x    \rframe=   75 fps=0.0 q=-1.0 Lsize=      61kB time=00:00:02.96 bitrate= 168.2kbits/s speed=19.4x    \nUnknown encoder 'nosuchcodec'\n";

    #[test]
    fn tail_keeps_ffmpeg_error_lines() {
        let mut tail = StderrTail::default();
        // Split the input at odd places, as pipe reads do.
        for chunk in STDERR.as_bytes().chunks(7) {
            tail.push(chunk);
        }
        let text = tail.finish();
        assert_eq!(text, "Unknown encoder 'nosuchcodec'");
        for banned in [
            "ffmpeg version",
            "configuration:",
            "libavutil",
            "built with",
            "frame=",
        ] {
            assert!(!text.contains(banned), "{banned} in {text}");
        }
    }

    #[test]
    fn tail_is_bounded() {
        let mut tail = StderrTail::default();
        for i in 0..1000 {
            tail.push(format!("error line {i} {}\n", "x".repeat(1000)).as_bytes());
        }
        tail.push(b"last words without newline");
        let text = tail.finish();
        assert!(text.len() <= TAIL_BYTES, "{}", text.len());
        assert!(text.ends_with("last words without newline"));
        assert!(text.lines().count() <= TAIL_LINES);
        assert!(text.contains("error line 999"));
    }

    #[test]
    fn failure_message_has_the_status() {
        use std::os::unix::process::ExitStatusExt;
        let msg = failure_message("Unknown encoder 'x'", ExitStatus::from_raw(1 << 8));
        assert_eq!(msg, "Unknown encoder 'x'\nffmpeg exited with status 1");
        let msg = failure_message("", ExitStatus::from_raw(9));
        assert_eq!(msg, "ffmpeg was killed by signal 9");
    }
}
