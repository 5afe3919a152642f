//! The reviewed table of output options a profile may use, each with its arity and the shape of
//! its value.
//!
//! Why a table and not a deny-list: ffmpeg decides which word is an option's value by the
//! option's own arity, and a validator that guesses an arity wrong (a boolean it does not know)
//! reads the next word as a value while ffmpeg reads it as a second output file. Here every
//! accepted option has a known arity (checked against ffmpeg 5.1's `fftools/ffmpeg_opt.c` and
//! its AVOptions, which always take one value), and every value has a shape that cannot name a
//! file or a protocol. Options that read or write files (`-pass`, `-passlogfile`, `-stats*`,
//! `-vstats*`, `-attach`, `-hls_segment_filename`, presets, `-/opt`...) are simply not here.

use super::filters;
use super::params;

/// What may follow the option name after a `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    /// No specifier: `-f`, `-movflags` (format options refuse one).
    None,
    /// An output stream specifier: `-c:v`, `-b:a:0`, `-filter:v`.
    Stream,
    /// A metadata specifier: `-metadata:g`, `-metadata:s:a:0`.
    Metadata,
}

/// The shape of an option's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// No value (an fftools boolean).
    Flag,
    /// An encoder from [`CODECS`], or `copy`.
    Codec,
    /// A muxer from [`FORMATS`], compared case-insensitively and passed lowercased.
    Format,
    Int(i64, i64),
    Float(f64, f64),
    /// `128k`, `1.5M`, `800000`.
    BitRate,
    /// Seconds (`2.5`, `500ms`) or `[HH:]MM:SS[.frac]`, not negative.
    Duration,
    /// `25`, `29.97`, `30000/1001`, `pal`.
    FrameRate,
    /// `1280x720`, `hd720`.
    Size,
    /// `16:9`, `16/9`, `1.7777`.
    Aspect,
    PixFmt,
    SampleFmt,
    ChannelLayout,
    /// `0`, `0:v:0`, `0:a?`, `-0:s`, `[label]`.
    Map,
    /// `+a+b-c` over a reviewed list.
    Flags(&'static [&'static str]),
    /// One of a reviewed list.
    Enum(&'static [&'static str]),
    /// `key=value`, free text of bounded length.
    Metadata,
    /// `avc1`, `hvc1`, `0x31637661`.
    FourCc,
    /// `hh:mm:ss[:;.]ff`.
    Timecode,
    /// `source`, `expr:<expression>` or a comma-separated list of times.
    KeyFrames,
    /// `3.1`, `31`, `auto`.
    Level,
    /// A comma-separated list of bitstream filters from [`BSFS`], without arguments.
    Bsf,
    FilterGraph,
    X264Params,
    X264Opts,
    X265Params,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionSpec {
    pub name: &'static str,
    pub shape: Shape,
    pub spec: Spec,
}

const fn opt(name: &'static str, shape: Shape) -> OptionSpec {
    OptionSpec {
        name,
        shape,
        spec: Spec::None,
    }
}

/// An option that takes an output stream specifier (`-name:v`).
const fn per_stream(name: &'static str, shape: Shape) -> OptionSpec {
    OptionSpec {
        name,
        shape,
        spec: Spec::Stream,
    }
}

const BOOL: Shape = Shape::Enum(&["0", "1"]);
const COUNT: Shape = Shape::Int(0, 1 << 40);
const FILE_INDEX: Shape = Shape::Enum(&["-1", "0"]);

/// The reviewed encoders: software encoders of ffmpeg 5.1 (no hardware ones: they open
/// devices), plus `copy`.
pub(crate) const CODECS: &[&str] = &[
    "copy",
    // video
    "libx264",
    "libx264rgb",
    "libx265",
    "libvpx",
    "libvpx-vp9",
    "libaom-av1",
    "libsvtav1",
    "librav1e",
    "mpeg4",
    "libxvid",
    "mpeg1video",
    "mpeg2video",
    "h263",
    "h263p",
    "mjpeg",
    "prores",
    "prores_ks",
    "prores_aw",
    "dnxhd",
    "dvvideo",
    "ffv1",
    "ffvhuff",
    "huffyuv",
    "utvideo",
    "magicyuv",
    "rawvideo",
    "v210",
    "qtrle",
    "libtheora",
    "flv",
    "gif",
    "apng",
    "png",
    "libwebp",
    // audio
    "aac",
    "ac3",
    "eac3",
    "mp2",
    "libtwolame",
    "libmp3lame",
    "libopus",
    "opus",
    "libvorbis",
    "vorbis",
    "flac",
    "alac",
    "wavpack",
    "pcm_s16le",
    "pcm_s16be",
    "pcm_s24le",
    "pcm_s24be",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_f64le",
    "pcm_u8",
    "pcm_alaw",
    "pcm_mulaw",
    // subtitles
    "mov_text",
    "webvtt",
    "srt",
    "subrip",
    "ass",
    "ssa",
    "text",
    "ttml",
    "dvdsub",
    "dvbsub",
];

/// The reviewed muxers: each writes the one file the unit names (HLS and DASH write their
/// segments beside it). Not here: tee, segment, fifo, image2 and the other muxers that write
/// elsewhere, open devices or networks, or read files.
pub(crate) const FORMATS: &[&str] = &[
    "mp4", "mov", "ipod", "ismv", "3gp", "3g2", "matroska", "webm", "mpegts", "mpeg", "hls",
    "dash", "mp3", "mp2", "adts", "ac3", "eac3", "wav", "w64", "aiff", "caf", "flac", "ogg", "oga",
    "ogv", "opus", "spx", "avi", "flv", "mxf", "nut", "ivf", "gif", "apng", "rawvideo", "h264",
    "hevc", "m4v", "mjpeg", "srt", "webvtt", "ass", "null", "s16le", "s16be", "s24le", "s24be",
    "s32le", "f32le", "f64le", "u8", "alaw", "mulaw",
];

pub(crate) const BSFS: &[&str] = &[
    "h264_mp4toannexb",
    "hevc_mp4toannexb",
    "aac_adtstoasc",
    "extract_extradata",
    "dump_extra",
    "remove_extra",
    "vp9_superframe",
    "null",
];

const DISPOSITIONS: &[&str] = &[
    "0",
    "default",
    "dub",
    "original",
    "comment",
    "lyrics",
    "karaoke",
    "forced",
    "hearing_impaired",
    "visual_impaired",
    "clean_effects",
    "attached_pic",
    "captions",
    "descriptions",
    "dependent",
    "metadata",
];

const MOVFLAGS: &[&str] = &[
    "faststart",
    "empty_moov",
    "frag_keyframe",
    "frag_every_frame",
    "separate_moof",
    "frag_custom",
    "isml",
    "omit_tfhd_offset",
    "disable_chpl",
    "default_base_moof",
    "dash",
    "cmaf",
    "frag_discont",
    "delay_moov",
    "global_sidx",
    "skip_sidx",
    "write_colr",
    "prefer_icc",
    "write_gama",
    "use_metadata_tags",
    "skip_trailer",
    "negative_cts_offsets",
];

/// No `append_list` (reads a playlist), no `periodic_rekey` (key files), no strftime names.
const HLS_FLAGS: &[&str] = &[
    "single_file",
    "temp_file",
    "delete_segments",
    "round_durations",
    "discont_start",
    "omit_endlist",
    "split_by_time",
    "program_date_time",
    "independent_segments",
    "iframes_only",
];

const CODEC_FLAGS: &[&str] = &[
    "global_header",
    "cgop",
    "ildct",
    "ilme",
    "low_delay",
    "bitexact",
    "gray",
    "qpel",
    "mv4",
    "loop",
    "aic",
];

const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
    // libsvtav1 takes a number.
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "10",
    "11",
    "12",
    "13",
];

const TUNES: &[&str] = &[
    "film",
    "animation",
    "grain",
    "stillimage",
    "fastdecode",
    "zerolatency",
    "psnr",
    "ssim",
];

const PROFILES: &[&str] = &[
    "baseline",
    "main",
    "high",
    "high10",
    "high422",
    "high444",
    "high444p",
    "main10",
    "main12",
    "main422-10",
    "main444-8",
    "mainstillpicture",
    "aac_low",
    "aac_he",
    "aac_he_v2",
    "aac_ld",
    "aac_eld",
    "aac_main",
    "aac_ltp",
    "mpeg2_aac_low",
    "mpeg2_aac_he",
    "proxy",
    "lt",
    "standard",
    "hq",
    "4444",
    "4444xq",
    "auto",
    "dnxhd",
    "dnxhr_lb",
    "dnxhr_sq",
    "dnxhr_hq",
    "dnxhr_hqx",
    "dnxhr_444",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
];

const FPS_MODES: &[&str] = &[
    "passthrough",
    "cfr",
    "vfr",
    "drop",
    "auto",
    "-1",
    "0",
    "1",
    "2",
];

const COLOR_PRIMARIES: &[&str] = &[
    "bt709",
    "unknown",
    "unspecified",
    "bt470m",
    "bt470bg",
    "smpte170m",
    "smpte240m",
    "film",
    "bt2020",
    "smpte428",
    "smpte431",
    "smpte432",
    "jedec-p22",
    "ebu3213",
];

const COLOR_TRCS: &[&str] = &[
    "bt709",
    "unknown",
    "unspecified",
    "gamma22",
    "gamma28",
    "smpte170m",
    "smpte240m",
    "linear",
    "log100",
    "log316",
    "iec61966-2-4",
    "bt1361e",
    "iec61966-2-1",
    "bt2020-10",
    "bt2020-12",
    "smpte2084",
    "smpte428",
    "arib-std-b67",
];

const COLORSPACES: &[&str] = &[
    "rgb",
    "bt709",
    "unknown",
    "unspecified",
    "fcc",
    "bt470bg",
    "smpte170m",
    "smpte240m",
    "ycgco",
    "bt2020nc",
    "bt2020c",
    "smpte2085",
    "chroma-derived-nc",
    "chroma-derived-c",
    "ictcp",
];

const COLOR_RANGES: &[&str] = &[
    "unknown",
    "unspecified",
    "tv",
    "pc",
    "mpeg",
    "jpeg",
    "limited",
    "full",
];

const STRICT: &[&str] = &[
    "very",
    "strict",
    "normal",
    "unofficial",
    "experimental",
    "-2",
    "-1",
    "0",
    "1",
    "2",
];

/// Abbreviations ffmpeg's `av_parse_video_rate` knows.
const RATE_ABBREVIATIONS: &[&str] = &[
    "ntsc",
    "pal",
    "qntsc",
    "qpal",
    "sntsc",
    "spal",
    "film",
    "ntsc-film",
];

/// Abbreviations ffmpeg's `av_parse_video_size` knows.
const SIZE_ABBREVIATIONS: &[&str] = &[
    "ntsc",
    "pal",
    "qntsc",
    "qpal",
    "sntsc",
    "spal",
    "film",
    "ntsc-film",
    "sqcif",
    "qcif",
    "cif",
    "4cif",
    "16cif",
    "qqvga",
    "qvga",
    "vga",
    "svga",
    "xga",
    "uxga",
    "qxga",
    "sxga",
    "qsxga",
    "hsxga",
    "wvga",
    "wxga",
    "wsxga",
    "wuxga",
    "woxga",
    "wqsxga",
    "wquxga",
    "whsxga",
    "whuxga",
    "cga",
    "ega",
    "hd480",
    "hd720",
    "hd1080",
    "2k",
    "2kflat",
    "2kscope",
    "4k",
    "4kflat",
    "4kscope",
    "nhd",
    "hqvga",
    "wqvga",
    "fwqvga",
    "hvga",
    "qhd",
    "2kdci",
    "4kdci",
    "uhd2160",
    "uhd4320",
];

/// The reviewed output options. fftools options first (arity from `ffmpeg_opt.c`), then the
/// AVOptions of codecs and muxers (always one value).
pub(crate) const OPTIONS: &[OptionSpec] = &[
    // Streams, codecs, format.
    opt("-f", Shape::Format),
    per_stream("-c", Shape::Codec),
    per_stream("-codec", Shape::Codec),
    opt("-vcodec", Shape::Codec),
    opt("-acodec", Shape::Codec),
    opt("-scodec", Shape::Codec),
    opt("-map", Shape::Map),
    opt("-map_metadata", FILE_INDEX),
    opt("-map_chapters", FILE_INDEX),
    opt("-vn", Shape::Flag),
    opt("-an", Shape::Flag),
    opt("-sn", Shape::Flag),
    opt("-dn", Shape::Flag),
    // Time and size.
    opt("-t", Shape::Duration),
    opt("-to", Shape::Duration),
    opt("-ss", Shape::Duration),
    opt("-fs", Shape::Int(1, 1 << 50)),
    opt("-shortest", Shape::Flag),
    per_stream("-frames", COUNT),
    opt("-vframes", COUNT),
    opt("-aframes", COUNT),
    // Metadata.
    OptionSpec {
        name: "-metadata",
        shape: Shape::Metadata,
        spec: Spec::Metadata,
    },
    per_stream("-disposition", Shape::Flags(DISPOSITIONS)),
    opt("-timecode", Shape::Timecode),
    // Filters.
    per_stream("-filter", Shape::FilterGraph),
    opt("-vf", Shape::FilterGraph),
    opt("-af", Shape::FilterGraph),
    opt("-filter_complex", Shape::FilterGraph),
    opt("-lavfi", Shape::FilterGraph),
    opt("-filter_threads", Shape::Int(0, 64)),
    opt("-filter_complex_threads", Shape::Int(0, 64)),
    // Video.
    per_stream("-r", Shape::FrameRate),
    per_stream("-fpsmax", Shape::FrameRate),
    per_stream("-s", Shape::Size),
    per_stream("-aspect", Shape::Aspect),
    per_stream("-pix_fmt", Shape::PixFmt),
    per_stream("-fps_mode", Shape::Enum(FPS_MODES)),
    opt("-vsync", Shape::Enum(FPS_MODES)),
    per_stream("-force_fps", Shape::Flag),
    per_stream("-force_key_frames", Shape::KeyFrames),
    per_stream("-top", Shape::Enum(&["-1", "0", "1"])),
    per_stream("-tag", Shape::FourCc),
    opt("-vtag", Shape::FourCc),
    opt("-atag", Shape::FourCc),
    per_stream("-q", Shape::Float(-1.0, 1000.0)),
    per_stream("-qscale", Shape::Float(-1.0, 1000.0)),
    opt("-aq", Shape::Float(-1.0, 1000.0)),
    per_stream("-profile", Shape::Enum(PROFILES)),
    per_stream("-b", Shape::BitRate),
    opt("-ab", Shape::BitRate),
    // Audio.
    per_stream("-ar", Shape::Int(1000, 768_000)),
    per_stream("-ac", Shape::Int(1, 64)),
    per_stream("-sample_fmt", Shape::SampleFmt),
    per_stream("-channel_layout", Shape::ChannelLayout),
    per_stream("-ch_layout", Shape::ChannelLayout),
    // Muxing and timestamps.
    opt("-copyts", Shape::Flag),
    opt("-start_at_zero", Shape::Flag),
    opt("-copytb", Shape::Enum(&["-1", "0", "1"])),
    opt("-muxdelay", Shape::Float(0.0, 100.0)),
    opt("-muxpreload", Shape::Float(0.0, 100.0)),
    per_stream("-max_muxing_queue_size", Shape::Int(1, 1 << 20)),
    per_stream("-muxing_queue_data_threshold", Shape::Int(1, 1 << 30)),
    per_stream("-bsf", Shape::Bsf),
    opt("-stats_period", Shape::Duration),
    // Codec AVOptions.
    per_stream("-g", Shape::Int(-1, 1 << 20)),
    per_stream("-bf", Shape::Int(-1, 16)),
    per_stream("-keyint_min", Shape::Int(-1, 1 << 20)),
    per_stream("-sc_threshold", Shape::Int(-1_000_000_000, 1_000_000_000)),
    per_stream("-refs", Shape::Int(-1, 16)),
    per_stream("-crf", Shape::Float(-1.0, 63.0)),
    per_stream("-qp", Shape::Int(-1, 255)),
    per_stream("-qmin", Shape::Int(-1, 255)),
    per_stream("-qmax", Shape::Int(-1, 1024)),
    per_stream("-maxrate", Shape::BitRate),
    per_stream("-minrate", Shape::BitRate),
    per_stream("-bufsize", Shape::BitRate),
    per_stream("-preset", Shape::Enum(PRESETS)),
    per_stream("-tune", Shape::Enum(TUNES)),
    per_stream("-level", Shape::Level),
    per_stream("-threads", Shape::Int(0, 64)),
    per_stream("-x264-params", Shape::X264Params),
    per_stream("-x264opts", Shape::X264Opts),
    per_stream("-x265-params", Shape::X265Params),
    per_stream("-color_primaries", Shape::Enum(COLOR_PRIMARIES)),
    per_stream("-color_trc", Shape::Enum(COLOR_TRCS)),
    per_stream("-colorspace", Shape::Enum(COLORSPACES)),
    per_stream("-color_range", Shape::Enum(COLOR_RANGES)),
    per_stream("-flags", Shape::Flags(CODEC_FLAGS)),
    per_stream("-strict", Shape::Enum(STRICT)),
    per_stream("-cutoff", Shape::Int(0, 192_000)),
    per_stream("-compression_level", Shape::Int(-1, 12)),
    per_stream(
        "-vbr",
        Shape::Enum(&["off", "on", "constrained", "0", "1", "2", "3", "4", "5"]),
    ),
    per_stream("-application", Shape::Enum(&["voip", "audio", "lowdelay"])),
    per_stream("-frame_duration", Shape::Float(2.5, 120.0)),
    per_stream("-aac_coder", Shape::Enum(&["anmr", "twoloop", "fast"])),
    per_stream("-deadline", Shape::Enum(&["best", "good", "realtime"])),
    per_stream("-cpu-used", Shape::Int(-16, 16)),
    per_stream("-row-mt", BOOL),
    per_stream("-tile-columns", Shape::Int(0, 6)),
    per_stream("-tile-rows", Shape::Int(0, 6)),
    per_stream("-lag-in-frames", Shape::Int(0, 70)),
    per_stream("-auto-alt-ref", Shape::Int(0, 6)),
    per_stream("-nal-hrd", Shape::Enum(&["none", "vbr", "cbr"])),
    per_stream("-forced-idr", BOOL),
    // Muxer AVOptions (no stream specifier: ffmpeg refuses one on format options).
    opt("-movflags", Shape::Flags(MOVFLAGS)),
    opt("-frag_duration", Shape::Int(0, 1 << 40)),
    opt("-min_frag_duration", Shape::Int(0, 1 << 40)),
    opt("-frag_size", Shape::Int(0, 1 << 30)),
    opt("-video_track_timescale", Shape::Int(0, 1 << 30)),
    opt("-hls_time", Shape::Float(0.1, 3600.0)),
    opt("-hls_init_time", Shape::Float(0.0, 3600.0)),
    opt("-hls_list_size", Shape::Int(0, 1 << 20)),
    opt("-hls_playlist_type", Shape::Enum(&["event", "vod"])),
    opt("-hls_segment_type", Shape::Enum(&["mpegts", "fmp4"])),
    opt("-hls_flags", Shape::Flags(HLS_FLAGS)),
    opt("-hls_allow_cache", Shape::Enum(&["-1", "0", "1"])),
    opt("-start_number", Shape::Int(0, 1 << 40)),
    opt("-seg_duration", Shape::Duration),
    opt("-use_template", BOOL),
    opt("-use_timeline", BOOL),
    opt("-single_file", BOOL),
    opt("-streaming", BOOL),
    opt("-ldash", BOOL),
    opt("-window_size", Shape::Int(0, 1 << 20)),
    opt("-extra_window_size", Shape::Int(0, 1 << 20)),
    opt("-dash_segment_type", Shape::Enum(&["auto", "mp4", "webm"])),
    opt(
        "-frag_type",
        Shape::Enum(&["none", "every_frame", "duration", "pframes"]),
    ),
    opt("-id3v2_version", Shape::Enum(&["0", "3", "4"])),
    opt("-write_xing", BOOL),
    opt(
        "-avoid_negative_ts",
        Shape::Enum(&[
            "auto",
            "disabled",
            "make_non_negative",
            "make_zero",
            "-1",
            "0",
            "1",
            "2",
        ]),
    ),
    opt("-max_interleave_delta", Shape::Int(0, 1 << 40)),
];

pub(crate) fn find(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Check a value against its shape. `Ok(Some(v))` replaces the value (a format name is passed
/// lowercased); `Err` carries what was expected (or, for graphs and parameter strings, the
/// precise reason).
pub(crate) fn check(shape: Shape, value: &str) -> Result<Option<String>, ValueError> {
    let expected = |ok: bool| {
        if ok {
            Ok(None)
        } else {
            Err(ValueError::Expected(describe(shape)))
        }
    };
    match shape {
        Shape::Flag => Ok(None),
        Shape::Codec => expected(CODECS.contains(&value)),
        Shape::Format => {
            // ffmpeg matches muxer names case-insensitively (av_match_name).
            let lower = value.to_ascii_lowercase();
            if FORMATS.contains(&lower.as_str()) {
                Ok(Some(lower))
            } else {
                Err(ValueError::Format(value.to_owned()))
            }
        }
        Shape::Int(min, max) => {
            expected(parse_int(value).is_some_and(|v| (min..=max).contains(&v)))
        }
        Shape::Float(min, max) => {
            expected(parse_float(value).is_some_and(|v| v >= min && v <= max))
        }
        Shape::BitRate => expected(is_bit_rate(value)),
        Shape::Duration => expected(is_duration(value)),
        Shape::FrameRate => expected(
            is_decimal(value) || is_ratio(value, '/') || RATE_ABBREVIATIONS.contains(&value),
        ),
        Shape::Size => expected(is_size(value) || SIZE_ABBREVIATIONS.contains(&value)),
        Shape::Aspect => {
            expected(is_decimal(value) || is_ratio(value, ':') || is_ratio(value, '/'))
        }
        Shape::PixFmt | Shape::SampleFmt => expected(is_name(value, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        })),
        Shape::ChannelLayout => expected(is_name(value, |c| {
            c.is_ascii_alphanumeric() || "_.()+|".contains(c)
        })),
        Shape::Map => expected(is_map(value)),
        Shape::Flags(list) => expected(is_flags(value, list)),
        Shape::Enum(list) => expected(list.contains(&value)),
        Shape::Metadata => expected(is_metadata(value)),
        Shape::FourCc => expected(
            (value.len() == 4 && value.chars().all(|c| c.is_ascii_alphanumeric()))
                || value.strip_prefix("0x").is_some_and(|h| {
                    !h.is_empty() && h.len() <= 8 && h.chars().all(|c| c.is_ascii_hexdigit())
                }),
        ),
        Shape::Timecode => expected(is_timecode(value)),
        Shape::KeyFrames => expected(is_key_frames(value)),
        Shape::Level => expected(
            value == "auto"
                || (value.len() <= 4
                    && value.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && is_decimal(value)),
        ),
        Shape::Bsf => expected(value.split(',').all(|b| BSFS.contains(&b))),
        Shape::FilterGraph => filters::check_graph(value)
            .map(|()| None)
            .map_err(ValueError::Filter),
        Shape::X264Params => params::check_x264_params(value)
            .map(|()| None)
            .map_err(ValueError::Param),
        Shape::X264Opts => params::check_x264opts(value)
            .map(|()| None)
            .map_err(ValueError::Param),
        Shape::X265Params => params::check_x265_params(value)
            .map(|()| None)
            .map_err(ValueError::Param),
    }
}

/// Why a value was refused.
#[derive(Debug)]
pub(crate) enum ValueError {
    /// It does not have the option's shape; the text says what was expected.
    Expected(String),
    /// A format that is not on the list.
    Format(String),
    /// A filter graph's filter or option that is not allowed, with the reason.
    Filter(String),
    /// A parameter string's key that is not allowed, with the reason.
    Param(String),
}

/// A human description of a shape, for errors and `GET /transform/encoders`.
pub(crate) fn describe(shape: Shape) -> String {
    match shape {
        Shape::Flag => "no value".into(),
        Shape::Codec => "an encoder name from the codecs list, or copy".into(),
        Shape::Format => "a format name from the formats list".into(),
        Shape::Int(min, max) => format!("an integer from {min} to {max}"),
        Shape::Float(min, max) => format!("a number from {min} to {max}"),
        Shape::BitRate => "a bit rate (800000, 128k, 1.5M)".into(),
        Shape::Duration => "a duration (2.5, 500ms, 00:01:30.5)".into(),
        Shape::FrameRate => "a frame rate (25, 29.97, 30000/1001, pal)".into(),
        Shape::Size => "a size (1280x720, hd720)".into(),
        Shape::Aspect => "an aspect ratio (16:9, 16/9, 1.7778)".into(),
        Shape::PixFmt => "a pixel format name (yuv420p)".into(),
        Shape::SampleFmt => "a sample format name (s16, fltp)".into(),
        Shape::ChannelLayout => "a channel layout (stereo, 5.1, FL+FR)".into(),
        Shape::Map => {
            "a stream of the input (0, 0:v, 0:a:1, 0:a?, -0:s) or a filter graph label ([out])"
                .into()
        }
        Shape::Flags(list) => format!("flags (+a-b) from: {}", list.join(", ")),
        Shape::Enum(list) => format!("one of: {}", list.join(", ")),
        Shape::Metadata => format!(
            "key=value (key of letters, digits, _ and -; value at most {MAX_METADATA_VALUE} bytes of text)"
        ),
        Shape::FourCc => "a four-character code (avc1) or 0x followed by hex digits".into(),
        Shape::Timecode => "a timecode hh:mm:ss:ff (or ; or . before the frames)".into(),
        Shape::KeyFrames => "source, expr:<expression>, or a comma-separated list of times".into(),
        Shape::Level => "a level (3.1, 31) or auto".into(),
        Shape::Bsf => format!(
            "a comma-separated list of bitstream filters from: {}",
            BSFS.join(", ")
        ),
        Shape::FilterGraph => "a filter graph of the reviewed filters and options".into(),
        Shape::X264Params | Shape::X264Opts => {
            "key=value pairs separated by : with keys from the x264 list".into()
        }
        Shape::X265Params => "key=value pairs separated by : with keys from the x265 list".into(),
    }
}

pub(crate) const MAX_METADATA_VALUE: usize = 1024;

fn parse_int(value: &str) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || digits.len() > 18 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `12`, `-0.5`, `.5`, `2.`: plain decimals (no exponent, no hex, no `inf`).
fn parse_float(value: &str) -> Option<f64> {
    let body = value.strip_prefix('-').unwrap_or(value);
    if body.is_empty()
        || body.len() > 24
        || !body.chars().all(|c| c.is_ascii_digit() || c == '.')
        || body.matches('.').count() > 1
        || body == "."
    {
        return None;
    }
    value.parse().ok()
}

fn is_decimal(value: &str) -> bool {
    !value.starts_with('-') && parse_float(value).is_some()
}

fn is_digits(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.chars().all(|c| c.is_ascii_digit())
}

fn is_ratio(value: &str, sep: char) -> bool {
    value
        .split_once(sep)
        .is_some_and(|(a, b)| is_digits(a, 9) && is_digits(b, 9))
}

fn is_bit_rate(value: &str) -> bool {
    let number = value.strip_suffix(['k', 'K', 'M', 'G']).unwrap_or(value);
    is_decimal(number)
}

fn is_duration(value: &str) -> bool {
    if let Some(number) = value
        .strip_suffix("ms")
        .or_else(|| value.strip_suffix("us"))
        .or_else(|| value.strip_suffix('s'))
    {
        return is_decimal(number);
    }
    let parts: Vec<&str> = value.split(':').collect();
    match parts.as_slice() {
        [seconds] => is_decimal(seconds),
        [minutes, seconds] => is_digits(minutes, 4) && is_decimal(seconds),
        [hours, minutes, seconds] => {
            is_digits(hours, 4) && is_digits(minutes, 2) && is_decimal(seconds)
        }
        _ => false,
    }
}

fn is_size(value: &str) -> bool {
    value
        .split_once('x')
        .is_some_and(|(w, h)| is_digits(w, 5) && is_digits(h, 5))
}

fn is_name(value: &str, allowed: impl Fn(char) -> bool) -> bool {
    !value.is_empty() && value.len() <= 64 && value.chars().all(allowed)
}

/// A stream type, optionally with an index (`v`, `a:1`), or an index (`0`).
pub(crate) fn is_stream_specifier(spec: &str) -> bool {
    let (kind, index) = match spec.split_once(':') {
        Some((kind, index)) => (kind, Some(index)),
        None => (spec, None),
    };
    match index {
        None => matches!(kind, "v" | "V" | "a" | "s" | "d" | "t") || is_digits(kind, 3),
        Some(index) => matches!(kind, "v" | "V" | "a" | "s" | "d" | "t") && is_digits(index, 3),
    }
}

/// `g`, `s`, `s:<stream specifier>`, `c:N`, `p:N`.
pub(crate) fn is_metadata_specifier(spec: &str) -> bool {
    match spec.split_once(':') {
        None => matches!(spec, "g" | "s"),
        Some(("s", rest)) => is_stream_specifier(rest),
        Some(("c" | "p", index)) => is_digits(index, 3),
        _ => false,
    }
}

fn is_map(value: &str) -> bool {
    if let Some(label) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        return is_name(label, |c| c.is_ascii_alphanumeric() || c == '_');
    }
    let value = value.strip_prefix('-').unwrap_or(value);
    let value = value.strip_suffix('?').unwrap_or(value);
    match value.strip_prefix('0') {
        Some("") => true,
        Some(rest) => rest.strip_prefix(':').is_some_and(is_stream_specifier),
        None => false,
    }
}

fn is_flags(value: &str, list: &[&str]) -> bool {
    if value.is_empty() || value.len() > 512 {
        return false;
    }
    let body = value.strip_prefix(['+', '-']).unwrap_or(value);
    body.split(['+', '-']).all(|word| list.contains(&word))
}

fn is_metadata(value: &str) -> bool {
    let Some((key, text)) = value.split_once('=') else {
        return false;
    };
    is_name(key, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && text.len() <= MAX_METADATA_VALUE
        && !text.chars().any(char::is_control)
}

fn is_timecode(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 11
        && [0, 1, 3, 4, 6, 7, 9, 10]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[2] == b':'
        && b[5] == b':'
        && matches!(b[8], b':' | b';' | b'.')
}

fn is_key_frames(value: &str) -> bool {
    if value == "source" {
        return true;
    }
    if let Some(expr) = value.strip_prefix("expr:") {
        return !expr.is_empty() && expr.len() <= 256 && expr.chars().all(filters::is_expr_char);
    }
    value.split(',').all(is_duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_bit_rate("128k") && is_bit_rate("1.5M") && is_bit_rate("800000"));
        assert!(!is_bit_rate("-1k") && !is_bit_rate("1e9") && !is_bit_rate("k"));
        assert!(is_duration("2.5") && is_duration("500ms") && is_duration("00:01:30.5"));
        assert!(!is_duration("-1") && !is_duration("1:2:3:4") && !is_duration("x"));
        assert!(is_map("0") && is_map("0:v:0") && is_map("0:a?") && is_map("-0:s"));
        assert!(is_map("[out]") && !is_map("1:v") && !is_map("0:m:title:x") && !is_map("[a b]"));
        assert!(is_flags("+faststart", MOVFLAGS) && is_flags("faststart+dash", MOVFLAGS));
        assert!(!is_flags("+faststart+x", MOVFLAGS) && !is_flags("+", MOVFLAGS));
        assert!(is_metadata("title=Hello world") && is_metadata("comment=/etc/passwd"));
        assert!(!is_metadata("/etc/passwd") && !is_metadata("a b=c") && !is_metadata("=x"));
        assert!(is_timecode("00:00:10:00") && !is_timecode("0:0:10:00"));
        assert!(is_stream_specifier("v") && is_stream_specifier("a:1") && is_stream_specifier("0"));
        assert!(
            !is_stream_specifier("v:") && !is_stream_specifier("m:x") && !is_stream_specifier("")
        );
        assert!(is_key_frames("expr:gte(t,n_forced*2)") && is_key_frames("1,2.5,00:00:03"));
        assert!(!is_key_frames("expr:") && !is_key_frames("chapters-0.1x"));
    }

    #[test]
    fn option_names_are_unique_and_dashed() {
        for (i, o) in OPTIONS.iter().enumerate() {
            assert!(
                o.name.starts_with('-') && !o.name.contains(':'),
                "{}",
                o.name
            );
            assert!(
                OPTIONS[..i].iter().all(|p| p.name != o.name),
                "{} twice",
                o.name
            );
        }
    }
}
