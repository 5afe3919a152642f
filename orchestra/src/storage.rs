//! The shared storage tree (docs/architecture.md §7): `uploads/`, `medias/<id>/<filename>`,
//! `thumbnails/<id>.jpg`, `tmp/`.
//!
//! The store keeps paths relative to the root. Names from clients are checked here, and every
//! path a client names is resolved and checked to stay inside its area.

use std::io;
use std::path::{Component, Path, PathBuf};

use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    /// Which orchestra writes the scratch files this handle names (its replica id): a
    /// restarted orchestra removes what it left in `tmp/` when it died, and never another
    /// replica's files in use.
    owner: String,
}

impl Storage {
    /// Create the tree under `root` if needed.
    pub fn open(root: &Path) -> io::Result<Storage> {
        for area in ["uploads", "medias", "thumbnails", "tmp"] {
            std::fs::create_dir_all(root.join(area))?;
        }
        Ok(Storage {
            root: root.canonicalize()?,
            owner: "orchestra".into(),
        })
    }

    /// The same tree, its scratch files named for `owner` (letters and digits).
    pub fn owned_by(mut self, owner: &str) -> Storage {
        self.owner = owner.to_owned();
        self
    }

    /// Remove the scratch files and dirs a previous run of this owner left in `tmp/` (killed
    /// mid-upload or mid-thumbnail); how many there were. Call at start, before serving.
    pub fn sweep_own_scratch(&self) -> io::Result<usize> {
        let marker = format!("-{}-", self.owner);
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ["upload", "thumbnail"]
                .iter()
                .any(|what| name.starts_with(&format!("{what}{marker}")));
            if !ours {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn media_dir(&self, id: Uuid) -> PathBuf {
        self.root.join("medias").join(id.to_string())
    }

    /// A media's thumbnail: beside its directory, not in it (that directory is what `copy`
    /// copies, publishers publish and `size` counts).
    pub fn thumbnail_path(&self, id: Uuid) -> PathBuf {
        self.root.join("thumbnails").join(format!("{id}.jpg"))
    }

    /// A fresh scratch directory path under `tmp/` (not created).
    pub fn scratch_dir(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{}", self.owner, Uuid::new_v4()))
    }

    /// The regular file at `relative` (checked by `file::relative_path`) inside a media's
    /// directory, or None: missing, not a regular file, or a symlink (the last one is never
    /// followed; one on the way may point elsewhere inside the directory, never out of it).
    pub async fn media_file(&self, id: Uuid, relative: &Path) -> Option<PathBuf> {
        let dir = tokio::fs::canonicalize(self.media_dir(id)).await.ok()?;
        let path = dir.join(relative);
        let meta = tokio::fs::symlink_metadata(&path).await.ok()?;
        if !meta.is_file() {
            return None;
        }
        let real = tokio::fs::canonicalize(&path).await.ok()?;
        real.starts_with(&dir).then_some(real)
    }

    /// The storage-relative uri of a media's main file.
    pub fn media_uri(id: Uuid, filename: &str) -> String {
        format!("medias/{id}/{filename}")
    }

    /// The absolute path of a storage-relative uri the orchestra wrote itself.
    pub fn path_of(&self, uri: &str) -> PathBuf {
        self.root.join(uri)
    }

    /// A fresh scratch path under `tmp/` for an upload of `filename` in progress. It keeps
    /// the file's extension: ffprobe needs it to recognise some raw formats.
    pub fn scratch_path(&self, filename: &str) -> PathBuf {
        let extension = Path::new(filename)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        self.root.join("tmp").join(format!(
            "upload-{}-{}{extension}",
            self.owner,
            Uuid::new_v4()
        ))
    }

    /// Resolve a client's `uploads/...` uri to a regular file inside `uploads/`.
    pub fn resolve_upload(&self, uri: &str) -> Result<PathBuf, ApiError> {
        let relative = Path::new(uri);
        let escapes = relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
        if uri.contains('\0') || escapes || !relative.starts_with("uploads") {
            return Err(ApiError::invalid(format!(
                "uri must be a relative path under uploads/ (got {uri:?})"
            )));
        }
        let uploads = self.root.join("uploads");
        let path = self.root.join(relative);
        // Symlinks could still point elsewhere: compare the real paths.
        let real = path
            .canonicalize()
            .map_err(|_| ApiError::invalid(format!("uri {uri:?}: no such file under uploads/")))?;
        if !real.starts_with(&uploads) || !real.is_file() {
            return Err(ApiError::invalid(format!(
                "uri {uri:?} must name a regular file inside uploads/"
            )));
        }
        Ok(real)
    }

    /// Move a file in as the main file of a new media dir; returns the dir's size in bytes.
    pub async fn adopt(&self, from: &Path, id: Uuid, filename: &str) -> io::Result<u64> {
        let dir = self.media_dir(id);
        tokio::fs::create_dir_all(&dir).await?;
        let target = dir.join(filename);
        if let Err(e) = tokio::fs::rename(from, &target).await {
            // Another filesystem (uploads/ on its own mount): copy, then remove the source.
            if e.kind() != io::ErrorKind::CrossesDevices {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
            if let Err(e) = tokio::fs::copy(from, &target).await {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
            tokio::fs::remove_file(from).await?;
        }
        dir_size(&dir).await
    }

    /// Move a unit's finished attempt directory in as a media's directory; returns its size.
    /// Idempotent: when the source is gone and the media dir exists, the move already
    /// happened (a completion call repeated after a crash).
    pub async fn adopt_dir(&self, from: &Path, id: Uuid) -> io::Result<u64> {
        let dir = self.media_dir(id);
        let from_exists = tokio::fs::try_exists(from).await?;
        if !from_exists && tokio::fs::try_exists(&dir).await? {
            return dir_size(&dir).await;
        }
        // A leftover of an earlier, interrupted attempt must not mix with this one.
        self.remove_media(id).await?;
        tokio::fs::rename(from, &dir).await?;
        dir_size(&dir).await
    }

    /// Can the orchestra write the storage tree? A real write and remove of a small file
    /// under `tmp/`, where uploads land first (a read-only or full mount, a `tmp/` gone).
    pub async fn check_writable(&self) -> io::Result<()> {
        let probe = self
            .root
            .join("tmp")
            .join(format!(".health-{}", Uuid::new_v4()));
        let written = tokio::fs::write(&probe, b"ok").await;
        let removed = tokio::fs::remove_file(&probe).await;
        written?;
        removed
    }

    /// Remove everything the units wrote for a task (`tmp/<task>/`); a missing dir is fine.
    pub async fn remove_task_tmp(&self, task: Uuid) -> io::Result<()> {
        let path = self.root.join(oscied_protocol::job::task_tmp_root(task));
        match tokio::fs::remove_dir_all(path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Remove a media's directory and its thumbnail; missing ones are fine.
    pub async fn remove_media(&self, id: Uuid) -> io::Result<()> {
        let thumbnail = tokio::fs::remove_file(self.thumbnail_path(id)).await;
        match tokio::fs::remove_dir_all(self.media_dir(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => match thumbnail {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

/// Total bytes of the regular files below `dir`.
pub async fn dir_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let kind = entry.file_type().await?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata().await?.len();
            }
        }
    }
    Ok(total)
}

/// A client-given filename must be one plain path component.
pub fn check_filename(name: &str) -> Result<(), ApiError> {
    let problem = if name.trim().is_empty() {
        Some("must not be empty")
    } else if name.len() > 255 {
        Some("must be at most 255 bytes")
    } else if name.contains('/') || name.contains('\\') {
        Some("must not contain / or \\")
    } else if name.contains("..") {
        Some("must not contain ..")
    } else if name.chars().any(char::is_control) {
        Some("must not contain NUL or control characters")
    } else if name.starts_with('.') {
        // A dot file could be stored but never published: the publisher serves none.
        Some("must not start with . (dot files are never published)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::invalid(format!("filename {name:?} {problem}"))),
        None => Ok(()),
    }
}

/// Removes a scratch file or dir when dropped, unless disarmed: a failed upload leaves nothing.
pub struct Scratch {
    path: Option<PathBuf>,
}

impl Scratch {
    pub fn new(path: PathBuf) -> Scratch {
        Scratch { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    pub fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert!(check_filename("clip.mp4").is_ok());
        assert!(check_filename("Émission du soir (v2).mov").is_ok());
        for bad in [
            "",
            " ",
            "..",
            "../x.mp4",
            "a/b.mp4",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            ".",
            ".hidden.mp4",
            ".mp4",
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_restart_sweeps_its_own_scratch_and_no_one_elses() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Storage::open(dir.path()).unwrap().owned_by("aaaa");
        let theirs = Storage::open(dir.path()).unwrap().owned_by("bbbb");
        let (our_dir, their_dir) = (
            ours.scratch_dir("thumbnail"),
            theirs.scratch_dir("thumbnail"),
        );
        for d in [&our_dir, &their_dir] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("thumbnail.jpg"), b"x").unwrap();
        }
        let (our_file, their_file) = (ours.scratch_path("a.mp4"), theirs.scratch_path("a.mp4"));
        std::fs::write(&our_file, b"x").unwrap();
        std::fs::write(&their_file, b"x").unwrap();
        // A unit's attempt dir and the health probe's file are nobody's scratch.
        std::fs::create_dir_all(dir.path().join("tmp").join(Uuid::new_v4().to_string())).unwrap();
        assert_eq!(ours.sweep_own_scratch().unwrap(), 2);
        assert!(!our_dir.exists() && !our_file.exists());
        assert!(their_dir.join("thumbnail.jpg").exists() && their_file.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            3
        );
    }

    #[test]
    fn upload_uris_stay_in_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        std::fs::write(storage.root().join("uploads/a.mp4"), b"x").unwrap();
        std::fs::write(storage.root().join("tmp/secret"), b"x").unwrap();
        assert!(storage.resolve_upload("uploads/a.mp4").is_ok());
        for bad in [
            "/etc/passwd",
            "uploads/../tmp/secret",
            "tmp/secret",
            "uploads/missing.mp4",
            "uploads",
            "./uploads/a.mp4",
        ] {
            assert!(storage.resolve_upload(bad).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/etc/passwd", storage.root().join("uploads/link")).unwrap();
        assert!(storage.resolve_upload("uploads/link").is_err());
    }
}
