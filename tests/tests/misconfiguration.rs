//! Misconfiguration is loud (issue 10): a `worker-transform` with the wrong node secret, on a
//! real orchestra + NX-27017 + RabbitMQ, takes no job, says what to fix, and exits non-zero;
//! the orchestra logs the refused login with the unit and its peer.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, NODE_SECRET, pretty, str_of};
use oscied_e2e::units::TransformUnit;

#[test]
fn a_unit_with_the_wrong_node_secret_takes_no_job_says_why_and_exits_non_zero() {
    let (mut cluster, id) = cluster_with_a_waiting_task();

    let started = Instant::now();
    let mut wrong = wrong_secret_unit(
        &mut cluster,
        "wrong-secret-unit",
        "not-the-node-secret",
        "8",
    );
    let status = wrong
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the unit still runs after 40 s:\n{}", wrong.log_tail()));
    let took = started.elapsed();
    let log = wrong.log_tail();
    assert!(!status.success(), "it exits non-zero ({status}):\n{log}");
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(30),
        "it exits after OSCIED_REFUSED_EXIT_SECS, took {took:?}:\n{log}"
    );
    // One error with the fix per 10 s, not one per beat (8 beats at least were refused).
    let fixes = log
        .lines()
        .filter(|l| l.contains("OSCIED_NODE_SECRET must equal the orchestra's node secret"))
        .count();
    assert!((1..=2).contains(&fixes), "{fixes} error lines:\n{log}");
    assert!(log.contains("node_secret"), "{log}");
    assert!(
        log.contains("the orchestra refused the node secret for 8 s"),
        "{log}"
    );

    // It never claimed: the task still waits for its first attempt, and nobody holds it.
    let now = cluster.task(&id);
    assert_eq!(now["status"], "PENDING", "{}", pretty(&now));
    assert_eq!(now["attempt"], 1, "{}", pretty(&now));
    assert!(now["unit_id"].is_null(), "{}", pretty(&now));
    let units = cluster.get("/units");
    assert_eq!(units["total"], 0, "{}", pretty(&units));

    // The orchestra said who was refused, from where.
    let orchestra_log = cluster.orchestra().log_tail();
    let refused: Vec<&str> = orchestra_log
        .lines()
        .filter(|l| l.contains("wrong node secret"))
        .collect();
    assert!(
        refused
            .iter()
            .any(|l| l.contains("wrong-secret-unit") && l.contains("127.0.0.1:")),
        "{orchestra_log}"
    );
    // Rate-limited: one line per peer and unit id per minute (heartbeats came every second).
    assert!(refused.len() <= 3, "{}", refused.join("\n"));

    // A unit with the right secret runs the task that waited.
    cluster.add_unit("unit-1");
    let done = cluster.wait_status(&id, "SUCCESS", Duration::from_secs(120));
    assert_eq!(done["unit_id"], "unit-1", "{}", pretty(&done));
    assert_eq!(done["attempt"], 1, "{}", pretty(&done));
    assert_ne!(NODE_SECRET, "not-the-node-secret");
}

#[test]
fn a_refused_unit_takes_jobs_once_the_orchestra_accepts_its_secret() {
    let (mut cluster, id) = cluster_with_a_waiting_task();
    let mut unit = wrong_secret_unit(&mut cluster, "renewed-unit", "the-new-node-secret", "120");
    cluster.wait_until(
        "the unit to say its secret is refused",
        Duration::from_secs(30),
        || {
            let log = unit.log_tail();
            if log.contains("refuses this unit's node secret") {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    assert_eq!(cluster.task(&id)["status"], "PENDING");

    // The orchestra comes back with the unit's secret: the unit takes the job.
    cluster
        .orchestra_mut()
        .restart_with(&[("OSCIED_NODE_SECRET", "the-new-node-secret")]);
    let done = cluster.wait_status(&id, "SUCCESS", Duration::from_secs(120));
    assert_eq!(done["unit_id"], "renewed-unit", "{}", pretty(&done));
    assert!(!unit.exited(), "{}", unit.log_tail());
    assert!(
        unit.log_tail().contains("accepts the node secret again"),
        "{}",
        unit.log_tail()
    );
}

/// A transform unit of `cluster` given `secret` instead of the cluster's node secret, exiting
/// after `exit_secs` of refusal; taken out of the cluster so the test holds it.
fn wrong_secret_unit(
    cluster: &mut Cluster,
    id: &str,
    secret: &str,
    exit_secs: &str,
) -> TransformUnit {
    cluster.add_unit_with(
        id,
        &[
            ("OSCIED_NODE_SECRET", secret),
            ("OSCIED_REFUSED_EXIT_SECS", exit_secs),
        ],
    );
    cluster.units.pop().expect("the unit just added")
}

/// A cluster without units, and the id of a copy task queued on it.
fn cluster_with_a_waiting_task() -> (Cluster, String) {
    let cluster = Cluster::start(0, &[]);
    let input = cluster.upload_clip("input.mp4", 2, 320, 180);
    let task = cluster.launch(
        str_of(&input, "id"),
        &cluster.profile_id("File Copy"),
        "copy.mp4",
    );
    let id = str_of(&task, "id").to_owned();
    (cluster, id)
}
