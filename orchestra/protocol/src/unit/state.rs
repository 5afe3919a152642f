//! A unit's state dir (`OSCIED_STATE_DIR`): its id, kept across restarts, and an exclusive
//! lock held for the process's life, so two units never share one dir (nor one id, nor, for
//! a publisher, one web root).
//!
//! - `unit_id`: the id, one line; written atomically (temp file, then rename).
//! - `lock`: `flock(LOCK_EX | LOCK_NB)`, holding `pid=<pid> host=<host>` of its holder.
//!
//! `OSCIED_UNIT_ID` given: that id is used and written to `unit_id`, so a later start
//! without it keeps it; the dir is locked all the same (two processes with one state dir
//! are a mistake whatever their ids).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::cli::parse_unit_id;

/// The id file in a state dir.
pub const UNIT_ID_FILE: &str = "unit_id";
/// The lock file in a state dir.
pub const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the state dir {} is in use by another unit ({holder}); give each unit its own \
         OSCIED_STATE_DIR (or OSCIED_UNIT_ID and OSCIED_STATE_DIR)", dir.display()
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("state dir {}: {source} (set OSCIED_STATE_DIR to a writable dir)", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} holds {found:?}, not a unit id (1 to 64 letters, digits, '_', '-' or '.'): fix \
         or remove it, or set OSCIED_UNIT_ID", path.display()
    )]
    BadId { path: PathBuf, found: String },
    #[error("no state dir: set OSCIED_STATE_DIR (or STATE_DIRECTORY, XDG_STATE_HOME or HOME)")]
    NoDir,
}

/// An open, locked state dir. The lock lasts as long as this value: keep it until the unit
/// has stopped.
#[derive(Debug)]
pub struct UnitState {
    dir: PathBuf,
    unit_id: String,
    _lock: File,
}

impl UnitState {
    /// Create (when missing) and lock `dir`, then settle the id: `given` when set (and
    /// stored), else the stored one, else a fresh UUID v4 (stored).
    pub fn open(dir: &Path, given: Option<&str>) -> Result<UnitState, StateError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock(dir)?;
        let id_path = dir.join(UNIT_ID_FILE);
        let stored = match fs::read_to_string(&id_path) {
            Ok(text) => {
                let found = text.trim().to_owned();
                match parse_unit_id(&found) {
                    Ok(id) => Some(id),
                    // A given id replaces whatever is there.
                    Err(_) if given.is_some() => None,
                    Err(_) => {
                        return Err(StateError::BadId {
                            path: id_path,
                            found,
                        });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&id_path)(e)),
        };
        let unit_id = match (given, stored) {
            (Some(given), stored) => {
                if stored.as_deref() != Some(given) {
                    if let Some(stored) = &stored {
                        tracing::info!(
                            unit_id = given, was = %stored, state_dir = %dir.display(),
                            "OSCIED_UNIT_ID differs from the stored id: the given one is kept"
                        );
                    }
                    write_atomically(&id_path, given).map_err(io_err(&id_path))?;
                }
                given.to_owned()
            }
            (None, Some(stored)) => stored,
            (None, None) => {
                let fresh = Uuid::new_v4().to_string();
                write_atomically(&id_path, &fresh).map_err(io_err(&id_path))?;
                tracing::info!(unit_id = %fresh, state_dir = %dir.display(), "new unit id stored");
                fresh
            }
        };
        Ok(UnitState {
            dir: dir.to_path_buf(),
            unit_id,
            _lock: lock,
        })
    }

    pub fn unit_id(&self) -> &str {
        &self.unit_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A transform unit's default state dir: systemd's `$STATE_DIRECTORY` (`StateDirectory=`;
/// its first entry), else `$XDG_STATE_HOME/oscied/transform`, else
/// `$HOME/.local/state/oscied/transform`.
pub fn default_transform_dir() -> Result<PathBuf, StateError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = var("STATE_DIRECTORY") {
        // systemd joins several StateDirectory= entries with ':'.
        let dirs = dirs.to_string_lossy().into_owned();
        if let Some(first) = dirs.split(':').find(|d| !d.is_empty()) {
            return Ok(PathBuf::from(first));
        }
    }
    if let Some(xdg) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(xdg).join("oscied").join("transform"));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/oscied/transform"));
    }
    Err(StateError::NoDir)
}

/// Take the dir's lock, or say who holds it.
fn lock(dir: &Path) -> Result<File, StateError> {
    let path = dir.join(LOCK_FILE);
    let io_err = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    // SAFETY: flock on a file descriptor this function owns; no memory is shared.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(io_err(e));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(StateError::Locked {
            dir: dir.to_path_buf(),
            holder: if holder.is_empty() {
                "holder unknown".to_owned()
            } else {
                holder.to_owned()
            },
        });
    }
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let write = |file: &mut File| -> io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "pid={} host={host}", std::process::id())?;
        file.sync_all()
    };
    write(&mut file).map_err(io_err)?;
    Ok(file)
}

/// Write `text` to `path` through a temp file in the same dir and a rename: a crash leaves
/// the old content or the new, never half.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_a_restart_and_a_given_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = UnitState::open(&state, None).unwrap();
        let id = first.unit_id().to_owned();
        assert!(Uuid::parse_str(&id).is_ok(), "{id}");
        drop(first);
        let again = UnitState::open(&state, None).unwrap();
        assert_eq!(again.unit_id(), id);
        drop(again);
        let given = UnitState::open(&state, Some("web-1")).unwrap();
        assert_eq!(given.unit_id(), "web-1");
        drop(given);
        // Stored: a start without OSCIED_UNIT_ID keeps it.
        assert_eq!(UnitState::open(&state, None).unwrap().unit_id(), "web-1");
        // No temp file left behind.
        let mut names: Vec<String> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["lock", "unit_id"]);
    }

    #[test]
    fn a_second_holder_is_refused_with_the_holder_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let held = UnitState::open(dir.path(), None).unwrap();
        let err = UnitState::open(dir.path(), Some("other")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid={}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("OSCIED_STATE_DIR"), "{text}");
        // Refused before anything was written: the holder's id stays.
        let stored = fs::read_to_string(dir.path().join(UNIT_ID_FILE)).unwrap();
        assert_eq!(stored.trim(), held.unit_id());
        drop(held);
        assert!(UnitState::open(dir.path(), None).is_ok());
    }

    #[test]
    fn a_bad_stored_id_is_an_error_unless_one_is_given() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(UNIT_ID_FILE), "a/b\n").unwrap();
        let err = UnitState::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("OSCIED_UNIT_ID"), "{err}");
        let given = UnitState::open(dir.path(), Some("u-2")).unwrap();
        assert_eq!(given.unit_id(), "u-2");
    }
}
