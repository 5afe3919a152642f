//! The validator's unit tests: what profiles need passes, every known attack is refused with
//! the error that says why.

use std::path::Path;

use super::*;

fn ok(s: &str) -> Vec<String> {
    match validate_encoder_string(s) {
        Ok(tokens) => tokens,
        Err(e) => panic!("{s:?} should be accepted: {e}"),
    }
}

fn bad(s: &str) -> EncoderError {
    match validate_encoder_string(s) {
        Ok(tokens) => panic!("{s:?} should be refused, got {tokens:?}"),
        Err(e) => e,
    }
}

/// The refusal's message names `word` (the option, filter or key at fault).
fn refused_naming(s: &str, word: &str) -> EncoderError {
    let e = bad(s);
    assert!(
        e.to_string().contains(word),
        "{s:?}: the error {e} should name {word:?}"
    );
    e
}

#[test]
fn accepts_the_builtins() {
    for profile in crate::builtins::builtin_profiles() {
        if profile.encoder_name == EncoderName::Ffmpeg {
            ok(profile.encoder_string);
        }
    }
}

#[test]
fn accepts_the_readme_examples_and_the_tests_strings() {
    // README.md (grep encoder_string README.md).
    ok("-vf scale=-2:240 -c:v libx264 -crf 28 -c:a aac -f mp4");
    ok("-vf realtime,scale=-2:240 -c:v libx264 -preset ultrafast -c:a aac");
    // Strings other tests and the bench use.
    ok("-c:v libx264 -crf 23 -c:a aac -b:a 128k");
    ok("-vf scale=-2:360");
    ok("-vf realtime -c:v libx264 -preset ultrafast -c:a aac -stats_period 0.2");
    ok("-vf realtime -c:v libx264 -preset ultrafast -stats_period 20");
    ok("-vf scale=-2:480 -r 25 -c:v libx264 -preset veryfast -crf 23 -c:a aac -b:a 128k -ac 2");
    ok("-c:v libx264 -profile:v baseline -pix_fmt yuv444p");
}

#[test]
fn accepts_common_output_options() {
    ok("-c:v libx264 -crf 23 -preset veryfast -c:a aac -b:a 128k");
    ok("-vf scale=-2:720 -r 25 -g 50");
    ok("-vf 'scale=trunc(iw/2)*2:trunc(ih/2)*2' -pix_fmt yuv420p");
    ok("-an -movflags +faststart");
    ok("-filter_complex '[0:v]split=2[a][b];[a]negate[c];[b][c]hstack[v]' -map '[v]' -an");
    ok("-map 0:v:0 -map 0:a? -map -0:s -metadata title=Hello -f mp4");
    ok("-metadata:s:a:0 language=eng -disposition:a:0 default");
    ok("-x264-params keyint=50:min-keyint=25:scenecut=0 -movflags +faststart");
    ok("-vf 'setdar=16/9,scale=trunc(iw/2)*2:trunc(ih/2)*2' -af volume=-3dB");
    ok("-c:v:0 libx265 -x265-params crf=28:no-sao=1 -tag:v hvc1 -b:a:0 96k");
    ok("-s hd720 -aspect 16:9 -r 30000/1001 -fps_mode cfr -ss 1.5 -t 00:00:10");
    ok("-c:v libvpx-vp9 -b:v 0 -crf 30 -row-mt 1 -c:a libopus -b:a 1.5M -f webm");
    ok("-force_key_frames expr:gte(t,n_forced*2) -bsf:v h264_mp4toannexb -f mpegts");
    ok("-af 'aresample=async=1:first_pts=0,atempo=1.25,loudnorm=I=-16'");
    ok("");
}

#[test]
fn format_names_are_compared_case_insensitively_and_passed_lowercased() {
    assert_eq!(ok("-f MP4"), ["-f", "mp4"]);
    assert!(matches!(bad("-f TEE"), EncoderError::Format(f) if f == "TEE"));
    assert!(matches!(bad("-f tee"), EncoderError::Format(_)));
    for format in [
        "segment",
        "ssegment",
        "fifo",
        "image2",
        "image2pipe",
        "rtp",
        "sap",
    ] {
        assert!(matches!(
            bad(&format!("-f {format}")),
            EncoderError::Format(_)
        ));
    }
}

#[test]
fn the_force_fps_second_output_is_a_stray_argument() {
    // The attack: the old deny-list did not know -force_fps took no value, so it read
    // the root secret's path as its value while ffmpeg read it as a second output.
    let e = bad("-map 0:a -c:a copy -f s16le -force_fps oscied-data/root_secret -map 0 -c:a aac");
    assert_eq!(
        e,
        EncoderError::StrayArgument("oscied-data/root_secret".into())
    );
    // Every flag on the list takes no value, so a word after any of them is stray.
    for flag in reviewed::options()
        .into_iter()
        .filter(|o| reviewed::is_flag(o))
    {
        assert!(
            matches!(
                bad(&format!("{flag} out2.mp4")),
                EncoderError::StrayArgument(_)
            ),
            "{flag}"
        );
    }
}

#[test]
fn refuses_inputs_outputs_and_reserved_options() {
    assert!(matches!(bad("-i other.mp4"), EncoderError::Reserved(_)));
    assert!(matches!(
        bad("-c copy out2.mp4"),
        EncoderError::StrayArgument(_)
    ));
    assert!(matches!(bad("-c copy -"), EncoderError::StrayArgument(_)));
    assert!(matches!(bad("-y"), EncoderError::Reserved(_)));
    assert!(matches!(bad("-progress x"), EncoderError::Reserved(_)));
    assert!(matches!(bad("-c:v"), EncoderError::MissingValue(_)));
    assert!(matches!(bad("-/vf f.txt"), EncoderError::FileOption(_)));
    assert!(matches!(bad("-- x.mp4"), EncoderError::UnknownOption(_)));
    assert!(matches!(bad("-formats"), EncoderError::NotOutputOption(_)));
    assert!(matches!(bad("-h full"), EncoderError::NotOutputOption(_)));
    assert!(matches!(
        bad("-itsoffset 1"),
        EncoderError::UnknownOption(_)
    ));
    assert!(matches!(
        bad("-stream_loop -1"),
        EncoderError::UnknownOption(_)
    ));
    assert!(matches!(bad("-f:v mp4"), EncoderError::Specifier { .. }));
    assert!(matches!(
        bad("-c:m:x libx264"),
        EncoderError::Specifier { .. }
    ));
}

#[test]
fn refuses_options_that_read_or_write_files() {
    assert!(matches!(
        refused_naming("-pass 1", "-pass"),
        EncoderError::FileOption(_)
    ));
    assert!(matches!(bad("-pass:v 2"), EncoderError::FileOption(_)));
    assert!(matches!(bad("-passlogfile x"), EncoderError::FileOption(_)));
    assert!(matches!(bad("-stats"), EncoderError::FileOption(_)));
    assert!(matches!(bad("-vstats"), EncoderError::FileOption(_)));
    assert!(matches!(
        bad("-vstats_file v.log"),
        EncoderError::FileOption(_)
    ));
    assert!(matches!(bad("-attach f.ttf"), EncoderError::FileOption(_)));
    assert!(matches!(
        bad("-hls_segment_filename s%d.ts"),
        EncoderError::FileOption(_)
    ));
    assert!(matches!(
        bad("-master_pl_name m.m3u8"),
        EncoderError::FileOption(_)
    ));
    assert!(matches!(
        bad("-var_stream_map v:0"),
        EncoderError::FileOption(_)
    ));
    assert!(matches!(bad("-vpre slow"), EncoderError::FileOption(_)));
    assert!(matches!(
        bad("-fpre my.ffpreset"),
        EncoderError::FileOption(_)
    ));
    assert!(matches!(bad("-report"), EncoderError::FileOption(_)));
    // Values are shapes, never paths or protocols.
    assert!(matches!(bad("-c:v file:/x"), EncoderError::BadValue { .. }));
    assert!(matches!(
        bad("-c:v concat:a|b"),
        EncoderError::BadValue { .. }
    ));
    assert!(matches!(
        bad("-c:v nosuchcodec"),
        EncoderError::BadValue { .. }
    ));
    assert!(matches!(bad("-map 1:v"), EncoderError::BadValue { .. }));
    assert!(matches!(
        bad("-movflags +faststart+x"),
        EncoderError::BadValue { .. }
    ));
}

#[test]
fn metadata_is_text_that_ffmpeg_never_opens() {
    // -metadata values are written into the container as tags; ffmpeg never opens them, so a
    // value that looks like a path or a URL is fine as text. The key is a plain name and the
    // value is bounded and has no control characters.
    ok("-metadata comment=/etc/passwd -metadata title=http://example.com/x");
    ok("-metadata title=../x");
    assert!(matches!(
        bad("-metadata /etc/passwd"),
        EncoderError::BadValue { .. }
    ));
    assert!(matches!(
        bad("-metadata ../x=y"),
        EncoderError::BadValue { .. }
    ));
    let long = format!(
        "-metadata title={}",
        "x".repeat(options::MAX_METADATA_VALUE + 1)
    );
    assert!(matches!(bad(&long), EncoderError::BadValue { .. }));
    assert!(matches!(
        bad("-metadata:x:0 a=b"),
        EncoderError::Specifier { .. }
    ));
}

#[test]
fn refuses_x264_and_x265_parameters_that_name_files() {
    refused_naming("-x264-params keyint=60:stats=/tmp/x", "stats");
    refused_naming("-x264-params pass=1", "pass");
    refused_naming("-x264opts keyint=60:stats=x.log", "stats");
    refused_naming("-x264-params qpfile=q.txt", "qpfile");
    refused_naming("-x264-params dump-yuv=a.yuv", "dump-yuv");
    refused_naming("-x265-params csv=x.csv", "csv");
    refused_naming("-x265-params analysis-save=a.dat", "analysis-save");
    refused_naming("-x265-params zonefile=z.txt", "zonefile");
    refused_naming("-x265-params lambda-file=l.txt", "lambda-file");
    refused_naming("-x265-params scaling-list=s.txt", "scaling-list");
    assert!(matches!(
        bad("-x265-params csv=x"),
        EncoderError::Param { .. }
    ));
}

#[test]
fn refuses_file_reading_and_endless_filters() {
    for (s, word) in [
        ("-vf movie=x.mp4", "movie"),
        ("-af amovie=x.wav", "amovie"),
        (
            "-filter_complex '[0:v]scale=640:-2[a];movie=logo.png[l];[a][l]overlay'",
            "movie",
        ),
        ("-vf subtitles=s.srt", "subtitles"),
        // subtitles' first positional argument is its file name.
        ("-vf subtitles=/etc/passwd:force_style=x", "subtitles"),
        ("-vf lut3d=file=a.cube", "lut3d"),
        ("-vf lut3d=a.cube", "lut3d"),
        ("-vf curves=psfile=a.acv", "curves"),
        ("-vf curves=none:a.acv", "curves"),
        ("-vf drawtext=textfile=t.txt", "drawtext"),
        ("-vf 'MOVIE@x=a.mp4'", "MOVIE"),
        ("-vf mo\\\\vie=a.mp4", "movie"),
        ("-vf \"mo'vi'e=a.mp4\"", "movie"),
        ("-vf loop=loop=-1:size=1", "loop"),
        ("-af aloop=loop=-1:size=1", "aloop"),
        ("-filter_complex color=red", "color"),
        ("-af apad", "apad"),
        ("-vf sendcmd=f=cmds.txt", "sendcmd"),
        ("-vf zmq", "zmq"),
    ] {
        let e = refused_naming(s, word);
        assert!(matches!(e, EncoderError::Filter { .. }), "{s}: {e}");
    }
    // Options of reviewed filters: only known ones, never one of a child class by surprise.
    refused_naming("-vf scale=w=320:sws_flags=x", "sws_flags");
    refused_naming("-vf 'scale=320:240:x=/etc/passwd'", "\"x\"");
    refused_naming("-vf 'setpts=PTS/2:x'", "too many");
    refused_naming("-vf scale=w=320:240", "positional");
    refused_naming("-vf 'scale=w=a{b}'", "scale option w");
    refused_naming("-vf 'scale=a\\;b'", "scale option w");
}

#[test]
fn refuses_broken_quoting_and_control_characters() {
    assert!(matches!(bad("-vf 'scale=1:2"), EncoderError::Quoting(_)));
    assert!(matches!(bad("-c:v \"libx264"), EncoderError::Quoting(_)));
    assert!(matches!(
        bad("-c:v lib\u{0}x264"),
        EncoderError::ControlCharacter
    ));
}

#[test]
fn builds_the_documented_command_line() {
    let tokens = ok("-c:v libx264 -vf 'scale=-2:480' -f MP4");
    let args = ffmpeg_args(Path::new("/s/in.mp4"), &tokens, Path::new("/t/out.mp4")).unwrap();
    let args: Vec<_> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "-nostdin",
            "-y",
            "-i",
            "file:/s/in.mp4",
            "-c:v",
            "libx264",
            "-vf",
            "scale=-2:480",
            "-f",
            "mp4",
            "-progress",
            "pipe:1",
            "file:/t/out.mp4"
        ]
    );
    // Relative paths become absolute: ffmpeg may run in another directory.
    let args = ffmpeg_args(Path::new("in.mp4"), &[], Path::new("out|x.mp4")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(args[3], *format!("file:{}", cwd.join("in.mp4").display()));
    assert_eq!(
        *args.last().unwrap(),
        *format!("file:{}", cwd.join("out|x.mp4").display())
    );
    let hls = ffmpeg_args(Path::new("in.mp4"), &[], Path::new("out.m3u8")).unwrap();
    assert!(hls.windows(2).any(|w| w[0] == "-f" && w[1] == "hls"));
    let dash = ffmpeg_args(Path::new("in.mp4"), &[], Path::new("out.mpd")).unwrap();
    assert!(dash.windows(2).any(|w| w[0] == "-f" && w[1] == "dash"));
}

#[test]
fn the_allow_list_document_covers_every_table() {
    let doc = ffmpeg_allow_list();
    assert_eq!(doc.options.len(), options::OPTIONS.len());
    assert!(
        doc.options
            .iter()
            .any(|o| o.name == "-c" && o.specifier == "stream")
    );
    let scale = doc.filters.iter().find(|f| f.name == "scale").unwrap();
    assert_eq!(scale.positional[..2], ["w", "h"]);
    assert!(doc.formats.contains(&"mp4".to_owned()) && !doc.formats.contains(&"tee".to_owned()));
    assert!(doc.x264_params.contains(&"keyint".to_owned()));
}
