//! Filter graphs, parsed the way libavfilter parses them, checked against reviewed filters.
//!
//! libavfilter reads `[in]name@instance=args[out]` separated by `,` and `;`, with `\` escapes
//! and `'` quoting at two levels (the graph, then each filter's `:`-separated arguments).
//! Arguments without `key=` are positional: they set the filter's options in class order,
//! skipping constants and aliases (an option at the same offset as the one before). Parsing the
//! same way here means a file name cannot hide in a positional argument, an escape or a quote.
//! Only the filters below are allowed (none reads or writes files, talks to devices or the
//! network, or runs forever by design like `loop`/`aloop`, sources and `apad`), each with the
//! options of its class in order (from `ffmpeg -h filter=NAME`, ffmpeg 5.1; a test checks
//! the table against the installed ffmpeg). The timeline option `enable` is allowed on the
//! filters that support it.

/// The kind of value a filter option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    /// A number, an expression, a duration or a named constant.
    Expr,
    /// Names: pixel or sample formats, layouts, scaler flags (`yuv420p|nv12`, `lanczos+accurate_rnd`).
    Names,
    /// A colour (`black`, `0x202020@0.5`).
    Color,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterOption {
    pub name: &'static str,
    pub arg: Arg,
    /// Same offset as the option before: never set by position.
    pub alias: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterSpec {
    pub name: &'static str,
    /// Supports the timeline option `enable`.
    pub timeline: bool,
    /// The options of the filter's own class, in class order.
    pub options: &'static [FilterOption],
    /// Options of a child class (swresample's for aresample), only by name.
    pub named_only: &'static [FilterOption],
}

const fn o(name: &'static str, arg: Arg) -> FilterOption {
    FilterOption {
        name,
        arg,
        alias: false,
    }
}

/// An alias of the option before it; its value has the same kind (fixed in [`spec`]).
const fn al(name: &'static str) -> FilterOption {
    FilterOption {
        name,
        arg: Arg::Expr,
        alias: true,
    }
}

use Arg::{Color, Expr, Names};

const ARESAMPLE_NAMED: &[FilterOption] = &[
    o("async", Expr),
    o("first_pts", Expr),
    o("min_comp", Expr),
    o("min_hard_comp", Expr),
    o("comp_duration", Expr),
    o("max_soft_comp", Expr),
    o("osr", Expr),
    o("out_sample_rate", Expr),
    o("osf", Names),
    o("out_sample_fmt", Names),
    o("ochl", Names),
    o("out_chlayout", Names),
    o("resampler", Expr),
    o("filter_size", Expr),
    o("dither_method", Expr),
    o("precision", Expr),
    o("cutoff", Expr),
];

#[rustfmt::skip]
pub(crate) const FILTERS: &[FilterSpec] = &[
    FilterSpec { name: "scale", timeline: false, options: &[o("w", Expr), al("width"), o("h", Expr), al("height"), o("flags", Names), o("interl", Expr), o("in_color_matrix", Names), o("out_color_matrix", Names), o("in_range", Expr), o("out_range", Expr), o("in_v_chr_pos", Expr), o("in_h_chr_pos", Expr), o("out_v_chr_pos", Expr), o("out_h_chr_pos", Expr), o("force_original_aspect_ratio", Expr), o("force_divisible_by", Expr), o("param0", Expr), o("param1", Expr), o("eval", Expr)], named_only: &[] },
    FilterSpec { name: "setdar", timeline: false, options: &[o("dar", Expr), al("ratio"), al("r"), o("max", Expr)], named_only: &[] },
    FilterSpec { name: "setsar", timeline: false, options: &[o("sar", Expr), al("ratio"), al("r"), o("max", Expr)], named_only: &[] },
    FilterSpec { name: "setpts", timeline: false, options: &[o("expr", Expr)], named_only: &[] },
    FilterSpec { name: "yadif", timeline: true, options: &[o("mode", Expr), o("parity", Expr), o("deint", Expr)], named_only: &[] },
    FilterSpec { name: "bwdif", timeline: true, options: &[o("mode", Expr), o("parity", Expr), o("deint", Expr)], named_only: &[] },
    FilterSpec { name: "negate", timeline: true, options: &[o("components", Expr), o("negate_alpha", Expr)], named_only: &[] },
    FilterSpec { name: "crop", timeline: false, options: &[o("out_w", Expr), al("w"), o("out_h", Expr), al("h"), o("x", Expr), o("y", Expr), o("keep_aspect", Expr), o("exact", Expr)], named_only: &[] },
    FilterSpec { name: "pad", timeline: false, options: &[o("width", Expr), al("w"), o("height", Expr), al("h"), o("x", Expr), o("y", Expr), o("color", Color), o("eval", Expr), o("aspect", Expr)], named_only: &[] },
    FilterSpec { name: "fps", timeline: false, options: &[o("fps", Expr), o("start_time", Expr), o("round", Expr), o("eof_action", Expr)], named_only: &[] },
    FilterSpec { name: "format", timeline: false, options: &[o("pix_fmts", Names)], named_only: &[] },
    FilterSpec { name: "transpose", timeline: false, options: &[o("dir", Expr), o("passthrough", Expr)], named_only: &[] },
    FilterSpec { name: "hflip", timeline: true, options: &[], named_only: &[] },
    FilterSpec { name: "vflip", timeline: true, options: &[], named_only: &[] },
    FilterSpec { name: "split", timeline: false, options: &[o("outputs", Expr)], named_only: &[] },
    FilterSpec { name: "hstack", timeline: false, options: &[o("inputs", Expr), o("shortest", Expr)], named_only: &[] },
    FilterSpec { name: "vstack", timeline: false, options: &[o("inputs", Expr), o("shortest", Expr)], named_only: &[] },
    FilterSpec { name: "overlay", timeline: true, options: &[o("x", Expr), o("y", Expr), o("eof_action", Expr), o("eval", Expr), o("shortest", Expr), o("format", Expr), o("repeatlast", Expr), o("alpha", Expr)], named_only: &[] },
    FilterSpec { name: "null", timeline: false, options: &[], named_only: &[] },
    FilterSpec { name: "trim", timeline: false, options: &[o("start", Expr), al("starti"), o("end", Expr), al("endi"), o("start_pts", Expr), o("end_pts", Expr), o("duration", Expr), al("durationi"), o("start_frame", Expr), o("end_frame", Expr)], named_only: &[] },
    FilterSpec { name: "fade", timeline: true, options: &[o("type", Expr), al("t"), o("start_frame", Expr), al("s"), o("nb_frames", Expr), al("n"), o("alpha", Expr), o("start_time", Expr), al("st"), o("duration", Expr), al("d"), o("color", Color), al("c")], named_only: &[] },
    FilterSpec { name: "drawbox", timeline: true, options: &[o("x", Expr), o("y", Expr), o("width", Expr), al("w"), o("height", Expr), al("h"), o("color", Color), al("c"), o("thickness", Expr), al("t"), o("replace", Expr), o("box_source", Expr)], named_only: &[] },
    FilterSpec { name: "eq", timeline: true, options: &[o("contrast", Expr), o("brightness", Expr), o("saturation", Expr), o("gamma", Expr), o("gamma_r", Expr), o("gamma_g", Expr), o("gamma_b", Expr), o("gamma_weight", Expr), o("eval", Expr)], named_only: &[] },
    FilterSpec { name: "hue", timeline: true, options: &[o("h", Expr), o("s", Expr), o("H", Expr), o("b", Expr)], named_only: &[] },
    FilterSpec { name: "unsharp", timeline: true, options: &[o("luma_msize_x", Expr), al("lx"), o("luma_msize_y", Expr), al("ly"), o("luma_amount", Expr), al("la"), o("chroma_msize_x", Expr), al("cx"), o("chroma_msize_y", Expr), al("cy"), o("chroma_amount", Expr), al("ca"), o("alpha_msize_x", Expr), al("ax"), o("alpha_msize_y", Expr), al("ay"), o("alpha_amount", Expr), al("aa")], named_only: &[] },
    FilterSpec { name: "hqdn3d", timeline: true, options: &[o("luma_spatial", Expr), o("chroma_spatial", Expr), o("luma_tmp", Expr), o("chroma_tmp", Expr)], named_only: &[] },
    FilterSpec { name: "boxblur", timeline: true, options: &[o("luma_radius", Expr), al("lr"), o("luma_power", Expr), al("lp"), o("chroma_radius", Expr), al("cr"), o("chroma_power", Expr), al("cp"), o("alpha_radius", Expr), al("ar"), o("alpha_power", Expr), al("ap")], named_only: &[] },
    FilterSpec { name: "gblur", timeline: true, options: &[o("sigma", Expr), o("steps", Expr), o("planes", Expr), o("sigmaV", Expr)], named_only: &[] },
    FilterSpec { name: "realtime", timeline: false, options: &[o("limit", Expr), o("speed", Expr)], named_only: &[] },
    FilterSpec { name: "setfield", timeline: false, options: &[o("mode", Expr)], named_only: &[] },
    FilterSpec { name: "fieldorder", timeline: true, options: &[o("order", Expr)], named_only: &[] },
    FilterSpec { name: "rotate", timeline: true, options: &[o("angle", Expr), al("a"), o("out_w", Expr), al("ow"), o("out_h", Expr), al("oh"), o("fillcolor", Color), al("c"), o("bilinear", Expr)], named_only: &[] },
    FilterSpec { name: "colorchannelmixer", timeline: true, options: &[o("rr", Expr), o("rg", Expr), o("rb", Expr), o("ra", Expr), o("gr", Expr), o("gg", Expr), o("gb", Expr), o("ga", Expr), o("br", Expr), o("bg", Expr), o("bb", Expr), o("ba", Expr), o("ar", Expr), o("ag", Expr), o("ab", Expr), o("aa", Expr), o("pc", Expr), o("pa", Expr)], named_only: &[] },
    FilterSpec { name: "select", timeline: false, options: &[o("expr", Expr), al("e"), o("outputs", Expr), al("n")], named_only: &[] },
    FilterSpec { name: "w3fdif", timeline: true, options: &[o("filter", Expr), o("mode", Expr), o("parity", Expr), o("deint", Expr)], named_only: &[] },
    FilterSpec { name: "kerndeint", timeline: false, options: &[o("thresh", Expr), o("map", Expr), o("order", Expr), o("sharp", Expr), o("twoway", Expr)], named_only: &[] },
    FilterSpec { name: "asetpts", timeline: false, options: &[o("expr", Expr)], named_only: &[] },
    FilterSpec { name: "asplit", timeline: false, options: &[o("outputs", Expr)], named_only: &[] },
    FilterSpec { name: "anull", timeline: false, options: &[], named_only: &[] },
    FilterSpec { name: "volume", timeline: true, options: &[o("volume", Expr), o("precision", Expr), o("eval", Expr), o("replaygain", Expr), o("replaygain_preamp", Expr), o("replaygain_noclip", Expr)], named_only: &[] },
    FilterSpec { name: "aresample", timeline: false, options: &[o("sample_rate", Expr)], named_only: ARESAMPLE_NAMED },
    FilterSpec { name: "atempo", timeline: false, options: &[o("tempo", Expr)], named_only: &[] },
    FilterSpec { name: "loudnorm", timeline: false, options: &[o("I", Expr), al("i"), o("LRA", Expr), al("lra"), o("TP", Expr), al("tp"), o("measured_I", Expr), al("measured_i"), o("measured_LRA", Expr), al("measured_lra"), o("measured_TP", Expr), al("measured_tp"), o("measured_thresh", Expr), o("offset", Expr), o("linear", Expr), o("dual_mono", Expr), o("print_format", Expr)], named_only: &[] },
    FilterSpec { name: "aformat", timeline: false, options: &[o("sample_fmts", Names), al("f"), o("sample_rates", Names), al("r"), o("channel_layouts", Names), al("cl")], named_only: &[] },
    FilterSpec { name: "atrim", timeline: false, options: &[o("start", Expr), al("starti"), o("end", Expr), al("endi"), o("start_pts", Expr), o("end_pts", Expr), o("duration", Expr), al("durationi"), o("start_sample", Expr), o("end_sample", Expr)], named_only: &[] },
    FilterSpec { name: "afade", timeline: true, options: &[o("type", Expr), al("t"), o("start_sample", Expr), al("ss"), o("nb_samples", Expr), al("ns"), o("start_time", Expr), al("st"), o("duration", Expr), al("d"), o("curve", Expr), al("c")], named_only: &[] },
    FilterSpec { name: "arealtime", timeline: false, options: &[o("limit", Expr), o("speed", Expr)], named_only: &[] },
    FilterSpec { name: "highpass", timeline: true, options: &[o("frequency", Expr), al("f"), o("width_type", Expr), al("t"), o("width", Expr), al("w"), o("poles", Expr), al("p"), o("mix", Expr), al("m"), o("channels", Expr), al("c"), o("normalize", Expr), al("n"), o("transform", Expr), al("a"), o("precision", Expr), al("r"), o("blocksize", Expr), al("b")], named_only: &[] },
    FilterSpec { name: "lowpass", timeline: true, options: &[o("frequency", Expr), al("f"), o("width_type", Expr), al("t"), o("width", Expr), al("w"), o("poles", Expr), al("p"), o("mix", Expr), al("m"), o("channels", Expr), al("c"), o("normalize", Expr), al("n"), o("transform", Expr), al("a"), o("precision", Expr), al("r"), o("blocksize", Expr), al("b")], named_only: &[] },
    FilterSpec { name: "dynaudnorm", timeline: true, options: &[o("framelen", Expr), al("f"), o("gausssize", Expr), al("g"), o("peak", Expr), al("p"), o("maxgain", Expr), al("m"), o("targetrms", Expr), al("r"), o("coupling", Expr), al("n"), o("correctdc", Expr), al("c"), o("altboundary", Expr), al("b"), o("compress", Expr), al("s"), o("threshold", Expr), al("t"), o("channels", Expr), al("h"), o("overlap", Expr), al("o")], named_only: &[] },
    FilterSpec { name: "acompressor", timeline: false, options: &[o("level_in", Expr), o("mode", Expr), o("threshold", Expr), o("ratio", Expr), o("attack", Expr), o("release", Expr), o("makeup", Expr), o("knee", Expr), o("link", Expr), o("detection", Expr), o("level_sc", Expr), o("mix", Expr)], named_only: &[] },
    FilterSpec { name: "aselect", timeline: false, options: &[o("expr", Expr), al("e"), o("outputs", Expr), al("n")], named_only: &[] },
];

pub(crate) fn spec(name: &str) -> Option<&'static FilterSpec> {
    FILTERS.iter().find(|f| f.name == name)
}

const MAX_VALUE: usize = 256;

/// Characters of ffmpeg's expressions, numbers, durations and constants; nothing that could
/// start a path (`/` only divides, `.` only in numbers) matters once the option is known.
pub(crate) fn is_expr_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " _.+-*/()<>!?,|&%^:#".contains(c)
}

fn value_ok(arg: Arg, value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_VALUE
        && match arg {
            Arg::Expr => value.chars().all(is_expr_char),
            Arg::Names => value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.+-|()".contains(c)),
            Arg::Color => value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "#@._".contains(c)),
        }
}

const WHITESPACES: &[char] = &[' ', '\n', '\t', '\r'];

/// libavutil's `av_get_token`: skip leading whitespace, read up to an unescaped, unquoted
/// terminator, remove `\` escapes and `'` quotes, trim trailing unescaped whitespace.
/// Returns the token and the rest (starting at the terminator, if any).
pub(crate) fn get_token<'a>(buf: &'a str, term: &[char]) -> (String, &'a str) {
    let mut p = buf.trim_start_matches(WHITESPACES);
    let mut out = String::new();
    // Length of `out` that trailing-whitespace trimming must keep (escaped or quoted text).
    let mut keep = 0;
    loop {
        let mut chars = p.chars();
        let Some(c) = chars.next() else { break };
        if term.contains(&c) {
            break;
        }
        let rest = chars.as_str();
        if c == '\\' && !rest.is_empty() {
            let mut chars = rest.chars();
            if let Some(next) = chars.next() {
                out.push(next);
            }
            keep = out.len();
            p = chars.as_str();
        } else if c == '\'' {
            match rest.find('\'') {
                Some(end) => {
                    out.push_str(&rest[..end]);
                    keep = out.len();
                    p = &rest[end + 1..];
                }
                None => {
                    out.push_str(rest);
                    p = "";
                }
            }
        } else {
            out.push(c);
            p = rest;
        }
    }
    let trimmed = out[keep..].trim_end_matches(WHITESPACES).len() + keep;
    out.truncate(trimmed);
    (out, p)
}

fn skip_ws(s: &str) -> &str {
    s.trim_start_matches(WHITESPACES)
}

/// `[label]` pads before or after a filter (graphparser's parse_link_name).
fn parse_labels(mut s: &str) -> Result<&str, String> {
    while let Some(rest) = s.strip_prefix('[') {
        let (name, rest) = get_token(rest, &[']']);
        let Some(rest) = rest.strip_prefix(']') else {
            return Err("a filter graph label has no closing ]".into());
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!(
                "filter graph label [{name}] is not allowed: labels are letters, digits, _ and :"
            ));
        }
        s = skip_ws(rest);
    }
    Ok(s)
}

/// Check a whole graph (`-vf`, `-af`, `-filter`, `-filter_complex`).
pub(crate) fn check_graph(graph: &str) -> Result<(), String> {
    let mut s = skip_ws(graph);
    loop {
        s = skip_ws(s);
        s = parse_labels(s)?;
        let (name, rest) = get_token(s, &['=', ',', ';', '[']);
        s = rest;
        let args = match s.strip_prefix('=') {
            Some(rest) => {
                let (args, rest) = get_token(rest, &['[', ']', ',', ';']);
                s = rest;
                Some(args)
            }
            None => None,
        };
        check_filter(&name, args.as_deref())?;
        s = parse_labels(s)?;
        s = skip_ws(s);
        let mut chars = s.chars();
        match chars.next() {
            Some(',' | ';') => s = chars.as_str(),
            None => return Ok(()),
            Some(_) => {
                return Err(format!(
                    "the filter graph cannot be parsed near {:?}",
                    s.chars().take(40).collect::<String>()
                ));
            }
        }
    }
}

/// Check one filter and its arguments (libavfilter's process_options).
fn check_filter(name: &str, args: Option<&str>) -> Result<(), String> {
    let (filter, instance) = match name.split_once('@') {
        Some((filter, instance)) => (filter, Some(instance)),
        None => (name, None),
    };
    if let Some(instance) = instance
        && (instance.is_empty()
            || instance.len() > 64
            || !instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!(
            "filter instance name {name:?} is not allowed: use letters, digits and _"
        ));
    }
    let Some(spec) = spec(filter) else {
        return Err(format!(
            "filter {filter:?} is not allowed: only reviewed filters that neither read nor write files nor run forever may be used (see GET /transform/encoders)"
        ));
    };
    let Some(mut rest) = args else { return Ok(()) };
    // The options that position can reach, in order (aliases share the offset before them).
    let mut positional = spec.options.iter().filter(|o| !o.alias);
    let mut named_seen = false;
    while !rest.is_empty() {
        let (key, value, after) = key_value(rest);
        rest = after.strip_prefix(':').unwrap_or(after);
        let (option_name, arg) = match key {
            Some(key) => {
                named_seen = true;
                let arg = named_option(spec, &key)?;
                (key, arg)
            }
            None => {
                if named_seen {
                    // ffmpeg versions disagree on which option a positional argument after a
                    // named one sets; refuse rather than guess.
                    return Err(format!(
                        "filter {filter}: positional argument {value:?} after a key=value is not allowed; name it"
                    ));
                }
                let Some(option) = positional.next() else {
                    return Err(format!(
                        "filter {filter}: too many positional arguments ({value:?} is one too many)"
                    ));
                };
                (option.name.to_owned(), option.arg)
            }
        };
        if !value_ok(arg, &value) {
            return Err(format!(
                "filter {filter} option {option_name} has a value {value:?} that is not allowed: {}",
                match arg {
                    Arg::Expr => "expected a number, duration, constant or expression",
                    Arg::Names => "expected names separated by | or +",
                    Arg::Color => "expected a colour",
                }
            ));
        }
    }
    Ok(())
}

/// The kind of a named option, if it is allowed on this filter.
fn named_option(spec: &FilterSpec, key: &str) -> Result<Arg, String> {
    if key == "enable" {
        return if spec.timeline {
            Ok(Arg::Expr)
        } else {
            Err(format!(
                "filter {}: option enable is not allowed, the filter has no timeline support",
                spec.name
            ))
        };
    }
    let mut previous = Arg::Expr;
    for option in spec.options {
        let arg = if option.alias { previous } else { option.arg };
        if option.name == key {
            return Ok(arg);
        }
        previous = arg;
    }
    if let Some(option) = spec.named_only.iter().find(|o| o.name == key) {
        return Ok(option.arg);
    }
    Err(format!(
        "filter {}: option {key:?} is not allowed (see GET /transform/encoders for its options)",
        spec.name
    ))
}

/// libavutil's `av_opt_get_key_value` with an implicit key: `key=value` when the text starts
/// with key characters followed by `=`, else a bare value. The value ends at an unescaped `:`.
fn key_value(s: &str) -> (Option<String>, String, &str) {
    let start = skip_ws(s);
    let key_len = start
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_/.".contains(c)))
        .unwrap_or(start.len());
    let after_key = skip_ws(&start[key_len..]);
    if let Some(after_eq) = after_key.strip_prefix('=') {
        let (value, rest) = get_token(after_eq, &[':']);
        (Some(start[..key_len].to_owned()), value, rest)
    } else {
        let (value, rest) = get_token(s, &[':']);
        (None, value, rest)
    }
}

/// The documentation of the reviewed filters for `GET /transform/encoders`.
pub(crate) fn documented() -> impl Iterator<Item = (&'static FilterSpec, Vec<&'static str>)> {
    FILTERS.iter().map(|f| {
        let mut names: Vec<&str> = f.options.iter().map(|o| o.name).collect();
        names.extend(f.named_only.iter().map(|o| o.name));
        if f.timeline {
            names.push("enable");
        }
        (f, names)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_av_get_token() {
        assert_eq!(
            get_token("  a\\,b'c,d' e ,x", &[',']),
            ("a,bc,d e".into(), ",x")
        );
        assert_eq!(get_token("'a '", &[',']), ("a ".into(), ""));
        assert_eq!(get_token("ab\\ ", &[',']), ("ab ".into(), ""));
        assert_eq!(get_token("'open", &[',']), ("open".into(), ""));
    }

    #[test]
    fn graphs() {
        assert!(check_graph("scale=-2:720").is_ok());
        assert!(check_graph("[0:v]split=2[a][b];[a]negate[c];[b][c]hstack").is_ok());
        assert!(check_graph("scale=trunc(oh*a/2)*2:min(480\\,ih)").is_ok());
        assert!(check_graph("'scale'=w=320:h=240, setsar = 1").is_ok());
        assert!(check_graph("negate@n1,fade=t=in:st=0:d=1:enable=gte(t\\,0)").is_ok());
        assert!(
            check_graph("scale=w=320:240").is_err(),
            "positional after named"
        );
        assert!(
            check_graph("hflip=1").is_err(),
            "too many positional arguments"
        );
        assert!(
            check_graph("scale=enable=1").is_err(),
            "scale has no timeline"
        );
        assert!(check_graph("scale=1:2[a").is_err());
        assert!(check_graph("scale=1:2]x").is_err());
        assert!(check_graph("mo\\vie=x.mp4").is_err());
        assert!(check_graph("scale=w=1:sws_flags=x").is_err());
    }

    #[test]
    fn aliases_take_the_kind_of_their_option() {
        let fade = spec("fade").unwrap();
        assert_eq!(named_option(fade, "c"), Ok(Arg::Color));
        assert_eq!(named_option(fade, "d"), Ok(Arg::Expr));
    }
}
