//! x264 and x265 parameter strings (`-x264-params`, `-x264opts`, `-x265-params`), parsed the
//! way ffmpeg and the libraries parse them and checked against their own reviewed keys.
//!
//! Both libraries accept options that read or write files (`stats`, `pass`, `qpfile`, `csv`,
//! `analysis-save`, `zonefile`, `lambda-file`, `scaling-list`, `dump-yuv`...), so only the
//! rate-control, GOP and quality keys below pass. Key names are normalised as the libraries do
//! (`_` becomes `-`, a `no-`/`no` prefix negates a boolean) before the lookup, so no spelling
//! of a refused key slips through.

use super::filters::get_token;

/// Keys of `x264_param_parse` that only tune encoding.
pub(crate) const X264_KEYS: &[&str] = &[
    "keyint",
    "min-keyint",
    "scenecut",
    "bframes",
    "b-adapt",
    "b-bias",
    "b-pyramid",
    "open-gop",
    "ref",
    "deblock",
    "cabac",
    "crf",
    "crf-max",
    "qp",
    "bitrate",
    "vbv-maxrate",
    "vbv-bufsize",
    "vbv-init",
    "qpmin",
    "qpmax",
    "qpstep",
    "qcomp",
    "ipratio",
    "pbratio",
    "chroma-qp-offset",
    "aq-mode",
    "aq-strength",
    "mbtree",
    "rc-lookahead",
    "me",
    "merange",
    "mvrange",
    "subme",
    "psy",
    "psy-rd",
    "trellis",
    "8x8dct",
    "mixed-refs",
    "weightb",
    "weightp",
    "fast-pskip",
    "dct-decimate",
    "deadzone-inter",
    "deadzone-intra",
    "direct",
    "partitions",
    "analyse",
    "threads",
    "lookahead-threads",
    "sliced-threads",
    "slices",
    "sync-lookahead",
    "intra-refresh",
    "nal-hrd",
    "force-cfr",
    "level",
    "colorprim",
    "transfer",
    "colormatrix",
    "range",
    "chromaloc",
    "sar",
    "overscan",
    "videoformat",
    "interlaced",
    "tff",
    "bff",
    "fake-interlaced",
    "pic-struct",
    "repeat-headers",
    "annexb",
    "aud",
    "bluray-compat",
    "filler",
    "cplxblur",
    "qblur",
    "ratetol",
];

/// Keys of `x265_param_parse` that only tune encoding.
pub(crate) const X265_KEYS: &[&str] = &[
    "crf",
    "crf-max",
    "crf-min",
    "qp",
    "bitrate",
    "vbv-maxrate",
    "vbv-bufsize",
    "vbv-init",
    "keyint",
    "min-keyint",
    "scenecut",
    "bframes",
    "b-adapt",
    "b-pyramid",
    "ref",
    "rc-lookahead",
    "lookahead-slices",
    "aq-mode",
    "aq-strength",
    "psy-rd",
    "psy-rdoq",
    "rd",
    "rdoq-level",
    "me",
    "merange",
    "subme",
    "sao",
    "deblock",
    "strong-intra-smoothing",
    "open-gop",
    "weightp",
    "weightb",
    "frame-threads",
    "pools",
    "wpp",
    "pmode",
    "pme",
    "ctu",
    "min-cu-size",
    "max-tu-size",
    "tu-intra-depth",
    "tu-inter-depth",
    "limit-refs",
    "limit-modes",
    "rect",
    "amp",
    "early-skip",
    "rskip",
    "fast-intra",
    "b-intra",
    "cutree",
    "qcomp",
    "ipratio",
    "pbratio",
    "cbqpoffs",
    "crqpoffs",
    "qpmin",
    "qpmax",
    "qpstep",
    "level-idc",
    "high-tier",
    "repeat-headers",
    "aud",
    "hrd",
    "info",
    "hdr10",
    "hdr10-opt",
    "colorprim",
    "transfer",
    "colormatrix",
    "range",
    "master-display",
    "max-cll",
    "chromaloc",
    "sar",
    "annexb",
    "lossless",
    "slices",
    "intra-refresh",
];

const MAX_VALUE: usize = 128;

/// Values are numbers, names and the small syntaxes of `deblock=-1,-1`, `sar=16/9`,
/// `master-display=G(13250,34500)B(...)`; nothing that needs other characters.
fn value_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_VALUE
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/+()".contains(c))
}

/// What the library looks up for a key: `_` made `-`, a `no-`/`no` boolean prefix removed
/// (x264 and x265 both strip it before matching), and x265's `--` prefix removed.
fn normalise(key: &str) -> String {
    let key = key.strip_prefix("--").unwrap_or(key).replace('_', "-");
    key.strip_prefix("no-")
        .or_else(|| key.strip_prefix("no"))
        .unwrap_or(&key)
        .to_owned()
}

fn check_pair(library: &str, keys: &[&str], key: &str, value: &str) -> Result<(), String> {
    let name = normalise(key);
    if !keys.contains(&name.as_str()) {
        return Err(format!(
            "{library} parameter {key:?} is not allowed: only reviewed rate-control and quality keys may be used, none that reads or writes files (see GET /transform/encoders)"
        ));
    }
    if !value_ok(value) {
        return Err(format!(
            "{library} parameter {key} has a value {value:?} that is not allowed: expected a number or a name"
        ));
    }
    Ok(())
}

/// `av_dict_parse_string(s, "=", ":")`: `key=value` pairs, both non-empty, `\` and `'` honoured.
fn dict_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = get_token(rest, &['=']);
        let Some(after) = after.strip_prefix('=') else {
            return Err(format!("parameter {key:?} has no =value"));
        };
        let (value, after) = get_token(after, &[':']);
        if key.is_empty() || value.is_empty() {
            return Err(format!(
                "parameter {key:?}={value:?} needs a key and a value"
            ));
        }
        pairs.push((key, value));
        rest = after.strip_prefix(':').unwrap_or(after);
    }
    Ok(pairs)
}

pub(crate) fn check_x264_params(s: &str) -> Result<(), String> {
    for (key, value) in dict_pairs(s)? {
        check_pair("x264", X264_KEYS, &key, &value)?;
    }
    Ok(())
}

pub(crate) fn check_x265_params(s: &str) -> Result<(), String> {
    for (key, value) in dict_pairs(s)? {
        check_pair("x265", X265_KEYS, &key, &value)?;
    }
    Ok(())
}

/// `-x264opts`: libx264.c splits on `:` with no escaping, `key=value` or a bare `key` (= 1).
pub(crate) fn check_x264opts(s: &str) -> Result<(), String> {
    for item in s.split(':') {
        let (key, value) = item.split_once('=').unwrap_or((item, "1"));
        if key.is_empty() {
            return Err(format!("x264opts item {item:?} has no key"));
        }
        check_pair("x264", X264_KEYS, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x264() {
        assert!(check_x264_params("keyint=50:min-keyint=25:scenecut=0").is_ok());
        assert!(check_x264_params("no-scenecut=1:b_adapt=2:deblock=-1,-1").is_ok());
        assert!(check_x264_params("stats=x.log").is_err());
        assert!(check_x264_params("pass=1").is_err());
        assert!(check_x264_params("no-stats=0").is_err());
        assert!(check_x264_params("dump_yuv=x.yuv").is_err());
        assert!(check_x264_params("keyint=50:st\\ats=x").is_err());
        assert!(check_x264_params("keyint").is_err());
        assert!(check_x264_params("keyint=a;b").is_err());
        assert!(check_x264opts("keyint=50:no-scenecut").is_ok());
        assert!(check_x264opts("keyint=50:qpfile=q.txt").is_err());
    }

    #[test]
    fn x265() {
        assert!(check_x265_params("crf=28:no-sao=1:keyint=50").is_ok());
        assert!(check_x265_params("csv=x.csv").is_err());
        assert!(check_x265_params("analysis-save=a.dat").is_err());
        assert!(check_x265_params("analysis_load=a.dat").is_err());
        assert!(check_x265_params("zonefile=z").is_err());
        assert!(check_x265_params("lambda-file=l").is_err());
        assert!(check_x265_params("scaling-list=s").is_err());
        assert!(check_x265_params("--csv=x").is_err());
    }
}
