//! The sandbox on its own, with the encoder-string validator bypassed: raw ffmpeg command
//! lines that escape their directory, read another media or open a connection must fail
//! inside the sandbox, and the very same lines must work outside it (so each test can fail).
//! Real ffmpeg, media generated with lavfi.

use std::ffi::OsString;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use oscied_e2e::media::clip;
use oscied_protocol::probe;
use oscied_protocol::sandbox::{self, Jail, SandboxMode};

/// A storage-like tree: a media dir with the input, another user's media, a task dir.
struct Tree {
    _root: tempfile::TempDir,
    root: PathBuf,
    input: PathBuf,
    other: PathBuf,
    task: PathBuf,
}

fn tree() -> Tree {
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path().to_path_buf();
    let mine = root.join("medias/mine");
    let theirs = root.join("medias/theirs");
    let task = root.join("tmp/task/1");
    for dir in [&mine, &theirs, &task] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let input = clip(&mine, "in.mp4", 1, 64, 48);
    let other = clip(&theirs, "secret.mp4", 1, 64, 48);
    Tree {
        _root: root_dir,
        root,
        input,
        other,
        task,
    }
}

/// ffmpeg as a unit runs it: in the task dir, reading the input only (when `sandboxed`).
async fn ffmpeg(t: &Tree, mode: SandboxMode, args: &[OsString]) -> (bool, String) {
    let jail = Jail::new("ffmpeg")
        .unwrap()
        .read(&t.input)
        .unwrap()
        .work_dir(&t.task)
        .unwrap()
        .cpu_secs(60);
    run(&jail, mode, args).await
}

async fn run(jail: &Jail, mode: SandboxMode, args: &[OsString]) -> (bool, String) {
    let mut command = jail.command(mode).expect("sandboxed command");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        command
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("in time")
    .expect("ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn with_paths(list: &[&str], paths: &[(&str, &Path)]) -> Vec<OsString> {
    list.iter()
        .map(|a| {
            paths
                .iter()
                .find(|(k, _)| k == a)
                .map_or_else(|| OsString::from(a), |(_, p)| p.as_os_str().to_owned())
        })
        .collect()
}

fn supported() {
    sandbox::check(SandboxMode::On).expect("this kernel has Landlock and seccomp");
}

#[tokio::test]
async fn a_second_output_outside_the_task_dir_is_refused() {
    supported();
    let t = tree();
    let outside = t.root.join("medias/theirs/overwritten.mp4");
    let line = |out: &Path| {
        with_paths(
            &[
                "-nostdin", "-y", "-i", "IN", "-t", "0.2", "out.mp4", "-t", "0.2", "OUT",
            ],
            &[("IN", &t.input), ("OUT", out)],
        )
    };
    // Absolute, and relative to the working directory.
    let relative = t.root.join("tmp/task/escaped.mp4");
    for (target, arg) in [
        (outside.clone(), line(&outside)),
        (relative.clone(), line(Path::new("../escaped.mp4"))),
    ] {
        let (_, text) = ffmpeg(&t, SandboxMode::On, &arg).await;
        assert!(!target.exists(), "{target:?} written inside: {text}");
        // The output in its own dir works all the same.
        assert!(t.task.join("out.mp4").exists(), "{text}");
        std::fs::remove_file(t.task.join("out.mp4")).unwrap();
        let (ok, text) = ffmpeg(&t, SandboxMode::Off, &arg).await;
        assert!(ok && target.exists(), "outside the sandbox: {text}");
        std::fs::remove_file(&target).unwrap();
    }
}

#[tokio::test]
async fn another_media_cannot_be_read() {
    supported();
    let t = tree();
    let out = t.task.join("copy.mp4");
    // As a second input, and through the movie filter.
    let filter = format!("movie={}", t.other.display());
    let lines = [
        with_paths(
            &["-nostdin", "-y", "-i", "OTHER", "-c", "copy", "copy.mp4"],
            &[("OTHER", &t.other)],
        ),
        args(&[
            "-nostdin", "-y", "-f", "lavfi", "-i", &filter, "-t", "0.2", "copy.mp4",
        ]),
    ];
    for line in lines {
        let (ok, text) = ffmpeg(&t, SandboxMode::On, &line).await;
        assert!(!ok && !out.exists(), "read inside the sandbox: {text}");
        assert!(
            text.contains("Permission denied"),
            "ffmpeg says why: {text}"
        );
        let (ok, text) = ffmpeg(&t, SandboxMode::Off, &line).await;
        assert!(ok && out.exists(), "outside the sandbox: {text}");
        std::fs::remove_file(&out).unwrap();
    }
}

#[tokio::test]
async fn no_tcp_connection_leaves_the_sandbox() {
    supported();
    let t = tree();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let line = with_paths(
        &[
            "-nostdin", "-y", "-i", "IN", "-t", "0.2", "-c", "copy", "-f", "mpegts", &url,
        ],
        &[("IN", &t.input)],
    );
    let (ok, text) = ffmpeg(&t, SandboxMode::On, &line).await;
    assert!(!ok, "{text}");
    // seccomp: socket() is refused.
    assert!(text.contains("Operation not permitted"), "{text}");
    assert!(
        listener.accept().is_err(),
        "a connection came from inside: {text}"
    );
    let (ok, text) = ffmpeg(&t, SandboxMode::Off, &line).await;
    assert!(ok, "outside the sandbox: {text}");
    assert!(listener.accept().is_ok(), "no connection from outside");
}

#[tokio::test]
async fn no_udp_datagram_leaves_the_sandbox() {
    supported();
    let t = tree();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let url = format!("udp://127.0.0.1:{}", socket.local_addr().unwrap().port());
    let line = with_paths(
        &[
            "-nostdin", "-y", "-i", "IN", "-t", "0.2", "-c", "copy", "-f", "mpegts", &url,
        ],
        &[("IN", &t.input)],
    );
    let mut buf = [0u8; 2048];
    let (ok, text) = ffmpeg(&t, SandboxMode::On, &line).await;
    assert!(!ok, "{text}");
    assert!(socket.recv(&mut buf).is_err(), "a datagram came: {text}");
    let (ok, text) = ffmpeg(&t, SandboxMode::Off, &line).await;
    assert!(ok, "outside the sandbox: {text}");
    assert!(socket.recv(&mut buf).is_ok(), "no datagram from outside");
}

#[tokio::test]
async fn ffmpeg_still_encodes_and_packages_in_its_dir() {
    supported();
    let t = tree();
    let cases: [(&str, &[&str]); 3] = [
        (
            "out.mp4",
            &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        ),
        (
            "index.m3u8",
            &[
                "-c:v",
                "libx264",
                "-c:a",
                "aac",
                "-hls_time",
                "1",
                "-f",
                "hls",
            ],
        ),
        (
            "manifest.mpd",
            &["-c:v", "libx264", "-c:a", "aac", "-f", "dash"],
        ),
    ];
    for (name, options) in cases {
        let mut line = with_paths(&["-nostdin", "-y", "-i", "IN"], &[("IN", &t.input)]);
        line.extend(args(options));
        line.extend(args(&["-progress", "pipe:1"]));
        line.push(t.task.join(name).into_os_string());
        let (ok, text) = ffmpeg(&t, SandboxMode::On, &line).await;
        assert!(ok, "{name}: {text}");
        assert!(text.contains("progress=end"), "{name}: {text}");
        let probed = probe::probe_media(&t.task.join(name), SandboxMode::On)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            probed.video().is_some() && probed.audio().is_some(),
            "{name}"
        );
    }
    let files = std::fs::read_dir(&t.task).unwrap().count();
    assert!(files > 4, "segments beside the manifests: {files}");
}

#[tokio::test]
async fn ffprobe_still_probes_an_mp4_and_nothing_else() {
    supported();
    let t = tree();
    let probed = probe::probe(&t.input, SandboxMode::On)
        .await
        .expect("probed");
    assert_eq!(probed.video().unwrap().width, Some(64));
    assert!(probed.duration().unwrap() > 0.5);
    // A playlist naming another media: the probe of one file reads that file only.
    let playlist = t.task.join("evil.m3u8");
    std::fs::write(
        &playlist,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{}\n#EXT-X-ENDLIST\n",
            t.other.display()
        ),
    )
    .unwrap();
    assert!(probe::probe(&playlist, SandboxMode::On).await.is_err());
    assert!(probe::probe(&playlist, SandboxMode::Off).await.is_ok());
}

#[tokio::test]
async fn the_environment_is_clean_and_no_privilege_is_left() {
    supported();
    // Set by cargo for the test process: it must not reach the child.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let env = Jail::new("env").unwrap();
    let (ok, text) = run(&env, SandboxMode::On, &[]).await;
    assert!(ok, "{text}");
    let mut names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort();
    assert_eq!(names, ["LANG", "PATH"], "{text}");
    // /proc is readable here only to look at the child itself.
    let cat = Jail::new("cat").unwrap().read(Path::new("/proc")).unwrap();
    let (ok, text) = run(&cat, SandboxMode::On, &args(&["/proc/self/status"])).await;
    assert!(ok, "{text}");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{text}");
    assert_eq!(field("CapPrm:"), "0000000000000000", "{text}");
    assert_eq!(field("CapAmb:"), "0000000000000000", "{text}");
    if field("CapBnd:") != "0000000000000000" {
        // Only a process without CAP_SETPCAP keeps its bounding set (it cannot change it).
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(!ours.contains("CapEff:\t000001ff"), "{text}");
    }
    assert_eq!(field("NoNewPrivs:"), "1", "{text}");
    assert_eq!(field("Seccomp:"), "2", "{text}");
    // Outside the sandbox /proc/self/status is the only difference: it runs unfiltered.
    let (_, text) = run(&cat, SandboxMode::Off, &args(&["/proc/self/status"])).await;
    assert!(text.contains("Seccomp:\t0"), "{text}");
}

/// Work nobody waits for runs at the niceness asked, inside the sandbox and out; a run
/// that asks none keeps this process's.
#[tokio::test]
async fn a_run_can_yield_the_cpu() {
    supported();
    let ours = run(&Jail::new("nice").unwrap(), SandboxMode::Off, &[]).await;
    assert!(ours.0, "{}", ours.1);
    for mode in [SandboxMode::On, SandboxMode::Off] {
        let low = Jail::new("nice").unwrap().niceness(10);
        let (ok, text) = run(&low, mode, &[]).await;
        assert!(ok, "{text}");
        assert_eq!(text.trim(), "10", "{mode:?}");
        let (ok, text) = run(&Jail::new("nice").unwrap(), mode, &[]).await;
        assert!(ok, "{text}");
        assert_eq!(text.trim(), ours.1.trim(), "{mode:?}: unchanged");
    }
}

#[tokio::test]
async fn file_size_and_cpu_limits_hold() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let jail = Jail::new("ffmpeg")
        .unwrap()
        .work_dir(dir.path())
        .unwrap()
        .max_file_bytes(100_000);
    let mut command = jail.command(SandboxMode::On).unwrap();
    let status = command
        .args([
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:duration=30",
            "-c:v",
            "rawvideo",
            "-f",
            "nut",
            "big.nut",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGXFSZ), "{status:?}");
    let size = std::fs::metadata(dir.path().join("big.nut")).unwrap().len();
    assert!(size <= 100_000, "{size}");
}
