//! The in-process MP4 probe against ffprobe on files real ffmpeg wrote: where it answers, it
//! must say what ffprobe says; where it cannot, it must step aside so ffprobe answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use oscied_protocol::probe::{self, mp4};
use oscied_protocol::sandbox::SandboxMode;

/// Encode `seconds` of a 25 fps test pattern and/or a 48 kHz tone with these output options.
fn encode(dir: &Path, name: &str, video: bool, audio: bool, options: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-y"]);
    if video {
        cmd.args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=25:duration=3",
        ]);
    }
    if audio {
        cmd.args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=3",
        ]);
    }
    let status = cmd
        .args(options)
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success(), "ffmpeg could not write {name}");
    path
}

fn close(a: Option<f64>, b: Option<f64>, tolerance: f64, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= tolerance,
            "{what}: in-process {a} vs ffprobe {b}"
        ),
        _ => panic!("{what}: in-process {a:?} vs ffprobe {b:?}"),
    }
}

/// Bit rates within 3 % (ffprobe counts from its own durations).
fn close_rate(a: Option<u64>, b: Option<u64>, what: &str) {
    let (a, b) = (a.expect(what) as f64, b.expect(what) as f64);
    assert!(
        (a - b).abs() <= b * 0.03,
        "{what}: in-process {a} vs ffprobe {b}"
    );
}

async fn same_as_ffprobe(path: &Path) {
    let native = mp4::probe(path).unwrap_or_else(|| panic!("{path:?} is read in-process"));
    let reference = probe::probe(path, SandboxMode::On)
        .await
        .expect("ffprobe reads it");
    assert_eq!(native.format.name, reference.format.name);
    assert_eq!(native.format.long_name, reference.format.long_name);
    assert_eq!(native.format.size, reference.format.size);
    close(
        native.format.duration,
        reference.format.duration,
        0.05,
        "duration",
    );
    close_rate(
        native.format.bit_rate,
        reference.format.bit_rate,
        "format bit rate",
    );
    assert_eq!(native.streams.len(), reference.streams.len());
    for (n, r) in native.streams.iter().zip(&reference.streams) {
        assert_eq!(n.index, r.index);
        assert_eq!(n.codec_type, r.codec_type);
        assert_eq!(n.codec_name, r.codec_name);
        assert_eq!((n.width, n.height), (r.width, r.height));
        assert_eq!((n.channels, n.sample_rate), (r.channels, r.sample_rate));
        close(n.duration, r.duration, 0.01, "stream duration");
        if r.codec_type == "video" {
            close(n.frame_rate, r.frame_rate, 0.1, "frame rate");
            close_rate(n.bit_rate, r.bit_rate, "video bit rate");
        }
    }
    // And the probe a unit runs takes this path with the same answer.
    assert_eq!(
        probe::probe_output(path, SandboxMode::On)
            .await
            .expect("probed"),
        native
    );
}

#[tokio::test]
async fn mp4_outputs_read_in_process_match_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h264 = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ];
    let aac = ["-c:a", "aac", "-b:a", "96k", "-ac", "2"];
    let both: Vec<&str> = h264.iter().chain(&aac).copied().collect();

    same_as_ffprobe(&encode(d, "h264-aac.mp4", true, true, &both)).await;
    let mut faststart = both.clone();
    faststart.extend(["-movflags", "+faststart"]);
    same_as_ffprobe(&encode(d, "faststart.mp4", true, true, &faststart)).await;
    let mut scaled = both.clone();
    scaled.extend(["-vf", "scale=-2:120", "-r", "30"]);
    same_as_ffprobe(&encode(d, "scaled.m4v", true, true, &scaled)).await;
    same_as_ffprobe(&encode(d, "video-only.mov", true, false, &h264)).await;
    same_as_ffprobe(&encode(d, "audio-only.m4a", false, true, &aac)).await;
    same_as_ffprobe(&encode(
        d,
        "hevc.mp4",
        true,
        false,
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
        ],
    ))
    .await;
}

#[tokio::test]
async fn what_the_reader_does_not_know_goes_to_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        // MP3 in MP4: a codec it has no name for.
        encode(d, "mp3.mp4", false, true, &["-c:a", "libmp3lame"]),
        // Fragmented: the samples live in moof boxes.
        encode(
            d,
            "fragmented.mp4",
            true,
            false,
            &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-movflags",
                "frag_keyframe+empty_moov",
            ],
        ),
        // MPEG-4 Part 2 video.
        encode(d, "mpeg4.mp4", true, false, &["-c:v", "mpeg4"]),
    ];
    for path in &cases {
        assert!(mp4::probe(path).is_none(), "{path:?} is left to ffprobe");
        let probed = probe::probe_output(path, SandboxMode::On)
            .await
            .expect("ffprobe answers");
        assert_eq!(
            probed,
            probe::probe(path, SandboxMode::On)
                .await
                .expect("ffprobe answers")
        );
        assert!(probed.duration().expect("duration") > 2.9);
    }
    // Not MP4 at all, whatever the name says: ffprobe's error, not a guess.
    let text = d.join("notes.mp4");
    std::fs::write(&text, "not a movie").unwrap();
    assert!(mp4::probe(&text).is_none());
    assert!(probe::probe_output(&text, SandboxMode::On).await.is_err());
    // Other containers are not even opened here.
    assert!(!mp4::handles(Path::new("out.mkv")));
    assert!(mp4::handles(Path::new("OUT.MP4")));
}
