//! Publishing into a real web root on real filesystems (docs/architecture.md §7).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oscied_e2e::media::clip;
use tempfile::TempDir;
use uuid::Uuid;
use worker_publisher::publish::{
    MARKER, PublishError, Published, STAGING_DIR, clean_staging, publish, published_ids, unpublish,
    unpublish_owned,
};

fn never() -> impl Fn() -> bool + Send + Sync + 'static {
    || false
}

/// `<storage>/medias/<id>/`, created.
fn media_dir(storage: &Path, id: Uuid) -> PathBuf {
    let dir = storage.join("medias").join(id.to_string());
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every regular file below `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                dirs.push(entry.path());
            } else if file_type.is_file() {
                let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
                // The publication's own bookkeeping, not the media's.
                if rel != Path::new(MARKER) {
                    files.insert(rel, fs::read(entry.path()).unwrap());
                }
            }
        }
    }
    files
}

fn total_bytes(files: &BTreeMap<PathBuf, Vec<u8>>) -> u64 {
    files.values().map(|b| b.len() as u64).sum()
}

fn published_path(www: &Path, id: Uuid) -> PathBuf {
    www.join("medias").join(id.to_string())
}

fn staging_entries(www: &Path) -> Vec<PathBuf> {
    match fs::read_dir(www.join(STAGING_DIR)) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Bytes that differ from one MiB chunk to the next, so a misplaced chunk would show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect()
}

#[tokio::test]
async fn same_filesystem_hard_links() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(&storage, id);
    let main = clip(&dir, "clip.mp4", 2, 320, 240);
    fs::create_dir(dir.join("extra")).unwrap();
    fs::write(dir.join("extra/notes.vtt"), "WEBVTT\n").unwrap();

    let uri = format!("medias/{id}/clip.mp4");
    let published = publish(&storage, &www, id, &uri, "task-1", never())
        .await
        .unwrap();

    let source = tree(&dir);
    let target = published_path(&www, id);
    assert_eq!(tree(&target), source, "published bytes differ");
    assert_eq!(fs::read_to_string(target.join(MARKER)).unwrap(), "task-1");
    assert_eq!(
        published,
        Published {
            files: 2,
            bytes: total_bytes(&source),
            linked: true
        }
    );
    let (a, b) = (
        fs::metadata(&main).unwrap(),
        fs::metadata(target.join("clip.mp4")).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "not hard-linked");
    assert!(staging_entries(&www).is_empty(), "staging not empty");
}

#[tokio::test]
async fn other_filesystem_copies_and_verifies() {
    // /dev/shm is tmpfs while the temp dir is on disk: hard links fail with EXDEV there.
    let shm = Path::new("/dev/shm");
    let www_root = TempDir::new().unwrap();
    if !shm.is_dir() {
        println!("note: no /dev/shm, the cross-filesystem case is skipped");
        return;
    }
    let storage_root = tempfile::Builder::new()
        .prefix("oscied-publish-")
        .tempdir_in(shm)
        .unwrap();
    let (dev_a, dev_b) = (
        fs::metadata(storage_root.path()).unwrap().dev(),
        fs::metadata(www_root.path()).unwrap().dev(),
    );
    if dev_a == dev_b {
        println!(
            "note: /dev/shm and the temp dir share a filesystem, the cross-filesystem case is skipped"
        );
        return;
    }
    let storage = storage_root.path();
    let www = www_root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(storage, id);
    clip(&dir, "clip.mp4", 2, 320, 240);
    // Several copy chunks, and an uneven tail.
    fs::write(dir.join("big.bin"), pattern(3 * (1 << 20) + 12345)).unwrap();
    fs::write(dir.join("empty.txt"), b"").unwrap();

    let uri = format!("medias/{id}/clip.mp4");
    let published = publish(storage, &www, id, &uri, "task-2", never())
        .await
        .unwrap();

    let source = tree(&dir);
    let target = published_path(&www, id);
    assert_eq!(tree(&target), source, "copied bytes differ");
    assert_eq!(
        published,
        Published {
            files: 3,
            bytes: total_bytes(&source),
            linked: false
        }
    );
    let (a, b) = (
        fs::metadata(dir.join("big.bin")).unwrap(),
        fs::metadata(target.join("big.bin")).unwrap(),
    );
    assert_ne!(a.dev(), b.dev());
    assert!(staging_entries(&www).is_empty(), "staging not empty");
}

#[tokio::test]
async fn hls_package_publishes_every_file_and_skips_symlinks() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(&storage, id);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25:duration=4")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "1"])
        .args(["-hls_list_size", "0", "-hls_segment_filename"])
        .arg(dir.join("seg%03d.ts"))
        .arg(dir.join("index.m3u8"))
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success(), "ffmpeg could not make the HLS package");
    fs::create_dir_all(dir.join("subs/en")).unwrap();
    fs::write(dir.join("subs/en/track.vtt"), "WEBVTT\n\n").unwrap();
    // Symlinks out of the source (a file and a dir) must never be published.
    let outside = root.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), dir.join("secret.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("outside")).unwrap();

    let uri = format!("medias/{id}/index.m3u8");
    let published = publish(&storage, &www, id, &uri, "task-hls", never())
        .await
        .unwrap();

    let source = tree(&dir);
    let segments = source
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .count();
    assert!(segments >= 3, "expected several segments, got {segments}");
    let target = published_path(&www, id);
    assert_eq!(tree(&target), source);
    assert_eq!(published.files, source.len() as u64);
    assert_eq!(published.bytes, total_bytes(&source));
    assert!(published.linked);
    assert!(!target.join("secret.txt").exists());
    assert!(fs::symlink_metadata(target.join("outside")).is_err());
    let manifest = String::from_utf8(fs::read(target.join("index.m3u8")).unwrap()).unwrap();
    assert!(manifest.contains("seg000.ts"), "{manifest}");
}

#[tokio::test]
async fn republish_replaces_the_previous_publication() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(&storage, id);
    fs::write(dir.join("main.mp4"), "first").unwrap();
    fs::write(dir.join("old.txt"), "old").unwrap();
    let uri = format!("medias/{id}/main.mp4");
    publish(&storage, &www, id, &uri, "a", never())
        .await
        .unwrap();

    // New content in new inodes (not written through the hard links).
    fs::remove_file(dir.join("main.mp4")).unwrap();
    fs::remove_file(dir.join("old.txt")).unwrap();
    fs::write(dir.join("main.mp4"), "second").unwrap();
    fs::write(dir.join("new.txt"), "new").unwrap();
    let published = publish(&storage, &www, id, &uri, "b", never())
        .await
        .unwrap();

    let target = published_path(&www, id);
    assert_eq!(tree(&target), tree(&dir));
    assert_eq!(fs::read(target.join("main.mp4")).unwrap(), b"second");
    assert!(!target.join("old.txt").exists());
    assert_eq!(published.files, 2);
    assert!(staging_entries(&www).is_empty(), "staging not empty");
    // The same staging name again works too (its leftovers would be removed first).
    publish(&storage, &www, id, &uri, "b", never())
        .await
        .unwrap();
    assert_eq!(tree(&target), tree(&dir));
}

#[tokio::test]
async fn cancel_leaves_nothing_behind() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(&storage, id);
    for i in 0..5 {
        fs::write(dir.join(format!("seg{i}.ts")), pattern(1000)).unwrap();
    }
    let uri = format!("medias/{id}/seg0.ts");

    // At once.
    let err = publish(&storage, &www, id, &uri, "now", || true)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Cancelled), "{err:?}");
    assert!(!www.join(STAGING_DIR).join("now").exists());
    assert!(!published_path(&www, id).exists());

    // After a few files were linked.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let err = publish(&storage, &www, id, &uri, "later", move || {
        counter.fetch_add(1, Ordering::SeqCst) >= 3
    })
    .await
    .unwrap_err();
    assert!(matches!(err, PublishError::Cancelled), "{err:?}");
    assert!(calls.load(Ordering::SeqCst) >= 4);
    assert!(staging_entries(&www).is_empty(), "staging left behind");
    assert!(!published_path(&www, id).exists());

    // A cancelled republish keeps the previous publication.
    publish(&storage, &www, id, &uri, "first", never())
        .await
        .unwrap();
    let before = tree(&published_path(&www, id));
    let err = publish(&storage, &www, id, &uri, "again", || true)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Cancelled), "{err:?}");
    assert_eq!(tree(&published_path(&www, id)), before);
    assert!(staging_entries(&www).is_empty(), "staging left behind");
}

#[tokio::test]
async fn cancel_stops_a_big_copy_between_chunks() {
    let shm = Path::new("/dev/shm");
    let www_root = TempDir::new().unwrap();
    if !shm.is_dir() {
        println!("note: no /dev/shm, the cross-filesystem cancel case is skipped");
        return;
    }
    let storage_root = tempfile::Builder::new()
        .prefix("oscied-publish-")
        .tempdir_in(shm)
        .unwrap();
    if fs::metadata(storage_root.path()).unwrap().dev()
        == fs::metadata(www_root.path()).unwrap().dev()
    {
        println!("note: /dev/shm and the temp dir share a filesystem, skipped");
        return;
    }
    let storage = storage_root.path();
    let www = www_root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(storage, id);
    fs::write(dir.join("big.mp4"), pattern(8 << 20)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // One check before the file, then one per chunk: stop in the middle of the copy.
    let err = publish(
        storage,
        &www,
        id,
        &format!("medias/{id}/big.mp4"),
        "big",
        move || counter.fetch_add(1, Ordering::SeqCst) >= 4,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PublishError::Cancelled), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 5, "not stopped mid-copy");
    assert!(staging_entries(&www).is_empty(), "staging left behind");
    assert!(!published_path(&www, id).exists());
}

#[tokio::test]
async fn bad_media_uris_are_refused() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(&storage, id);
    fs::write(dir.join("a.mp4"), "a").unwrap();
    fs::write(storage.join("secret.txt"), "SECRET").unwrap();
    // A media dir that is a symlink out of the storage root.
    let outside = root.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("a.mp4"), "outside").unwrap();
    let escaping = Uuid::new_v4();
    std::os::unix::fs::symlink(&outside, storage.join("medias").join(escaping.to_string()))
        .unwrap();

    let absolute = dir.join("a.mp4").to_string_lossy().into_owned();
    for uri in [
        format!("medias/{id}/../../secret.txt"),
        format!("medias/{id}/../{id}/a.mp4"),
        "../outside/a.mp4".to_string(),
        format!("medias/../medias/{id}/a.mp4"),
        absolute,
        format!("/medias/{id}/a.mp4"),
        "a.mp4".to_string(),
        "secret.txt".to_string(),
        format!("medias/{escaping}/a.mp4"),
    ] {
        let err = publish(&storage, &www, id, &uri, "t", never())
            .await
            .unwrap_err();
        assert!(
            matches!(err, PublishError::InvalidUri { .. }),
            "{uri}: {err:?}"
        );
    }
    let missing = Uuid::new_v4();
    for uri in [
        format!("medias/{missing}/a.mp4"),
        format!("medias/{id}/missing.mp4"),
    ] {
        let err = publish(&storage, &www, id, &uri, "t", never())
            .await
            .unwrap_err();
        assert!(matches!(err, PublishError::Source { .. }), "{uri}: {err:?}");
    }
    for name in ["", "..", "a/b", ".hidden"] {
        let err = publish(
            &storage,
            &www,
            id,
            &format!("medias/{id}/a.mp4"),
            name,
            never(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, PublishError::InvalidStagingName(_)),
            "{name:?}: {err:?}"
        );
    }
    assert!(!published_path(&www, id).exists());
    assert!(staging_entries(&www).is_empty());
}

#[tokio::test]
async fn unpublish_removes_and_is_idempotent() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    // Before anything was ever published.
    unpublish(&www, Uuid::new_v4()).await.unwrap();

    let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
    for media in [id, other] {
        let dir = media_dir(&storage, media);
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/seg.ts"), "x").unwrap();
        fs::write(dir.join("a.m3u8"), "#EXTM3U").unwrap();
        publish(
            &storage,
            &www,
            media,
            &format!("medias/{media}/a.m3u8"),
            &media.to_string(),
            never(),
        )
        .await
        .unwrap();
    }
    unpublish(&www, id).await.unwrap();
    assert!(!published_path(&www, id).exists());
    assert!(published_path(&www, other).join("a.m3u8").is_file());
    // The source is untouched (the published files were links to it).
    assert!(storage.join(format!("medias/{id}/a.m3u8")).is_file());
    unpublish(&www, id).await.unwrap();
    assert!(staging_entries(&www).is_empty());
}

#[tokio::test]
async fn a_late_unpublish_of_an_old_publication_leaves_the_new_one() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    let id = Uuid::new_v4();
    let dir = media_dir(&storage, id);
    fs::write(dir.join("a.mp4"), "movie").unwrap();
    let uri = format!("medias/{id}/a.mp4");
    let (old_task, new_task) = (Uuid::new_v4(), Uuid::new_v4());
    publish(&storage, &www, id, &uri, &format!("{old_task}-1"), never())
        .await
        .unwrap();
    // Unpublished, then published again by another task...
    unpublish_owned(&www, id, &old_task.to_string())
        .await
        .unwrap();
    assert!(!published_path(&www, id).exists());
    publish(&storage, &www, id, &uri, &format!("{new_task}-1"), never())
        .await
        .unwrap();
    // ...when a duplicate of the old task's unpublish job arrives: the new one stays.
    unpublish_owned(&www, id, &old_task.to_string())
        .await
        .unwrap();
    assert!(published_path(&www, id).join("a.mp4").is_file());
    unpublish_owned(&www, id, &new_task.to_string())
        .await
        .unwrap();
    assert!(!published_path(&www, id).exists());
}

#[tokio::test]
async fn clean_staging_removes_leftovers() {
    let root = TempDir::new().unwrap();
    let www = root.path().join("www");
    // Nothing to clean yet.
    clean_staging(&www).await.unwrap();

    let staging = www.join(STAGING_DIR);
    fs::create_dir_all(staging.join("task-1/sub")).unwrap();
    fs::write(staging.join("task-1/sub/seg.ts"), "x").unwrap();
    fs::write(staging.join("stray-file"), "x").unwrap();
    fs::create_dir_all(staging.join(".replaced-task-2")).unwrap();
    // A symlink is removed, not followed.
    let keep = root.path().join("keep");
    fs::create_dir(&keep).unwrap();
    fs::write(keep.join("file"), "keep").unwrap();
    std::os::unix::fs::symlink(&keep, staging.join("link")).unwrap();
    let id = Uuid::new_v4();
    fs::create_dir_all(published_path(&www, id)).unwrap();

    clean_staging(&www).await.unwrap();
    assert!(staging_entries(&www).is_empty());
    assert!(keep.join("file").is_file());
    assert!(published_path(&www, id).is_dir(), "publications are kept");
}

#[tokio::test]
async fn published_ids_lists_publications() {
    let root = TempDir::new().unwrap();
    let storage = root.path().join("storage");
    let www = root.path().join("www");
    assert!(published_ids(&www).await.unwrap().is_empty());

    let mut ids = vec![Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    for id in &ids {
        let dir = media_dir(&storage, *id);
        fs::write(dir.join("a.mp4"), "a").unwrap();
        publish(
            &storage,
            &www,
            *id,
            &format!("medias/{id}/a.mp4"),
            "t",
            never(),
        )
        .await
        .unwrap();
    }
    // Not publications.
    fs::create_dir(www.join("medias/not-a-uuid")).unwrap();
    fs::write(www.join("medias").join(Uuid::new_v4().to_string()), "file").unwrap();
    unpublish(&www, ids[1]).await.unwrap();
    ids.remove(1);
    ids.sort();
    assert_eq!(published_ids(&www).await.unwrap(), ids);
}
