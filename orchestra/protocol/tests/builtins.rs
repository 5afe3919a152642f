//! Runs the exact ffmpeg command line of every built-in ffmpeg profile on a generated clip and
//! checks what a user would check with ffprobe.

use std::path::{Path, PathBuf};

use oscied_protocol::builtins::BUILTIN_PROFILES;
use oscied_protocol::encoder::{ffmpeg_args, validate_encoder_string};
use oscied_protocol::sandbox::{Jail, SandboxMode};
use oscied_protocol::{EncoderName, Probe, probe};

/// A 2 s, 640x360 at 25 fps clip with stereo audio, made with lavfi.
fn generate_clip(dir: &Path) -> PathBuf {
    oscied_e2e::media::clip(dir, "input.mp4", 2, 640, 360)
}

async fn run_builtin(title: &str, input: &Path, out: &Path) -> Probe {
    let profile = BUILTIN_PROFILES
        .iter()
        .find(|p| p.title == title)
        .unwrap_or_else(|| panic!("no built-in {title}"));
    assert_eq!(profile.encoder_name, EncoderName::Ffmpeg);
    let tokens = validate_encoder_string(profile.encoder_string).expect("built-in validates");
    let args = ffmpeg_args(input, &tokens, out).expect("absolute paths");
    // As a unit runs it: in the sandbox, writing in the output's dir only.
    let jail = Jail::new("ffmpeg")
        .unwrap()
        .read(input)
        .unwrap()
        .work_dir(out.parent().unwrap())
        .unwrap();
    let output = jail
        .command(SandboxMode::On)
        .unwrap()
        .args(&args)
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "{title} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // -progress pipe:1 reports on stdout and ends with progress=end.
    let progress = String::from_utf8_lossy(&output.stdout);
    assert!(
        progress.contains("progress=end"),
        "{title}: no progress report: {progress}"
    );
    probe::probe_media(out, SandboxMode::On)
        .await
        .unwrap_or_else(|e| panic!("{title}: output does not probe: {e}"))
}

fn close(actual: Option<f64>, expected: f64, tolerance: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() <= tolerance)
}

#[tokio::test]
async fn every_builtin_ffmpeg_profile_produces_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate_clip(dir.path());
    let source = probe::probe(&input, SandboxMode::On).await.unwrap();
    assert_eq!(source.video().unwrap().height, Some(360));

    let mp4 = |title: &str| {
        dir.path()
            .join(format!("{}.mp4", title.replace(['/', ' '], "_")))
    };

    for title in ["Deinterlace", "Negate"] {
        let p = run_builtin(title, &input, &mp4(title)).await;
        assert!(p.format.name.contains("mp4"), "{title}: {}", p.format.name);
        assert_eq!(p.video().unwrap().height, Some(360), "{title}");
        assert_eq!(p.video().unwrap().codec_name.as_deref(), Some("h264"));
        assert!(p.audio().is_some(), "{title} keeps audio");
        assert!(
            close(p.duration(), 2.0, 0.15),
            "{title}: {:?}",
            p.duration()
        );
    }

    let p = run_builtin("Force 720p", &input, &mp4("Force 720p")).await;
    assert_eq!(
        (p.video().unwrap().width, p.video().unwrap().height),
        (Some(1280), Some(720))
    );

    let p = run_builtin("HQ PAL-SD", &input, &mp4("HQ PAL-SD")).await;
    assert_eq!(p.video().unwrap().height, Some(576));
    assert_eq!(p.audio().unwrap().codec_name.as_deref(), Some("aac"));

    let p = run_builtin("Speed-up 2x", &input, &mp4("Speed-up 2x")).await;
    assert!(p.audio().is_none(), "Speed-up 2x removes audio");
    assert!(
        close(p.duration(), 1.0, 0.15),
        "Speed-up 2x halves: {:?}",
        p.duration()
    );

    let p = run_builtin("Tablet 480p/25", &input, &mp4("Tablet 480p/25")).await;
    let v = p.video().unwrap();
    assert!(v.height.unwrap() <= 480, "height {:?}", v.height);
    assert_eq!(v.height, Some(360), "smaller inputs are not upscaled");
    assert!(close(v.frame_rate, 25.0, 0.01));
    assert_eq!(p.audio().unwrap().channels, Some(2));
    assert_eq!(p.audio().unwrap().sample_rate, Some(44100));

    let hls_dir = dir.path().join("hls");
    std::fs::create_dir(&hls_dir).unwrap();
    let p = run_builtin("HLS 720p", &input, &hls_dir.join("clip.m3u8")).await;
    assert_eq!(p.video().unwrap().height, Some(720));
    let playlist = std::fs::read_to_string(hls_dir.join("clip.m3u8")).unwrap();
    assert!(
        playlist.contains("#EXT-X-ENDLIST"),
        "a VOD playlist: {playlist}"
    );
    let segments: Vec<_> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
    assert!(!segments.is_empty());
    for segment in segments {
        assert!(
            hls_dir.join(segment).is_file(),
            "segment {segment} beside the playlist"
        );
    }

    let dash_dir = dir.path().join("dash");
    std::fs::create_dir(&dash_dir).unwrap();
    let p = run_builtin("DASH 720p", &input, &dash_dir.join("clip.mpd")).await;
    assert!(p.format.name.contains("dash"), "{}", p.format.name);
    let segments = std::fs::read_dir(&dash_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "m4s")
        })
        .count();
    assert!(segments >= 2, "init and media segments beside the manifest");
}

#[tokio::test]
async fn probe_refuses_what_is_not_media() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello, I am not a video\n").unwrap();
    assert!(probe::probe(&text, SandboxMode::On).await.is_err());
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, [0u8, 1, 2, 3, 4, 5, 6, 7].repeat(100)).unwrap();
    let err = probe::probe(&junk, SandboxMode::On).await.unwrap_err();
    assert!(err.to_string().contains("not a media file"), "{err}");
}
