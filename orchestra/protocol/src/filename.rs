//! The rule for a task's output file name (`filename` of `POST /transform/tasks`), checked
//! by the orchestra when the task is created and again by the unit before it runs anything
//! (a message may come from an older orchestra, or be written by hand on the broker).
//!
//! Why so strict: the name ends up on ffmpeg's command line as its output, and ffmpeg gives
//! meaning to many characters of an output name: `proto:` picks a protocol (`tcp:`, `http:`,
//! `pipe:`), the tee muxer splits on `|` and reads `[options]`, `%d`/`%s` make image-sequence
//! and segment patterns, a leading `-` reads as an option, a leading `.` hides the file and
//! `/` or `\` leave the task's directory. So instead of refusing a list of known-bad
//! characters, a name is built from a reviewed set only:
//!
//! - letters and digits (any script: `char::is_alphanumeric`, so `Émission été.mp4` is
//!   fine; combining marks, format and control characters such as U+202E are not letters),
//! - space, `.`, `_` and `-`;
//! - it starts with a letter or a digit, does not end with a space or a dot, and has at most
//!   [`MAX_FILENAME_BYTES`] bytes (UTF-8, the usual file-system limit);
//! - for the `ffmpeg` encoder its extension (after the last dot, any case) is one of
//!   [`OUTPUT_EXTENSIONS`]: ffmpeg picks the output container from it, and the list keeps to
//!   containers that write one file (or an HLS/DASH package, `.m3u8`/`.mpd`). The `copy`
//!   encoder keeps the input's bytes, so any extension (or none) will do.

use crate::encoder::EncoderName;

/// The longest file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// The extensions an `ffmpeg` output may have (compared ignoring case).
pub const OUTPUT_EXTENSIONS: &[&str] = &[
    // Video containers.
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "flv", "ts", "m2ts", "mts", "mpg", "mpeg", "vob",
    "ogv", "ogg", "3gp", "3g2", "mxf", "wmv", "asf", "dv", "nut", "y4m", "gif", "ivf",
    // Elementary streams.
    "h264", "264", "h265", "265", "hevc", "m2v", // Audio.
    "m4a", "mp3", "mp2", "wav", "flac", "aac", "ac3", "eac3", "opus", "oga", "mka", "wma", "aiff",
    "aif", "caf", "amr", "au", "w64", // One picture.
    "png", "jpg", "jpeg", "webp", "bmp", "tiff", // Subtitles.
    "srt", "vtt", "ass", // Packages: the manifest, its segments beside it.
    "m3u8", "mpd",
];

/// The characters besides letters and digits a file name may hold, for messages.
const OTHERS: &str = "space, '.', '_' and '-'";

/// Check a task's output file name; the error says what is wrong (the first character not
/// allowed, by name) and is shown to the API client as is.
pub fn check_output_filename(name: &str, encoder: EncoderName) -> Result<(), String> {
    let refuse = |why: String| Err(format!("filename {name:?}: {why}"));
    let Some(first) = name.chars().next() else {
        return refuse("must not be empty".into());
    };
    if name.len() > MAX_FILENAME_BYTES {
        return refuse(format!(
            "must be at most {MAX_FILENAME_BYTES} bytes, not {}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|&c| !allowed(c)) {
        return refuse(format!(
            "the character {} is not allowed: a file name holds letters, digits, {OTHERS} only \
             (ffmpeg or a shell gives meaning to the others)",
            describe(c)
        ));
    }
    if !first.is_alphanumeric() {
        return refuse(format!(
            "must start with a letter or a digit, not {}",
            describe(first)
        ));
    }
    if name.ends_with([' ', '.']) {
        return refuse("must not end with a space or a dot".into());
    }
    if encoder == EncoderName::Ffmpeg {
        let Some((_, extension)) = name.rsplit_once('.') else {
            return refuse(
                "needs an extension: ffmpeg picks the output container from it (e.g. .mp4, \
                 .mkv, .m3u8)"
                    .into(),
            );
        };
        if !OUTPUT_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(extension))
        {
            return refuse(format!(
                "the extension .{extension} is not a known output container; use one of {}",
                OUTPUT_EXTENSIONS
                    .iter()
                    .map(|e| format!(".{e}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-')
}

/// `'|'`, or `U+0000` for what does not print.
fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() || !(c.is_alphanumeric() || c.is_ascii_graphic()) {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG: EncoderName = EncoderName::Ffmpeg;
    const COPY: EncoderName = EncoderName::Copy;

    #[test]
    fn plain_names_pass() {
        for name in [
            "out.mp4",
            "clip-720p.mp4",
            "index.m3u8",
            "manifest.mpd",
            "My clip_v2.MKV",
            "Émission été 2.mov",
            "日本語.webm",
            "a..b.mp4",
            "0.wav",
        ] {
            assert_eq!(check_output_filename(name, FFMPEG), Ok(()), "{name}");
        }
        let longest = format!("{}.mp4", "a".repeat(MAX_FILENAME_BYTES - 4));
        assert_eq!(check_output_filename(&longest, FFMPEG), Ok(()));
        // Copy keeps the input's bytes: no extension needed.
        assert_eq!(check_output_filename("renamed", COPY), Ok(()));
        assert_eq!(check_output_filename("notes.xyz", COPY), Ok(()));
    }

    #[test]
    fn the_tee_attack_is_refused_at_the_pipe() {
        let err = check_output_filename("a.wav|[f=s16le]tcp:127.0.0.1:5555", FFMPEG).unwrap_err();
        assert!(err.contains("'|' is not allowed"), "{err}");
        // Either encoder: the rule on characters is the same.
        assert!(check_output_filename("a.wav|b.wav", COPY).is_err());
    }

    #[test]
    fn every_character_ffmpeg_or_a_shell_reads_is_refused() {
        for c in [
            '|', ':', '[', ']', '%', '/', '\\', '\0', '\n', '\t', '\r', '\u{7f}', '\u{1b}', '$',
            '`', '"', '\'', '*', '?', '<', '>', '&', ';', '(', ')', '{', '}', '=', ',', '!', '#',
            '~', '^', '+', '@', '\u{a0}', '\u{202e}', '\u{200b}', '\u{feff}', '\u{301}',
        ] {
            let name = format!("a{c}b.mp4");
            let err = check_output_filename(&name, FFMPEG).expect_err(&name);
            assert!(err.contains("is not allowed"), "{c:?}: {err}");
            let shown = describe(c);
            assert!(err.contains(&shown), "{c:?} named as {shown}: {err}");
            assert!(check_output_filename(&name, COPY).is_err(), "{c:?} (copy)");
        }
        let err = check_output_filename("a\0b.mp4", FFMPEG).unwrap_err();
        assert!(err.contains("U+0000"), "{err}");
    }

    #[test]
    fn the_shape_is_checked() {
        for (name, why) in [
            ("", "must not be empty"),
            ("-y.mp4", "must start with a letter or a digit, not '-'"),
            (
                ".hidden.mp4",
                "must start with a letter or a digit, not '.'",
            ),
            ("..", "must start with a letter or a digit"),
            (".", "must start with a letter or a digit"),
            (" x.mp4", "must start with a letter or a digit, not U+0020"),
            ("_x.mp4", "must start with a letter or a digit, not '_'"),
            ("x.mp4 ", "must not end with a space or a dot"),
            ("x.mp4.", "must not end with a space or a dot"),
            ("noextension", "needs an extension"),
            (
                "x.exe",
                "the extension .exe is not a known output container",
            ),
            ("x.ism", "not a known output container"),
        ] {
            let err = check_output_filename(name, FFMPEG).expect_err(name);
            assert!(err.contains(why), "{name:?}: {err}");
        }
        let long = format!("{}.mp4", "é".repeat(126));
        assert!(long.chars().count() < MAX_FILENAME_BYTES && long.len() > MAX_FILENAME_BYTES);
        let err = check_output_filename(&long, FFMPEG).unwrap_err();
        assert!(err.contains("at most 255 bytes"), "{err}");
        assert!(check_output_filename("-x", COPY).is_err());
    }
}
