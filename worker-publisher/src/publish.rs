//! Publishing a media dir into the web root, and unpublishing it (docs/architecture.md §7).
//!
//! A publication is built under `<www_root>/.staging/<name>/` and renamed into
//! `<www_root>/medias/<id>/` only once complete, so the server never shows half of one; an
//! unpublication is renamed out of `medias/` before it is deleted, for the same reason.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use oscied_protocol::job::published_dir;
use oscied_protocol::unit::state::write_atomically;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Subdirectory of the www root holding publications being built; never served.
pub const STAGING_DIR: &str = ".staging";

/// The served subdirectory of the www root (`published_dir` is `medias/<id>`).
const MEDIAS_DIR: &str = "medias";

/// Beside the served tree: `<www_root>/.oscied/publications/<media id>.json` says which
/// [`Owner`] made the publication in `medias/<id>/`. Only `medias/` is ever served.
pub const OWNERS_DIR: &str = ".oscied/publications";

/// Who made a publication: the unit (under the id it had then), the task and the attempt.
/// Written before the publication is renamed into place, removed after its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub unit_id: String,
    pub task_id: Uuid,
    pub attempt: u32,
}

impl Owner {
    /// The publication's staging name, also what its `.publication` file holds.
    pub fn staging_name(&self) -> String {
        format!("{}-{}", self.task_id, self.attempt)
    }
}

/// Where the owner of the media's publication is written.
pub fn owner_path(www_root: &Path, media_id: Uuid) -> PathBuf {
    www_root.join(OWNERS_DIR).join(format!("{media_id}.json"))
}

/// The owner of the media's publication; None when none is recorded (a publication made
/// by an older version) or the record is unreadable.
pub async fn read_owner(www_root: &Path, media_id: Uuid) -> Option<Owner> {
    let path = owner_path(www_root, media_id);
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    match serde_json::from_str(&text) {
        Ok(owner) => Some(owner),
        Err(e) => {
            tracing::warn!(path = %path.display(), "unreadable publication owner: {e}");
            None
        }
    }
}

/// Copy buffer; `cancel` is checked once per chunk so a big copy stops quickly.
const COPY_CHUNK: usize = 1 << 20;

/// What a publication holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub files: u64,
    pub bytes: u64,
    /// every file hard-linked (else some were copied)
    pub linked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The media uri is not `medias/<id>/<filename>` or leaves the storage root.
    #[error("invalid media uri {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: &'static str },
    /// The staging name is not a plain file name.
    #[error("invalid staging name {0:?}")]
    InvalidStagingName(String),
    /// The source dir or the media's main file is missing or unreadable.
    #[error("source {}: {source}", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading, linking, copying or renaming failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A copied file does not have its source's size.
    #[error("copy {} has {actual} bytes, its source {expected}", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// `cancel` returned true; nothing was published and the staging dir is gone.
    #[error("publication cancelled")]
    Cancelled,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn source_err(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError::Source {
        path: path.to_path_buf(),
        source,
    }
}

/// Publish `<storage_root>/<dir of media_uri>` (all files, recursively: an HLS/DASH package
/// has a manifest plus segments, possibly in subdirectories) into
/// `<www_root>/medias/<media_id>/`.
///
/// Built in `<www_root>/.staging/<staging_name>/` first (each file hard-linked when possible,
/// else copied and verified by size), then renamed into place, replacing any previous
/// publication. `cancel` is polled between files and between 1 MiB chunks of a copy; when it
/// returns true the staging dir is removed and [`PublishError::Cancelled`] returned. It must
/// be cheap (an atomic load). Dropping the returned future does NOT stop the blocking work:
/// use `cancel`. Symlinks in the source are skipped, never followed.
pub async fn publish(
    storage_root: &Path,
    www_root: &Path,
    media_id: Uuid,
    media_uri: &str,
    staging_name: &str,
    cancel: impl Fn() -> bool + Send + Sync + 'static,
) -> Result<Published, PublishError> {
    publish_with(
        storage_root,
        www_root,
        media_id,
        media_uri,
        staging_name,
        None,
        cancel,
    )
    .await
}

/// [`publish`] as `owner` (staging name [`Owner::staging_name`]), recording the owner
/// beside the publication ([`owner_path`]) before it is renamed into place: a unit that
/// dies right after the rename still knows whose files these are.
pub async fn publish_as(
    storage_root: &Path,
    www_root: &Path,
    media_id: Uuid,
    media_uri: &str,
    owner: &Owner,
    cancel: impl Fn() -> bool + Send + Sync + 'static,
) -> Result<Published, PublishError> {
    let staging_name = owner.staging_name();
    publish_with(
        storage_root,
        www_root,
        media_id,
        media_uri,
        &staging_name,
        Some(owner.clone()),
        cancel,
    )
    .await
}

async fn publish_with(
    storage_root: &Path,
    www_root: &Path,
    media_id: Uuid,
    media_uri: &str,
    staging_name: &str,
    owner: Option<Owner>,
    cancel: impl Fn() -> bool + Send + Sync + 'static,
) -> Result<Published, PublishError> {
    let (source_rel, main_file) = split_media_uri(media_uri)?;
    check_staging_name(staging_name)?;
    let job = PublishJob {
        storage_root: storage_root.to_path_buf(),
        www_root: www_root.to_path_buf(),
        media_id,
        media_uri: media_uri.to_string(),
        source_rel,
        main_file,
        staging_name: staging_name.to_string(),
        owner,
    };
    let staging = job.staging_dir();
    tokio::task::spawn_blocking(move || job.run(&cancel))
        .await
        .map_err(|e| PublishError::Io {
            path: staging,
            source: io::Error::other(format!("publication task failed: {e}")),
        })?
}

/// The file in a publication naming the publication it is (its staging name, which a unit
/// starts with its task id). Dot files are never served.
pub const MARKER: &str = ".publication";

/// Remove `<www_root>/medias/<media_id>/`; Ok when it was already gone (idempotent).
pub async fn unpublish(www_root: &Path, media_id: Uuid) -> io::Result<()> {
    remove_publication(www_root, media_id, None).await
}

/// Remove the media's publication only if it is `owner`'s (its staging name is `owner`, or
/// `owner` is its task id): a late duplicate of an old task's unpublish job must not remove the files a
/// newer publication of the same media put there. Ok (nothing done) otherwise.
pub async fn unpublish_owned(www_root: &Path, media_id: Uuid, owner: &str) -> io::Result<()> {
    remove_publication(www_root, media_id, Some(owner.to_owned())).await
}

async fn remove_publication(
    www_root: &Path,
    media_id: Uuid,
    owner: Option<String>,
) -> io::Result<()> {
    let www_root = www_root.to_path_buf();
    blocking(move || {
        let target = www_root.join(published_dir(media_id));
        match fs::symlink_metadata(&target) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let marker = fs::read_to_string(target.join(MARKER)).ok();
        let marker = marker.as_deref().map(str::trim);
        if let Some(owner) = owner
            && let Some(marker) = marker
            && !is_owned_by(marker, &owner)
        {
            tracing::info!(media = %media_id, publication = %marker, %owner,
                "left in place: the media was published again since");
            return Ok(());
        }
        // Moved out of the served tree first: a client sees all of it or nothing.
        let staging_root = www_root.join(STAGING_DIR);
        fs::create_dir_all(&staging_root)?;
        let aside = staging_root.join(format!(
            ".unpublished-{media_id}-{}",
            Uuid::new_v4().simple()
        ));
        match fs::rename(&target, &aside) {
            Ok(()) => {}
            // Raced with another unpublish: gone either way.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        // The media is no longer served; a leftover is only disk space, which
        // clean_staging reclaims at the next start.
        if let Err(e) = remove_any(&aside) {
            tracing::warn!(path = %aside.display(), error = %e, "cannot remove an unpublished dir");
        }
        // The record goes after the files, and only if it is the removed publication's (a
        // newer one being put in place has written its own already).
        let record = owner_path(&www_root, media_id);
        let recorded = fs::read_to_string(&record)
            .ok()
            .and_then(|text| serde_json::from_str::<Owner>(&text).ok());
        if let (Some(recorded), Some(marker)) = (recorded, marker)
            && recorded.staging_name() == marker
        {
            remove_any(&record)?;
        }
        Ok(())
    })
    .await
}

/// A publication's `.publication` (its staging name, `<task>-<attempt>`) is `owner`'s when
/// `owner` is that name, or its task id.
fn is_owned_by(marker: &str, owner: &str) -> bool {
    marker == owner
        || marker
            .strip_prefix(owner)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The owner records without a publication: left by a unit that died between writing one
/// and the rename. Call at start only (a publication under way has its record first).
pub async fn remove_orphan_owners(www_root: &Path) -> io::Result<()> {
    let www_root = www_root.to_path_buf();
    blocking(move || {
        let dir = www_root.join(OWNERS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            if fs::symlink_metadata(www_root.join(published_dir(id))).is_err() {
                remove_any(&entry.path())?;
            }
        }
        Ok(())
    })
    .await
}

/// Remove leftovers of interrupted publications (`.staging/*`); called when a unit starts.
/// Not safe while another unit publishes into the same www root.
pub async fn clean_staging(www_root: &Path) -> io::Result<()> {
    let staging_root = www_root.join(STAGING_DIR);
    blocking(move || {
        let entries = match fs::read_dir(&staging_root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // Keep going past a failure so one stuck entry does not keep the others.
        let mut first_error = None;
        for entry in entries {
            let result = entry.and_then(|entry| remove_any(&entry.path()));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
    .await
}

/// The media ids published under `<www_root>/medias/`, sorted.
pub async fn published_ids(www_root: &Path) -> io::Result<Vec<Uuid>> {
    let medias = www_root.join(MEDIAS_DIR);
    blocking(move || {
        let entries = match fs::read_dir(&medias) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Only the canonical spelling is a publication (it is what published_dir writes).
            if let Ok(id) = Uuid::parse_str(name)
                && id.hyphenated().to_string() == name
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// Remove a dir tree, or a file or symlink (never following it).
fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `medias/<id>/<filename>` → (`medias/<id>`, `<filename>`), refusing anything that could
/// leave the storage root or publish more than one media dir.
fn split_media_uri(uri: &str) -> Result<(PathBuf, PathBuf), PublishError> {
    let invalid = |reason| PublishError::InvalidUri {
        uri: uri.to_string(),
        reason,
    };
    if uri.contains('\0') || uri.contains('\\') {
        return Err(invalid("forbidden character"));
    }
    // Checked on the raw text too: Path::components drops some `.` segments silently.
    if uri.split('/').any(|s| s == "..") {
        return Err(invalid("`..` is not allowed"));
    }
    let mut parts = Vec::new();
    for component in Path::new(uri).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => return Err(invalid("`.` is not allowed")),
            Component::ParentDir => return Err(invalid("`..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("must be relative to the storage root"));
            }
        }
    }
    if parts.len() < 3 || parts[0] != MEDIAS_DIR {
        return Err(invalid("must be medias/<id>/<filename>"));
    }
    let Some((file, dir)) = parts.split_last() else {
        return Err(invalid("must be medias/<id>/<filename>"));
    };
    Ok((dir.iter().collect(), PathBuf::from(file)))
}

fn check_staging_name(name: &str) -> Result<(), PublishError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && matches!(
            Path::new(name).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
    if plain {
        Ok(())
    } else {
        Err(PublishError::InvalidStagingName(name.to_string()))
    }
}

struct PublishJob {
    owner: Option<Owner>,
    storage_root: PathBuf,
    www_root: PathBuf,
    media_id: Uuid,
    media_uri: String,
    source_rel: PathBuf,
    main_file: PathBuf,
    staging_name: String,
}

impl PublishJob {
    fn staging_dir(&self) -> PathBuf {
        self.www_root.join(STAGING_DIR).join(&self.staging_name)
    }

    fn run(&self, cancel: &dyn Fn() -> bool) -> Result<Published, PublishError> {
        let source = self.source_dir()?;
        let staging = self.staging_dir();
        // A leftover of an earlier attempt under the same name would mix into this one.
        remove_any(&staging).map_err(io_err(&staging))?;
        fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let result = build(&source, &staging, cancel).and_then(|published| {
            let marker = staging.join(MARKER);
            fs::write(&marker, &self.staging_name).map_err(io_err(&marker))?;
            if cancel() {
                return Err(PublishError::Cancelled);
            }
            let previous = self.record_owner()?;
            if let Err(e) = self.move_into_place(&staging) {
                self.restore_owner(previous);
                return Err(e);
            }
            Ok(published)
        });
        if result.is_err()
            && let Err(e) = remove_any(&staging)
        {
            tracing::warn!(path = %staging.display(), error = %e, "cannot remove a staging dir");
        }
        result
    }

    /// Write the owner record (when there is an owner); returns the previous record's text,
    /// to put back if the rename fails.
    fn record_owner(&self) -> Result<Option<String>, PublishError> {
        let Some(owner) = &self.owner else {
            return Ok(None);
        };
        let path = owner_path(&self.www_root, self.media_id);
        let previous = fs::read_to_string(&path).ok();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let text = serde_json::to_string(owner).map_err(|e| PublishError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomically(&path, &text).map_err(io_err(&path))?;
        Ok(previous)
    }

    /// The rename failed: the previous publication (if any) is back, and so is its record.
    fn restore_owner(&self, previous: Option<String>) {
        if self.owner.is_none() {
            return;
        }
        let path = owner_path(&self.www_root, self.media_id);
        let result = match previous {
            Some(text) => write_atomically(&path, text.trim_end()),
            None => remove_any(&path),
        };
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot restore a publication owner");
        }
    }

    /// The canonical source dir, checked to be inside the storage root and to hold the
    /// media's main file.
    fn source_dir(&self) -> Result<PathBuf, PublishError> {
        let root = self
            .storage_root
            .canonicalize()
            .map_err(source_err(&self.storage_root))?;
        let wanted = self.storage_root.join(&self.source_rel);
        let source = wanted.canonicalize().map_err(source_err(&wanted))?;
        // A symlinked dir could point anywhere.
        if !source.starts_with(&root) {
            return Err(PublishError::InvalidUri {
                uri: self.media_uri.clone(),
                reason: "resolves outside the storage root",
            });
        }
        let main = source.join(&self.main_file);
        let meta = fs::symlink_metadata(&main).map_err(source_err(&main))?;
        if !meta.is_file() {
            return Err(PublishError::Source {
                path: main,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        Ok(source)
    }

    /// Replace `<www_root>/medias/<id>` with the finished staging dir. The previous
    /// publication is renamed aside first (a rename cannot replace a non-empty dir) and put
    /// back when the second rename fails, so a failed republish does not unpublish.
    fn move_into_place(&self, staging: &Path) -> Result<(), PublishError> {
        let medias = self.www_root.join(MEDIAS_DIR);
        fs::create_dir_all(&medias).map_err(io_err(&medias))?;
        let target = self.www_root.join(published_dir(self.media_id));
        let aside = self
            .www_root
            .join(STAGING_DIR)
            .join(format!(".replaced-{}", self.staging_name));
        remove_any(&aside).map_err(io_err(&aside))?;
        let replaced = match fs::rename(&target, &aside) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&target)(e)),
        };
        if let Err(e) = fs::rename(staging, &target) {
            if replaced && let Err(back) = fs::rename(&aside, &target) {
                tracing::warn!(path = %target.display(), error = %back, "cannot restore the previous publication");
            }
            return Err(io_err(&target)(e));
        }
        if replaced && let Err(e) = remove_any(&aside) {
            // Already out of the served tree; clean_staging reclaims it later.
            tracing::warn!(path = %aside.display(), error = %e, "cannot remove a replaced publication");
        }
        Ok(())
    }
}

/// Fill `staging` with the regular files of `source`, recursively.
fn build(
    source: &Path,
    staging: &Path,
    cancel: &dyn Fn() -> bool,
) -> Result<Published, PublishError> {
    let mut published = Published {
        files: 0,
        bytes: 0,
        linked: true,
    };
    let mut dirs = vec![(source.to_path_buf(), staging.to_path_buf())];
    while let Some((from_dir, to_dir)) = dirs.pop() {
        let entries = fs::read_dir(&from_dir).map_err(source_err(&from_dir))?;
        for entry in entries {
            if cancel() {
                return Err(PublishError::Cancelled);
            }
            let entry = entry.map_err(source_err(&from_dir))?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            // DirEntry::file_type does not follow symlinks, so a link out of the source
            // dir is seen as a link and skipped.
            let file_type = entry.file_type().map_err(source_err(&from))?;
            if file_type.is_dir() {
                fs::create_dir(&to).map_err(io_err(&to))?;
                dirs.push((from, to));
            } else if file_type.is_file() {
                let (bytes, linked) = link_or_copy(&from, &to, cancel)?;
                published.files += 1;
                published.bytes += bytes;
                published.linked &= linked;
            } else {
                tracing::debug!(path = %from.display(), "skipping a symlink or special file");
            }
        }
    }
    Ok(published)
}

/// Hard-link `from` to `to`, or copy it when linking fails (EXDEV across filesystems,
/// EPERM under protected_hardlinks, ...). Returns the size and whether it was linked.
fn link_or_copy(
    from: &Path,
    to: &Path,
    cancel: &dyn Fn() -> bool,
) -> Result<(u64, bool), PublishError> {
    let expected = fs::symlink_metadata(from).map_err(source_err(from))?.len();
    match fs::hard_link(from, to) {
        Ok(()) => return Ok((expected, true)),
        Err(e) => {
            tracing::debug!(path = %from.display(), error = %e, "cannot hard-link, copying");
        }
    }
    let mut input = File::open(from).map_err(source_err(from))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(io_err(to))?;
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut copied = 0u64;
    loop {
        if cancel() {
            return Err(PublishError::Cancelled);
        }
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(source_err(from)(e)),
        };
        output.write_all(&buffer[..n]).map_err(io_err(to))?;
        copied += n as u64;
    }
    // Durable before the publication is reported done.
    output.sync_all().map_err(io_err(to))?;
    let actual = output.metadata().map_err(io_err(to))?.len();
    if copied != expected || actual != expected {
        return Err(PublishError::SizeMismatch {
            path: to.to_path_buf(),
            expected,
            actual: if actual != expected { actual } else { copied },
        });
    }
    Ok((expected, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_uris() {
        let (dir, file) = split_media_uri("medias/abc/file.mp4").unwrap();
        assert_eq!(dir, Path::new("medias/abc"));
        assert_eq!(file, Path::new("file.mp4"));
        let (dir, _) = split_media_uri("medias/abc/sub/index.m3u8").unwrap();
        assert_eq!(dir, Path::new("medias/abc/sub"));
        for bad in [
            "",
            "file.mp4",
            "medias/file.mp4",
            "uploads/x/file.mp4",
            "/medias/abc/file.mp4",
            "medias/../abc/file.mp4",
            "medias/abc/../file.mp4",
            "medias/abc/..",
            "./medias/abc/file.mp4",
            "medias\\abc\\file.mp4",
            "medias/abc/f\0.mp4",
        ] {
            assert!(split_media_uri(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ownership() {
        let task = Uuid::new_v4();
        assert!(is_owned_by(&format!("{task}-1"), &task.to_string()));
        assert!(is_owned_by(&format!("{task}-1"), &format!("{task}-1")));
        assert!(!is_owned_by(&format!("{task}-12"), &format!("{task}-1")));
        assert!(!is_owned_by(&format!("{task}-1"), &format!("{task}-2")));
        assert!(!is_owned_by(
            &format!("{}-1", Uuid::new_v4()),
            &task.to_string()
        ));
    }

    #[test]
    fn staging_names() {
        assert!(check_staging_name("task-1").is_ok());
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "/abs"] {
            assert!(check_staging_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
