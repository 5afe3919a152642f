//! The encoder allow-list held against the installed ffmpeg: every option, filter, muxer and
//! encoder ffmpeg lists goes through the validator, and each one accepted must be on the
//! reviewed list; the reviewed filter table must match `ffmpeg -h filter=NAME` (a version
//! drift in positional order is caught here); accepted strings really run and write one file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use oscied_protocol::encoder::{ffmpeg_args, reviewed, validate_encoder_string};

fn ffmpeg_stdout(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .arg("-hide_banner")
        .args(args)
        .output()
        .expect("ffmpeg must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every option name `ffmpeg -h full` prints: fftools options at the start of a line
/// (`-name ...`) and AVOptions indented (`  -name   <type> ...`).
fn listed_options() -> BTreeSet<String> {
    let help = ffmpeg_stdout(&["-h", "full"]);
    help.lines()
        .filter_map(|line| {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            (indent <= 2 && trimmed.starts_with('-') && trimmed.len() > 1)
                .then(|| trimmed.split_whitespace().next().unwrap_or("").to_owned())
        })
        .filter(|name| name.len() > 1 && !name.starts_with("--") || name == "--help")
        .collect()
}

/// Names from `ffmpeg -filters` / `-muxers` / `-encoders`: the column after the flags.
fn listed(arg: &str, skip_header_until: &str) -> Vec<String> {
    let text = ffmpeg_stdout(&[arg]);
    let mut lines = text.lines();
    for line in lines.by_ref() {
        if line.trim_start().starts_with(skip_header_until) {
            break;
        }
    }
    lines
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

const SAMPLE_VALUES: &[&str] = &[
    "1",
    "0",
    "-1",
    "2.5",
    "128k",
    "00:00:01",
    "1280x720",
    "16:9",
    "yuv420p",
    "stereo",
    "copy",
    "libx264",
    "mp4",
    "+faststart",
    "a=b",
    "title=x",
    "scale=1:1",
    "0:v",
    "x",
    "x.txt",
    "/tmp/x",
    "file:x",
    "keyint=1",
];

/// The two-way check every list gets: each name the validator accepted is reviewed, and each
/// reviewed name is one the installed ffmpeg lists (no typo, no name of another version).
fn assert_reviewed<'a>(
    what: &str,
    accepted: &BTreeSet<String>,
    reviewed: impl IntoIterator<Item = &'a str>,
    listed: &BTreeSet<String>,
) {
    let reviewed: BTreeSet<&str> = reviewed.into_iter().collect();
    let unreviewed: Vec<_> = accepted
        .iter()
        .filter(|n| !reviewed.contains(n.as_str()))
        .collect();
    assert!(
        unreviewed.is_empty(),
        "{what} accepted but not reviewed: {unreviewed:?}"
    );
    let unknown: Vec<_> = reviewed.iter().filter(|n| !listed.contains(**n)).collect();
    assert!(
        unknown.is_empty(),
        "{what} reviewed but not listed by ffmpeg: {unknown:?}"
    );
}

#[test]
fn every_option_ffmpeg_lists_that_is_accepted_is_reviewed() {
    let listed = listed_options();
    assert!(
        listed.len() > 1000,
        "ffmpeg -h full lists few options: {}",
        listed.len()
    );
    let mut accepted = BTreeSet::new();
    for name in &listed {
        for form in [name.clone(), format!("{name}:v"), format!("{name}:a:0")] {
            if validate_encoder_string(&form).is_ok() {
                accepted.insert(name.clone());
            }
            for value in SAMPLE_VALUES {
                let s = shell_words::join([form.as_str(), value]);
                if validate_encoder_string(&s).is_ok() {
                    accepted.insert(name.clone());
                }
            }
        }
    }
    assert_reviewed("options", &accepted, reviewed::options(), &listed);
}

#[test]
fn every_filter_ffmpeg_lists_that_is_accepted_is_reviewed() {
    let filters = listed("-filters", "| =");
    assert!(filters.len() > 300, "few filters: {}", filters.len());
    let mut accepted = BTreeSet::new();
    for name in &filters {
        for option in ["-vf", "-af", "-filter_complex", "-filter:v"] {
            for graph in [
                name.clone(),
                format!("{name}=x"),
                format!("{name}=1"),
                format!("{name}=x.txt"),
            ] {
                if validate_encoder_string(&shell_words::join([option, graph.as_str()])).is_ok() {
                    accepted.insert(name.clone());
                }
            }
        }
    }
    let filters: BTreeSet<String> = filters.into_iter().collect();
    assert_reviewed(
        "filters",
        &accepted,
        reviewed::filters().iter().map(|f| f.0),
        &filters,
    );
}

#[test]
fn every_muxer_and_encoder_that_is_accepted_is_reviewed() {
    // `sdl,sdl2`: one muxer with two names.
    let muxers: BTreeSet<String> = listed("-muxers", "--")
        .iter()
        .flat_map(|m| m.split(',').map(str::to_owned))
        .collect();
    assert!(muxers.len() > 100);
    let accepted: BTreeSet<String> = muxers
        .iter()
        .filter(|muxer| {
            [muxer.to_string(), muxer.to_ascii_uppercase()]
                .iter()
                .any(|form| validate_encoder_string(&format!("-f {form}")).is_ok())
        })
        .cloned()
        .collect();
    assert_reviewed(
        "formats",
        &accepted,
        reviewed::formats().iter().copied(),
        &muxers,
    );
    let encoders: BTreeSet<String> = listed("-encoders", "------").into_iter().collect();
    assert!(encoders.len() > 100);
    let accepted: BTreeSet<String> = encoders
        .iter()
        .filter(|encoder| validate_encoder_string(&format!("-c:v {encoder}")).is_ok())
        .cloned()
        .collect();
    assert_reviewed(
        "codecs",
        &accepted,
        reviewed::codecs().iter().copied().filter(|c| *c != "copy"),
        &encoders,
    );
}

/// `ffmpeg -h filter=NAME`: whether it supports the timeline, and its own options in class
/// order as (name, type, description).
fn filter_help(name: &str) -> (bool, Vec<(String, String, String)>) {
    let help = ffmpeg_stdout(&["-h", &format!("filter={name}")]);
    let timeline = help.contains("support for timeline through the 'enable' option");
    let mut options = Vec::new();
    let mut section = 0;
    for line in help.lines() {
        if line.ends_with("AVOptions:") {
            section += 1;
            continue;
        }
        if section != 1 {
            continue;
        }
        if line.trim().is_empty() {
            section = 2;
            continue;
        }
        // Options are indented 3 spaces, their constants further.
        if line.starts_with("   ") && !line.starts_with("    ") {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or("").to_owned();
            let kind = words.next().unwrap_or("").to_owned();
            let _flags = words.next();
            let description = words.collect::<Vec<_>>().join(" ");
            options.push((name, kind, description));
        }
    }
    (timeline, options)
}

#[test]
fn the_reviewed_filter_table_matches_the_installed_ffmpeg() {
    for (name, timeline, options) in reviewed::filters() {
        let (ff_timeline, ff_options) = filter_help(name);
        assert_eq!(timeline, ff_timeline, "{name}: timeline support");
        let ff_names: Vec<&str> = ff_options.iter().map(|o| o.0.as_str()).collect();
        let names: Vec<&str> = options.iter().map(|o| o.0).collect();
        assert_eq!(names, ff_names, "{name}: options in class order");
        // An alias is the same option under another name: same type and help as the one
        // before it (what makes libavfilter skip it when counting positions).
        for (i, (option, alias)) in options.iter().enumerate() {
            if *alias {
                let (prev, this) = (&ff_options[i - 1], &ff_options[i]);
                assert_eq!(
                    (&prev.1, &prev.2),
                    (&this.1, &this.2),
                    "{name}: {option} alias"
                );
            } else if i > 0 {
                let (prev, this) = (&ff_options[i - 1], &ff_options[i]);
                assert!(
                    (&prev.1, &prev.2) != (&this.1, &this.2),
                    "{name}: {option} looks like an alias of {}",
                    prev.0
                );
            }
        }
    }
}

#[test]
fn positional_arguments_set_what_the_table_says_in_real_ffmpeg() {
    // libavfilter logs "Setting 'NAME' to value 'V'" at debug level: check the positions the
    // table gives for a few filters against what ffmpeg does.
    let cases = [
        ("scale=320:240", vec!["w", "h"]),
        ("fade=in:0:10", vec!["type", "start_frame", "nb_frames"]),
        ("crop=100:80:0:0", vec!["out_w", "out_h", "x", "y"]),
        (
            "pad=700:500:10:10:red",
            vec!["width", "height", "x", "y", "color"],
        ),
        ("setdar=16/9", vec!["dar"]),
    ];
    let tables = reviewed::filters();
    for (graph, expected) in cases {
        let (name, args) = graph.split_once('=').unwrap();
        let table = tables.iter().find(|f| f.0 == name).unwrap();
        let positional: Vec<&str> = table.2.iter().filter(|o| !o.1).map(|o| o.0).collect();
        assert_eq!(positional[..expected.len()], expected[..], "{graph}: table");
        assert!(
            validate_encoder_string(&format!("-vf {graph}")).is_ok(),
            "{graph}"
        );
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "debug", "-f", "lavfi", "-i"])
            .arg("testsrc=size=640x480:duration=0.2")
            .args(["-vf", graph, "-f", "null", "-"])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let values: Vec<&str> = args.split(':').collect();
        for (option, value) in expected.iter().zip(values) {
            assert!(
                log.contains(&format!("Setting '{option}' to value '{value}'")),
                "{graph}: ffmpeg did not set {option}={value}"
            );
        }
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn accepted_strings_run_and_write_exactly_one_file() {
    let media = tempfile::tempdir().unwrap();
    let input = oscied_e2e::media::clip(media.path(), "input.mp4", 1, 320, 240);
    for (i, encoder_string) in [
        "-vf 'scale=-2:120,setsar=1' -c:v libx264 -preset ultrafast -crf 30 -c:a aac -b:a 64k -f MP4",
        "-map 0:a -c:a pcm_s16le -f wav",
        "-filter_complex '[0:v]split=2[a][b];[a]negate[c];[b][c]hstack[v]' -map '[v]' -an -c:v libx264 -preset ultrafast -f matroska",
        "-af 'aresample=async=1,atempo=1.25,volume=-3dB' -vn -c:a libopus -b:a 48k -f ogg",
        "-x264-params keyint=25:min-keyint=5:no-scenecut=1 -c:v libx264 -preset ultrafast -an -movflags +faststart -f mp4",
        "-metadata title=../x -metadata comment=/etc/passwd -c copy -f matroska",
        "-map 0:a -c:a copy -force_fps -map 0 -c:a aac -f matroska",
    ]
    .into_iter()
    .enumerate()
    {
        let tokens = validate_encoder_string(encoder_string)
            .unwrap_or_else(|e| panic!("{encoder_string}: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join(format!("out{i}.media"));
        let out = Command::new("ffmpeg")
            .args(ffmpeg_args(&input, &tokens, &output).unwrap())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{encoder_string}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(files_in(dir.path()), [format!("out{i}.media")], "{encoder_string}");
        assert!(std::fs::metadata(&output).unwrap().len() > 0);
    }
}

#[test]
fn an_output_name_ffmpeg_would_read_as_a_protocol_is_a_plain_file() {
    let media = tempfile::tempdir().unwrap();
    let input = oscied_e2e::media::clip(media.path(), "input.mp4", 1, 160, 120);
    let dir = tempfile::tempdir().unwrap();
    // Without `file:`, ffmpeg would open a TCP connection (or a tee of two outputs).
    let output = dir.path().join("a.wav|[f=s16le]tcp:127.0.0.1:9");
    let tokens = validate_encoder_string("-map 0:a -c:a pcm_s16le -f wav").unwrap();
    let out = Command::new("ffmpeg")
        .args(ffmpeg_args(&input, &tokens, &output).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in(dir.path()), ["a.wav|[f=s16le]tcp:127.0.0.1:9"]);
}
