//! Stopping units and a standalone orchestra with SIGTERM, as systemd does (issue 10, drain):
//! a unit takes no new job, lets its running tasks finish for up to `OSCIED_DRAIN_SECS` or
//! hands them back at once, removes its work files and exits 0. The lease is long (600 s)
//! in every test, so a task that moves on within seconds was handed back, not reaped.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, pretty, str_of};
use serde_json::Value;

const ENCODE_TIMEOUT: Duration = Duration::from_secs(240);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const LONG_LEASE: (&str, &str) = ("OSCIED_TASK_LEASE_SECS", "600");
/// From SIGTERM to the exit when nothing has to finish: kill ffmpeg, hand back, clean up.
const QUICK_EXIT: Duration = Duration::from_secs(8);

/// Wait until the task is PROGRESS, held by a unit; that unit's index in `cluster.units`.
fn running_on(cluster: &Cluster, id: &str) -> (Value, usize) {
    let task = cluster.wait_status(id, "PROGRESS", START_TIMEOUT);
    let holder = str_of(&task, "unit_id");
    let index = cluster
        .units
        .iter()
        .position(|u| u.id() == holder)
        .unwrap_or_else(|| panic!("unit {holder} is not one of ours"));
    (task, index)
}

fn tmp_of(cluster: &Cluster, id: &str, attempt: u32) -> std::path::PathBuf {
    cluster
        .storage()
        .join("tmp")
        .join(id)
        .join(attempt.to_string())
}

#[test]
fn sigterm_hands_a_running_task_back_at_once() {
    let mut cluster = Cluster::start(2, &[LONG_LEASE]);
    let input = cluster.upload_clip("eight.mp4", 8, 320, 180);
    let media_in = str_of(&input, "id");
    let task = cluster.launch(media_in, &cluster.realtime_profile(), "handed.mp4");
    let id = str_of(&task, "id");
    let (running, victim) = running_on(&cluster, id);
    assert_eq!(running["attempt"], 1, "{}", pretty(&running));
    let victim_id = cluster.units[victim].id().to_owned();
    let survivor_id = cluster.units[1 - victim].id().to_owned();
    assert!(
        tmp_of(&cluster, id, 1).exists(),
        "attempt 1 writes its tmp dir"
    );

    let asked = Instant::now();
    cluster.units[victim].sigterm();
    let exit = cluster.units[victim].wait_exit(QUICK_EXIT);
    let took = asked.elapsed();
    let status = exit.unwrap_or_else(|| {
        panic!(
            "the unit still runs {QUICK_EXIT:?} after SIGTERM\n{}",
            cluster.logs()
        )
    });
    assert!(status.success(), "exit {status}\n{}", cluster.logs());
    eprintln!("unit exited {took:?} after SIGTERM");
    assert!(
        !tmp_of(&cluster, id, 1).exists(),
        "the stopped unit removed its tmp dir\n{}",
        cluster.logs()
    );
    // Queued again at once (the lease has 600 s to go), attempt 2, not counted against the
    // attempt budget.
    let handed = cluster.task(id);
    assert_eq!(handed["attempt"], 2, "{}", pretty(&handed));
    assert_eq!(handed["handed_back"], 1, "{}", pretty(&handed));
    let error = handed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("handed back by unit {victim_id}")),
        "{}",
        pretty(&handed)
    );

    let done = cluster.wait_status(id, "SUCCESS", ENCODE_TIMEOUT);
    assert_eq!(done["attempt"], 2, "{}", pretty(&done));
    assert_eq!(done["unit_id"], survivor_id.as_str(), "{}", pretty(&done));
    assert_eq!(cluster.ready_children(media_in), 1, "exactly one output");
    assert!(!cluster.storage().join("tmp").join(id).exists());
}

#[test]
fn a_long_drain_finishes_the_running_task_and_takes_no_new_one() {
    let mut cluster = Cluster::start(0, &[LONG_LEASE]);
    cluster.add_unit_with("drainer", &[("OSCIED_DRAIN_SECS", "120")]);
    let first = cluster.upload_clip("five.mp4", 5, 320, 180);
    let second = cluster.upload_clip("two.mp4", 2, 320, 180);
    let realtime = cluster.realtime_profile();
    let running = cluster.launch(str_of(&first, "id"), &realtime, "finish.mp4");
    let running_id = str_of(&running, "id");
    cluster.wait_status(running_id, "PROGRESS", START_TIMEOUT);
    // Queued behind it: the unit (concurrency 1) is busy.
    let queued = cluster.launch(str_of(&second, "id"), &realtime, "later.mp4");
    let queued_id = str_of(&queued, "id");

    cluster.units[0].sigterm();
    let exit = cluster.units[0].wait_exit(ENCODE_TIMEOUT);
    let status = exit.unwrap_or_else(|| panic!("the unit never exited\n{}", cluster.logs()));
    assert!(status.success(), "exit {status}\n{}", cluster.logs());

    let done = cluster.task(running_id);
    assert_eq!(done["status"], "SUCCESS", "{}", pretty(&done));
    assert_eq!(done["attempt"], 1, "{}", pretty(&done));
    assert_eq!(done["handed_back"], 0, "{}", pretty(&done));
    let untouched = cluster.task(queued_id);
    assert_eq!(untouched["status"], "PENDING", "{}", pretty(&untouched));
    assert!(untouched["unit_id"].is_null(), "{}", pretty(&untouched));
    assert!(!cluster.storage().join("tmp").join(queued_id).exists());

    // Its message waited in the queue for the next unit.
    cluster.add_unit("next");
    let later = cluster.wait_status(queued_id, "SUCCESS", ENCODE_TIMEOUT);
    assert_eq!(later["attempt"], 1, "{}", pretty(&later));
    assert_eq!(later["unit_id"], "next", "{}", pretty(&later));
}

#[test]
fn a_short_drain_lets_the_task_run_then_hands_it_back() {
    let mut cluster = Cluster::start(0, &[LONG_LEASE]);
    cluster.add_unit_with("brief", &[("OSCIED_DRAIN_SECS", "3")]);
    let input = cluster.upload_clip("thirty.mp4", 30, 320, 180);
    let task = cluster.launch(str_of(&input, "id"), &cluster.realtime_profile(), "cut.mp4");
    let id = str_of(&task, "id");
    cluster.wait_status(id, "PROGRESS", START_TIMEOUT);

    let asked = Instant::now();
    cluster.units[0].sigterm();
    std::thread::sleep(Duration::from_millis(1500));
    let draining = cluster.task(id);
    assert_eq!(draining["status"], "PROGRESS", "{}", pretty(&draining));
    assert_eq!(
        draining["attempt"],
        1,
        "still running: {}",
        pretty(&draining)
    );
    let exit = cluster.units[0].wait_exit(Duration::from_secs(3) + QUICK_EXIT);
    let took = asked.elapsed();
    let status = exit.unwrap_or_else(|| panic!("the unit never exited\n{}", cluster.logs()));
    assert!(status.success(), "exit {status}\n{}", cluster.logs());
    assert!(
        took >= Duration::from_secs(3),
        "exited after {took:?}: it did not drain"
    );

    let handed = cluster.task(id);
    assert_eq!(handed["status"], "RETRY", "{}", pretty(&handed));
    assert_eq!(handed["attempt"], 2, "{}", pretty(&handed));
    assert_eq!(handed["handed_back"], 1, "{}", pretty(&handed));
    assert!(
        handed["dispatched_at"].is_string(),
        "queued again at once: {}",
        pretty(&handed)
    );
    assert!(!cluster.storage().join("tmp").join(id).join("1").exists());
}

#[test]
fn a_standalone_orchestra_stopped_mid_transform_resumes_at_once() {
    let mut cluster = Cluster::standalone_with(&[LONG_LEASE]);
    let input = cluster.upload_clip("six.mp4", 6, 320, 180);
    let media_in = str_of(&input, "id");
    let task = cluster.launch(media_in, &cluster.realtime_profile(), "resumed.mp4");
    let id = str_of(&task, "id");
    cluster.wait_status(id, "PROGRESS", START_TIMEOUT);
    assert!(tmp_of(&cluster, id, 1).exists());

    cluster.orchestra().sigterm();
    let exit = cluster.orchestra_mut().wait_exit(QUICK_EXIT);
    let status = exit.unwrap_or_else(|| {
        panic!(
            "the orchestra still runs {QUICK_EXIT:?} after SIGTERM:\n{}",
            cluster.orchestra().log_tail()
        )
    });
    assert!(
        status.success(),
        "exit {status}:\n{}",
        cluster.orchestra().log_tail()
    );
    assert!(
        !cluster.storage().join("tmp").join(id).join("1").exists(),
        "no tmp dir left:\n{}",
        cluster.orchestra().log_tail()
    );

    let restarted = Instant::now();
    cluster.orchestra_mut().start_again();
    // Well before the 600 s lease: it was handed back, and queued again on start.
    let done = cluster.wait_status(id, "SUCCESS", ENCODE_TIMEOUT);
    eprintln!("SUCCESS {:?} after the restart", restarted.elapsed());
    assert_eq!(done["attempt"], 2, "{}", pretty(&done));
    assert_eq!(done["handed_back"], 1, "{}", pretty(&done));
    assert_eq!(cluster.ready_children(media_in), 1);
    assert!(!cluster.storage().join("tmp").join(id).exists());
}

#[test]
fn a_publisher_stopped_mid_publish_hands_it_back() {
    let mut cluster = Cluster::start(0, &[LONG_LEASE]);
    // Its public URL answers nothing, so its URL check retries for 5 s: a publication held
    // long enough to be stopped in the middle.
    let nowhere = format!("http://127.0.0.1:{}", oscied_e2e::free_port());
    cluster.add_publisher("stopped", &[("OSCIED_PUBLIC_URL", &nowhere)]);
    cluster.wait_publisher_consumers();
    let media = cluster.upload_clip("pub.mp4", 2, 320, 180);
    let media_id = str_of(&media, "id").to_owned();
    let task = cluster.publish(&media_id);
    let id = str_of(&task, "id").to_owned();
    cluster.wait_publication_for(&id, "held by the unit", START_TIMEOUT, |t| {
        ["STARTED", "PROGRESS"].contains(&t["status"].as_str().unwrap_or_default())
    });

    cluster.publishers[0].sigterm();
    let exit = cluster.publishers[0].wait_exit(QUICK_EXIT);
    let status = exit.unwrap_or_else(|| panic!("the publisher never exited\n{}", cluster.logs()));
    assert!(status.success(), "exit {status}\n{}", cluster.logs());
    let handed = cluster.publication(&id);
    assert_eq!(handed["status"], "RETRY", "{}", pretty(&handed));
    assert_eq!(handed["attempt"], 2, "{}", pretty(&handed));
    assert_eq!(handed["handed_back"], 1, "{}", pretty(&handed));
    assert!(handed["publish_uri"].is_null(), "{}", pretty(&handed));
    let www = cluster.publishers[0].www_root().to_path_buf();
    let left = common::files_below(&www);
    assert!(
        !www.join("medias").join(&media_id).exists(),
        "nothing of it stays in the stopped unit's web root: {left:?}"
    );

    cluster.add_publisher("next", &[]);
    let done = cluster.wait_publication(&id, "SUCCESS", START_TIMEOUT);
    assert_eq!(done["attempt"], 2, "{}", pretty(&done));
    assert_eq!(done["unit_id"], "next", "{}", pretty(&done));
}
