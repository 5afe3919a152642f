//! The built-in profiles, seeded on a store's first start.
//!
//! OSCIED's 2014 set, repaired for today's ffmpeg: `-sameq` is gone (replaced by `-crf 18`),
//! `-ar 196k` was meant as `-b:a 192k`, `yadif=0.-1:0` as `yadif=0:-1:0`, "Speed-up 2x" now
//! really drops audio, the Tablet scale caps the *height* at 480, widths are forced even so
//! libx264 accepts them, and every "-> MP4" profile says `-f mp4`. HLS and DASH profiles are new.

use crate::encoder::EncoderName;

#[derive(Debug, Clone, Copy)]
pub struct BuiltinProfile {
    pub title: &'static str,
    pub description: &'static str,
    pub encoder_name: EncoderName,
    pub encoder_string: &'static str,
}

/// The H.264 settings that replace `-sameq`.
macro_rules! h264_hq {
    () => {
        "-c:v libx264 -crf 18 -preset medium -pix_fmt yuv420p"
    };
}

pub const BUILTIN_PROFILES: &[BuiltinProfile] = &[
    BuiltinProfile {
        title: "File Copy",
        description: "A simple copy of the media (and its package files)",
        encoder_name: EncoderName::Copy,
        encoder_string: "",
    },
    BuiltinProfile {
        title: "Deinterlace",
        description: "Deinterlace video track -> MP4 (H.264 high quality, AAC)",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: concat!(
            "-vf 'yadif=0:-1:0,scale=trunc(iw/2)*2:trunc(ih/2)*2' ",
            h264_hq!(),
            " -c:a aac -b:a 192k -f mp4"
        ),
    },
    BuiltinProfile {
        title: "Force 720p",
        description: "Force aspect to 16/9 and resolution to 720p -> MP4",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: concat!(
            "-vf 'scale=1280:720,setdar=16/9' ",
            h264_hq!(),
            " -c:a aac -b:a 192k -f mp4"
        ),
    },
    BuiltinProfile {
        title: "HQ PAL-SD",
        description: "High-quality SD for archive/storage (PAL at 1Mbps in high profile) -> MP4",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: "-c:v libx264 -profile:v high -preset slower -b:v 1000k -vf scale=-2:576 -pix_fmt yuv420p -c:a aac -b:a 192k -f mp4",
    },
    BuiltinProfile {
        title: "Negate",
        description: "Negate video track -> MP4",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: concat!("-vf negate ", h264_hq!(), " -c:a aac -b:a 192k -f mp4"),
    },
    BuiltinProfile {
        title: "Speed-up 2x",
        description: "Speed-up video track by a factor of 2, remove audio -> MP4",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: concat!("-vf setpts=0.5*PTS -an ", h264_hq!(), " -f mp4"),
    },
    BuiltinProfile {
        title: "Tablet 480p/25",
        description: "480p for tablets (480p/25 at 1Mbps in main profile with low-latency) -> MP4",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: "-r 25 -c:v libx264 -profile:v main -preset slow -tune zerolatency -pix_fmt yuv420p -b:v 1000k -maxrate 1000k -bufsize 2000k -vf 'scale=trunc(oh*a/2)*2:min(480\\,ih)' -c:a aac -ac 2 -ar 44100 -b:a 96k -f mp4",
    },
    BuiltinProfile {
        title: "HLS 720p",
        description: "HLS package (H.264 720p, AAC, 4 s segments); name the output .m3u8",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: "-c:v libx264 -preset veryfast -crf 23 -vf scale=-2:720 -pix_fmt yuv420p -c:a aac -b:a 128k -f hls -hls_time 4 -hls_playlist_type vod",
    },
    BuiltinProfile {
        title: "DASH 720p",
        description: "DASH package (H.264 720p, AAC, 4 s segments); name the output .mpd",
        encoder_name: EncoderName::Ffmpeg,
        encoder_string: "-c:v libx264 -preset veryfast -crf 23 -vf scale=-2:720 -pix_fmt yuv420p -c:a aac -b:a 128k -f dash -seg_duration 4",
    },
];

pub fn builtin_profiles() -> &'static [BuiltinProfile] {
    BUILTIN_PROFILES
}
