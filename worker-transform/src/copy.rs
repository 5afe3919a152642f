//! The `copy` encoder: copy the input media's whole directory (packages keep their segments
//! beside the manifest) into the work dir, then rename the main file to the output's name.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use oscied_protocol::ProgressReport;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const CHUNK: usize = 1 << 20;

/// A copy running on a blocking thread; it checks its cancel flag between 1 MiB chunks.
pub struct CopyWork {
    task: Option<JoinHandle<io::Result<()>>>,
    cancel: Arc<AtomicBool>,
    progress: watch::Receiver<Option<ProgressReport>>,
}

impl CopyWork {
    /// Copy `input`'s directory into `work_dir` (which must exist) and rename `input`'s file
    /// name there to `filename`.
    pub fn start(input: PathBuf, work_dir: PathBuf, filename: String) -> CopyWork {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, progress) = watch::channel(None);
        let flag = cancel.clone();
        let task = tokio::task::spawn_blocking(move || {
            copy_media(&input, &work_dir, &filename, &flag, &tx)
        });
        CopyWork {
            task: Some(task),
            cancel,
            progress,
        }
    }

    pub fn progress(&self) -> watch::Receiver<Option<ProgressReport>> {
        self.progress.clone()
    }

    /// Wait for the copy's end. Cancel-safe.
    pub async fn finished(&mut self) -> Result<(), String> {
        let Some(task) = self.task.as_mut() else {
            return Err("the copy was stopped".into());
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("copy failed: {e}")),
            Err(e) => Err(format!("copy failed: {e}")),
        }
    }

    /// Stop the copy and wait until the blocking thread let go of the files (so the caller
    /// can remove the work dir without a late write recreating it).
    pub async fn stop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for CopyWork {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

fn copy_media(
    input: &Path,
    work_dir: &Path,
    filename: &str,
    cancel: &AtomicBool,
    progress: &watch::Sender<Option<ProgressReport>>,
) -> io::Result<()> {
    let main = input
        .file_name()
        .ok_or_else(|| io::Error::other("the input has no file name"))?;
    if !fs::metadata(input)?.is_file() {
        return Err(io::Error::other("the input is not a file"));
    }
    let source = input
        .parent()
        .ok_or_else(|| io::Error::other("the input has no directory"))?;
    let total = dir_size(source)?;
    let mut state = Copied {
        bytes: 0,
        total,
        started: Instant::now(),
        cancel,
        progress,
    };
    copy_dir(source, work_dir, &mut state)?;
    if main != filename {
        fs::rename(work_dir.join(main), work_dir.join(filename))?;
    }
    progress.send_replace(Some(state.report(true)));
    Ok(())
}

struct Copied<'a> {
    bytes: u64,
    total: u64,
    started: Instant,
    cancel: &'a AtomicBool,
    progress: &'a watch::Sender<Option<ProgressReport>>,
}

impl Copied<'_> {
    fn report(&self, end: bool) -> ProgressReport {
        let elapsed = self.started.elapsed().as_secs_f64();
        let percent = if end || self.total == 0 {
            if end { 100.0 } else { 0.0 }
        } else {
            (self.bytes as f64 / self.total as f64 * 100.0).clamp(0.0, 100.0)
        };
        let eta = if end {
            Some(0.0)
        } else if self.bytes > 0 && elapsed > 0.0 {
            let rate = self.bytes as f64 / elapsed;
            Some(self.total.saturating_sub(self.bytes) as f64 / rate)
        } else {
            None
        };
        ProgressReport {
            percent,
            elapsed,
            eta,
            ..ProgressReport::default()
        }
    }
}

/// Regular files and directories only: a symlink in a media dir could point anywhere.
fn copy_dir(from: &Path, to: &Path, state: &mut Copied<'_>) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target, state)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &target, state)?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path, state: &mut Copied<'_>) -> io::Result<()> {
    let mut src = fs::File::open(from)?;
    let mut dst = fs::File::create(to)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if state.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "copy cancelled"));
        }
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        state.bytes += n as u64;
        state.progress.send_replace(Some(state.report(false)));
    }
    dst.flush()
}

/// Bytes of the regular files under `dir`, recursively (symlinks not followed).
pub fn dir_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}
