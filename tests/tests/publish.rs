//! Publishing end to end, with the real binaries: the orchestra on NX-27017 and a RabbitMQ
//! vhost, `worker-transform` and `worker-publisher` units sharing one storage tree, each
//! publisher with its own port and www root. Each test checks what a user would: publisher
//! task statuses, the media's `public_uris`, and what the publish URIs serve (bytes, ranges,
//! content types) before and after unpublishing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, files_below, pretty, same_bytes, str_of};
use oscied_e2e::api::fetch;
use serde_json::{Value, json};

/// CI machines are slow (2 cores) and the tests of this file run side by side.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(240);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Statuses of a publication a unit holds.
const HELD: &[&str] = &["STARTED", "PROGRESS", "SUCCESS"];

/// Transform `input` with the built-in profile `profile` into `filename`; the READY output.
fn transform(cluster: &Cluster, input: &Value, profile: &str, filename: &str) -> Value {
    let media_in = str_of(input, "id");
    let task = cluster.launch(media_in, &cluster.profile_id(profile), filename);
    let done = cluster.wait_status(str_of(&task, "id"), "SUCCESS", ENCODE_TIMEOUT);
    let out = cluster.media(str_of(&done, "media_out_id"));
    assert_eq!(out["status"], "READY", "{}", pretty(&out));
    assert_eq!(out["parent_id"], media_in, "{}", pretty(&out));
    out
}

/// Publish a media and wait for SUCCESS; the finished task.
fn publish_and_wait(cluster: &Cluster, media_id: &str) -> Value {
    let task = cluster.publish(media_id);
    // A unit may have claimed (or even finished) it by the time the answer is written.
    assert!(
        ["PENDING", "STARTED", "PROGRESS", "SUCCESS"].contains(&str_of(&task, "status")),
        "{}",
        pretty(&task)
    );
    assert_eq!(task["queue"], "publisher", "{}", pretty(&task));
    assert_eq!(task["attempt"], 1, "{}", pretty(&task));
    let done = cluster.wait_publication(str_of(&task, "id"), "SUCCESS", PUBLISH_TIMEOUT);
    assert!(done["error"].is_null(), "{}", pretty(&done));
    assert!(done["finished_at"].is_string(), "{}", pretty(&done));
    done
}

/// The publish URI of a SUCCESS, checked to be its unit's public URL + `/medias/<id>/<file>`.
fn checked_uri(cluster: &Cluster, task: &Value, media: &Value) -> String {
    let uri = str_of(task, "publish_uri");
    let unit = cluster.publisher(str_of(task, "unit_id"));
    let expected = format!(
        "{}/medias/{}/{}",
        unit.public_url(),
        str_of(media, "id"),
        str_of(media, "filename")
    );
    assert_eq!(uri, expected, "{}", pretty(task));
    uri.to_owned()
}

/// GET `uri` answers 200 with exactly the bytes of `stored`.
fn assert_serves(cluster: &Cluster, uri: &str, stored: &Path) {
    let got = fetch(uri, &[]);
    assert_eq!(got.status, 200, "{}\n{}", got.describe(), cluster.logs());
    assert!(
        same_bytes(got.body_path(), stored),
        "{uri} does not serve the bytes of {}: {}",
        stored.display(),
        got.describe()
    );
}

/// GET `uri` answers 404: its unit no longer serves it.
fn assert_gone(cluster: &Cluster, uri: &str) {
    let got = fetch(uri, &[]);
    assert_eq!(
        got.status,
        404,
        "unpublished, yet: {}\n{}",
        got.describe(),
        cluster.logs()
    );
}

/// The answer to unpublishing a SUCCESS: always 202 REVOKING (the state the orchestra
/// recorded before sending the job), however quick the unit is.
fn assert_unpublishing(status: u16, answer: &Value) {
    assert_eq!(status, 202, "{}", pretty(answer));
    assert_eq!(answer["status"], "REVOKING", "{}", pretty(answer));
}

/// Unpublish a SUCCESS: 202 REVOKING, then REVOKED once its unit removed the files.
fn unpublish_and_wait(cluster: &Cluster, id: &str) -> Value {
    let (status, answer) = cluster.unpublish(id);
    assert_unpublishing(status, &answer);
    let done = cluster.wait_publication(id, "REVOKED", PUBLISH_TIMEOUT);
    assert!(done["finished_at"].is_string(), "{}", pretty(&done));
    done
}

#[test]
fn a_published_output_is_served_until_unpublished() {
    let cluster = Cluster::with_publishers(1, 1, &[]);
    let input = cluster.upload_clip("talk.mp4", 3, 320, 180);
    let out = transform(&cluster, &input, "Negate", "negated.mp4");
    let out_id = str_of(&out, "id");
    let stored = cluster.stored_file(&out);
    let bytes = std::fs::read(&stored).expect("the stored output");
    assert!(bytes.len() > 2000, "{} bytes", bytes.len());

    let task = cluster.publish(out_id);
    let id = str_of(&task, "id").to_owned();
    // Once is enough: publishing it again is a 409 that names the publication.
    let (status, again) = cluster.try_publish(out_id, json!({}));
    assert_eq!(status, 409, "{}", pretty(&again));
    let message = again["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&id), "names {id}: {}", pretty(&again));

    let done = cluster.wait_publication(&id, "SUCCESS", PUBLISH_TIMEOUT);
    assert_eq!(done["unit_id"], "publisher-1", "{}", pretty(&done));
    assert_eq!(done["attempt"], 1, "{}", pretty(&done));
    assert!(done["error"].is_null(), "{}", pretty(&done));
    let uri = checked_uri(&cluster, &done, &out);

    // The whole file: exactly the stored bytes, as MP4.
    let whole = fetch(&uri, &[]);
    assert_eq!(whole.status, 200, "{}", whole.describe());
    assert_eq!(
        whole.content_type(),
        Some("video/mp4"),
        "{}",
        whole.describe()
    );
    assert!(whole.body() == bytes, "{}", whole.describe());
    assert_eq!(
        whole.header("accept-ranges"),
        Some("bytes"),
        "{}",
        whole.describe()
    );
    // A range: exactly that slice, 206, with its Content-Range.
    let slice = fetch(&uri, &["-r", "1000-1999"]);
    assert_eq!(slice.status, 206, "{}", slice.describe());
    assert!(slice.body() == bytes[1000..2000], "{}", slice.describe());
    assert_eq!(
        slice.header("content-range"),
        Some(format!("bytes 1000-1999/{}", bytes.len()).as_str()),
        "{}",
        slice.describe()
    );
    assert_eq!(
        slice.content_type(),
        Some("video/mp4"),
        "{}",
        slice.describe()
    );

    let media = cluster.media(out_id);
    assert_eq!(
        media["public_uris"],
        json!({ id.as_str(): uri.as_str() }),
        "{}",
        pretty(&media)
    );

    // A published media cannot be deleted: the 409 says which publication holds it.
    let (status, refused) = cluster.call("DELETE", &format!("/medias/{out_id}"), None);
    assert_eq!(status, 409, "{}", pretty(&refused));
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&id), "names {id}: {}", pretty(&refused));
    assert_eq!(cluster.media(out_id)["status"], "READY");
    assert_serves(&cluster, &uri, &stored);

    unpublish_and_wait(&cluster, &id);
    assert_gone(&cluster, &uri);
    let media = cluster.media(out_id);
    assert_eq!(media["public_uris"], json!({}), "{}", pretty(&media));
    assert_eq!(media["status"], "READY", "{}", pretty(&media));
    // Unpublishing leaves the media itself alone.
    assert!(std::fs::read(&stored).expect("the stored output") == bytes);
    let www = cluster.publisher("publisher-1").www_root().join("medias");
    assert_eq!(files_below(&www), Vec::<String>::new(), "{}", www.display());

    let (status, twice) = cluster.unpublish(&id);
    assert_eq!(status, 409, "{}", pretty(&twice));
    // No longer published: it may be deleted now.
    let (status, deleted) = cluster.call("DELETE", &format!("/medias/{out_id}"), None);
    assert_eq!(status, 204, "{}\n{}", pretty(&deleted), cluster.logs());
}

#[test]
fn two_publishers_share_the_work_and_unpublish_reaches_the_holder() {
    let cluster = Cluster::with_publishers(0, 2, &[]);
    let medias: Vec<Value> = (1..=4)
        .map(|n| cluster.upload_clip(&format!("clip{n}.mp4"), n, 320, 180))
        .collect();
    let tasks: Vec<Value> = medias
        .iter()
        .map(|m| cluster.publish(str_of(m, "id")))
        .collect();

    let mut published = vec![];
    for (task, media) in tasks.iter().zip(&medias) {
        let done = cluster.wait_publication(str_of(task, "id"), "SUCCESS", PUBLISH_TIMEOUT);
        let uri = checked_uri(&cluster, &done, media);
        published.push((done, media, uri));
    }
    let holders: BTreeSet<&str> = published
        .iter()
        .map(|(done, _, _)| str_of(done, "unit_id"))
        .collect();
    assert_eq!(
        holders,
        BTreeSet::from(["publisher-1", "publisher-2"]),
        "both units publish: {:#?}",
        published.iter().map(|(d, _, _)| d).collect::<Vec<_>>()
    );
    for (done, media, uri) in &published {
        let media_id = str_of(media, "id");
        // Served by its own unit, from that unit's www root only.
        assert_serves(&cluster, uri, &cluster.stored_file(media));
        for unit in &cluster.publishers {
            let dir = unit.www_root().join("medias").join(media_id);
            assert_eq!(
                dir.is_dir(),
                unit.id() == str_of(done, "unit_id"),
                "{} on {}: {}",
                dir.display(),
                unit.id(),
                pretty(done)
            );
        }
        let now = cluster.media(media_id);
        assert_eq!(
            now["public_uris"],
            json!({ str_of(done, "id"): uri }),
            "{}",
            pretty(&now)
        );
    }

    // Every unpublish goes to the unit holding the files.
    for (done, _, _) in &published {
        let (status, answer) = cluster.unpublish(str_of(done, "id"));
        assert_unpublishing(status, &answer);
    }
    for (done, media, uri) in &published {
        cluster.wait_publication(str_of(done, "id"), "REVOKED", PUBLISH_TIMEOUT);
        assert_gone(&cluster, uri);
        let now = cluster.media(str_of(media, "id"));
        assert_eq!(now["public_uris"], json!({}), "{}", pretty(&now));
    }
    for unit in &cluster.publishers {
        let www = unit.www_root().join("medias");
        assert_eq!(
            files_below(&www),
            Vec::<String>::new(),
            "{} still publishes",
            unit.id()
        );
    }
}

/// A media big enough that copying it takes a moment: raw 720p video, ~415 MB.
fn big_media(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("big.mkv");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=1280x720:rate=25:duration=12")
        .args(["-c:v", "rawvideo", "-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success(), "ffmpeg could not generate big.mkv");
    path
}

/// Web roots on another filesystem than the storage (tmpfs under /dev/shm), so that a
/// publication copies instead of hard-linking and takes long enough to be interrupted; None
/// when there is no such filesystem (publications are then near instant).
fn www_parent() -> Option<tempfile::TempDir> {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    // The storage is a temp dir.
    let storage = std::env::temp_dir();
    let other = std::fs::metadata(shm).ok()?.dev() != std::fs::metadata(storage).ok()?.dev();
    if !other {
        return None;
    }
    tempfile::Builder::new()
        .prefix("oscied-www-")
        .tempdir_in(shm)
        .ok()
}

/// What this proves: a publisher unit `kill -9`ed while it publishes (it claimed the task, the
/// copy is under way) loses the task's lease; 3 s later the orchestra re-queues it with
/// attempt 2, the other unit publishes it, and the publish URI serves every byte. Nothing of
/// the killed attempt is served.
///
/// The kill lands when the API first shows the task held. When the killed unit had already
/// finished by then (SUCCESS at attempt 1 on it), the kill did not interrupt a publication:
/// that publication stays, as designed, on the dead unit (the orchestra never moves a
/// finished one), so it proves nothing about recovery. The test then tries again with
/// another media and a fresh second unit, up to three rounds, and fails if it never manages
/// to interrupt one (the copy of ~415 MB to tmpfs normally takes several polls).
#[test]
fn a_publisher_killed_mid_publish_is_recovered() {
    // Before the cluster, so it goes after the units.
    let www_parent = www_parent();
    let mut cluster = Cluster::start(0, &[("OSCIED_TASK_LEASE_SECS", "3")]);
    let mut started = 0;
    let mut add_publisher = |cluster: &mut Cluster| {
        started += 1;
        let id = format!("publisher-{started}");
        match &www_parent {
            Some(parent) => {
                let www = parent.path().join(&id);
                let www = www.to_str().expect("utf-8 path");
                cluster.add_publisher(&id, &[("OSCIED_WWW_ROOT", www)]);
            }
            None => cluster.add_publisher(&id, &[]),
        }
    };
    add_publisher(&mut cluster);
    add_publisher(&mut cluster);
    cluster.wait_publisher_consumers();
    let source = big_media(cluster.scratch());

    let mut missed = vec![];
    for round in 1..=3 {
        let media = cluster.register_upload(&source, &format!("big{round}.mkv"));
        let media_id = str_of(&media, "id").to_owned();
        let task = cluster.publish(&media_id);
        let id = str_of(&task, "id").to_owned();

        // As fast as the API answers: the first moment a unit holds it.
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let held = loop {
            let (status, now) = cluster.call("GET", &format!("/publisher/tasks/{id}"), None);
            if status == 200 && HELD.contains(&now["status"].as_str().unwrap_or_default()) {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "no unit took publisher task {id}: {}\n{}",
                pretty(&now),
                cluster.logs()
            );
        };
        let victim = str_of(&held, "unit_id").to_owned();
        let index = cluster
            .publishers
            .iter()
            .position(|u| u.id() == victim)
            .unwrap_or_else(|| panic!("unit {victim} is not one of ours: {}", pretty(&held)));
        cluster.publishers[index].kill9();
        eprintln!(
            "round {round}: killed {victim} with the task {}",
            held["status"]
        );
        // A completion it sent just before dying is answered by now.
        std::thread::sleep(Duration::from_millis(500));
        let after = cluster.publication(&id);
        if after["status"] == "SUCCESS" && after["unit_id"] == victim.as_str() {
            // Too late: it had published. Keep two live units and try again.
            assert_eq!(after["attempt"], 1, "{}", pretty(&after));
            missed.push(after);
            add_publisher(&mut cluster);
            cluster.wait_publisher_consumers();
            continue;
        }

        // Killed mid-publish: the lease (3 s) lapses, attempt 2 goes to a live unit.
        let done = cluster.wait_publication(&id, "SUCCESS", PUBLISH_TIMEOUT);
        assert_eq!(done["attempt"], 2, "{}", pretty(&done));
        let survivor = str_of(&done, "unit_id");
        assert_ne!(survivor, victim, "{}", pretty(&done));
        assert!(done["error"].is_null(), "{}", pretty(&done));
        let uri = checked_uri(&cluster, &done, &media);
        assert_serves(&cluster, &uri, &cluster.stored_file(&media));
        let now = cluster.media(&media_id);
        assert_eq!(
            now["public_uris"],
            json!({ id.as_str(): uri.as_str() }),
            "{}",
            pretty(&now)
        );
        // The killed attempt published nothing: at most a staging leftover, never served.
        let dead = cluster.publisher(&victim).www_root().join("medias");
        assert!(
            !dead.join(&media_id).exists(),
            "{} has it: {:?}",
            dead.display(),
            files_below(&dead)
        );
        return;
    }
    panic!(
        "every publication finished before its unit could be killed ({} rounds): {:#?}\n{}",
        missed.len(),
        missed,
        cluster.logs()
    );
}

/// The names in an HLS playlist: its URI lines, and `URI="..."` attributes (EXT-X-MAP).
fn playlist_entries(playlist: &str) -> Vec<String> {
    let mut entries = vec![];
    for line in playlist.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            entries.push(line.to_owned());
        } else if let Some((_, rest)) = line.split_once("URI=\"")
            && let Some((uri, _)) = rest.split_once('"')
        {
            entries.push(uri.to_owned());
        }
    }
    entries
}

#[test]
fn an_hls_package_is_published_whole() {
    let cluster = Cluster::with_publishers(1, 1, &[]);
    let input = cluster.upload_clip("hls-in.mp4", 4, 320, 180);
    let out = transform(&cluster, &input, "HLS 720p", "out.m3u8");
    let out_id = str_of(&out, "id");
    let done = publish_and_wait(&cluster, out_id);
    let uri = checked_uri(&cluster, &done, &out);

    let playlist = fetch(&uri, &[]);
    assert_eq!(playlist.status, 200, "{}", playlist.describe());
    assert_eq!(
        playlist.content_type(),
        Some("application/vnd.apple.mpegurl"),
        "{}",
        playlist.describe()
    );
    assert!(same_bytes(playlist.body_path(), &cluster.stored_file(&out)));
    let base = &uri[..=uri.rfind('/').expect("a path")];

    // Every file the playlist (and any playlist it names) refers to, from the same base URL.
    let text = String::from_utf8(playlist.body()).expect("a text playlist");
    let mut pending: Vec<String> = playlist_entries(&text);
    let mut served: BTreeMap<String, String> = BTreeMap::new();
    while let Some(name) = pending.pop() {
        assert!(
            !name.contains("://") && !name.starts_with('/'),
            "{name:?} is not beside the playlist:\n{text}"
        );
        if served.contains_key(&name) {
            continue;
        }
        let got = fetch(&format!("{base}{name}"), &[]);
        assert_eq!(got.status, 200, "{}", got.describe());
        let stored = cluster.media_dir(out_id).join(&name);
        assert!(same_bytes(got.body_path(), &stored), "{}", got.describe());
        let mime = got.content_type().unwrap_or_default().to_owned();
        if name.ends_with(".m3u8") {
            assert_eq!(mime, "application/vnd.apple.mpegurl", "{}", got.describe());
            let nested = String::from_utf8(got.body()).expect("a text playlist");
            pending.extend(playlist_entries(&nested));
        } else if name.ends_with(".mp4") {
            assert_eq!(mime, "video/mp4", "{}", got.describe());
        } else {
            assert!(
                ["video/mp2t", "video/iso.segment"].contains(&mime.as_str()),
                "{}",
                got.describe()
            );
        }
        served.insert(name, mime);
    }
    let segments = served
        .values()
        .filter(|m| ["video/mp2t", "video/iso.segment"].contains(&m.as_str()))
        .count();
    assert!(segments >= 1, "no segments in:\n{text}");
    eprintln!("served {served:?}");
}
