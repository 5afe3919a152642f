//! Encoders, the validation of a profile's encoder string, and the ffmpeg command line.
//!
//! A profile's `encoder_string` holds only *output options*: the unit supplies the input, the
//! output path and `-progress`. Validation is an allow-list walk over the shell-word tokens:
//! every token must be a reviewed option ([`options`]) or the one value its known arity gives
//! it, and every value must have the option's shape: codec and format names from reviewed
//! lists, numbers, rates, sizes, stream specifiers, filter graphs of reviewed filters and
//! options ([`filters`]), x264/x265 parameter strings of reviewed keys ([`params`]). Anything
//! else is refused with a message naming the option and why. Since validator and ffmpeg agree
//! on every accepted option's arity, a stray word (a second output, an input) is always seen.
//! The same rules run on the orchestra (422 at profile creation) and on the unit (which refuses
//! to run a string that would not validate); the unit's ffmpeg is also sandboxed, so a string
//! wrongly accepted here still cannot touch anything but its task's files.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

mod filters;
mod options;
mod params;

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
                "ffmpeg -nostdin -y -i file:<input> <encoder_string> -progress pipe:1 file:<output>; encoder_string holds output options only, from the allow-list in `allowed`"
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
    #[error("encoder_string option {0} prints information instead of encoding")]
    NotOutputOption(String),
    #[error(
        "encoder_string option {0} is not allowed: only the reviewed output options may be used (see GET /transform/encoders)"
    )]
    UnknownOption(String),
    #[error("encoder_string option {option} does not take the specifier :{specifier}")]
    Specifier { option: String, specifier: String },
    #[error(
        "encoder_string option {option} has a value {value:?} that is not allowed: expected {expected}"
    )]
    BadValue {
        option: String,
        value: String,
        expected: String,
    },
    #[error(
        "encoder_string output format {0:?} is not allowed: only the reviewed formats may be used (see GET /transform/encoders)"
    )]
    Format(String),
    #[error("encoder_string option {option}: {reason}")]
    Filter { option: String, reason: String },
    #[error("encoder_string option {option}: {reason}")]
    Param { option: String, reason: String },
}

pub const MAX_ENCODER_STRING: usize = 4096;

/// Options the unit owns.
const RESERVED: &[&str] = &["-i", "-y", "-n", "-progress"];

/// Options not on the list that are known to read or write files: refused like every
/// unlisted option, with a message that says why.
const FILE_OPTIONS: &[&str] = &[
    "-pass",
    "-passlogfile",
    "-stats",
    "-vstats",
    "-vstats_file",
    "-sdp_file",
    "-attach",
    "-dump_attachment",
    "-filter_script",
    "-filter_complex_script",
    "-hls_segment_filename",
    "-hls_key_info_file",
    "-hls_fmp4_init_filename",
    "-master_pl_name",
    "-var_stream_map",
    "-init_seg_name",
    "-media_seg_name",
    "-segment_list",
    "-report",
    "-stats_enc_pre",
    "-stats_enc_post",
    "-stats_mux_pre",
    "-fpre",
    "-vpre",
    "-apre",
    "-spre",
    "-pre",
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
];

/// Split and validate an ffmpeg encoder string. Returns its tokens, ready for [`ffmpeg_args`]
/// (format names lowercased, as validated).
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
    let words =
        shell_words::split(encoder_string).map_err(|e| EncoderError::Quoting(e.to_string()))?;
    let mut tokens = Vec::with_capacity(words.len());
    let mut words = words.into_iter();
    while let Some(token) = words.next() {
        let spec = option_for(&token)?;
        tokens.push(token.clone());
        if matches!(spec.shape, options::Shape::Flag) {
            continue;
        }
        let value = words
            .next()
            .ok_or_else(|| EncoderError::MissingValue(token.clone()))?;
        match options::check(spec.shape, &value) {
            Ok(None) => tokens.push(value),
            Ok(Some(normalised)) => tokens.push(normalised),
            Err(options::ValueError::Expected(expected)) => {
                return Err(EncoderError::BadValue {
                    option: token,
                    value,
                    expected,
                });
            }
            Err(options::ValueError::Format(format)) => return Err(EncoderError::Format(format)),
            Err(options::ValueError::Filter(reason)) => {
                return Err(EncoderError::Filter {
                    option: token,
                    reason,
                });
            }
            Err(options::ValueError::Param(reason)) => {
                return Err(EncoderError::Param {
                    option: token,
                    reason,
                });
            }
        }
    }
    Ok(tokens)
}

/// The reviewed option a token names (`-name` or `-name:specifier`), or why it is refused.
fn option_for(token: &str) -> Result<&'static options::OptionSpec, EncoderError> {
    if !token.starts_with('-') || token.len() < 2 {
        return Err(EncoderError::StrayArgument(token.to_owned()));
    }
    // `-/opt file` (ffmpeg 6+) loads an option's value from a file.
    if token.starts_with("-/") {
        return Err(EncoderError::FileOption(token.to_owned()));
    }
    // fftools matches the name up to the first `:`; the rest is the specifier.
    let (name, specifier) = match token.split_once(':') {
        Some((name, specifier)) => (name, Some(specifier)),
        None => (token, None),
    };
    if RESERVED.contains(&name) {
        return Err(EncoderError::Reserved(token.to_owned()));
    }
    let Some(spec) = options::find(name) else {
        return Err(if FILE_OPTIONS.contains(&name) {
            EncoderError::FileOption(token.to_owned())
        } else if INFO_OPTIONS.contains(&name) {
            EncoderError::NotOutputOption(token.to_owned())
        } else {
            EncoderError::UnknownOption(token.to_owned())
        });
    };
    if let Some(specifier) = specifier {
        let ok = match spec.spec {
            options::Spec::None => false,
            options::Spec::Stream => options::is_stream_specifier(specifier),
            options::Spec::Metadata => options::is_metadata_specifier(specifier),
        };
        if !ok {
            return Err(EncoderError::Specifier {
                option: name.to_owned(),
                specifier: specifier.to_owned(),
            });
        }
    }
    Ok(spec)
}

/// What `GET /transform/encoders` shows of the ffmpeg allow-list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FfmpegAllowList {
    /// The output options a profile may use, with the shape of their values.
    pub options: Vec<AllowedOption>,
    /// The filters a filter graph may use, with their options.
    pub filters: Vec<AllowedFilter>,
    /// The output formats (`-f`), compared case-insensitively.
    pub formats: Vec<String>,
    /// The encoders (`-c`, `-c:v`, ...), plus `copy`.
    pub codecs: Vec<String>,
    /// The bitstream filters (`-bsf`).
    pub bitstream_filters: Vec<String>,
    /// The keys allowed in `-x264-params` and `-x264opts`.
    pub x264_params: Vec<String>,
    /// The keys allowed in `-x265-params`.
    pub x265_params: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllowedOption {
    /// `-c`, `-b`, `-movflags`.
    pub name: String,
    /// What the value must be, or `no value`.
    pub value: String,
    /// `stream` (`-c:v`, `-b:a:0`), `metadata` (`-metadata:s:a:0`) or `none`.
    pub specifier: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllowedFilter {
    pub name: String,
    /// Every option it accepts by name, in class order (then `enable` when it supports the
    /// timeline).
    pub options: Vec<String>,
    /// The options positional arguments set, in order.
    pub positional: Vec<String>,
    pub timeline: bool,
}

/// The allow-list, for the documentation route.
pub fn ffmpeg_allow_list() -> FfmpegAllowList {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    FfmpegAllowList {
        options: options::OPTIONS
            .iter()
            .map(|o| AllowedOption {
                name: o.name.to_owned(),
                value: options::describe(o.shape),
                specifier: match o.spec {
                    options::Spec::None => "none",
                    options::Spec::Stream => "stream",
                    options::Spec::Metadata => "metadata",
                }
                .to_owned(),
            })
            .collect(),
        filters: filters::documented()
            .map(|(f, names)| AllowedFilter {
                name: f.name.to_owned(),
                options: strings(&names),
                positional: f
                    .options
                    .iter()
                    .filter(|o| !o.alias)
                    .map(|o| o.name.to_owned())
                    .collect(),
                timeline: f.timeline,
            })
            .collect(),
        formats: strings(options::FORMATS),
        codecs: strings(options::CODECS),
        bitstream_filters: strings(options::BSFS),
        x264_params: strings(params::X264_KEYS),
        x265_params: strings(params::X265_KEYS),
    }
}

/// The reviewed lists, for the tests that hold them against the installed ffmpeg.
#[doc(hidden)]
pub mod reviewed {
    /// Every allowed option name (without specifier).
    pub fn options() -> Vec<&'static str> {
        super::options::OPTIONS.iter().map(|o| o.name).collect()
    }
    /// Whether an option takes no value.
    pub fn is_flag(name: &str) -> bool {
        super::options::find(name).is_some_and(|o| matches!(o.shape, super::options::Shape::Flag))
    }
    pub fn formats() -> &'static [&'static str] {
        super::options::FORMATS
    }
    pub fn codecs() -> &'static [&'static str] {
        super::options::CODECS
    }
    /// A filter: name, timeline support, its own options in class order as `(name, is_alias)`.
    pub type Filter = (&'static str, bool, Vec<(&'static str, bool)>);

    pub fn filters() -> Vec<Filter> {
        super::filters::FILTERS
            .iter()
            .map(|f| {
                (
                    f.name,
                    f.timeline,
                    f.options.iter().map(|o| (o.name, o.alias)).collect(),
                )
            })
            .collect()
    }
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
/// `-nostdin -y -i file:<input> <tokens> [-f hls|dash] -progress pipe:1 file:<output>`.
///
/// `tokens` come from [`validate_encoder_string`]. The input and the output are passed as
/// `file:` and an absolute path, so ffmpeg never reads them as a protocol (`tcp:`, `pipe:`), a
/// tee list or an option, whatever their names and whatever ffmpeg's working directory. A
/// manifest output whose tokens do not pick a format gets `-f hls` or `-f dash`, so segments
/// are written beside the manifest. Fails only if a relative path cannot be made absolute (the
/// current directory is gone).
pub fn ffmpeg_args(
    input: &Path,
    tokens: &[String],
    output: &Path,
) -> std::io::Result<Vec<OsString>> {
    let file_url = |path: &Path| -> std::io::Result<OsString> {
        let mut url = OsString::from("file:");
        url.push(std::path::absolute(path)?);
        Ok(url)
    };
    let mut args: Vec<OsString> = vec![
        "-nostdin".into(),
        "-y".into(),
        "-i".into(),
        file_url(input)?,
    ];
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
    args.extend(["-progress".into(), "pipe:1".into(), file_url(output)?]);
    Ok(args)
}

#[cfg(test)]
mod tests;
