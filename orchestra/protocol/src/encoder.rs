//! Encoders, the validation of a profile's encoder string, and the ffmpeg command line.
//!
//! A profile's `encoder_string` holds only *output options*: the unit supplies the input, the
//! output path and `-progress`. Validation is an allow-by-shape walk over the shell-word tokens:
//! every token must be an option or the value of the option before it, so a stray word (a second
//! output, an input file) is refused, and so are options and values that read or write files or
//! open protocols. The same rules run on the orchestra (422 at profile creation) and on the unit
//! (which refuses to run a string that would not validate).

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The programs a profile can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncoderName {
    /// Copies the input media's directory and renames its main file (packages included).
    Copy,
    /// Runs ffmpeg with the profile's output options.
    Ffmpeg,
}

impl EncoderName {
    pub const ALL: [EncoderName; 2] = [EncoderName::Copy, EncoderName::Ffmpeg];

    pub fn as_str(self) -> &'static str {
        match self {
            EncoderName::Copy => "copy",
            EncoderName::Ffmpeg => "ffmpeg",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            EncoderName::Copy => {
                "Copies the input media directory and renames its main file; encoder_string is ignored"
            }
            EncoderName::Ffmpeg => {
                "ffmpeg -nostdin -y -i <input> <encoder_string> -progress pipe:1 <output>; encoder_string holds output options only"
            }
        }
    }
}

impl fmt::Display for EncoderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an encoder string was refused. The message is shown to the API client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    #[error("encoder_string has broken quoting: {0}")]
    Quoting(String),
    #[error("encoder_string is too long ({0} bytes, at most {MAX_ENCODER_STRING} allowed)")]
    TooLong(usize),
    #[error("encoder_string must not contain NUL or control characters")]
    ControlCharacter,
    #[error("encoder_string must not set {0}: the unit sets the input, the output and -progress")]
    Reserved(String),
    #[error(
        "encoder_string has a stray argument {0:?}: only output options and their values are allowed (no extra input or output)"
    )]
    StrayArgument(String),
    #[error("encoder_string option {0} expects a value")]
    MissingValue(String),
    #[error("encoder_string option {0} reads or writes a file, which is not allowed")]
    FileOption(String),
    #[error("encoder_string value {0:?} looks like a path; paths are not allowed")]
    Path(String),
    #[error(
        "encoder_string value {0:?} names a protocol or URL; only the unit's own files are allowed"
    )]
    Protocol(String),
    #[error("encoder_string filter {0:?} reads files and is not allowed")]
    Filter(String),
    #[error("encoder_string output format {0:?} is not allowed")]
    Format(String),
    #[error("encoder_string option {0} prints information instead of encoding")]
    NotOutputOption(String),
}

pub const MAX_ENCODER_STRING: usize = 4096;

/// ffmpeg's boolean options (fftools' OPT_BOOL and argument-less options), which take no
/// value; `-noX` negates a boolean `-X`. Every other option, AVOptions included, takes exactly
/// one value. Getting this list right is what makes a stray word detectable: a word after an
/// unknown boolean would be an extra output to ffmpeg.
const FLAGS: &[&str] = &[
    "-an",
    "-vn",
    "-sn",
    "-dn",
    "-shortest",
    "-stdin",
    "-hide_banner",
    "-stats",
    "-copyts",
    "-start_at_zero",
    "-ignore_unknown",
    "-copy_unknown",
    "-recast_media",
    "-accurate_seek",
    "-seek_timestamp",
    "-benchmark",
    "-benchmark_all",
    "-intra",
    "-sameq",
    "-same_quant",
    "-deinterlace",
    "-psnr",
    "-xerror",
    "-debug_ts",
    "-qphist",
    "-autorotate",
    "-autoscale",
    "-fix_sub_duration",
    "-fix_sub_duration_heartbeat",
    "-find_stream_info",
    "-print_graphs",
    "-dump",
    "-hex",
    "-re",
    "-bitexact",
];

/// Options that print information and exit instead of encoding.
const INFO_OPTIONS: &[&str] = &[
    "-h",
    "-?",
    "-help",
    "--help",
    "-version",
    "-buildconf",
    "-formats",
    "-muxers",
    "-demuxers",
    "-devices",
    "-codecs",
    "-decoders",
    "-encoders",
    "-bsfs",
    "-protocols",
    "-filters",
    "-pix_fmts",
    "-layouts",
    "-sample_fmts",
    "-dispositions",
    "-colors",
    "-hwaccels",
    "-L",
    "-sources",
    "-sinks",
    "-license",
];

fn is_flag(name: &str) -> bool {
    FLAGS.contains(&name)
        || name
            .strip_prefix("-no")
            .is_some_and(|rest| FLAGS.contains(&format!("-{rest}").as_str()))
}

/// Options the unit owns or that act on inputs or outputs other than the one the unit names.
const RESERVED: &[&str] = &[
    "-i",
    "-y",
    "-n",
    "-progress",
    "-f_strict_input",
    "-stream_loop",
];

/// Options whose value is a file to read or write.
const FILE_OPTIONS: &[&str] = &[
    "-passlogfile",
    "-vstats_file",
    "-sdp_file",
    "-attach",
    "-dump_attachment",
    "-filter_script",
    "-filter_complex_script",
    "-hls_segment_filename",
    "-hls_key_info_file",
    "-hls_fmp4_init_filename",
    "-hls_base_url",
    "-key_info_file",
    "-master_pl_name",
    "-var_stream_map",
    "-segment_list",
    "-hls_subtitle_path",
    "-ca_file",
    "-cert_file",
    "-key_file",
    "-report",
    "-stats_enc_pre",
    "-stats_enc_post",
    "-stats_mux_pre",
    "-fontfile",
    "-textfile",
    "-x264opts_file",
    "-x264-params-file",
    "-x265-params-file",
    "-vstats",
    "-print_graphs_file",
    "-fpre",
    "-vpre",
    "-apre",
    "-spre",
    "-pre",
];

/// Filters that read files (or take commands from outside) and so could escape the storage tree.
const FILE_FILTERS: &[&str] = &[
    "movie",
    "amovie",
    "subtitles",
    "ass",
    "sendcmd",
    "asendcmd",
    "zmq",
    "azmq",
    "lut3d",
    "lut1d",
    "frei0r",
    "frei0r_src",
    "ladspa",
    "lv2",
    "ocr",
    "dnn_processing",
    "dnn_classify",
    "dnn_detect",
    "sr",
    "derain",
    "dnn_backend",
    "arnndn",
    "afir",
    "libvmaf",
    "vmafmotion",
    "coreimage",
    "coreimagesrc",
    "openclsrc",
    "program_opencl",
    "signature",
];

/// Filter options that name a file, refused in any filter.
const FILE_FILTER_KEYS: &[&str] = &[
    "filename",
    "textfile",
    "fontfile",
    "stats_file",
    "stats",
    "file",
    "f",
    "model",
    "log_path",
];

/// Option names whose value is a filter graph.
fn is_filter_option(name: &str) -> bool {
    let base = name.split(':').next().unwrap_or(name);
    matches!(
        base,
        "-vf" | "-af" | "-filter" | "-filter_complex" | "-lavfi"
    )
}

/// Output formats that write elsewhere than the one output the unit names.
const FORBIDDEN_FORMATS: &[&str] = &[
    "tee",
    "segment",
    "stream_segment",
    "ssegment",
    "fifo",
    "image2pipe",
];

/// Protocols that an ffmpeg value could open. A value `proto:...` or `proto,...` is refused.
const PROTOCOLS: &[&str] = &[
    "async",
    "bluray",
    "cache",
    "concat",
    "concatf",
    "crypto",
    "data",
    "fd",
    "file",
    "ftp",
    "gopher",
    "gophers",
    "hls",
    "http",
    "httpproxy",
    "https",
    "icecast",
    "ipfs",
    "ipns",
    "md5",
    "mmsh",
    "mmst",
    "pipe",
    "prompeg",
    "rist",
    "rtmp",
    "rtmpe",
    "rtmps",
    "rtmpt",
    "rtmpte",
    "rtmpts",
    "rtp",
    "rtsp",
    "sctp",
    "sftp",
    "smb",
    "srt",
    "srtp",
    "subfile",
    "tcp",
    "tee",
    "tls",
    "udp",
    "udplite",
    "unix",
    "zmq",
    "libsmbclient",
    "librist",
    "libssh",
    "libsrt",
    "libzmq",
];

/// Split and validate an ffmpeg encoder string. Returns its tokens, ready for [`ffmpeg_args`].
pub fn validate_encoder_string(encoder_string: &str) -> Result<Vec<String>, EncoderError> {
    if encoder_string.len() > MAX_ENCODER_STRING {
        return Err(EncoderError::TooLong(encoder_string.len()));
    }
    if encoder_string
        .chars()
        .any(|c| c.is_control() && c != ' ' && c != '\t' && c != '\n')
    {
        return Err(EncoderError::ControlCharacter);
    }
    let tokens =
        shell_words::split(encoder_string).map_err(|e| EncoderError::Quoting(e.to_string()))?;
    let mut iter = tokens.iter().peekable();
    while let Some(token) = iter.next() {
        if !is_option(token) {
            return Err(EncoderError::StrayArgument(token.clone()));
        }
        check_value(token)?;
        // `-/opt file` (ffmpeg 6+) loads an option's value from a file.
        if token.starts_with("-/") {
            return Err(EncoderError::FileOption(token.clone()));
        }
        let name = token.as_str();
        let base = name.split(':').next().unwrap_or(name);
        if RESERVED.contains(&base) {
            return Err(EncoderError::Reserved(token.clone()));
        }
        if FILE_OPTIONS.contains(&base) {
            return Err(EncoderError::FileOption(token.clone()));
        }
        if INFO_OPTIONS.contains(&base) {
            return Err(EncoderError::NotOutputOption(token.clone()));
        }
        if is_flag(base) {
            continue;
        }
        let value = iter
            .next()
            .ok_or_else(|| EncoderError::MissingValue(token.clone()))?;
        check_value(value)?;
        if is_filter_option(name) {
            check_filter_graph(value)?;
        }
        if base == "-f" && FORBIDDEN_FORMATS.contains(&value.as_str()) {
            return Err(EncoderError::Format(value.clone()));
        }
    }
    Ok(tokens)
}

/// An option is `-name`; `-1` or `-0.5` are values (negative numbers), not options.
fn is_option(token: &str) -> bool {
    let mut chars = token.chars();
    chars.next() == Some('-')
        && chars
            .next()
            .is_some_and(|c| !(c.is_ascii_digit() || c == '.'))
}

/// Refuse values that look like paths or protocol URLs, whole or in any piece of a
/// `key=value:key=value` list (`-x264-params stats=/tmp/x` names a file too).
fn check_value(value: &str) -> Result<(), EncoderError> {
    if value.contains("://") {
        return Err(EncoderError::Protocol(value.to_owned()));
    }
    let unquoted = value.replace(['\\', '\''], "");
    for piece in unquoted.split(['=', ',', '|']) {
        if let Some((scheme, _)) = piece.split_once(':')
            && PROTOCOLS.contains(&scheme.trim().to_ascii_lowercase().as_str())
        {
            return Err(EncoderError::Protocol(value.to_owned()));
        }
    }
    let path_like = |piece: &str| {
        let piece = piece.trim();
        piece.starts_with('/')
            || piece.starts_with("./")
            || piece.starts_with('~')
            || piece == "."
            || piece.split('/').any(|part| part == "..")
    };
    if value.starts_with('\\') || unquoted.split(['=', ',', ':', '|']).any(path_like) {
        return Err(EncoderError::Path(value.to_owned()));
    }
    Ok(())
}

/// Walk a filter graph's filters (`name=args` separated by `,` or `;`, with `[labels]`) and
/// refuse the ones that read files or take file-naming options.
fn check_filter_graph(graph: &str) -> Result<(), EncoderError> {
    for filter in split_filters(graph) {
        let filter = strip_labels(filter.trim());
        let (name, args) = match filter.split_once('=') {
            Some((name, args)) => (name.trim(), args),
            None => (filter.trim(), ""),
        };
        // ffmpeg unescapes names (`mov\\ie`, `'movie'`); `name@instance` names an instance.
        let name = unescape(name);
        let name = name.split('@').next().unwrap_or(&name).to_ascii_lowercase();
        if FILE_FILTERS.contains(&name.as_str()) {
            return Err(EncoderError::Filter(name));
        }
        for arg in split_unescaped(args, ':') {
            if let Some((key, value)) = arg.split_once('=') {
                let key = unescape(key.trim()).to_ascii_lowercase();
                if FILE_FILTER_KEYS.contains(&key.as_str()) {
                    return Err(EncoderError::Filter(format!("{name}: {key}=")));
                }
                check_value(value.trim_matches('\''))?;
            }
        }
    }
    Ok(())
}

/// What ffmpeg's tokenizer makes of a word: backslash escapes and single quotes removed.
fn unescape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut escaped = false;
    for c in word.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '\'' => {}
            _ => out.push(c),
        }
    }
    out
}

/// Split a graph on `,` and `;` outside single quotes and brackets, honouring `\` escapes.
fn split_filters(graph: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut depth = 0usize;
    let mut escaped = false;
    for (i, c) in graph.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '\'' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            ',' | ';' if !quoted && depth == 0 => {
                parts.push(&graph[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&graph[start..]);
    parts
}

fn split_unescaped(args: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in args.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == '\'' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&args[start..i]);
            start = i + sep.len_utf8();
        }
    }
    parts.push(&args[start..]);
    parts
}

/// Remove leading and trailing `[label]` pads from one filter.
fn strip_labels(mut filter: &str) -> &str {
    while filter.starts_with('[') {
        match filter.find(']') {
            Some(end) => filter = filter[end + 1..].trim_start(),
            None => break,
        }
    }
    while filter.ends_with(']') {
        match filter.rfind('[') {
            Some(start) => filter = filter[..start].trim_end(),
            None => break,
        }
    }
    filter
}

/// What an output filename asks for: a plain file, or an HLS/DASH package around a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    File,
    Hls,
    Dash,
}

impl OutputKind {
    pub fn of(filename: &str) -> OutputKind {
        let lower = filename.to_ascii_lowercase();
        if lower.ends_with(".m3u8") {
            OutputKind::Hls
        } else if lower.ends_with(".mpd") {
            OutputKind::Dash
        } else {
            OutputKind::File
        }
    }
}

/// The exact ffmpeg arguments a unit runs (no shell):
/// `-nostdin -y -i <input> <tokens> [-f hls|dash] -progress pipe:1 <output>`.
///
/// `tokens` come from [`validate_encoder_string`]. A manifest output whose tokens do not pick a
/// format gets `-f hls` or `-f dash`, so segments are written beside the manifest.
pub fn ffmpeg_args(input: &Path, tokens: &[String], output: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-nostdin".into(), "-y".into(), "-i".into(), input.into()];
    args.extend(tokens.iter().map(OsString::from));
    let sets_format = tokens.iter().any(|t| t == "-f");
    let kind = OutputKind::of(&output.file_name().unwrap_or_default().to_string_lossy());
    if !sets_format {
        match kind {
            OutputKind::Hls => args.extend(["-f".into(), "hls".into()]),
            OutputKind::Dash => args.extend(["-f".into(), "dash".into()]),
            OutputKind::File => {}
        }
    }
    args.extend(["-progress".into(), "pipe:1".into(), output.into()]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) {
        if let Err(e) = validate_encoder_string(s) {
            panic!("{s:?} should be accepted: {e}");
        }
    }

    fn bad(s: &str) -> EncoderError {
        match validate_encoder_string(s) {
            Ok(tokens) => panic!("{s:?} should be refused, got {tokens:?}"),
            Err(e) => e,
        }
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
    fn accepts_common_output_options() {
        ok("-c:v libx264 -crf 23 -preset veryfast -c:a aac -b:a 128k");
        ok("-vf scale=-2:720 -r 25 -g 50");
        ok("-vf 'scale=trunc(iw/2)*2:trunc(ih/2)*2' -pix_fmt yuv420p");
        ok("-itsoffset -0.5 -an -movflags +faststart");
        ok("-filter_complex '[0:v]split=2[a][b];[a]negate[c];[b][c]hstack' -an");
        ok("-map 0:v:0 -map 0:a? -metadata title=Hello -f mp4");
        ok("-x264-params keyint=50:min-keyint=25:scenecut=0 -movflags +faststart");
        ok("-vf 'setdar=16/9,scale=trunc(iw/2)*2:trunc(ih/2)*2' -af volume=-3dB");
        ok("-noautorotate -nostdin -hide_banner");
        ok("");
    }

    #[test]
    fn refuses_inputs_outputs_and_reserved_options() {
        assert!(matches!(bad("-i other.mp4"), EncoderError::Reserved(_)));
        assert!(matches!(
            bad("-c copy out2.mp4"),
            EncoderError::StrayArgument(_)
        ));
        assert!(matches!(bad("-y"), EncoderError::Reserved(_)));
        assert!(matches!(bad("-progress x"), EncoderError::Reserved(_)));
        assert!(matches!(bad("-c:v"), EncoderError::MissingValue(_)));
        assert!(matches!(bad("-f tee"), EncoderError::Format(_)));
        assert!(matches!(bad("-/vf f.txt"), EncoderError::FileOption(_)));
        // A word after a boolean option is an extra output to ffmpeg.
        assert!(matches!(
            bad("-shortest out2.mp4"),
            EncoderError::StrayArgument(_)
        ));
        assert!(matches!(
            bad("-noshortest out2.mp4"),
            EncoderError::StrayArgument(_)
        ));
        assert!(matches!(
            bad("-fix_sub_duration out2.mp4"),
            EncoderError::StrayArgument(_)
        ));
        assert!(matches!(
            bad("-recast_media out2.mp4"),
            EncoderError::StrayArgument(_)
        ));
        assert!(matches!(
            bad("-an -vn -sn -dn x.mp4"),
            EncoderError::StrayArgument(_)
        ));
        assert!(matches!(bad("-formats"), EncoderError::NotOutputOption(_)));
        assert!(matches!(bad("-h full"), EncoderError::NotOutputOption(_)));
    }

    #[test]
    fn refuses_paths_and_protocols() {
        assert!(matches!(
            bad("-metadata /etc/passwd"),
            EncoderError::Path(_)
        ));
        assert!(matches!(bad("-metadata ../x"), EncoderError::Path(_)));
        assert!(matches!(bad("-metadata ./x"), EncoderError::Path(_)));
        assert!(matches!(bad("-passlogfile x"), EncoderError::FileOption(_)));
        assert!(matches!(
            bad("-hls_segment_filename seg%d.ts"),
            EncoderError::FileOption(_)
        ));
        assert!(matches!(
            bad("-metadata http://evil/x"),
            EncoderError::Protocol(_)
        ));
        assert!(matches!(bad("-c:v file:/x"), EncoderError::Protocol(_)));
        assert!(matches!(bad("-c:v concat:a|b"), EncoderError::Protocol(_)));
        assert!(matches!(
            bad("-x264-params keyint=60:stats=/tmp/x"),
            EncoderError::Path(_)
        ));
        assert!(matches!(
            bad("-x264-params pass=1:stats=../x"),
            EncoderError::Path(_)
        ));
        assert!(matches!(
            bad("-x264-params stats=file:x"),
            EncoderError::Protocol(_)
        ));
        assert!(matches!(bad("-vpre slow"), EncoderError::FileOption(_)));
        assert!(matches!(
            bad("-fpre my.ffpreset"),
            EncoderError::FileOption(_)
        ));
        assert!(matches!(bad("-vstats"), EncoderError::FileOption(_)));
    }

    #[test]
    fn refuses_file_reading_filters() {
        assert!(matches!(bad("-vf movie=x.mp4"), EncoderError::Filter(_)));
        assert!(matches!(bad("-af amovie=x.wav"), EncoderError::Filter(_)));
        assert!(matches!(
            bad("-filter_complex '[0:v]scale=640:-2[a];movie=logo.png[l];[a][l]overlay'"),
            EncoderError::Filter(_)
        ));
        assert!(matches!(
            bad("-vf subtitles=s.srt"),
            EncoderError::Filter(_)
        ));
        assert!(matches!(
            bad("-vf drawtext=textfile=t.txt"),
            EncoderError::Filter(_)
        ));
        assert!(matches!(
            bad("-vf 'MOVIE@x=a.mp4'"),
            EncoderError::Filter(_)
        ));
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
        let tokens = validate_encoder_string("-c:v libx264 -vf 'scale=-2:480'").unwrap();
        let args = ffmpeg_args(Path::new("in.mp4"), &tokens, Path::new("out.mp4"));
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
                "in.mp4",
                "-c:v",
                "libx264",
                "-vf",
                "scale=-2:480",
                "-progress",
                "pipe:1",
                "out.mp4"
            ]
        );
        let hls = ffmpeg_args(Path::new("in.mp4"), &[], Path::new("out.m3u8"));
        assert!(hls.windows(2).any(|w| w[0] == "-f" && w[1] == "hls"));
    }
}
