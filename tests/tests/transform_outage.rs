//! RabbitMQ stopped (`rabbitmqctl stop_app`) for a few seconds while tasks run: nothing is
//! lost. Alone in its test binary, since stopping the broker disturbs every other test.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, pretty, str_of};
use oscied_e2e::api::CALL_MAX_SECS;
use oscied_e2e::rabbit::Outage;
use serde_json::Value;

fn health(cluster: &Cluster) -> (u16, Value) {
    cluster.api().health()
}

#[test]
fn a_broker_outage_loses_no_task() {
    let cluster = Cluster::start(2, &[]);
    let realtime = cluster.realtime_profile();
    let inputs: Vec<Value> = (1..=4)
        .map(|n| cluster.upload_clip(&format!("clip{n}.mp4"), 8, 320, 180))
        .collect();
    let mut tasks: Vec<Value> = inputs[..3]
        .iter()
        .enumerate()
        .map(|(n, input)| cluster.launch(str_of(input, "id"), &realtime, &format!("out{n}.mp4")))
        .collect();
    let ids: Vec<String> = tasks.iter().map(|t| str_of(t, "id").to_owned()).collect();
    cluster.wait_until("a task in PROGRESS", Duration::from_secs(60), || {
        let states: Vec<Value> = ids
            .iter()
            .map(|id| cluster.task(id)["status"].clone())
            .collect();
        if states.iter().any(|s| s == "PROGRESS") {
            Ok(())
        } else {
            Err(format!("{states:?}"))
        }
    });

    let outage = Outage::begin();
    let (status, answer) = health(&cluster);
    assert_eq!(
        status,
        503,
        "/health during the outage: {}",
        pretty(&answer)
    );
    assert_eq!(answer["broker"], "down", "{}", pretty(&answer));
    assert_eq!(answer["status"], "degraded", "{}", pretty(&answer));
    // The task is stored and dispatched later.
    let (status, late) = cluster.try_launch(
        str_of(&inputs[3], "id"),
        &realtime,
        "out3.mp4",
        serde_json::json!({}),
    );
    assert_eq!(
        status,
        201,
        "a task created during the outage (0 = no answer within {CALL_MAX_SECS} s): {}\n{}",
        pretty(&late),
        cluster.logs()
    );
    assert_eq!(late["status"], "PENDING", "{}", pretty(&late));
    tasks.push(late);
    std::thread::sleep(Duration::from_secs(4));
    outage.end();

    cluster.wait_until(
        "/health ok after the outage",
        Duration::from_secs(30),
        || match health(&cluster) {
            (200, answer) if answer["broker"] == "ok" => Ok(()),
            (status, answer) => Err(format!("{status} {}", pretty(&answer))),
        },
    );
    // All four, within 90 s of the broker's return.
    let deadline = Instant::now() + Duration::from_secs(90);
    for (task, input) in tasks.iter().zip(&inputs) {
        let left = deadline.saturating_duration_since(Instant::now());
        let done = cluster.wait_status(str_of(task, "id"), "SUCCESS", left);
        let out = cluster.media(str_of(&done, "media_out_id"));
        assert_eq!(out["status"], "READY", "{}", pretty(&out));
        assert_eq!(
            cluster.ready_children(str_of(input, "id")),
            1,
            "exactly one output for {}",
            pretty(&done)
        );
    }
}
