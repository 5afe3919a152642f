//! Stable identity, end to end with the real binaries (orchestra on NX-27017, a RabbitMQ
//! vhost, `worker-publisher` processes): a publisher started without `OSCIED_UNIT_ID` keeps
//! its id and what it published across restarts, and a publisher never keeps serving a
//! publication the orchestra says it does not hold.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Cluster, pretty, same_bytes, str_of};
use oscied_e2e::api::fetch;
use serde_json::{Value, json};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Publish a media and wait for SUCCESS; the finished task and its publish URI.
fn publish_and_wait(cluster: &Cluster, media_id: &str) -> (Value, String) {
    let task = cluster.publish(media_id);
    let done = cluster.wait_publication(str_of(&task, "id"), "SUCCESS", PUBLISH_TIMEOUT);
    let uri = str_of(&done, "publish_uri").to_owned();
    (done, uri)
}

fn assert_serves(cluster: &Cluster, uri: &str, media: &Value) {
    let got = fetch(uri, &[]);
    assert_eq!(got.status, 200, "{}\n{}", got.describe(), cluster.logs());
    assert!(
        same_bytes(got.body_path(), &cluster.stored_file(media)),
        "{uri} does not serve the stored bytes: {}",
        got.describe()
    );
}

fn assert_gone(cluster: &Cluster, uri: &str) {
    let got = fetch(uri, &[]);
    assert_eq!(got.status, 404, "{}\n{}", got.describe(), cluster.logs());
}

/// The publisher units `GET /units` lists.
fn publisher_units(cluster: &Cluster) -> Vec<Value> {
    cluster.get("/units")["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|u| u["kind"] == "publisher")
        .cloned()
        .collect()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// What this proves: a publisher started without `OSCIED_UNIT_ID` (as the README's cluster
/// section does) and restarted is the same unit for the orchestra, and keeps serving what it
/// published; unpublishing then ends REVOKED and the URL answers 404. Its state (id, lock)
/// is never served.
#[test]
fn a_restarted_publisher_keeps_its_id_and_its_publications() {
    let mut cluster = Cluster::start(0, &[]);
    let id = cluster.add_anonymous_publisher(&[]);
    cluster.wait_publisher_consumers();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let media = cluster.upload_clip("keep.mp4", 2, 160, 120);
    let (done, uri) = publish_and_wait(&cluster, str_of(&media, "id"));
    assert_eq!(done["unit_id"], id.as_str(), "{}", pretty(&done));
    assert_serves(&cluster, &uri, &media);
    let public = cluster.publishers[0].public_url().to_owned();
    for path in [
        "/.oscied/unit_id",
        "/.oscied/lock",
        "/medias/../.oscied/unit_id",
    ] {
        assert_gone(&cluster, &format!("{public}{path}"));
    }

    cluster.publishers[0].restart();
    cluster.wait_publisher_consumers();
    let units = publisher_units(&cluster);
    assert_eq!(units.len(), 1, "one unit, not two: {units:#?}");
    assert_eq!(units[0]["id"], id.as_str(), "{units:#?}");
    assert_eq!(units[0]["online"], true, "{units:#?}");
    assert_serves(&cluster, &uri, &media);

    let task_id = str_of(&done, "id");
    let (status, body) = cluster.unpublish(task_id);
    assert!(status == 202 || status == 200, "{status} {}", pretty(&body));
    cluster.wait_publication(task_id, "REVOKED", PUBLISH_TIMEOUT);
    assert_gone(&cluster, &uri);
}

/// Two publishers on one www root (so one state dir): the second fails at start, naming the
/// dir, the holder and the fix; the first goes on serving.
#[test]
fn two_publishers_cannot_share_a_state_dir() {
    let mut cluster = Cluster::start(0, &[]);
    cluster.add_publisher("publisher-1", &[]);
    cluster.wait_publisher_consumers();
    let www = cluster.publishers[0].www_root().to_owned();
    let www = www.to_str().expect("utf-8 path");
    let vars = cluster.node_vars();
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("OSCIED_WWW_ROOT", www));
    let binary = oscied_e2e::orchestra::worker_publisher_binary();
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("OSCIED_") {
            command.env_remove(key);
        }
    }
    let out = command
        .envs(env.iter().copied())
        .env(
            "OSCIED_LISTEN",
            format!("127.0.0.1:{}", oscied_e2e::free_port()),
        )
        .output()
        .expect("runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{log}");
    let pid = format!("pid={}", cluster.publishers[0].pid());
    for needle in [
        ".oscied",
        "in use by another unit",
        &pid,
        "OSCIED_STATE_DIR",
    ] {
        assert!(log.contains(needle), "{needle:?} not in:\n{log}");
    }
    assert!(!cluster.publishers[0].exited(), "{}", cluster.logs());
}

/// What this proves: the periodic reconcile removes the files of a publication that ended
/// while its unit was up but unreachable. The unit is frozen (SIGSTOP: a hung host, a
/// network partition), goes offline, and an admin forgets it (`DELETE /units/{id}`): its
/// publication ends REVOKED. When it thaws it still has the files; within a reconcile
/// (`OSCIED_RECONCILE_SECS=2`) they are no longer served.
#[test]
fn a_publication_that_ended_elsewhere_is_removed_by_the_periodic_reconcile() {
    let mut cluster = Cluster::start(0, &[]);
    cluster.add_publisher("publisher-1", &[("OSCIED_RECONCILE_SECS", "2")]);
    cluster.wait_publisher_consumers();
    let media = cluster.upload_clip("gone.mp4", 2, 160, 120);
    let (done, uri) = publish_and_wait(&cluster, str_of(&media, "id"));
    assert_serves(&cluster, &uri, &media);

    let pid = cluster.publishers[0].pid();
    signal(pid, "STOP");
    cluster.wait_until(
        "publisher-1 offline",
        Duration::from_secs(30),
        || match publisher_units(&cluster).first() {
            Some(unit) if unit["online"] == false => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (status, forgotten) = cluster.call_as_root("DELETE", "/units/publisher-1");
    assert_eq!(status, 200, "{}", pretty(&forgotten));
    assert_eq!(
        forgotten["publications_revoked"],
        json!([str_of(&done, "id")]),
        "{}",
        pretty(&forgotten)
    );
    let files = cluster.publishers[0]
        .www_root()
        .join("medias")
        .join(str_of(&media, "id"));
    assert!(
        files.is_dir(),
        "the frozen unit still has {}",
        files.display()
    );
    signal(pid, "CONT");
    cluster.wait_until("the files removed", Duration::from_secs(20), || {
        let got = fetch(&uri, &[]);
        if got.status == 404 && !files.exists() {
            Ok(())
        } else {
            Err(got.describe())
        }
    });
}

/// What this proves: a publisher `kill -9`ed mid-publish of an HLS package, after the
/// package was renamed into place but before the orchestra heard of it (its URL check hangs
/// on a public URL that never answers), and restarted with the same id while its lease still
/// runs, removes the attempt-1 files at start. The lease lapses, attempt 2 finishes on
/// another publisher, and after the unpublish no URL of either unit answers 200.
#[test]
fn a_publisher_killed_after_the_rename_removes_its_files_at_restart() {
    // Accepts connections, never answers: the URL check waits (2 s a try, 5 s in all).
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole = format!("http://{}", blackhole.local_addr().expect("addr"));
    let mut cluster = Cluster::start(1, &[("OSCIED_TASK_LEASE_SECS", "15")]);
    cluster.add_publisher("victim", &[("OSCIED_PUBLIC_URL", &hole)]);
    cluster.wait_publisher_consumers();
    let input = cluster.upload_clip("hls-in.mp4", 4, 320, 180);
    let launched = cluster.launch(
        str_of(&input, "id"),
        &cluster.profile_id("HLS 720p"),
        "out.m3u8",
    );
    let encoded = cluster.wait_status(str_of(&launched, "id"), "SUCCESS", Duration::from_secs(240));
    let out = cluster.media(str_of(&encoded, "media_out_id"));
    let media_id = str_of(&out, "id").to_owned();
    let task = cluster.publish(&media_id);
    let id = str_of(&task, "id").to_owned();
    let files = cluster.publishers[0]
        .www_root()
        .join("medias")
        .join(&media_id);
    cluster.wait_until("the package in place", PUBLISH_TIMEOUT, || {
        if files.join("out.m3u8").is_file() {
            Ok(())
        } else {
            Err(files.display().to_string())
        }
    });
    cluster.publishers[0].kill9();
    let held = cluster.publication(&id);
    assert_eq!(
        (held["unit_id"].clone(), held["attempt"].clone()),
        (json!("victim"), json!(1)),
        "{}",
        pretty(&held)
    );
    let port = cluster.publishers[0].port();
    let victim_uri = format!("http://127.0.0.1:{port}/medias/{media_id}/out.m3u8");

    // Back with the same id (and a queue of its own, so attempt 2 goes elsewhere).
    cluster.publishers[0].respawn_with(&[("OSCIED_QUEUES", "publisher-spare")]);
    cluster.wait_until("attempt 1's files removed", Duration::from_secs(30), || {
        if files.exists() {
            Err(format!("{:?}", common::files_below(&files)))
        } else {
            Ok(())
        }
    });
    let still = cluster.publication(&id);
    assert_eq!(
        (still["unit_id"].clone(), still["attempt"].clone()),
        (json!("victim"), json!(1)),
        "removed while the lease still ran: {}",
        pretty(&still)
    );
    assert_gone(&cluster, &victim_uri);

    cluster.add_publisher("survivor", &[]);
    let done = cluster.wait_publication(&id, "SUCCESS", Duration::from_secs(90));
    assert_eq!(done["attempt"], 2, "{}", pretty(&done));
    assert_eq!(done["unit_id"], "survivor", "{}", pretty(&done));
    let uri = str_of(&done, "publish_uri").to_owned();
    assert_serves(&cluster, &uri, &out);
    assert_gone(&cluster, &victim_uri);

    let (status, body) = cluster.unpublish(&id);
    assert!(status == 202 || status == 200, "{status} {}", pretty(&body));
    cluster.wait_publication(&id, "REVOKED", PUBLISH_TIMEOUT);
    assert_gone(&cluster, &uri);
    assert_gone(&cluster, &victim_uri);
    drop(blackhole);
}
