//! The transform pipeline end to end, with the real binaries: the orchestra on NX-27017 and a
//! RabbitMQ vhost, `worker-transform` units sharing one storage tree, ffmpeg. Each test checks
//! what a user would: task statuses and progress, output medias, files, units and queues.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    Cluster, ffmpeg_processes_mentioning, percent, pretty, probed_height, str_of, video_stream,
};
use serde_json::{Value, json};

/// CI machines are slow (2 cores) and the tests of this file run side by side.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(240);
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn assert_ready_output(cluster: &Cluster, task: &Value, media_in: &str) -> Value {
    let out = cluster.media(str_of(task, "media_out_id"));
    assert_eq!(out["status"], "READY", "{}", pretty(&out));
    assert_eq!(out["parent_id"], media_in, "{}", pretty(&out));
    // The orchestra makes its thumbnail from the shared storage just after the SUCCESS, in
    // the background, unasked.
    let thumbnail = cluster
        .storage()
        .join("thumbnails")
        .join(format!("{}.jpg", str_of(&out, "id")));
    let since = std::time::Instant::now();
    while !thumbnail.is_file() {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no {} 30 s after the SUCCESS",
            thumbnail.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    out
}

/// A finished task leaves nothing under `<storage>/tmp/<task id>`.
fn assert_no_tmp(cluster: &Cluster, task: &Value) {
    let tmp = cluster.storage().join("tmp").join(str_of(task, "id"));
    assert!(!tmp.exists(), "{} is left behind", tmp.display());
}

#[test]
fn transforms_reach_success_with_the_expected_outputs() {
    let cluster = Cluster::start(2, &[]);
    let input = cluster.upload_clip("input.mp4", 4, 640, 360);
    let media_in = str_of(&input, "id");

    let force = cluster.launch(media_in, &cluster.profile_id("Force 720p"), "out720.mp4");
    let hls = cluster.launch(media_in, &cluster.profile_id("HLS 720p"), "out.m3u8");
    let copy = cluster.launch(media_in, &cluster.profile_id("File Copy"), "copy.mp4");
    for task in [&force, &hls, &copy] {
        // A unit may have claimed it already when the answer is written.
        assert!(
            ["PENDING", "STARTED"].contains(&str_of(task, "status")),
            "{}",
            pretty(task)
        );
        assert_eq!(task["attempt"], 1, "{}", pretty(task));
        assert_eq!(task["queue"], "transform", "{}", pretty(task));
    }

    // Force 720p: a 720-line MP4 as long as its input.
    let done = cluster.wait_status(str_of(&force, "id"), "SUCCESS", ENCODE_TIMEOUT);
    assert_eq!(percent(&done), 100.0, "{}", pretty(&done));
    assert!(done["error"].is_null(), "{}", pretty(&done));
    assert!(
        ["unit-1", "unit-2"].contains(&str_of(&done, "unit_id")),
        "{}",
        pretty(&done)
    );
    let out = assert_ready_output(&cluster, &done, media_in);
    assert_eq!(video_stream(&out)["height"], 720, "{}", pretty(&out));
    let duration = out["duration"].as_f64().expect("a duration");
    assert!(
        (duration - 4.0).abs() <= 0.5,
        "duration {duration} ≈ 4 s: {}",
        pretty(&out)
    );
    assert!(out["size"].as_u64().unwrap_or(0) > 0, "{}", pretty(&out));
    let downloaded = cluster.download(str_of(&out, "id"), "downloaded720.mp4");
    assert_eq!(probed_height(&downloaded), 720);
    assert_no_tmp(&cluster, &done);

    // HLS 720p: the manifest is the media's file, its segments beside it.
    let done = cluster.wait_status(str_of(&hls, "id"), "SUCCESS", ENCODE_TIMEOUT);
    let out = assert_ready_output(&cluster, &done, media_in);
    assert_eq!(out["filename"], "out.m3u8", "{}", pretty(&out));
    let dir = cluster.media_dir(str_of(&out, "id"));
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.contains("out.m3u8"), "{files:?}");
    let segments: Vec<_> = files.iter().filter(|f| f.ends_with(".ts")).collect();
    assert!(!segments.is_empty(), "no .ts segments: {files:?}");
    let manifest = std::fs::read_to_string(dir.join("out.m3u8")).unwrap();
    for segment in &segments {
        assert!(
            manifest.contains(segment.as_str()),
            "{segment} not in:\n{manifest}"
        );
    }

    // File Copy: the very same bytes.
    let done = cluster.wait_status(str_of(&copy, "id"), "SUCCESS", ENCODE_TIMEOUT);
    let out = assert_ready_output(&cluster, &done, media_in);
    let downloaded = cluster.download(str_of(&out, "id"), "downloaded-copy.mp4");
    let original = cluster.clip("input.mp4", 4, 640, 360);
    assert!(
        std::fs::read(&downloaded).unwrap() == std::fs::read(&original).unwrap(),
        "the copy differs from its input"
    );
    assert_eq!(cluster.ready_children(media_in), 3);
}

#[test]
fn progress_moves_forward_then_reaches_100() {
    let cluster = Cluster::start(1, &[]);
    let input = cluster.upload_clip("twelve.mp4", 12, 320, 180);
    let task = cluster.launch(
        str_of(&input, "id"),
        &cluster.realtime_profile(),
        "slow.mp4",
    );
    let id = str_of(&task, "id");

    let mut seen: Vec<Value> = vec![];
    let done = cluster.wait_for(id, "SUCCESS", ENCODE_TIMEOUT, |task| {
        if task["status"] == "PROGRESS" {
            seen.push(task.clone());
        }
        task["status"] == "SUCCESS"
    });
    let trail: Vec<f64> = seen.iter().map(percent).collect();
    let distinct: BTreeSet<u64> = trail
        .iter()
        .filter(|p| **p > 0.0 && **p < 100.0)
        .map(|p| p.to_bits())
        .collect();
    assert!(
        distinct.len() >= 3,
        "at least 3 distinct percents between 0 and 100, saw {trail:?}"
    );
    assert!(
        trail.windows(2).all(|w| w[0] <= w[1]),
        "percent never goes back: {trail:?}"
    );
    for task in &seen {
        let p = &task["progress"];
        if percent(task) > 0.0 {
            for field in ["elapsed", "fps", "eta"] {
                assert!(
                    p[field].is_number(),
                    "progress.{field} missing: {}",
                    pretty(task)
                );
            }
            assert!(p["updated_at"].is_string(), "{}", pretty(task));
        }
    }
    assert_eq!(percent(&done), 100.0, "{}", pretty(&done));
    assert_eq!(done["progress"]["eta"], 0.0, "{}", pretty(&done));
    let out = cluster.media(str_of(&done, "media_out_id"));
    assert_eq!(out["status"], "READY", "{}", pretty(&out));
}

#[test]
fn revoke_a_queued_then_a_running_task() {
    let cluster = Cluster::start(1, &[]);
    let input = cluster.upload_clip("thirty.mp4", 30, 320, 180);
    let media_in = str_of(&input, "id");
    let realtime = cluster.realtime_profile();

    // Queued on a queue nobody consumes: REVOKED at once.
    let (status, queued) =
        cluster.try_launch(media_in, &realtime, "never.mp4", json!({"queue": "nobody"}));
    assert_eq!(status, 201, "{}", pretty(&queued));
    let queued_id = str_of(&queued, "id");
    let (status, revoked) = cluster.call("DELETE", &format!("/transform/tasks/{queued_id}"), None);
    assert_eq!(status, 200, "{}", pretty(&revoked));
    assert_eq!(revoked["status"], "REVOKED", "{}", pretty(&revoked));
    assert_eq!(cluster.task(queued_id)["status"], "REVOKED");
    let out = cluster.media(str_of(&queued, "media_out_id"));
    assert_eq!(out["status"], "DELETED", "{}", pretty(&out));

    // Running: REVOKING, then REVOKED once the unit has stopped ffmpeg and cleaned up.
    let task = cluster.launch(media_in, &realtime, "revoked.mp4");
    let id = str_of(&task, "id");
    let out_id = str_of(&task, "media_out_id");
    cluster.wait_status(id, "PROGRESS", START_TIMEOUT);
    assert!(
        !ffmpeg_processes_mentioning(id).is_empty(),
        "ffmpeg runs for the task while it is in PROGRESS"
    );
    let asked = Instant::now();
    let (status, revoking) = cluster.call("DELETE", &format!("/transform/tasks/{id}"), None);
    assert_eq!(status, 202, "{}\n{}", pretty(&revoking), cluster.logs());
    assert_eq!(revoking["status"], "REVOKING", "{}", pretty(&revoking));
    let done = cluster.wait_status(id, "REVOKED", Duration::from_secs(5));
    eprintln!("REVOKED {:?} after the DELETE", asked.elapsed());
    assert!(done["finished_at"].is_string(), "{}", pretty(&done));

    let left = ffmpeg_processes_mentioning(id);
    assert!(left.is_empty(), "ffmpeg still runs after REVOKED: {left:?}");
    let tmp = cluster.storage().join("tmp").join(id);
    assert!(!tmp.exists(), "{} still exists", tmp.display());
    let out = cluster.media(out_id);
    assert_eq!(out["status"], "DELETED", "{}", pretty(&out));
    let dir = cluster.media_dir(out_id);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(cluster.ready_children(media_in), 0);

    let (status, again) = cluster.call("DELETE", &format!("/transform/tasks/{id}"), None);
    assert_eq!(status, 409, "{}", pretty(&again));
    assert!(again["error"]["code"].is_string(), "{}", pretty(&again));
}

#[test]
fn an_impossible_encoding_fails_with_ffmpeg_s_words() {
    let cluster = Cluster::start(1, &[]);
    let input = cluster.upload_clip("short.mp4", 2, 320, 180);
    let media_in = str_of(&input, "id");
    // Valid for the allow-list (an unknown codec is refused at creation), impossible for
    // libx264: ffmpeg itself fails at run time.
    let bogus = cluster.create_profile(
        "Impossible profile",
        "-c:v libx264 -profile:v baseline -pix_fmt yuv444p -c:a aac",
    );
    let task = cluster.launch(media_in, &bogus, "bogus.mp4");

    let done = cluster.wait_status(str_of(&task, "id"), "FAILURE", START_TIMEOUT);
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("baseline"),
        "the error is ffmpeg's own: {}",
        pretty(&done)
    );
    assert!(done["finished_at"].is_string(), "{}", pretty(&done));
    let out_id = str_of(&done, "media_out_id");
    let out = cluster.media(out_id);
    assert_eq!(out["status"], "DELETED", "{}", pretty(&out));
    assert!(!cluster.media_dir(out_id).exists());
    assert_eq!(cluster.ready_children(media_in), 0);
}

#[test]
fn a_unit_killed_mid_task_hands_it_to_the_other() {
    let mut cluster = Cluster::start(2, &[("OSCIED_TASK_LEASE_SECS", "3")]);
    let input = cluster.upload_clip("ten.mp4", 10, 320, 180);
    let media_in = str_of(&input, "id");
    let task = cluster.launch(media_in, &cluster.realtime_profile(), "failover.mp4");
    let id = str_of(&task, "id");

    let running = cluster.wait_status(id, "PROGRESS", START_TIMEOUT);
    assert_eq!(running["attempt"], 1, "{}", pretty(&running));
    let victim = str_of(&running, "unit_id").to_owned();
    let index = cluster
        .units
        .iter()
        .position(|u| u.id() == victim)
        .unwrap_or_else(|| panic!("unit {victim} is not one of ours"));
    let survivor = cluster.units[1 - index].id().to_owned();
    cluster.units[index].kill9();

    let done = cluster.wait_status(id, "SUCCESS", ENCODE_TIMEOUT);
    assert_eq!(done["attempt"], 2, "{}", pretty(&done));
    assert_eq!(done["unit_id"], survivor.as_str(), "{}", pretty(&done));
    assert_eq!(percent(&done), 100.0, "{}", pretty(&done));
    let out = assert_ready_output(&cluster, &done, media_in);
    let duration = out["duration"].as_f64().expect("a duration");
    assert!((duration - 10.0).abs() <= 0.5, "{}", pretty(&out));
    assert_eq!(cluster.ready_children(media_in), 1);
    let left = ffmpeg_processes_mentioning(id);
    assert!(left.is_empty(), "ffmpeg still runs: {left:?}");
    // Nothing of the killed attempt is left behind.
    assert_no_tmp(&cluster, &done);

    // Three heartbeat intervals (1 s each) of silence make the killed unit offline.
    cluster.wait_until("the killed unit offline", Duration::from_secs(10), || {
        let units = cluster.get("/units");
        let state = |id: &str| {
            units["items"]
                .as_array()
                .and_then(|items| items.iter().find(|u| u["id"] == id))
                .map(|u| u["online"].clone())
        };
        if state(&victim) == Some(json!(false)) && state(&survivor) == Some(json!(true)) {
            Ok(())
        } else {
            Err(pretty(&units))
        }
    });
}

#[test]
fn an_orchestra_restart_loses_no_task() {
    let mut cluster = Cluster::start(2, &[]);
    let first = cluster.upload_clip("first.mp4", 8, 320, 180);
    let second = cluster.upload_clip("second.mp4", 4, 320, 180);
    let realtime = cluster.realtime_profile();
    let running = cluster.launch(str_of(&first, "id"), &realtime, "running.mp4");
    cluster.wait_status(str_of(&running, "id"), "PROGRESS", START_TIMEOUT);
    let late = cluster.launch(str_of(&second, "id"), &realtime, "late.mp4");

    cluster.orchestra_mut().restart();

    for (task, input) in [(&running, &first), (&late, &second)] {
        let done = cluster.wait_status(str_of(task, "id"), "SUCCESS", ENCODE_TIMEOUT);
        // The units carried on: nothing was run twice.
        assert_eq!(done["attempt"], 1, "{}", pretty(&done));
        assert_ready_output(&cluster, &done, str_of(input, "id"));
        assert_eq!(cluster.ready_children(str_of(input, "id")), 1);
    }
}

#[test]
fn standalone_runs_its_own_unit() {
    let cluster = Cluster::standalone();
    let (status, health) = curl_health(&cluster);
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["mode"], "standalone", "{health}");
    let input = cluster.upload_clip("alone.mp4", 3, 640, 360);
    let media_in = str_of(&input, "id");
    let task = cluster.launch(media_in, &cluster.profile_id("Force 720p"), "alone720.mp4");

    let done = cluster.wait_status(str_of(&task, "id"), "SUCCESS", ENCODE_TIMEOUT);
    let out = assert_ready_output(&cluster, &done, media_in);
    assert_eq!(video_stream(&out)["height"], 720, "{}", pretty(&out));
    let downloaded = cluster.download(str_of(&out, "id"), "alone720.mp4");
    assert_eq!(probed_height(&downloaded), 720);

    let units = cluster.get("/units");
    let online: Vec<&Value> = units["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|u| u["online"] == true && u["kind"] == "transform")
        .collect();
    assert_eq!(
        online.len(),
        1,
        "one in-process transform unit: {}",
        pretty(&units)
    );
    assert_eq!(done["unit_id"], online[0]["id"], "{}", pretty(&done));
}

fn curl_health(cluster: &Cluster) -> (u16, Value) {
    cluster.api().health()
}

#[test]
fn queues_and_units_are_visible() {
    let cluster = Cluster::start(2, &[]);
    let units = cluster.wait_until("both units online", START_TIMEOUT, || {
        let units = cluster.get("/units");
        let online = units["items"]
            .as_array()
            .map(|items| items.iter().filter(|u| u["online"] == true).count())
            .unwrap_or(0);
        if online == 2 {
            Ok(units)
        } else {
            Err(pretty(&units))
        }
    });
    assert_eq!(units["total"], 2, "{}", pretty(&units));
    let mut ids = vec![];
    for unit in units["items"].as_array().unwrap() {
        ids.push(str_of(unit, "id").to_owned());
        assert_eq!(unit["kind"], "transform", "{}", pretty(unit));
        assert!(!str_of(unit, "hostname").is_empty(), "{}", pretty(unit));
        assert_eq!(unit["concurrency"], 1, "{}", pretty(unit));
        assert_eq!(unit["queues"], json!(["transform"]), "{}", pretty(unit));
        assert!(
            !str_of(unit, "last_heartbeat").is_empty(),
            "{}",
            pretty(unit)
        );
        assert!(unit["ffmpeg_version"].is_string(), "{}", pretty(unit));
    }
    ids.sort();
    assert_eq!(ids, ["unit-1", "unit-2"]);

    let queues = cluster.get("/transform/queues");
    let transform = queues["items"]
        .as_array()
        .and_then(|items| items.iter().find(|q| q["name"] == "transform"))
        .unwrap_or_else(|| panic!("no transform queue: {}", pretty(&queues)));
    let mut consumers: Vec<&str> = transform["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    consumers.sort();
    assert_eq!(consumers, ["unit-1", "unit-2"], "{}", pretty(&queues));
    assert_eq!(transform["concurrency"], 2, "{}", pretty(&queues));
    assert_eq!(transform["pending"], 0, "{}", pretty(&queues));
    assert_eq!(transform["running"], 0, "{}", pretty(&queues));
    assert_eq!(
        transform["messages"],
        0,
        "the broker answers: {}",
        pretty(&queues)
    );
}
