//! An in-process probe of MP4/MOV files, the outputs most profiles write.
//!
//! Debian's ffprobe spends ~50 ms of CPU per call resolving the symbols of its 215 shared
//! libraries before it reads a byte; on a busy transform unit that is a few per cent of the
//! machine (issue 3's batch benchmark). Reading the `moov` box of a file ffmpeg just wrote
//! takes well under a millisecond. Anything this reader does not fully understand (a codec it
//! has no name for, a fragmented file, a track without samples) answers `None`, and the
//! caller asks ffprobe: a wrong probe is worse than a slow one.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use mp4::{Mp4Reader, Mp4Track};

use super::{Probe, ProbeFormat, ProbeStream};

/// ffprobe's names for the ISO BMFF family, so both probes describe a file the same way.
const FORMAT_NAME: &str = "mov,mp4,m4a,3gp,3g2,mj2";
const FORMAT_LONG_NAME: &str = "QuickTime / MOV";

/// Whether the file's extension names a container this module reads.
pub fn handles(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("mp4" | "m4v" | "m4a" | "mov"))
}

/// Probe an MP4/MOV file without ffprobe; `None` when ffprobe must say.
pub fn probe(path: &Path) -> Option<Probe> {
    let file = File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let reader = Mp4Reader::read_header(BufReader::new(file), size).ok()?;
    if reader.is_fragmented() || reader.moov.mvhd.timescale == 0 {
        return None;
    }
    let mut tracks: Vec<&Mp4Track> = reader.tracks().values().collect();
    tracks.sort_by_key(|t| t.track_id());
    let streams = tracks
        .iter()
        .enumerate()
        .map(|(index, track)| stream(index, track, reader.moov.mvhd.timescale))
        .collect::<Option<Vec<_>>>()?;
    if streams.is_empty() {
        return None;
    }
    let duration = ratio(reader.moov.mvhd.duration, reader.moov.mvhd.timescale)
        .or_else(|| streams.iter().filter_map(|s| s.duration).reduce(f64::max))?;
    Some(Probe {
        format: ProbeFormat {
            name: FORMAT_NAME.to_owned(),
            long_name: Some(FORMAT_LONG_NAME.to_owned()),
            duration: Some(duration),
            bit_rate: bits_per_second(size, duration),
            size: Some(size),
        },
        streams,
    })
}

fn stream(index: usize, track: &Mp4Track, movie_timescale: u32) -> Option<ProbeStream> {
    let mdia = &track.trak.mdia;
    let stbl = &mdia.minf.stbl;
    let stsd = &stbl.stsd;
    let samples = stbl.stsz.sample_count;
    if samples == 0 {
        return None;
    }
    let duration = ratio(mdia.mdhd.duration, mdia.mdhd.timescale)?;
    // A single edit (ffmpeg's way of hiding AAC priming samples) is what plays, and what
    // ffprobe reports.
    let played = match track.trak.edts.as_ref().and_then(|e| e.elst.as_ref()) {
        Some(elst) if elst.entries.len() == 1 => {
            ratio(elst.entries[0].segment_duration, movie_timescale)
        }
        _ => None,
    };
    let bytes: u64 = if stbl.stsz.sample_size != 0 {
        u64::from(stbl.stsz.sample_size) * u64::from(samples)
    } else {
        stbl.stsz.sample_sizes.iter().map(|&s| u64::from(s)).sum()
    };
    let mut out = ProbeStream {
        index: u32::try_from(index).ok()?,
        duration: Some(played.unwrap_or(duration)),
        bit_rate: bits_per_second(bytes, duration),
        ..ProbeStream::default()
    };
    let (codec, width, height) = if let Some(avc1) = &stsd.avc1 {
        ("h264", avc1.width, avc1.height)
    } else if let Some(hev1) = &stsd.hev1 {
        ("hevc", hev1.width, hev1.height)
    } else if let Some(vp09) = &stsd.vp09 {
        ("vp9", vp09.width, vp09.height)
    } else if let Some(mp4a) = &stsd.mp4a {
        let config = &mp4a.esds.as_ref()?.es_desc.dec_config;
        // ISO 14496-1 object types: MPEG-4 and MPEG-2 AAC profiles.
        if !matches!(config.object_type_indication, 0x40 | 0x66..=0x68) {
            return None;
        }
        out.codec_type = "audio".to_owned();
        out.codec_name = Some("aac".to_owned());
        out.channels = Some(u32::from(mp4a.channelcount)).filter(|&c| c > 0);
        // ffmpeg sets an audio track's timescale to its sample rate; the sample entry's
        // 16.16 field cannot hold rates above 65535.
        out.sample_rate = Some(mdia.mdhd.timescale);
        return Some(out);
    } else {
        return None;
    };
    if width == 0 || height == 0 {
        return None;
    }
    out.codec_type = "video".to_owned();
    out.codec_name = Some(codec.to_owned());
    out.width = Some(u32::from(width));
    out.height = Some(u32::from(height));
    out.frame_rate = Some(f64::from(samples) / duration);
    Some(out)
}

/// `value / scale` seconds; None for an empty or unscaled duration.
fn ratio(value: u64, scale: u32) -> Option<f64> {
    (value > 0 && scale > 0).then(|| value as f64 / f64::from(scale))
}

fn bits_per_second(bytes: u64, seconds: f64) -> Option<u64> {
    (seconds > 0.0).then(|| (bytes as f64 * 8.0 / seconds).round() as u64)
}
