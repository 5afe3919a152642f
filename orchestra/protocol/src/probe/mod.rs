//! What ffprobe says of a media file: its format and streams, as stored on a media.

pub mod mp4;

use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::sandbox::{Jail, SandboxError, SandboxMode};

/// The probe of a media's main file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Probe {
    pub format: ProbeFormat,
    pub streams: Vec<ProbeStream>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProbeFormat {
    /// ffprobe's format_name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub name: String,
    pub long_name: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
    /// Bits per second.
    pub bit_rate: Option<u64>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProbeStream {
    pub index: u32,
    /// `video`, `audio`, `subtitle`, `data`...
    pub codec_type: String,
    pub codec_name: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames per second, from ffprobe's avg_frame_rate (or r_frame_rate).
    pub frame_rate: Option<f64>,
    pub bit_rate: Option<u64>,
    pub channels: Option<u32>,
    pub sample_rate: Option<u32>,
    pub duration: Option<f64>,
}

impl Probe {
    pub fn duration(&self) -> Option<f64> {
        self.format.duration.or_else(|| {
            self.streams
                .iter()
                .filter_map(|s| s.duration)
                .reduce(f64::max)
        })
    }

    pub fn video(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.codec_type == "video")
    }

    pub fn audio(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.codec_type == "audio")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("ffprobe could not be run: {0} (is ffmpeg installed?)")]
    Spawn(std::io::Error),
    #[error("ffprobe could not be run: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("not a media file ffprobe can read: {0}")]
    Unreadable(String),
    #[error("no audio or video stream found")]
    NoMedia,
}

/// Probe a file an encoder just wrote. MP4/MOV outputs are read in-process (see [`mp4`]: it
/// saves an ffprobe process per task); anything that reader does not fully understand goes
/// to [`probe_media`]. Uploads always go to ffprobe, whose demuxers are the ones ffmpeg will
/// use.
pub async fn probe_output(path: &Path, sandbox: SandboxMode) -> Result<Probe, ProbeError> {
    if mp4::handles(path) {
        let file = path.to_path_buf();
        // A panic in the parser is a JoinError here, and ffprobe gets the file.
        if let Ok(Some(probe)) = tokio::task::spawn_blocking(move || mp4::probe(&file)).await {
            return Ok(probe);
        }
    }
    probe_media(path, sandbox).await
}

/// `<program> -version`'s first line (`ffmpeg`, `ffprobe`: found on `PATH` as the runs find
/// it), or None when it cannot be run. Unconfined: it reads no user input.
pub async fn tool_version(program: &str) -> Option<String> {
    let jail = Jail::new(program).ok()?;
    let run = tokio::process::Command::new(jail.program())
        .arg("-version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .ok()?
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

/// Probe a file with `ffprobe -show_format -show_streams`, in the sandbox: ffprobe may read
/// that file only (an upload is probed before it is anything else's neighbour) and write
/// nothing.
///
/// A file without an audio or video stream is refused, and so is ffprobe's `tty` reader,
/// which accepts any text file.
pub async fn probe(path: &Path, sandbox: SandboxMode) -> Result<Probe, ProbeError> {
    run_ffprobe(path, path, sandbox).await
}

/// Probe the main file of a media or task dir (a package's manifest reads the segments
/// beside it): ffprobe may read that directory only.
pub async fn probe_media(path: &Path, sandbox: SandboxMode) -> Result<Probe, ProbeError> {
    let path = std::path::absolute(path).map_err(ProbeError::Spawn)?;
    let dir = path.parent().unwrap_or(&path).to_path_buf();
    run_ffprobe(&path, &dir, sandbox).await
}

async fn run_ffprobe(
    path: &Path,
    readable: &Path,
    sandbox: SandboxMode,
) -> Result<Probe, ProbeError> {
    let path = std::path::absolute(path).map_err(ProbeError::Spawn)?;
    let jail = Jail::new("ffprobe")
        .map_err(|e| ProbeError::Spawn(std::io::Error::other(e.to_string())))?
        .read(readable)?
        // Ten minutes of CPU: a probe takes well under a second.
        .cpu_secs(600)
        .max_file_bytes(0);
    let jail = match path.parent() {
        Some(dir) => jail.cwd(dir)?,
        None => jail,
    };
    let output = jail
        .command(sandbox)?
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file_url(&path))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(ProbeError::Spawn)?;
    if !output.status.success() {
        let message = last_error_line(&output.stderr, &path, "ffprobe failed");
        return Err(ProbeError::Unreadable(message));
    }
    let probe = parse(&output.stdout)?;
    if probe.format.name == "tty" || probe.format.name.is_empty() {
        return Err(ProbeError::Unreadable("text, not media".into()));
    }
    if !probe
        .streams
        .iter()
        .any(|s| s.codec_type == "video" || s.codec_type == "audio")
    {
        return Err(ProbeError::NoMedia);
    }
    Ok(probe)
}

/// The last line an ffmpeg tool wrote on stderr (`-v error`: its error), `otherwise` when it
/// wrote none, with the input's path (and its `file:` URL) shown as `<file>`: the mount point
/// is nobody's business.
pub fn last_error_line(stderr: &[u8], path: &Path, otherwise: &str) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(otherwise)
        .replace(&*file_url(path).to_string_lossy(), "<file>")
        .replace(&*path.to_string_lossy(), "<file>")
}

/// `file:` + the absolute path: ffprobe cannot read a name as a protocol (`a|b`, `tcp:...`).
pub fn file_url(path: &Path) -> std::ffi::OsString {
    let mut url = std::ffi::OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// Parse ffprobe's JSON (numbers arrive as strings there).
pub fn parse(json: &[u8]) -> Result<Probe, ProbeError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        format: Option<RawFormat>,
        #[serde(default)]
        streams: Vec<RawStream>,
    }
    #[derive(Deserialize)]
    struct RawFormat {
        #[serde(default)]
        format_name: String,
        format_long_name: Option<String>,
        duration: Option<String>,
        bit_rate: Option<String>,
        size: Option<String>,
    }
    #[derive(Deserialize)]
    struct RawStream {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        codec_type: String,
        codec_name: Option<String>,
        width: Option<u32>,
        height: Option<u32>,
        avg_frame_rate: Option<String>,
        r_frame_rate: Option<String>,
        bit_rate: Option<String>,
        channels: Option<u32>,
        sample_rate: Option<String>,
        duration: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(json)
        .map_err(|e| ProbeError::Unreadable(format!("ffprobe output: {e}")))?;
    let format = raw
        .format
        .map_or_else(ProbeFormat::default, |f| ProbeFormat {
            name: f.format_name,
            long_name: f.format_long_name,
            duration: f.duration.as_deref().and_then(number),
            bit_rate: f.bit_rate.as_deref().and_then(|s| s.parse().ok()),
            size: f.size.as_deref().and_then(|s| s.parse().ok()),
        });
    let streams = raw
        .streams
        .into_iter()
        .map(|s| ProbeStream {
            index: s.index,
            frame_rate: (s.codec_type == "video")
                .then(|| {
                    s.avg_frame_rate
                        .as_deref()
                        .and_then(ratio)
                        .or_else(|| s.r_frame_rate.as_deref().and_then(ratio))
                })
                .flatten(),
            codec_type: s.codec_type,
            codec_name: s.codec_name,
            width: s.width,
            height: s.height,
            bit_rate: s.bit_rate.as_deref().and_then(|v| v.parse().ok()),
            channels: s.channels,
            sample_rate: s.sample_rate.as_deref().and_then(|v| v.parse().ok()),
            duration: s.duration.as_deref().and_then(number),
        })
        .collect();
    Ok(Probe { format, streams })
}

fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `25/1` → 25.0; `0/0` → None.
fn ratio(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/')?;
    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
    (d != 0.0 && n != 0.0).then(|| n / d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffprobe_json() {
        let json = br#"{"streams":[{"index":0,"codec_name":"h264","codec_type":"video","width":640,"height":360,"avg_frame_rate":"25/1","bit_rate":"1000"},{"index":1,"codec_name":"aac","codec_type":"audio","sample_rate":"48000","channels":2,"avg_frame_rate":"0/0"}],"format":{"format_name":"mov,mp4","duration":"2.000000","size":"1234","bit_rate":"4936"}}"#;
        let p = parse(json).unwrap();
        assert_eq!(p.duration(), Some(2.0));
        assert_eq!(p.video().unwrap().height, Some(360));
        assert_eq!(p.video().unwrap().frame_rate, Some(25.0));
        assert_eq!(p.audio().unwrap().sample_rate, Some(48000));
        assert_eq!(p.audio().unwrap().frame_rate, None);
        assert_eq!(p.format.size, Some(1234));
    }
}
